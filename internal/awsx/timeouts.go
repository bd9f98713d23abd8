// Package awsx holds what the service adds to the AWS SDK's clients: a deadline on every
// attempt of every request.
//
// Without it a request waits as long as its context allows, which for a job is as long as the
// job runs: a connection that stays open and never answers (a stalled server, a half-open TCP
// path) hangs the job forever. The SDK's retryer does not help, since it only sees attempts that
// end. AttemptTimeouts gives each attempt its own deadline, chosen per operation, and makes the
// attempt that reached it end with an error the standard retryer retries (it would not retry a
// plain context deadline: the SDK reports it as a canceled request, which is never retried).
//
// Wiring, in order of preference:
//
//	cfg.APIOptions = append(cfg.APIOptions, awsx.AttemptTimeouts(awsx.Timeouts{}))  // every client made from cfg
//	s3.NewFromConfig(cfg, awsx.S3(t)); sqs.NewFromConfig(cfg, awsx.SQS(t)); sts.NewFromConfig(cfg, awsx.STS(t))
//	client.PutObject(ctx, in, awsx.S3(t))                                           // one call
//
// Installing it twice is harmless: the last one installed decides.
package awsx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	awsmiddle "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Defaults of Timeouts' zero fields.
const (
	DefaultTimeout        = 20 * time.Second
	DefaultBodyThroughput = 1 << 20 // bytes per second
	DefaultLongPollMargin = 10 * time.Second
	// DefaultCompleteTimeout is CompleteMultipartUpload's: S3 may take minutes to assemble a
	// large object (it keeps the connection alive with whitespace while it works).
	DefaultCompleteTimeout = 2 * time.Minute
	// maxLongPoll is SQS's largest WaitTimeSeconds, assumed when a ReceiveMessage leaves it to
	// the queue's ReceiveMessageWaitTimeSeconds.
	maxLongPoll = 20 * time.Second
)

// Timeouts are the deadlines of one attempt of a request. The zero value is the defaults.
type Timeouts struct {
	// Default bounds an attempt of an operation that has no rule below; 0 means DefaultTimeout.
	Default time.Duration
	// An attempt that sends a body of n bytes (S3 UploadPart, PutObject) gets n / BodyThroughput
	// more than its operation's deadline: a floor throughput under which the connection is taken
	// for stalled (an 8 MiB part: 20s + 8s by default). 0 means DefaultBodyThroughput.
	BodyThroughput int64
	// LongPollMargin is added to a ReceiveMessage's WaitTimeSeconds (20s when the call leaves it
	// to the queue); 0 means DefaultLongPollMargin.
	LongPollMargin time.Duration
	// Operations sets the deadline of operations by name ("CompleteMultipartUpload",
	// "AssumeRole", ...), over Default. CompleteMultipartUpload is DefaultCompleteTimeout unless
	// set here. A negative value leaves the operation without a deadline.
	Operations map[string]time.Duration
}

// For returns the deadline of an attempt of operation carrying a body of bodyBytes bytes (0 if
// none), or 0 for no deadline. ReceiveMessage is given its wait in bodyBytes' place by the
// middleware; see forReceive.
func (t Timeouts) For(operation string, bodyBytes int64) time.Duration {
	d, ok := t.Operations[operation]
	switch {
	case ok && d < 0:
		return 0
	case ok && d > 0:
	case operation == "CompleteMultipartUpload":
		d = DefaultCompleteTimeout
	default:
		d = orDefault(t.Default, DefaultTimeout)
	}
	if bodyBytes > 0 {
		tp := t.BodyThroughput
		if tp <= 0 {
			tp = DefaultBodyThroughput
		}
		d += time.Duration(float64(bodyBytes) / float64(tp) * float64(time.Second))
	}
	return d
}

// forReceive is the deadline of a ReceiveMessage that long-polls for wait.
func (t Timeouts) forReceive(wait time.Duration) time.Duration {
	if d, ok := t.Operations["ReceiveMessage"]; ok && d != 0 {
		return max(d, 0)
	}
	return wait + orDefault(t.LongPollMargin, DefaultLongPollMargin)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// ErrAttemptTimeout is what an AttemptTimeoutError unwraps to.
var ErrAttemptTimeout = errors.New("awsx: attempt timed out")

// AttemptTimeoutError ends an attempt that reached its deadline while the request's own
// context was still live. The standard retryer retries it (RetryableError), and counts it as a
// timeout for its retry quota (Timeout). It deliberately does not unwrap to the SDK's
// *smithy.CanceledError, which the retryer never retries, nor to context.DeadlineExceeded, which
// callers read as their own context's end.
type AttemptTimeoutError struct {
	Service, Operation string
	// After is the attempt's deadline.
	After time.Duration
	// Err is what the attempt returned when its deadline cut it short, for the message only.
	Err error
}

func (e *AttemptTimeoutError) Error() string {
	return fmt.Sprintf("%s %s: no answer within the attempt's %s (%v)", e.Service, e.Operation, e.After, e.Err)
}

// RetryableError tells the SDK's retryer to retry.
func (e *AttemptTimeoutError) RetryableError() bool { return true }

// Timeout reports a timeout (to the retryer's quota and to net.Error-style checks).
func (e *AttemptTimeoutError) Timeout() bool { return true }

func (e *AttemptTimeoutError) Unwrap() error { return ErrAttemptTimeout }

// AttemptTimeouts returns an API option (for aws.Config.APIOptions or a client's
// Options.APIOptions) that gives every attempt of every request its own deadline per t.
func AttemptTimeouts(t Timeouts) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		if err := setInitialize(stack, &receiveWait{}); err != nil {
			return err
		}
		return setFinalize(stack, &attemptTimeout{t: t})
	}
}

// S3 is AttemptTimeouts as an option of an S3 client or call.
func S3(t Timeouts) func(*s3.Options) {
	return func(o *s3.Options) { o.APIOptions = append(o.APIOptions, AttemptTimeouts(t)) }
}

// SQS is AttemptTimeouts as an option of an SQS client or call.
func SQS(t Timeouts) func(*sqs.Options) {
	return func(o *sqs.Options) { o.APIOptions = append(o.APIOptions, AttemptTimeouts(t)) }
}

// STS is AttemptTimeouts as an option of an STS client or call.
func STS(t Timeouts) func(*sts.Options) {
	return func(o *sts.Options) { o.APIOptions = append(o.APIOptions, AttemptTimeouts(t)) }
}

func setInitialize(stack *middleware.Stack, m middleware.InitializeMiddleware) error {
	if _, ok := stack.Initialize.Get(m.ID()); ok {
		_, err := stack.Initialize.Swap(m.ID(), m)
		return err
	}
	return stack.Initialize.Add(m, middleware.After)
}

// setFinalize puts m right after the retry middleware, so that it runs once per attempt (and
// the backoff sleeps between attempts are not counted), and around signing, the credentials'
// retrieval and the response's deserialization, which are part of an attempt.
func setFinalize(stack *middleware.Stack, m middleware.FinalizeMiddleware) error {
	if _, ok := stack.Finalize.Get(m.ID()); ok {
		_, err := stack.Finalize.Swap(m.ID(), m)
		return err
	}
	if _, ok := stack.Finalize.Get("Retry"); ok {
		return stack.Finalize.Insert(m, "Retry", middleware.After)
	}
	return stack.Finalize.Add(m, middleware.Before)
}

type receiveWaitKey struct{}

// receiveWait passes a ReceiveMessage's long-poll wait down to the attempt's deadline.
type receiveWait struct{}

func (*receiveWait) ID() string { return "awsx.ReceiveWait" }

func (*receiveWait) HandleInitialize(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	if rm, ok := in.Parameters.(*sqs.ReceiveMessageInput); ok {
		wait := maxLongPoll
		if rm.WaitTimeSeconds > 0 {
			wait = time.Duration(rm.WaitTimeSeconds) * time.Second
		}
		ctx = middleware.WithStackValue(ctx, receiveWaitKey{}, wait)
	}
	return next.HandleInitialize(ctx, in)
}

type attemptTimeout struct{ t Timeouts }

func (*attemptTimeout) ID() string { return "awsx.AttemptTimeout" }

func (m *attemptTimeout) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	op := awsmiddle.GetOperationName(ctx)
	var d time.Duration
	if wait, ok := middleware.GetStackValue(ctx, receiveWaitKey{}).(time.Duration); ok {
		d = m.t.forReceive(wait)
	} else {
		d = m.t.For(op, bodyLength(in.Request))
	}
	if d <= 0 {
		return next.HandleFinalize(ctx, in)
	}
	// A timer rather than context.WithTimeout: an output that streams its body (GetObject) must
	// be bounded until its headers arrive, not while the caller reads it.
	actx, cancel := context.WithCancelCause(ctx)
	fired := errors.New("attempt deadline")
	timer := time.AfterFunc(d, func() { cancel(fired) })
	out, md, err := next.HandleFinalize(actx, in)
	timer.Stop()
	if err != nil {
		if ctx.Err() == nil && context.Cause(actx) == fired {
			err = &AttemptTimeoutError{Service: awsmiddle.GetServiceID(ctx), Operation: op, After: d, Err: err}
		}
		cancel(nil)
		return out, md, err
	}
	if o, ok := out.Result.(*s3.GetObjectOutput); ok && o.Body != nil {
		// The body is read through actx: release it when the caller closes the body.
		o.Body = &cancelOnClose{ReadCloser: o.Body, cancel: func() { cancel(nil) }}
		return out, md, nil
	}
	cancel(nil)
	return out, md, nil
}

// bodyLength is the length of the request's body, 0 if it has none or it is unknown.
func bodyLength(req any) int64 {
	r, ok := req.(*smithyhttp.Request)
	if !ok {
		return 0
	}
	if r.ContentLength > 0 {
		return r.ContentLength
	}
	if n, ok, err := r.StreamLength(); err == nil && ok {
		return n
	}
	return 0
}

type cancelOnClose struct {
	io.ReadCloser
	once   sync.Once
	cancel func()
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.cancel)
	return err
}

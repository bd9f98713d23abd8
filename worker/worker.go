// Package worker owns an SQS delivery's life: the long poll, the concurrency limit, the
// visibility lease, deleting on success, dead-lettering permanent failures, backing off
// retryable ones, and releasing messages on shutdown.
package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/verifiedfan/export-service/jobs"
)

// SQS is the part of the SQS API the worker uses; *sqs.Client satisfies it.
type SQS interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

var _ SQS = (*sqs.Client)(nil)

// Config configures a Worker. Zero values take the documented defaults (see SetDefaults).
type Config struct {
	// QueueURL is the jobs queue. Required.
	QueueURL string
	// ControlQueueURL, if set, is the control queue: cancel messages only, received and
	// handled at once whatever the jobs in flight (a cancel on the jobs queue waits for a free
	// slot, behind any backlog).
	ControlQueueURL string
	// DLQURL is the dead-letter queue permanent failures are sent to. Without it, permanent
	// failures are left to the queue's redrive policy.
	DLQURL string
	// Concurrency is the number of jobs run at once. Default 4.
	Concurrency int
	// WaitTime is the long-poll wait of ReceiveMessage (0: short polls). The caller chooses it;
	// 20s, the SQS maximum, is what production uses.
	WaitTime time.Duration
	// VisibilityTimeout is the lease taken on a received message and renewed every third of it
	// while the job runs. Default 2m.
	VisibilityTimeout time.Duration
	// DrainTimeout is how long jobs in flight may run after shutdown began (0: they are
	// stopped at once). Then jobs are asked to stop at their next safe point (Delivery.Stop:
	// an export after its next stored part, continued from there by the next worker), and
	// their messages are released. The caller chooses it (see cmd's DRAIN_TIMEOUT).
	DrainTimeout time.Duration
	// StopGrace is how long jobs asked to stop may take to reach their safe point before they
	// are canceled (their unstored parts are then read again by the next attempt). Default 60s.
	StopGrace time.Duration
	// RetryBase and RetryMax bound the backoff of retryable failures:
	// min(RetryBase * 2^(receives-1), RetryMax), with jitter. Defaults 30s and 15m.
	RetryBase time.Duration
	RetryMax  time.Duration
	// MaxMessageLease is how long one delivery of a message may be held. SQS refuses to extend
	// a message's visibility beyond 12 hours after it was received, so a job still running at
	// this point hands its message over (see Delivery.SetOnHandOver). Default 11h.
	MaxMessageLease time.Duration
	// HandOverDelay is the delivery delay of the copy sent by a handover or a hop (0: none).
	// The caller chooses it; production uses 15m, the SQS maximum.
	HandOverDelay time.Duration
	// CallTimeout bounds each SQS call but the long poll (delete, change visibility, send).
	// Default 20s.
	CallTimeout time.Duration
}

// SetDefaults fills unset fields. WaitTime, DrainTimeout and HandOverDelay are not among
// them: 0 is a meaningful value of each, so the caller sets them.
func (c *Config) SetDefaults() {
	if c.Concurrency == 0 {
		c.Concurrency = 4
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = 2 * time.Minute
	}
	if c.RetryBase == 0 {
		c.RetryBase = 30 * time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 15 * time.Minute
	}
	if c.MaxMessageLease == 0 {
		c.MaxMessageLease = 11 * time.Hour
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = 20 * time.Second
	}
	if c.StopGrace == 0 {
		c.StopGrace = time.Minute
	}
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	if c.QueueURL == "" {
		errs = append(errs, errors.New("queue URL is required"))
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("concurrency %d is outside 1..256", c.Concurrency))
	}
	if c.WaitTime < 0 || c.WaitTime > 20*time.Second {
		errs = append(errs, fmt.Errorf("receive wait time %s is outside 0..20s", c.WaitTime))
	}
	if c.VisibilityTimeout < 3*time.Second || c.VisibilityTimeout > 12*time.Hour {
		errs = append(errs, fmt.Errorf("visibility timeout %s is outside 3s..12h", c.VisibilityTimeout))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("drain timeout %s is negative", c.DrainTimeout))
	}
	if c.RetryBase <= 0 || c.RetryMax < c.RetryBase || c.RetryMax > 12*time.Hour {
		errs = append(errs, fmt.Errorf("retry backoff %s..%s must be positive, increasing and at most 12h", c.RetryBase, c.RetryMax))
	}
	if c.MaxMessageLease < c.VisibilityTimeout || c.MaxMessageLease > 12*time.Hour-c.VisibilityTimeout/3 {
		errs = append(errs, fmt.Errorf("max message lease %s must be at least the visibility timeout and leave a third of it before the 12h SQS limit", c.MaxMessageLease))
	}
	if c.HandOverDelay < 0 || c.HandOverDelay > 15*time.Minute {
		errs = append(errs, fmt.Errorf("handover delay %s is outside 0..15m", c.HandOverDelay))
	}
	if c.ControlQueueURL != "" && (c.ControlQueueURL == c.QueueURL || c.ControlQueueURL == c.DLQURL) {
		errs = append(errs, errors.New("the control queue must be a queue of its own, neither the jobs queue nor the dead-letter queue"))
	}
	if c.CallTimeout < time.Second {
		errs = append(errs, fmt.Errorf("SQS call timeout %s is under 1s", c.CallTimeout))
	}
	return errors.Join(errs...)
}

// Delivery is one received SQS message: a delivery of a job message (an export request,
// jobs.Message, is what its body holds), with its receipt and what the handler learned of it.
type Delivery struct {
	ID            string
	Body          string
	ReceiptHandle string
	// ReceiveCount is SQS's ApproximateReceiveCount: 1 on the first delivery.
	ReceiveCount int
	SentAt       time.Time
	ReceivedAt   time.Time
	// RequestedAt is when the job was first sent: SentAt, or for a copy sent by a handover or
	// a hop, the original's (carried in the "requested_at" attribute), so that anything derived
	// from it (a {date} in an object key) is the same for every delivery.
	RequestedAt time.Time
	// CopyOf is the id of the delivery this message is a copy of (a handover, hop or release
	// copy the worker sent: attribute handover_of), or "" for an original.
	CopyOf string
	// Control says the message came from the control queue (Config.ControlQueueURL).
	Control bool
	// Claimed says the handler claimed the message's export in the ledger: a message refused
	// before (malformed, invalid) ran no attempt of it.
	Claimed bool
	// queueURL is the queue it came from.
	queueURL string

	// Filled in by the handler once it knows them, for logs, metrics and dead-letter attributes.
	ExportID    string
	Kind        string
	Destination string
	// Outcome may be set by the handler to OutcomeDuplicate or OutcomeCancelled when it
	// acknowledged a message without running it (or stopped it because it was cancelled).
	Outcome string
	// Stop is closed when the drain deadline of a shutdown passes: a job that can stop at a
	// safe point (an export after its last stored part) should, and return an error wrapping
	// ErrReleased; the others are canceled a little later (Config.StopGrace).
	Stop <-chan struct{}
	// Failures, if the handler knows it, is how many attempts of the message's job failed so
	// far (this one included): the backoff grows with it where the receive count does not
	// (a copy sent by a handover or a release starts at receive count 1).
	Failures int
	// onHandOver, if set by the handler, is called when the job outlives MaxMessageLease: the
	// worker has sent a delayed copy of the message (newID) and is about to delete this
	// delivery; the job goes on without a message, protected by the handler's own lease (the
	// export ledger). The copy, when it arrives, finds the job still running and hops (see
	// HopError), or finds it finished.
	// Set it with SetOnHandOver: the lease goroutine reads it concurrently.
	onHandOver atomic.Pointer[func(ctx context.Context, newID string) error]

	handedOver bool
}

// SetOnHandOver sets the handover callback (see onHandOver).
func (m *Delivery) SetOnHandOver(f func(ctx context.Context, newID string) error) {
	m.onHandOver.Store(&f)
}

// HopError asks the worker to re-send the message as a new message delayed by Delay and
// delete this delivery. A handler returns it for a
// message that carries a job running elsewhere: the copy keeps the job's retry path alive
// without this delivery's receive count growing toward the redrive limit.
type HopError struct {
	Reason string
	// Delay of the copy; 0 means HandOverDelay.
	Delay time.Duration
}

func (e *HopError) Error() string { return "worker: hop: " + e.Reason }

// Handler runs one message. Returning nil deletes the message; an error marked with
// jobs.Permanent dead-letters it at once; any other error makes it come back after a backoff.
type Handler interface {
	Handle(ctx context.Context, m *Delivery) error
}

// DeadLetterObserver is implemented by handlers that want to know when the worker sent one of
// their messages to the dead-letter queue.
type DeadLetterObserver interface {
	DeadLettered(ctx context.Context, m *Delivery, reason jobs.Reason, cause error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m *Delivery) error

// Handle implements Handler.
func (f HandlerFunc) Handle(ctx context.Context, m *Delivery) error { return f(ctx, m) }

// Worker receives job messages and runs them.
type Worker struct {
	cfg     Config
	sqs     SQS
	handler Handler
	log     zerolog.Logger
	metrics *Metrics

	started      time.Time
	inFlight     atomic.Int64
	draining     atomic.Bool
	lastReceive  atomic.Int64 // unix nanos of the last successful receive call
	lastProgress atomic.Int64 // unix nanos of the last completed receive attempt
}

// New returns a worker for cfg, with its unset fields defaulted (SetDefaults), or every
// problem of the configuration at once.
func New(cfg Config, client SQS, h Handler, metrics *Metrics, log zerolog.Logger) (*Worker, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("worker: configuration: %w", err)
	}
	w := &Worker{cfg: cfg, sqs: client, handler: h, metrics: metrics, log: log, started: time.Now()}
	w.lastProgress.Store(time.Now().UnixNano())
	return w, nil
}

// sqsMaxVisibility is how long after its receipt SQS lets a message stay invisible.
const sqsMaxVisibility = 12 * time.Hour

// errLeaseLost cancels a job whose message's visibility could not be extended.
var errLeaseLost = errors.New("worker: lease on the message was lost")

// errDrainTimeout cancels jobs still running when the drain deadline passes.
var errDrainTimeout = errors.New("worker: drain deadline passed")

// ErrReleased, wrapped by a handler's error, says the job stopped at a safe point because the
// drain deadline passed (Delivery.Stop): its message is released like a canceled job's.
var ErrReleased = errors.New("worker: job stopped by the drain deadline")

// Run receives and runs messages until ctx is canceled, then drains: it stops receiving, lets
// jobs in flight finish for up to DrainTimeout, then cancels the rest and releases their
// messages. It returns nil after a clean drain.
func (w *Worker) Run(ctx context.Context) error {
	jobsCtx, cancelJobs := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelJobs(nil)
	stopJobs := make(chan struct{})

	var g errgroup.Group
	g.SetLimit(w.cfg.Concurrency)
	slots := make(chan struct{}, w.cfg.Concurrency)

	w.log.Info().Str("queue", w.cfg.QueueURL).Int("concurrency", w.cfg.Concurrency).Msg("worker started")
	// /heartbeat says draining from the moment shutdown begins, even while a poll finishes.
	stopDraining := context.AfterFunc(ctx, func() { w.draining.Store(true) })
	defer stopDraining()
	var control sync.WaitGroup
	if w.cfg.ControlQueueURL != "" {
		control.Add(1)
		go func() { defer control.Done(); w.pollControl(ctx, jobsCtx) }()
	}
	defer control.Wait()
	backoff := time.Duration(0)
	for {
		// Wait for one free slot, then take every other free slot (up to 10, the SQS maximum):
		// never receive a message there is no slot to run, or its visibility timeout would burn.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		// Waiting for a slot while every job is busy is not a stall; count getting one as progress.
		w.lastProgress.Store(time.Now().UnixNano())
		free := 1
		for free < 10 {
			select {
			case slots <- struct{}{}:
				free++
				continue
			default:
			}
			break
		}
		msgs, err := w.receive(ctx, w.cfg.QueueURL, free)
		for range free - len(msgs) {
			<-slots
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			w.backOff(ctx, &backoff, err, "receive failed")
			continue
		}
		backoff = 0
		for _, m := range msgs {
			m.Stop = stopJobs
			g.Go(func() error {
				defer func() { <-slots }()
				w.process(jobsCtx, m)
				return nil
			})
		}
	}

	w.draining.Store(true)
	n := w.inFlight.Load()
	w.log.Info().Int64("in_flight", n).Dur("deadline", w.cfg.DrainTimeout).Msg("draining: stopped receiving, waiting for jobs in flight")
	done := make(chan struct{})
	go func() { _ = g.Wait(); close(done) }()
	select {
	case <-done:
		w.log.Info().Msg("drained: all jobs finished")
	case <-time.After(w.cfg.DrainTimeout):
		w.log.Warn().Int64("in_flight", w.inFlight.Load()).Dur("grace", w.cfg.StopGrace).Msg("drain deadline passed: stopping jobs at their next safe point and releasing their messages")
		close(stopJobs)
		select {
		case <-done:
		case <-time.After(w.cfg.StopGrace):
			w.log.Warn().Int64("in_flight", w.inFlight.Load()).Msg("jobs did not stop within the grace: canceling them and releasing their messages")
			cancelJobs(errDrainTimeout)
			<-done
		}
	}
	return nil
}

// pollControl receives the control queue's messages and handles each at once, outside the
// concurrency limit (they are short: a cancel is one ledger write), until ctx is canceled.
func (w *Worker) pollControl(ctx, jobsCtx context.Context) {
	w.log.Info().Str("queue", w.cfg.ControlQueueURL).Msg("control queue poller started")
	var handling sync.WaitGroup
	defer handling.Wait()
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		msgs, err := w.receive(ctx, w.cfg.ControlQueueURL, 10)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.backOff(ctx, &backoff, err, "receive from the control queue failed")
			continue
		}
		backoff = 0
		for _, m := range msgs {
			handling.Add(1)
			go func() {
				defer handling.Done()
				// Bounded: nothing waits for a control message at shutdown longer than this.
				mctx, cancel := context.WithTimeout(jobsCtx, 3*w.cfg.CallTimeout)
				defer cancel()
				w.process(mctx, m)
			}()
		}
	}
}

// backOff waits after a failed receive, 0.5 s at first, twice as long each time up to 20 s, or
// until ctx ends.
func (w *Worker) backOff(ctx context.Context, backoff *time.Duration, err error, msg string) {
	*backoff = min(max(2**backoff, 500*time.Millisecond), 20*time.Second)
	w.log.Error().Err(err).Dur("retry_in", *backoff).Msg(msg)
	select {
	case <-time.After(*backoff):
	case <-ctx.Done():
	}
}

// receive receives up to n messages from the queue at url (the jobs or the control queue).
func (w *Worker) receive(ctx context.Context, url string, n int) ([]*Delivery, error) {
	control := url != w.cfg.QueueURL
	// A long poll is not canceled by shutdown: the server would go on with it and could hand
	// a message to a connection nobody reads, hiding it for a whole visibility timeout. It is
	// let finish (at most WaitTime), and what it brings is released below.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.WaitTime+30*time.Second)
	defer cancel()
	out, err := w.sqs.ReceiveMessage(pctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(url),
		MaxNumberOfMessages:         int32(n),
		WaitTimeSeconds:             int32(w.cfg.WaitTime / time.Second),
		VisibilityTimeout:           int32(w.cfg.VisibilityTimeout / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		// The deprecated field too: some SQS implementations (local-aws-sqs) only honour it.
		AttributeNames:        []types.QueueAttributeName{"All"}, //nolint:staticcheck
		MessageAttributeNames: []string{"All"},
	})
	now := time.Now()
	if control {
		w.metrics.sqs("receive_control", err)
	} else {
		// The jobs loop's signs of life (the heartbeat's stall check): not the control poller's.
		w.metrics.sqs("receive", err)
		w.lastProgress.Store(now.UnixNano())
		w.metrics.LastProgress.Set(float64(now.Unix()))
	}
	if err != nil {
		return nil, fmt.Errorf("worker: receive from %s: %w", url, err)
	}
	if !control {
		w.lastReceive.Store(now.UnixNano())
	}
	msgs := make([]*Delivery, 0, len(out.Messages))
	for _, sm := range out.Messages {
		m := &Delivery{ID: aws.ToString(sm.MessageId), Body: aws.ToString(sm.Body), ReceiptHandle: aws.ToString(sm.ReceiptHandle), ReceivedAt: now,
			Control: control, queueURL: url}
		if v, err := strconv.Atoi(sm.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil {
			m.ReceiveCount = v
		}
		if v, err := strconv.ParseInt(sm.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
			m.SentAt = time.UnixMilli(v)
			w.metrics.MessageAge.Observe(now.Sub(m.SentAt).Seconds())
		}
		m.RequestedAt = m.SentAt
		if t := RequestedAt(sm.MessageAttributes); !t.IsZero() {
			m.RequestedAt = t
		}
		m.CopyOf = aws.ToString(sm.MessageAttributes[AttrHandoverOf].StringValue)
		msgs = append(msgs, m)
	}
	w.log.Debug().Int("asked", n).Int("received", len(msgs)).Bool("control", control).Msg("receive")
	if ctx.Err() != nil {
		// Shutdown began during the poll: put what it brought back at once.
		for _, m := range msgs {
			w.changeVisibility(context.WithoutCancel(ctx), m, 0, w.log)
		}
		return nil, ctx.Err()
	}
	return msgs, nil
}

// process runs one message to its outcome. It never panics and never returns an error: every
// outcome is an action on the message.
func (w *Worker) process(jobsCtx context.Context, m *Delivery) {
	w.inFlight.Add(1)
	w.metrics.InFlight.Inc()
	defer func() {
		w.inFlight.Add(-1)
		w.metrics.InFlight.Dec()
	}()

	ctx, cancel := context.WithCancelCause(jobsCtx)
	defer cancel(nil)
	var leaseWG sync.WaitGroup
	leaseWG.Add(1)
	go func() {
		defer leaseWG.Done()
		w.holdLease(ctx, m, cancel)
	}()

	start := time.Now()
	err := w.safeHandle(ctx, m)
	cause := context.Cause(ctx)
	cancel(nil)
	leaseWG.Wait()
	took := time.Since(start)

	log := w.log.With().Str("message_id", m.ID).Str("export_id", m.ExportID).Str("kind", m.Kind).
		Str("destination", m.Destination).Int("receive_count", m.ReceiveCount).Int64("duration", took.Milliseconds()).Logger()
	outcome := OutcomeSucceeded
	// An action on the message must happen even when the job's context was canceled.
	actx, acancel := context.WithTimeout(context.WithoutCancel(jobsCtx), 30*time.Second)
	defer acancel()
	var hop *HopError
	switch {
	case err == nil:
		if m.Outcome != "" {
			outcome = m.Outcome // the handler acknowledged it without running it (a duplicate, a cancel)
		}
		if m.handedOver {
			break // this delivery was deleted at the handover
		}
		if derr := w.delete(actx, m); derr != nil {
			log.Error().Err(derr).Msg("export done but deleting its message failed; it will be delivered again and acknowledged as a duplicate")
		}
	case m.handedOver:
		// The delivery is gone; the copy sent at the handover brings the job back, and the
		// handler (which recorded this failure) dead-letters the copy when it may not run again.
		outcome = OutcomeFailedRetryable
		if _, ok := jobs.IsPermanent(err); ok {
			outcome = OutcomeFailedPermanent
		}
		log.Warn().Err(err).Msg("job failed after its message was handed over; the handover copy will retry it or dead-letter it")
	case errors.As(err, &hop):
		outcome = OutcomeDeferred
		delay := hop.Delay
		if delay <= 0 {
			delay = w.cfg.HandOverDelay
		}
		if herr := w.hop(actx, m, delay, nil); herr != nil {
			log.Warn().Err(herr).Msg("re-sending the message failed; it comes back after its visibility timeout")
			w.changeVisibility(actx, m, w.retryDelay(1), log)
		} else {
			log.Info().Str("reason", hop.Reason).Msg("message re-sent delayed: its export is running elsewhere")
		}
	case errors.Is(cause, errLeaseLost):
		outcome = OutcomeFailedRetryable
		log.Error().Err(err).Msg("job canceled: lease on its message was lost; another delivery will run it")
	case errors.Is(cause, errDrainTimeout), errors.Is(err, ErrReleased):
		outcome = OutcomeReleased
		// A copy instead of a visibility change: a release must not count as a receive, or a
		// few deploys during one long export would send it to the DLQ without it ever failing.
		if herr := w.hop(actx, m, 0, nil); herr != nil {
			w.changeVisibility(actx, m, 0, log)
			log.Warn().Err(err).AnErr("copy_error", herr).Msg("job canceled by shutdown; sending a copy failed, message released to the queue")
		} else {
			log.Warn().Err(err).Msg("job canceled by shutdown; message released to the queue (as a copy)")
		}
	default:
		if pe := (*jobs.PanicError)(nil); errors.As(err, &pe) {
			// A goroutine of the job panicked: its stack travels in the error, not in the DLQ.
			log.Error().Str("where", pe.Where).Str("stack", string(pe.Stack)).Msg("job panicked")
		}
		if reason, ok := jobs.IsPermanent(err); ok {
			outcome = OutcomeFailedPermanent
			if derr := w.deadLetter(actx, m, reason, err); derr != nil {
				// Leave the message: it comes back, and the redrive policy ends it in the DLQ.
				log.Error().Err(derr).Str("reason", string(reason)).Msg("permanent failure, but sending it to the dead-letter queue failed")
				w.changeVisibility(actx, m, w.retryDelay(max(m.ReceiveCount, m.Failures)), log)
			} else {
				log.Error().Err(err).Str("reason", string(reason)).Msg("permanent failure: message sent to the dead-letter queue")
			}
			break
		}
		outcome = OutcomeFailedRetryable
		delay := w.retryDelay(max(m.ReceiveCount, m.Failures))
		w.changeVisibility(actx, m, delay, log)
		log.Warn().Err(err).Dur("retry_in", delay).Msg("retryable failure: message will come back")
	}
	kind, dest := labelOr(m.Kind), labelOr(m.Destination)
	w.metrics.Jobs.WithLabelValues(kind, dest, outcome).Inc()
	w.metrics.JobDuration.WithLabelValues(kind, outcome).Observe(took.Seconds())
	if outcome == OutcomeSucceeded {
		w.metrics.LastSuccess.SetToCurrentTime()
	}
}

func labelOr(v string) string {
	if v == "" {
		return "unknown"
	}
	return v
}

// safeHandle turns a panic in a job into a permanent failure of that job.
func (w *Worker) safeHandle(ctx context.Context, m *Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error().Str("message_id", m.ID).Str("export_id", m.ExportID).Str("stack", string(debug.Stack())).Msg("job panicked")
			err = jobs.Permanentf(jobs.ReasonPanic, "job panicked: %v", r)
		}
	}()
	return w.handler.Handle(ctx, m)
}

// holdLease extends the message's visibility every third of the timeout until ctx ends. A
// failed extension is retried, more and more slowly, within what is left of the lease; the job
// is canceled only when the lease is really gone (or SQS says the receipt is no longer valid):
// another worker may then have the message. When the job outlives MaxMessageLease and the
// handler can carry on without the message (SetOnHandOver), the message is handed over instead.
func (w *Worker) holdLease(ctx context.Context, m *Delivery, cancel context.CancelCauseFunc) {
	vt := w.cfg.VisibilityTimeout
	// The lease is taken to be gone a little before it is: the server's clock started when it
	// sent the message, before we saw it.
	margin := min(vt/10, 5*time.Second)
	expires := m.ReceivedAt.Add(vt)
	t := time.NewTimer(vt / 3)
	defer t.Stop()
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		held := time.Since(m.ReceivedAt) + vt
		if f := m.onHandOver.Load(); f != nil && held > w.cfg.MaxMessageLease {
			if err := w.hop(ctx, m, w.cfg.HandOverDelay, *f); err != nil {
				w.log.Warn().Err(err).Str("message_id", m.ID).Msg("handing the message over failed; will retry")
			} else {
				m.handedOver = true
				w.log.Info().Str("message_id", m.ID).Str("export_id", m.ExportID).Msg("message handed over: the job outlived the maximum message lease and goes on under its ledger lease")
				return
			}
		} else if held > sqsMaxVisibility {
			// SQS refuses to extend past this, and the job cannot go on without its message.
			w.log.Error().Str("message_id", m.ID).Str("export_id", m.ExportID).Msg("job reached the 12h message limit and cannot be handed over; canceling it")
			cancel(errLeaseLost)
			return
		}
		sent := time.Now()
		// A call that never answers must not outlast the lease it is meant to extend.
		cctx, ccancel := context.WithTimeout(ctx, max(min(w.cfg.CallTimeout, time.Until(expires)-margin), 100*time.Millisecond))
		_, err := w.sqs.ChangeMessageVisibility(cctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl:          aws.String(w.queueOf(m)),
			ReceiptHandle:     aws.String(m.ReceiptHandle),
			VisibilityTimeout: int32(vt / time.Second),
		})
		ccancel()
		if ctx.Err() != nil {
			return
		}
		w.metrics.sqs("change_visibility", err)
		if err == nil {
			expires = sent.Add(vt)
			backoff = 0
			t.Reset(vt / 3)
			w.log.Debug().Str("message_id", m.ID).Str("export_id", m.ExportID).Msg("message lease extended")
			continue
		}
		left := time.Until(expires) - margin
		if isGone(err) || left <= 0 {
			w.log.Error().Err(err).Str("message_id", m.ID).Str("export_id", m.ExportID).Msg("lost the lease on a message")
			cancel(errLeaseLost)
			return
		}
		backoff = min(max(2*backoff, 500*time.Millisecond), 10*time.Second, max(left/3, 100*time.Millisecond))
		t.Reset(backoff)
		w.log.Warn().Err(err).Str("message_id", m.ID).Dur("lease_left", left).Dur("retry_in", backoff).Msg("extending visibility failed; will retry within the lease")
	}
}

// hop sends a copy of m delayed by delay (at most 15m), tells onSent (if any) its id, and
// deletes m.
func (w *Worker) hop(ctx context.Context, m *Delivery, delay time.Duration, onSent func(ctx context.Context, newID string) error) error {
	delay = min(max(delay, 0), 15*time.Minute)
	cctx, ccancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
	defer ccancel()
	out, err := w.sqs.SendMessage(cctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(w.queueOf(m)), // a control message's copy stays on the control queue
		MessageBody:       aws.String(m.Body),
		DelaySeconds:      int32((delay + time.Second - 1) / time.Second),
		MessageAttributes: CopyAttributes(AttrHandoverOf, m.ID, m.RequestedAt),
	})
	w.metrics.sqs("send_copy", err)
	if err != nil {
		return fmt.Errorf("worker: send a copy of message %s: %w", m.ID, err)
	}
	newID := aws.ToString(out.MessageId)
	if onSent != nil {
		if err := onSent(ctx, newID); err != nil {
			// The copy is out; it finds the job's state when it arrives. Keep this delivery
			// until the callback succeeds, so the job is never without a carrier.
			return fmt.Errorf("worker: record copy %s of message %s: %w", newID, m.ID, err)
		}
	}
	return w.delete(ctx, m)
}

// isGone reports whether an SQS error says the receipt handle no longer holds the message.
func isGone(err error) bool {
	var inv *types.ReceiptHandleIsInvalid
	var nif *types.MessageNotInflight
	return errors.As(err, &inv) || errors.As(err, &nif)
}

// queueOf is the queue m came from.
func (w *Worker) queueOf(m *Delivery) string {
	if m.queueURL != "" {
		return m.queueURL
	}
	return w.cfg.QueueURL
}

func (w *Worker) delete(ctx context.Context, m *Delivery) error {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
	defer cancel()
	_, err := w.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{
		QueueUrl:      aws.String(w.queueOf(m)),
		ReceiptHandle: aws.String(m.ReceiptHandle),
	})
	w.metrics.sqs("delete", err)
	if err != nil {
		return fmt.Errorf("worker: delete message %s: %w", m.ID, err)
	}
	return nil
}

func (w *Worker) changeVisibility(ctx context.Context, m *Delivery, d time.Duration, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
	defer cancel()
	_, err := w.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(w.queueOf(m)),
		ReceiptHandle:     aws.String(m.ReceiptHandle),
		VisibilityTimeout: int32(d / time.Second),
	})
	w.metrics.sqs("change_visibility", err)
	if err != nil {
		log.Warn().Err(err).Msg("changing the message's visibility failed; it comes back when its lease expires")
	}
}

// retryDelay grows with the number of deliveries: base * 2^(n-1), capped, with +-10% jitter so
// that messages failed together do not come back together.
func (w *Worker) retryDelay(receiveCount int) time.Duration {
	n := max(receiveCount, 1)
	d := w.cfg.RetryBase
	for i := 1; i < n && d < w.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, w.cfg.RetryMax)
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
	return max(d+jitter, time.Second)
}

// deadLetter sends the message with its reason to the DLQ, then deletes it from the jobs queue.
func (w *Worker) deadLetter(ctx context.Context, m *Delivery, reason jobs.Reason, cause error) error {
	if w.cfg.DLQURL == "" {
		return errors.New("worker: no dead-letter queue configured")
	}
	attrs := DeadLetter{
		Reason: reason, Error: cause.Error(), ExportID: m.ExportID, OriginalMessageID: m.ID,
		ReceiveCount: m.ReceiveCount, Failures: m.Failures, FailedAt: time.Now(), RequestedAt: m.RequestedAt,
	}.Attributes()
	body := m.Body
	if body == "" {
		body = "(empty message body)"
	}
	sctx, cancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
	defer cancel()
	_, err := w.sqs.SendMessage(sctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(w.cfg.DLQURL),
		MessageBody:       aws.String(body),
		MessageAttributes: attrs,
	})
	w.metrics.sqs("send_dlq", err)
	if err != nil {
		return fmt.Errorf("worker: send message %s to the dead-letter queue: %w", m.ID, err)
	}
	w.metrics.DLQMessages.WithLabelValues(string(reason)).Inc()
	if o, ok := w.handler.(DeadLetterObserver); ok {
		o.DeadLettered(ctx, m, reason, cause)
	}
	return w.delete(ctx, m)
}

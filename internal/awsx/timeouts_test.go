package awsx_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/verifiedfan/export-service/internal/awsx"
	"github.com/verifiedfan/export-service/internal/stacktest"
)

// counter counts the HTTP requests (attempts) a client sends.
type counter struct {
	inner aws.HTTPClient
	n     atomic.Int32
}

func (c *counter) Do(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.inner.Do(r)
}

func baseConfig(env map[string]string) aws.Config {
	return aws.Config{
		Region:      env["AWS_REGION"],
		Credentials: credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], ""),
	}
}

// s3Via is an S3 client of the stack through endpoint, with attempts attempts at most and a
// short backoff between them, counting its requests in c.
func s3Via(env map[string]string, endpoint string, attempts int, c *counter, opts ...func(*s3.Options)) *s3.Client {
	c.inner = awshttp.NewBuildableClient()
	return s3.NewFromConfig(baseConfig(env), append([]func(*s3.Options){func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
		o.HTTPClient = c
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = attempts
			so.MaxBackoff = 100 * time.Millisecond
		})
	}}, opts...)...)
}

// A server that accepts connections and never answers (Toxiproxy's timeout toxic in front of
// the real SeaweedFS): without attempt deadlines a call waits for as long as its context lets
// it; with them every attempt ends at its deadline, the standard retryer retries it, and the
// call fails after attempts x deadline with an AttemptTimeoutError. STS behaves the same.
func TestStalledServerFailsWithinDeadlines(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	p := st.Proxy(t, stacktest.S3)
	p.Inject(t, "timeout", "upstream", toxiproxy.Attributes{"timeout": 0})
	bucket := st.Env["EXPORT_BUCKET"]

	t.Run("without deadlines the call hangs", func(t *testing.T) {
		t.Parallel()
		var c counter
		client := s3Via(st.Env, p.Endpoint(), 3, &c)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		_, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)})
		if err == nil || time.Since(start) < 3*time.Second || c.n.Load() != 1 {
			t.Fatalf("HeadBucket = %v after %s and %d attempts; want it held until the context's end, on one attempt", err, time.Since(start), c.n.Load())
		}
	})
	t.Run("S3", func(t *testing.T) {
		t.Parallel()
		var c counter
		client := s3Via(st.Env, p.Endpoint(), 3, &c, awsx.S3(awsx.Timeouts{Default: 500 * time.Millisecond}))
		start := time.Now()
		_, err := client.HeadBucket(context.Background(), &s3.HeadBucketInput{Bucket: aws.String(bucket)})
		took := time.Since(start)
		var ate *awsx.AttemptTimeoutError
		if !errors.As(err, &ate) || ate.Operation != "HeadBucket" {
			t.Fatalf("err = %v, want an AttemptTimeoutError of HeadBucket", err)
		}
		var mae *retry.MaxAttemptsError
		if !errors.As(err, &mae) || c.n.Load() != 3 {
			t.Errorf("%d attempts (err %v), want 3: the retryer must retry a timed-out attempt", c.n.Load(), err)
		}
		if took < 1500*time.Millisecond || took > 4*time.Second {
			t.Errorf("took %s, want about 3 x 500ms", took)
		}
	})
	t.Run("STS", func(t *testing.T) {
		t.Parallel()
		var c counter
		c.inner = awshttp.NewBuildableClient()
		client := sts.NewFromConfig(baseConfig(st.Env), func(o *sts.Options) {
			o.BaseEndpoint = aws.String(p.Endpoint())
			o.HTTPClient = &c
			o.RetryMaxAttempts = 2
		}, awsx.STS(awsx.Timeouts{Default: 500 * time.Millisecond}))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := client.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(st.Env["SFMC_ROLE_ARN"]), RoleSessionName: aws.String("awsx-test")})
		var ate *awsx.AttemptTimeoutError
		if !errors.As(err, &ate) || c.n.Load() != 2 || ctx.Err() != nil {
			t.Fatalf("AssumeRole: %v after %d attempts; want an AttemptTimeoutError after 2", err, c.n.Load())
		}
	})
}

// An attempt cut short by its deadline is retried, and the retry succeeds once the server
// answers again: the request is not lost, and its body is sent again whole.
func TestTimedOutAttemptIsRetried(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	p := st.Proxy(t, stacktest.S3)
	toxic := p.Inject(t, "timeout", "upstream", toxiproxy.Attributes{"timeout": 0})
	var c counter
	client := s3Via(st.Env, p.Endpoint(), 10, &c, awsx.S3(awsx.Timeouts{Default: 400 * time.Millisecond}))
	go func() {
		time.Sleep(1200 * time.Millisecond)
		_ = p.RemoveToxic(toxic)
	}()
	key := "awsx-test/" + stacktest.RandomID()
	body := bytes.Repeat([]byte("retried "), 1000)
	if _, err := client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(st.Env["EXPORT_BUCKET"]), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	if n := c.n.Load(); n < 2 {
		t.Errorf("%d attempts, want the stalled ones retried", n)
	}
	out, err := st.S3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(st.Env["EXPORT_BUCKET"]), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, body) {
		t.Errorf("object has %d bytes, want %d", len(got), len(body))
	}
}

// A body's deadline grows with its size: the same slow link (Toxiproxy's bandwidth toxic at
// 256 KB/s) fails a 1 MiB PutObject whose floor throughput is 1 MiB/s and carries one whose
// floor is 64 KiB/s.
func TestBodyDeadlineScalesWithSize(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	p := st.Proxy(t, stacktest.S3)
	p.Inject(t, "bandwidth", "upstream", toxiproxy.Attributes{"rate": 256})
	body := bytes.Repeat([]byte{7}, 1<<20)
	for _, tc := range []struct {
		throughput int64
		ok         bool
	}{{1 << 20, false}, {64 << 10, true}} {
		var c counter
		client := s3Via(st.Env, p.Endpoint(), 1, &c, awsx.S3(awsx.Timeouts{Default: 200 * time.Millisecond, BodyThroughput: tc.throughput}))
		_, err := client.PutObject(context.Background(), &s3.PutObjectInput{
			Bucket: aws.String(st.Env["EXPORT_BUCKET"]), Key: aws.String("awsx-test/" + stacktest.RandomID()),
			Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
		})
		var ate *awsx.AttemptTimeoutError
		if tc.ok && err != nil || !tc.ok && !errors.As(err, &ate) {
			t.Errorf("floor %d B/s: err = %v, want ok=%v", tc.throughput, err, tc.ok)
		}
	}
}

// GetObject's body is read after the call returned: the deadline bounds the wait for the
// response, not the reading of the body.
func TestStreamingBodyOutlivesDeadline(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	bucket, key := st.Env["EXPORT_BUCKET"], "awsx-test/"+stacktest.RandomID()
	body := bytes.Repeat([]byte("x"), 4<<20)
	if _, err := st.S3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	client := s3.NewFromConfig(aws.Config{Region: st.Env["AWS_REGION"]}, func(o *s3.Options) {
		*o = st.S3.Options()
	}, awsx.S3(awsx.Timeouts{Default: 300 * time.Millisecond}))
	out, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil || len(got) != len(body) {
		t.Fatalf("read %d bytes, %v; want %d", len(got), err, len(body))
	}
}

// A long poll is given its wait plus a margin: a ReceiveMessage waiting 2s on an empty queue
// returns empty, not timed out, under a 500ms default.
func TestLongPollGetsItsWait(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	client := sqs.NewFromConfig(baseConfig(st.Env), func(o *sqs.Options) {
		o.BaseEndpoint = aws.String(st.Env["AWS_ENDPOINT_URL_SQS"])
	}, awsx.SQS(awsx.Timeouts{Default: 500 * time.Millisecond, LongPollMargin: time.Second}))
	start := time.Now()
	out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.JobsURL), WaitTimeSeconds: 2})
	if err != nil || len(out.Messages) != 0 {
		t.Fatalf("ReceiveMessage: %v", err)
	}
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Errorf("returned after %s: the long poll was not waited for", took)
	}
	// Other calls of the same client keep the default.
	if _, err := client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q.JobsURL)}); err != nil {
		t.Fatal(err)
	}
}

func TestTimeoutsFor(t *testing.T) {
	t.Parallel()
	var zero awsx.Timeouts
	for _, tc := range []struct {
		t    awsx.Timeouts
		op   string
		body int64
		want time.Duration
	}{
		{zero, "HeadBucket", 0, awsx.DefaultTimeout},
		{zero, "CompleteMultipartUpload", 0, awsx.DefaultCompleteTimeout},
		{zero, "UploadPart", 8 << 20, awsx.DefaultTimeout + 8*time.Second},
		{awsx.Timeouts{Default: time.Second, BodyThroughput: 100}, "PutObject", 1000, 11 * time.Second},
		{zero, "CompleteMultipartUpload", 1 << 20, awsx.DefaultCompleteTimeout + time.Second},
		{awsx.Timeouts{Default: time.Second, Operations: map[string]time.Duration{"AssumeRole": 5 * time.Second, "ListParts": -1}}, "AssumeRole", 0, 5 * time.Second},
		{awsx.Timeouts{Operations: map[string]time.Duration{"ListParts": -1}}, "ListParts", 0, 0},
	} {
		got := tc.t.For(tc.op, tc.body)
		if got != tc.want {
			t.Errorf("%s(%d bytes) = %s, want %s", tc.op, tc.body, got, tc.want)
		}
	}
}

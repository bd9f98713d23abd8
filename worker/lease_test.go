package worker

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"

	"github.com/verifiedfan/export-service/internal/stacktest"
)

// runWorker runs a worker in this process on queues q with the SQS client c.
func runWorker(t *testing.T, c SQS, q stacktest.Queues, h Handler, tune ...func(*Config)) *Metrics {
	t.Helper()
	cfg := Config{QueueURL: q.JobsURL, DLQURL: q.DLQURL, Concurrency: 1, WaitTime: time.Second, VisibilityTimeout: 30 * time.Second, DrainTimeout: 10 * time.Second}
	for _, f := range tune {
		f(&cfg)
	}
	m := NewMetrics(prometheus.NewRegistry())
	w, err := New(cfg, c, h, m, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Error("worker did not stop")
		}
	})
	return m
}

// sqsThrough is an SQS client of the stack that goes through proxy p.
func sqsThrough(st *stacktest.Stack, p *stacktest.ToxiProxy) *sqs.Client {
	return sqs.New(st.SQS.Options(), func(o *sqs.Options) { o.BaseEndpoint = aws.String(p.Endpoint()) })
}

// sendAndAwaitStart sends body to the jobs queue and returns when the handler reports, on
// started, that the job began.
func sendAndAwaitStart(t *testing.T, st *stacktest.Stack, q stacktest.Queues, body string, started <-chan time.Time) time.Time {
	t.Helper()
	if _, err := st.SQS.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(q.JobsURL), MessageBody: aws.String(body)}); err != nil {
		t.Fatal(err)
	}
	select {
	case t0 := <-started:
		return t0
	case <-time.After(30 * time.Second):
		t.Fatal("the job did not start")
		return time.Time{}
	}
}

// An SQS outage that covers two lease-extension ticks but ends before the lease does must not
// cancel the job: the extension is retried within what is left of the lease. (It used to give
// up at the second failed tick, with a third of the lease still left.)
func TestLeaseSurvivesAnSQSOutageShorterThanTheLease(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	p := st.Proxy(t, stacktest.SQS)
	started := make(chan time.Time, 1)
	var canceled, runs atomic.Int32
	vt := 15 * time.Second
	m := runWorker(t, sqsThrough(st, p), q, HandlerFunc(func(ctx context.Context, msg *Delivery) error {
		runs.Add(1)
		started <- time.Now()
		select {
		case <-time.After(vt + 8*time.Second):
			return nil
		case <-ctx.Done():
			canceled.Add(1)
			return ctx.Err()
		}
	}), func(c *Config) { c.VisibilityTimeout = vt })
	t0 := sendAndAwaitStart(t, st, q, "long", started)
	// Ticks every 5s: the one at 5s succeeds (lease until 20s), the ones at 10s and 15s fall
	// in the outage, which ends at 16s, 4s before the lease.
	time.Sleep(time.Until(t0.Add(6 * time.Second)))
	p.Cut(t)
	time.Sleep(time.Until(t0.Add(16 * time.Second)))
	p.Restore(t)
	waitFor(t, 30*time.Second, "job finished", func() bool {
		return testutil.ToFloat64(m.Jobs.WithLabelValues("unknown", "unknown", OutcomeSucceeded))+
			testutil.ToFloat64(m.Jobs.WithLabelValues("unknown", "unknown", OutcomeFailedRetryable)) == 1
	})
	if canceled.Load() != 0 {
		t.Fatal("the job was canceled although its lease never ran out")
	}
	if got := testutil.ToFloat64(m.Jobs.WithLabelValues("unknown", "unknown", OutcomeSucceeded)); got != 1 {
		t.Errorf("succeeded = %v, want 1", got)
	}
	if runs.Load() != 1 {
		t.Errorf("the job ran %d times", runs.Load())
	}
	waitFor(t, 10*time.Second, "message deleted", func() bool { v, f := st.QueueCounts(t, q.JobsURL); return v+f == 0 })
}

// A ChangeMessageVisibility that never answers (a stalled connection) must not let the lease
// lapse silently while the job goes on: the call is bounded by the lease left, and the job is
// canceled before another worker can receive its message.
func TestStalledVisibilityCallCancelsTheJobBeforeTheLeaseLapses(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	p := st.Proxy(t, stacktest.SQS)
	started := make(chan time.Time, 1)
	ended := make(chan time.Time, 1)
	vt := 6 * time.Second
	runWorker(t, sqsThrough(st, p), q, HandlerFunc(func(ctx context.Context, msg *Delivery) error {
		started <- time.Now()
		select {
		case <-time.After(40 * time.Second):
			ended <- time.Time{}
			return errors.New("the job was never canceled")
		case <-ctx.Done():
			ended <- time.Now()
			return ctx.Err()
		}
	}), func(c *Config) { c.VisibilityTimeout = vt; c.CallTimeout = 30 * time.Second })
	t0 := sendAndAwaitStart(t, st, q, "stall", started)
	// Every byte toward SQS is swallowed from now on; connections stay open.
	p.Inject(t, "timeout", "upstream", toxiproxy.Attributes{"timeout": 0})
	defer func() {
		if err := p.Heal(); err != nil {
			t.Error(err)
		}
	}()
	t1 := <-ended
	if t1.IsZero() {
		t.Fatal("the job was not canceled: a stalled visibility call let its lease lapse silently")
	}
	// The receipt was valid until t0+vt at the latest (received just before t0).
	if d := t1.Sub(t0); d > vt {
		t.Errorf("the job was canceled %s after it started, after its %s lease had lapsed", d, vt)
	}
}

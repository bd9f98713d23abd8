package worker

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/verifiedfan/export-service/internal/stacktest"
)

func TestRetryDelayGrowsAndIsCapped(t *testing.T) {
	w := &Worker{cfg: Config{RetryBase: 10 * time.Second, RetryMax: 100 * time.Second}}
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{0, 10 * time.Second}, {1, 10 * time.Second}, {2, 20 * time.Second}, {3, 40 * time.Second}, {4, 80 * time.Second}, {5, 100 * time.Second}, {50, 100 * time.Second}} {
		for range 20 {
			got := w.retryDelay(tc.n)
			if got < tc.want*9/10 || got > tc.want*11/10 {
				t.Fatalf("retryDelay(%d) = %s, want %s +-10%%", tc.n, got, tc.want)
			}
		}
	}
}

func TestConfigValidateReportsEveryProblem(t *testing.T) {
	c := Config{Concurrency: -1, WaitTime: time.Minute, VisibilityTimeout: time.Second, RetryBase: time.Minute, RetryMax: time.Second}
	c.SetDefaults()
	err := c.Validate()
	for _, want := range []string{"queue URL", "concurrency", "wait time", "visibility timeout", "retry backoff"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

type testWorker struct {
	w       *Worker
	metrics *Metrics
	queues  stacktest.Queues
	st      *stacktest.Stack
	stop    context.CancelFunc
	done    chan error
}

// startWorker runs a worker in this process against a fresh queue of the real local SQS.
func startWorker(t *testing.T, concurrency int, h Handler, tune ...func(*Config)) *testWorker {
	t.Helper()
	st := stacktest.New(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	cfg := Config{QueueURL: q.JobsURL, DLQURL: q.DLQURL, Concurrency: concurrency, WaitTime: time.Second, VisibilityTimeout: 30 * time.Second, DrainTimeout: 10 * time.Second}
	for _, f := range tune {
		f(&cfg)
	}
	m := NewMetrics(prometheus.NewRegistry())
	w, err := New(cfg, st.SQS, h, m, zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tw := &testWorker{w: w, metrics: m, queues: q, st: st, stop: cancel, done: make(chan error, 1)}
	go func() { tw.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-tw.done:
		case <-time.After(30 * time.Second):
			t.Error("worker did not stop")
		}
	})
	return tw
}

func (tw *testWorker) send(t *testing.T, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		if _, err := tw.st.SQS.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(tw.queues.JobsURL), MessageBody: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A panicking job fails that job (dead-lettered with reason "panic"); the worker goes on.
func TestPanicFailsTheJobNotTheWorker(t *testing.T) {
	t.Parallel()
	var ok atomic.Int32
	tw := startWorker(t, 2, HandlerFunc(func(ctx context.Context, m *Delivery) error {
		if m.Body == "boom" {
			panic("boom")
		}
		ok.Add(1)
		return nil
	}))
	tw.send(t, "boom", "fine")
	waitFor(t, 30*time.Second, "the fine message handled", func() bool { return ok.Load() == 1 })
	waitFor(t, 10*time.Second, "panic dead-lettered", func() bool {
		return testutil.ToFloat64(tw.metrics.DLQMessages.WithLabelValues("panic")) == 1
	})
	out, err := tw.st.SQS.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(tw.queues.DLQURL), MessageAttributeNames: []string{"All"}, WaitTimeSeconds: 1})
	if err != nil || len(out.Messages) != 1 || aws.ToString(out.Messages[0].Body) != "boom" ||
		aws.ToString(out.Messages[0].MessageAttributes["reason"].StringValue) != "panic" {
		t.Fatalf("dlq = %+v, %v; want the panicking message with reason panic", out, err)
	}
}

// The worker receives only as many messages as it has free slots: with 2 slots busy, the
// other messages stay visible on the queue instead of burning their visibility timeout.
func TestReceivesOnlyForFreeSlots(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var running, maxRunning atomic.Int32
	var mu sync.Mutex
	tw := startWorker(t, 2, HandlerFunc(func(ctx context.Context, m *Delivery) error {
		n := running.Add(1)
		mu.Lock()
		if n > maxRunning.Load() {
			maxRunning.Store(n)
		}
		mu.Unlock()
		defer running.Add(-1)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}))
	tw.send(t, "1", "2", "3", "4", "5")
	waitFor(t, 30*time.Second, "two jobs running", func() bool { return running.Load() == 2 })
	time.Sleep(2500 * time.Millisecond) // a couple of receive rounds
	visible, inFlight := tw.st.QueueCounts(t, tw.queues.JobsURL)
	if inFlight != 2 || visible != 3 {
		t.Errorf("queue: %d visible, %d in flight; want 3 and 2", visible, inFlight)
	}
	close(release)
	waitFor(t, 30*time.Second, "all done", func() bool {
		return testutil.ToFloat64(tw.metrics.Jobs.WithLabelValues("unknown", "unknown", OutcomeSucceeded)) == 5
	})
	if maxRunning.Load() > 2 {
		t.Errorf("%d jobs ran at once, limit 2", maxRunning.Load())
	}
}

// A retryable failure puts the message back with a backoff; it is delivered again.
func TestRetryableFailureComesBack(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	tw := startWorker(t, 1, HandlerFunc(func(ctx context.Context, m *Delivery) error {
		if calls.Add(1) == 1 {
			return errors.New("mongo: server selection timeout")
		}
		if m.ReceiveCount != 2 {
			t.Errorf("second delivery has receive count %d", m.ReceiveCount)
		}
		return nil
	}), func(c *Config) { c.RetryBase, c.RetryMax = time.Second, time.Second })
	tw.send(t, "x")
	waitFor(t, 30*time.Second, "delivered again and succeeded", func() bool {
		return testutil.ToFloat64(tw.metrics.Jobs.WithLabelValues("unknown", "unknown", OutcomeSucceeded)) == 1
	})
	if got := testutil.ToFloat64(tw.metrics.Jobs.WithLabelValues("unknown", "unknown", OutcomeFailedRetryable)); got != 1 {
		t.Errorf("failed_retryable = %v, want 1", got)
	}
}

// New refuses a configuration it cannot run, with every problem at once, instead of trusting
// its caller to have validated it.
func TestNewRefusesABadConfig(t *testing.T) {
	_, err := New(Config{Concurrency: 1000, VisibilityTimeout: time.Second}, nil, nil, NewMetrics(prometheus.NewRegistry()), zerolog.New(io.Discard))
	for _, want := range []string{"queue URL", "concurrency", "visibility timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New = %v, want it to mention %q", err, want)
		}
	}
}

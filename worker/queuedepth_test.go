package worker

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/verifiedfan/export-service/internal/stacktest"
)

// The poller reports visible, in-flight and delayed messages of both queues as the real SQS
// counts them.
func TestQueueDepthPollsBothQueues(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	ctx := context.Background()
	send := func(url string, delay int32) {
		t.Helper()
		if _, err := st.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("{}"), DelaySeconds: delay}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		send(q.JobsURL, 0)
	}
	send(q.JobsURL, 120)
	send(q.DLQURL, 0)
	send(q.DLQURL, 0)
	// One jobs message in flight.
	if out, err := st.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.JobsURL), MaxNumberOfMessages: 1, VisibilityTimeout: 60}); err != nil || len(out.Messages) != 1 {
		t.Fatalf("receive: %v, %d messages", err, len(out.Messages))
	}

	m := NewMetrics(prometheus.NewRegistry())
	var logs bytes.Buffer
	p := &QueueDepth{SQS: st.SQS, Metrics: m, Log: zerolog.New(&logs).Level(zerolog.DebugLevel), Queues: map[string]string{"jobs": q.JobsURL, "dlq": q.DLQURL}}
	p.Poll(ctx, 5*time.Second)

	for _, c := range []struct {
		queue, state string
		want         float64
	}{
		{"jobs", "visible", 2}, {"jobs", "in_flight", 1}, {"jobs", "delayed", 1},
		{"dlq", "visible", 2}, {"dlq", "in_flight", 0}, {"dlq", "delayed", 0},
	} {
		if got := testutil.ToFloat64(m.QueueMessages.WithLabelValues(c.queue, c.state)); got != c.want {
			t.Errorf("export_queue_messages{queue=%q,state=%q} = %v, want %v", c.queue, c.state, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.SQSRequests.WithLabelValues("get_queue_attributes", "ok")); got != 2 {
		t.Errorf("get_queue_attributes ok = %v, want 2", got)
	}
	if n := strings.Count(logs.String(), `"message":"queue depth"`); n != 2 || !strings.Contains(logs.String(), `"level":"debug"`) {
		t.Errorf("want two debug lines, got:\n%s", logs.String())
	}
}

// A failing poll counts an SQS error and keeps the last values; a missing DLQ URL is skipped.
func TestQueueDepthKeepsLastValuesOnError(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	m := NewMetrics(prometheus.NewRegistry())
	m.QueueMessages.WithLabelValues("jobs", "visible").Set(7)
	var logs bytes.Buffer
	p := &QueueDepth{SQS: st.SQS, Metrics: m, Log: zerolog.New(&logs), Queues: map[string]string{"jobs": q.JobsURL + "-missing"}}
	p.Poll(context.Background(), time.Second)
	if got := testutil.ToFloat64(m.SQSRequests.WithLabelValues("get_queue_attributes", "error")); got != 1 {
		t.Errorf("get_queue_attributes error = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.QueueMessages.WithLabelValues("jobs", "visible")); got != 7 {
		t.Errorf("visible = %v after a failed poll, want the last value 7", got)
	}
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), `"queue":"jobs"`) {
		t.Errorf("want a warning naming the queue, got:\n%s", logs.String())
	}
	if n := testutil.CollectAndCount(m.QueueMessages); n != 1 {
		t.Errorf("%d queue depth series, want only the one set before (no dlq configured)", n)
	}
}

// Run polls at once, then on its interval, and returns when its context ends.
func TestQueueDepthRunStopsWithContext(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	m := NewMetrics(prometheus.NewRegistry())
	p := &QueueDepth{SQS: st.SQS, Metrics: m, Log: zerolog.Nop(), Queues: map[string]string{"jobs": q.JobsURL}, Every: 100 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	waitFor(t, 5*time.Second, "three polls", func() bool {
		return testutil.ToFloat64(m.SQSRequests.WithLabelValues("get_queue_attributes", "ok")) >= 3
	})
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was canceled")
	}
}

package worker

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/verifiedfan/export-service/internal/stacktest"
)

// A control message is handled at once, while the one job slot is busy; and a control handler
// that hangs (a MongoDB call that never answers) does not hold the shutdown: it is bounded.
func TestControlQueueBypassesBusySlotsAndIsBounded(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	c := st.NewQueues(t, 30*time.Second, 5)
	busy, release, handled := make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	h := HandlerFunc(func(ctx context.Context, m *Delivery) error {
		if !m.Control {
			close(busy)
			<-release // the one slot stays busy until the shutdown began; the drain is clean
			return nil
		}
		handled <- struct{}{}
		<-ctx.Done() // hangs, as a call without a deadline of its own would
		return ctx.Err()
	})
	cfg := Config{QueueURL: q.JobsURL, ControlQueueURL: c.JobsURL, DLQURL: q.DLQURL, Concurrency: 1, WaitTime: time.Second,
		VisibilityTimeout: 30 * time.Second, DrainTimeout: time.Second, StopGrace: time.Second, CallTimeout: time.Second}
	w, err := New(cfg, st.SQS, h, NewMetrics(prometheus.NewRegistry()), zerolog.New(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	send := func(url, body string) {
		if _, err := st.SQS.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	send(q.JobsURL, `{}`)
	<-busy
	send(c.JobsURL, `{"version":1,"type":"cancel_export","export_id":"x"}`)
	select {
	case <-handled:
	case <-time.After(20 * time.Second):
		t.Fatal("the control message was not handled while the job slot was busy")
	}
	cancel()
	close(release)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20s after a clean drain: the hanging control handler holds it (control messages are bounded by 3 call timeouts, 3s)")
	}
}

func TestConfigValidateControlQueue(t *testing.T) {
	for _, c := range []Config{
		{QueueURL: "http://q/jobs", ControlQueueURL: "http://q/jobs"},
		{QueueURL: "http://q/jobs", DLQURL: "http://q/dlq", ControlQueueURL: "http://q/dlq"},
	} {
		c.SetDefaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "control queue") {
			t.Errorf("Validate(%s) = %v, want the control queue refused", c.ControlQueueURL, err)
		}
	}
	c := Config{QueueURL: "http://q/jobs", DLQURL: "http://q/dlq", ControlQueueURL: "http://q/control"}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v", err)
	}
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"
)

// QueueAttributesAPI is the part of the SQS API the queue depth poller uses.
type QueueAttributesAPI interface {
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// Queue depth states, the values of the "state" label of export_queue_messages, and the SQS
// attribute each one is read from.
var queueDepthStates = []struct {
	state string
	attr  types.QueueAttributeName
}{
	{"visible", types.QueueAttributeNameApproximateNumberOfMessages},
	{"in_flight", types.QueueAttributeNameApproximateNumberOfMessagesNotVisible},
	{"delayed", types.QueueAttributeNameApproximateNumberOfMessagesDelayed},
}

// QueueDepth polls the approximate message counts of the jobs queue and the dead-letter queue
// with GetQueueAttributes and publishes them as export_queue_messages{queue, state}.
//
// Every instance polls the same queues, so dashboards and alerts aggregate with max(). A
// failed poll keeps the last values (the failure shows in export_sqs_requests_total with op
// "get_queue_attributes" and result "error"): dropping the series would silence the DLQ alert
// exactly when SQS misbehaves.
type QueueDepth struct {
	SQS     QueueAttributesAPI
	Metrics *Metrics
	Log     zerolog.Logger
	// Queues maps the "queue" label ("jobs", "dlq", "control") to the queue URL; empty URLs are
	// skipped.
	Queues map[string]string
	// Every is the polling interval. Default 30s.
	Every time.Duration
}

// Run polls at once and then every Every until ctx is done.
func (q *QueueDepth) Run(ctx context.Context) {
	every := q.Every
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		q.Poll(ctx, every)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll reads every queue's counts once. Each call is bounded by timeout (at most 10s), so a
// hung endpoint never stacks polls up.
func (q *QueueDepth) Poll(ctx context.Context, timeout time.Duration) {
	timeout = min(max(timeout, time.Second), 10*time.Second)
	for _, name := range []string{"jobs", "dlq", "control"} {
		url := q.Queues[name]
		if url == "" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		counts, err := q.counts(cctx, url)
		cancel()
		if ctx.Err() != nil {
			return // shutting down: not an SQS error
		}
		q.Metrics.sqs("get_queue_attributes", err)
		if err != nil {
			q.Log.Warn().Err(err).Str("queue", name).Msg("polling queue depth failed; keeping the last values")
			continue
		}
		ev := q.Log.Debug().Str("queue", name)
		for _, s := range queueDepthStates {
			q.Metrics.QueueMessages.WithLabelValues(name, s.state).Set(float64(counts[s.state]))
			ev = ev.Int64(s.state, counts[s.state])
		}
		ev.Msg("queue depth")
	}
}

func (q *QueueDepth) counts(ctx context.Context, url string) (map[string]int64, error) {
	names := make([]types.QueueAttributeName, 0, len(queueDepthStates))
	for _, s := range queueDepthStates {
		names = append(names, s.attr)
	}
	out, err := q.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: names})
	if err != nil {
		return nil, fmt.Errorf("worker: get attributes of queue %s: %w", url, err)
	}
	counts := make(map[string]int64, len(queueDepthStates))
	var errs []error
	for _, s := range queueDepthStates {
		v, ok := out.Attributes[string(s.attr)]
		if !ok {
			errs = append(errs, fmt.Errorf("attribute %s missing", s.attr))
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("attribute %s=%q: %w", s.attr, v, err))
			continue
		}
		counts[s.state] = n
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("worker: attributes of queue %s: %w", url, err)
	}
	return counts, nil
}

package worker

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
)

// A dead-lettered message carries its original request time, so that a redrive on another
// day renders the same {date} in its object key.
func TestDeadLetteredMessageKeepsItsRequestTime(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	requested := time.Date(2026, 11, 3, 23, 59, 30, 0, time.UTC)
	runWorker(t, st.SQS, q, HandlerFunc(func(ctx context.Context, m *Delivery) error {
		return jobs.Permanentf("unknown_kind", "no such kind")
	}))
	if _, err := st.SQS.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(q.JobsURL), MessageBody: aws.String("x"),
		MessageAttributes: map[string]types.MessageAttributeValue{"requested_at": {DataType: aws.String("String"), StringValue: aws.String(requested.Format(time.RFC3339Nano))}}}); err != nil {
		t.Fatal(err)
	}
	var got string
	waitFor(t, 30*time.Second, "the message dead-lettered", func() bool {
		out, err := st.SQS.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.DLQURL), MessageAttributeNames: []string{"All"}, WaitTimeSeconds: 1})
		if err != nil || len(out.Messages) == 0 {
			return false
		}
		got = aws.ToString(out.Messages[0].MessageAttributes["requested_at"].StringValue)
		return true
	})
	if at, err := time.Parse(time.RFC3339Nano, got); err != nil || !at.Equal(requested) {
		t.Errorf("requested_at = %q, want %s", got, requested.Format(time.RFC3339Nano))
	}
}

// 0 is a value, not "unset", for the receive wait, the drain timeout and the handover delay.
func TestConfigKeepsExplicitZeros(t *testing.T) {
	c := Config{QueueURL: "q", WaitTime: 0, DrainTimeout: 0, HandOverDelay: 0}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.WaitTime != 0 || c.DrainTimeout != 0 || c.HandOverDelay != 0 {
		t.Errorf("after SetDefaults: wait %s, drain %s, handover delay %s; want 0s", c.WaitTime, c.DrainTimeout, c.HandOverDelay)
	}
}

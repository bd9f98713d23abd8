package sink

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/verifiedfan/export-service/jobs"
)

// ResultsQueue sends each export's result notice (its terminal outcome: succeeded with the
// manifest, failed, dead-lettered, cancelled) to an SQS queue (EXPORT_RESULTS_QUEUE_URL), so
// that upstream systems learn of it without polling S3 or reading the dead-letter queue.
type ResultsQueue struct {
	Client *sqs.Client
	URL    string
	// OnSend, if set, is called after every SendMessage with its error.
	OnSend func(err error)
}

var _ jobs.Notifier = (*ResultsQueue)(nil)

// Notify implements jobs.Notifier: the message body is the notice's JSON, with its id, export
// id, outcome, kind and destination as message attributes for filtering.
func (q *ResultsQueue) Notify(ctx context.Context, n *jobs.Notice) error {
	body, err := n.Encode()
	if err != nil {
		return err
	}
	attrs := map[string]sqstypes.MessageAttributeValue{}
	for k, v := range map[string]string{"notice_id": n.NoticeID, "export_id": n.ExportID, "outcome": string(n.Outcome), "kind": n.Kind, "destination": n.Destination} {
		if v != "" { // SQS refuses an empty attribute value
			attrs[k] = sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
		}
	}
	_, err = q.Client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(q.URL),
		MessageBody:       aws.String(string(body)),
		MessageAttributes: attrs,
	})
	if q.OnSend != nil {
		q.OnSend(err)
	}
	if err != nil {
		return fmt.Errorf("sink: send notice %s: %w", n.NoticeID, err)
	}
	return nil
}

package sink

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/verifiedfan/export-service/jobs"
)

// ResultsQueue sends each completed export's manifest to an SQS queue
// (EXPORT_RESULTS_QUEUE_URL), so that upstream systems learn of it without polling S3.
type ResultsQueue struct {
	Client *sqs.Client
	URL    string
	// OnSend, if set, is called after every SendMessage with its error.
	OnSend func(err error)
}

var _ jobs.Notifier = (*ResultsQueue)(nil)

// Notify implements jobs.Notifier: the message body is the manifest's JSON, with the export id,
// kind, destination and outcome as message attributes for filtering.
func (q *ResultsQueue) Notify(ctx context.Context, m *jobs.Manifest) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("sink: encode the manifest of export %s: %w", m.ExportID, err)
	}
	attr := func(v string) sqstypes.MessageAttributeValue {
		return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	_, err = q.Client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:    aws.String(q.URL),
		MessageBody: aws.String(string(body)),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			"export_id":   attr(m.ExportID),
			"kind":        attr(m.Kind),
			"destination": attr(m.Destination),
			"outcome":     attr("succeeded"),
		},
	})
	if q.OnSend != nil {
		q.OnSend(err)
	}
	if err != nil {
		return fmt.Errorf("sink: send the completion notice of export %s: %w", m.ExportID, err)
	}
	return nil
}

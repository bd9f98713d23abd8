package worker

import (
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/verifiedfan/export-service/internal/clip"
	"github.com/verifiedfan/export-service/jobs"
)

// Message attributes of the messages the worker sends: copies (handover, hop, release) to the
// jobs queue and dead-letter messages. This file is their one schema: the worker writes them
// here and the dlq commands read them back with ParseDeadLetter and carry them with
// CarryAttributes.
const (
	// AttrRequestedAt is the original request time (RFC 3339, UTC), carried by every copy and
	// dead-letter message, so that what derives from it (a {date} in an object key) is the
	// same for every delivery, a redrive's too.
	AttrRequestedAt = "requested_at"
	// AttrHandoverOf is the id of the delivery a copy was made from.
	AttrHandoverOf = "handover_of"
	// AttrRedrivenFrom is the id of the dead-letter message a redrive sent again.
	AttrRedrivenFrom = "redriven_from"

	// Dead-letter attributes: why and when the worker gave up on a message.
	AttrReason            = "reason"
	AttrError             = "error"
	AttrExportID          = "export_id"
	AttrOriginalMessageID = "original_message_id"
	AttrReceiveCount      = "receive_count"
	AttrFailures          = "failures"
	AttrFailedAt          = "failed_at"
)

// DeadLetter is what a dead-letter message says about its failure.
type DeadLetter struct {
	// Reason is the worker's; ReasonMaxReceives for a message the queue's redrive policy moved
	// (which has no attributes of the worker's).
	Reason            jobs.Reason
	Error             string
	ExportID          string
	OriginalMessageID string
	// ReceiveCount is the jobs queue's receive count when it failed (0: unknown).
	ReceiveCount int
	// Failures is the export's failed attempts in the ledger (0: unknown).
	Failures int
	// FailedAt and RequestedAt are zero when unknown.
	FailedAt    time.Time
	RequestedAt time.Time
}

// Attributes are the message attributes of d.
func (d DeadLetter) Attributes() map[string]types.MessageAttributeValue {
	a := map[string]types.MessageAttributeValue{
		AttrReason:            stringAttr(string(d.Reason)),
		AttrError:             stringAttr(clip.String(d.Error, 1024)),
		AttrOriginalMessageID: stringAttr(d.OriginalMessageID),
		AttrReceiveCount:      numberAttr(d.ReceiveCount),
		AttrFailedAt:          stringAttr(d.FailedAt.UTC().Format(time.RFC3339)),
	}
	if !d.RequestedAt.IsZero() {
		a[AttrRequestedAt] = stringAttr(d.RequestedAt.UTC().Format(time.RFC3339Nano))
	}
	if d.Failures > 0 {
		a[AttrFailures] = numberAttr(d.Failures)
	}
	if d.ExportID != "" {
		a[AttrExportID] = stringAttr(d.ExportID)
	}
	return a
}

// ParseDeadLetter reads what Attributes wrote. Values it cannot read stay zero.
func ParseDeadLetter(attrs map[string]types.MessageAttributeValue) DeadLetter {
	get := func(k string) string { return aws.ToString(attrs[k].StringValue) }
	d := DeadLetter{Reason: jobs.Reason(get(AttrReason)), Error: get(AttrError), ExportID: get(AttrExportID),
		OriginalMessageID: get(AttrOriginalMessageID)}
	if d.Reason == "" {
		d.Reason = jobs.ReasonMaxReceives
	}
	d.ReceiveCount, _ = strconv.Atoi(get(AttrReceiveCount))
	d.Failures, _ = strconv.Atoi(get(AttrFailures))
	d.FailedAt, _ = time.Parse(time.RFC3339, get(AttrFailedAt))
	d.RequestedAt = RequestedAt(attrs)
	return d
}

// RequestedAt is the request time a message carries (AttrRequestedAt), or zero.
func RequestedAt(attrs map[string]types.MessageAttributeValue) time.Time {
	t, err := time.Parse(time.RFC3339Nano, aws.ToString(attrs[AttrRequestedAt].StringValue))
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}

// CopyAttributes are the attributes of a copy of a message requested at requestedAt, made
// from the message fromID; from names the attribute that records fromID (AttrHandoverOf,
// AttrRedrivenFrom).
func CopyAttributes(from, fromID string, requestedAt time.Time) map[string]types.MessageAttributeValue {
	a := map[string]types.MessageAttributeValue{from: stringAttr(fromID)}
	if !requestedAt.IsZero() {
		a[AttrRequestedAt] = stringAttr(requestedAt.UTC().Format(time.RFC3339Nano))
	}
	return a
}

func stringAttr(v string) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

func numberAttr(n int) types.MessageAttributeValue {
	return types.MessageAttributeValue{DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(n))}
}

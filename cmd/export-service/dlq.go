package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/verifiedfan/export-service/internal/awsx"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/worker"
)

const dlqHelp = `Usage: export-service dlq list|redrive [flags]

  list      the dead-letter queue's messages: reason, export id, error, receive count.
            Deletes nothing; the messages are hidden from other consumers for a moment
            (--visibility) while they are read, and made visible again at the end.
  redrive   moves messages back to the jobs queue: each is sent to the jobs queue, then
            deleted from the dead-letter queue. --dry-run lists what would move. Each keeps
            its request time (attribute requested_at), so that a {date} in its object key is
            the day it was first requested, not the day of the redrive.

The reason is the worker's (malformed_message, invalid_message, invalid_params,
unknown_kind, unknown_destination, access_denied, panic, ...), or max_receives for a message
the queue's redrive policy moved after too many failed deliveries.

Environment: EXPORT_DLQ_URL (or --dlq-url; without either, the DLQ named by the redrive policy
of EXPORT_QUEUE_URL), EXPORT_QUEUE_URL (or --queue-url; redrive sends there), AWS credentials
allowed to receive from the dead-letter queue (the operator policy; the instance role cannot).

"export-service dlq list --help" and "export-service dlq redrive --help" show the flags.
`

func runDLQ(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, dlqHelp)
		return errUsage
	}
	switch args[0] {
	case "list":
		return runDLQList(ctx, args[1:], getenv, stdout)
	case "redrive":
		return runDLQRedrive(ctx, args[1:], getenv, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, dlqHelp)
		return errHelp
	}
	fmt.Fprintf(stdout, "unknown dlq command %q\n\n%s", args[0], dlqHelp)
	return errUsage
}

type dlqFlags struct {
	queueURL, dlqURL string
	visibility       time.Duration
	max              int
}

func (d *dlqFlags) register(fs *flag.FlagSet, getenv func(string) string, maxDefault int, maxHelp string) {
	fs.StringVar(&d.dlqURL, "dlq-url", getenv("EXPORT_DLQ_URL"), "the dead-letter queue (env EXPORT_DLQ_URL; default from the jobs queue's redrive policy)")
	fs.StringVar(&d.queueURL, "queue-url", getenv("EXPORT_QUEUE_URL"), "the jobs queue (env EXPORT_QUEUE_URL)")
	fs.DurationVar(&d.visibility, "visibility", 30*time.Second, "how long messages being read stay hidden from other consumers if this command dies (they are made visible again when it ends)")
	fs.IntVar(&d.max, "max", maxDefault, maxHelp)
}

// dlqMessage is one dead-lettered message as the commands show it.
type dlqMessage struct {
	MessageID         string      `json:"message_id"`
	Reason            jobs.Reason `json:"reason"`
	ExportID          string      `json:"export_id,omitempty"`
	Error             string      `json:"error,omitempty"`
	ReceiveCount      int         `json:"receive_count"`
	Failures          int         `json:"failures,omitempty"`
	OriginalMessageID string      `json:"original_message_id,omitempty"`
	FailedAt          string      `json:"failed_at,omitempty"`
	SentAt            *time.Time  `json:"sent_at,omitempty"`
	// RequestedAt is when the export was first requested, which a redrive carries to the jobs
	// queue (see requestedAt); RequestedAtFrom says how it is known.
	RequestedAt     *time.Time `json:"requested_at,omitempty"`
	RequestedAtFrom string     `json:"requested_at_from,omitempty"`
	Body            string     `json:"body"`
	receiptHandle   string
}

// Where a dead-lettered message's request time comes from (dlqMessage.RequestedAtFrom).
const (
	// requestedAtAttribute: its requested_at attribute, set by the worker on every message it
	// dead-letters or hands over, and by an earlier redrive.
	requestedAtAttribute = "attribute"
	// requestedAtSent: the SentTimestamp of a message the redrive policy moved, which a standard
	// queue keeps from the original send, the request.
	requestedAtSent = "sent_timestamp"
	// requestedAtFailed: an estimate, the time it failed (see requestedAt).
	requestedAtFailed = "failed_at"
)

// requestedAt is when the export of a dead-lettered message was first requested. A redrive
// must carry it (attribute requested_at) so that what the worker derives from it, a {date} in
// an object key above all, is what it was on the first delivery and not the redrive's day:
//   - the message's requested_at attribute, when it has a valid one;
//   - else, for a message the jobs queue's redrive policy moved (no reason attribute), its
//     SentTimestamp: a standard queue keeps a message's original enqueue time when it moves
//     it to the dead-letter queue, and the message was sent when the export was requested;
//   - else (a message dead-lettered by a worker that predates the attribute), the time it
//     failed (failed_at, else the time it was sent to the DLQ, the same moment). The request
//     time is lost; the failure time is the closest bound known, later than the request only
//     by the retries it took (a permanent failure is usually dead-lettered on its first
//     delivery). The redrive's own time, which the message would otherwise get, is never
//     closer.
func requestedAt(m dlqMessage, attr time.Time, sentAt *time.Time) (*time.Time, string) {
	if !attr.IsZero() {
		return &attr, requestedAtAttribute
	}
	if m.Reason == jobs.ReasonMaxReceives {
		if sentAt != nil {
			return sentAt, requestedAtSent
		}
		return nil, ""
	}
	if t, err := time.Parse(time.RFC3339Nano, m.FailedAt); err == nil {
		t = t.UTC()
		return &t, requestedAtFailed
	}
	if sentAt != nil {
		return sentAt, requestedAtFailed
	}
	return nil, ""
}

func runDLQList(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var d dlqFlags
	fs := flag.NewFlagSet("dlq list", flag.ContinueOnError)
	fs.SetOutput(stdout)
	asJSON := fs.Bool("json", false, "print the messages as a JSON array, bodies included")
	d.register(fs, getenv, 100, "list at most this many messages")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: export-service dlq list [flags]\n\nThe dead-letter queue's messages and why they died. Deletes nothing.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	client, err := newSQSClient(ctx)
	if err != nil {
		return err
	}
	target := resolveDLQ(ctx, client, d.queueURL, d.dlqURL)
	if target.err != nil {
		return target.err
	}
	var msgs []dlqMessage
	err = walkDLQ(ctx, client, target.url, d.max, d.visibility, 1, func(m dlqMessage) (bool, error) {
		msgs = append(msgs, m)
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("read the dead-letter queue %s: %w%s", target.url, err, awsHint(err, "receive from the dead-letter queue"))
	}
	if *asJSON {
		if msgs == nil {
			msgs = []dlqMessage{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(msgs)
	}
	if len(msgs) == 0 {
		fmt.Fprintf(stdout, "the dead-letter queue %s is empty\n", target.url)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MESSAGE_ID\tREASON\tEXPORT_ID\tRECEIVES\tREQUESTED_AT\tFAILED_AT\tERROR")
	estimates := false
	for _, m := range msgs {
		estimates = estimates || m.RequestedAtFrom == requestedAtFailed
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", m.MessageID, m.Reason, orDash(m.ExportID), m.ReceiveCount, showRequestedAt(m), orDash(m.FailedAt), oneLine(m.Error, 160))
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "%d message(s) in %s\n", len(msgs), target.url)
	if estimates {
		fmt.Fprintln(stdout, "~: request time unknown (dead-lettered by a worker that did not record it); a redrive carries the failure time instead")
	}
	if d.max > 0 && len(msgs) >= d.max {
		fmt.Fprintf(stdout, "(stopped at --max %d; there may be more)\n", d.max)
	}
	return nil
}

func runDLQRedrive(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var d dlqFlags
	fs := flag.NewFlagSet("dlq redrive", flag.ContinueOnError)
	fs.SetOutput(stdout)
	dryRun := fs.Bool("dry-run", false, "list what would move; move nothing")
	reason := fs.String("reason", "", "move only messages with this reason (as dlq list shows it)")
	exportID := fs.String("export-id", "", "move only the messages of this export")
	d.register(fs, getenv, 0, "move at most this many messages (0: all)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: export-service dlq redrive [--dry-run] [--reason R] [--export-id ID] [--max N] [flags]\n\n"+
			"Moves dead-letter messages back to the jobs queue: send, then delete. Messages that died again\n"+
			"while this runs are left for the next run.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if d.max < 0 {
		return errors.New("--max must not be negative")
	}
	if d.queueURL == "" {
		return errors.New("EXPORT_QUEUE_URL is not set: pass --queue-url or set it (redrive sends the messages there)")
	}
	client, err := newSQSClient(ctx)
	if err != nil {
		return err
	}
	target := resolveDLQ(ctx, client, d.queueURL, d.dlqURL)
	if target.err != nil {
		return target.err
	}
	verb := "moved"
	if *dryRun {
		verb = "would move"
	}
	// Messages sent to the DLQ after the start (a moved message that died again at once) are
	// not moved again: the run ends instead of going round in circles.
	start := time.Now().Add(-time.Second)
	moved, skipped := 0, 0
	err = walkDLQ(ctx, client, target.url, 0, d.visibility, 1, func(m dlqMessage) (bool, error) {
		if (*reason != "" && string(m.Reason) != *reason) || (*exportID != "" && m.ExportID != *exportID) ||
			(m.SentAt != nil && m.SentAt.After(start)) || (d.max > 0 && moved >= d.max) {
			skipped++
			return false, nil
		}
		if *dryRun {
			moved++
			fmt.Fprintf(stdout, "%s %s (export %s, reason %s, requested at %s)\n", verb, m.MessageID, orDash(m.ExportID), m.Reason, showRequestedAt(m))
			return false, nil
		}
		// The worker takes the request time from the copy's attribute (as on handover copies)
		// rather than from the new message's SentTimestamp, the redrive's time.
		var requested time.Time
		if m.RequestedAt != nil {
			requested = *m.RequestedAt
		}
		attrs := worker.CopyAttributes(worker.AttrRedrivenFrom, m.MessageID, requested)
		out, err := client.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl: aws.String(d.queueURL), MessageBody: aws.String(m.Body), MessageAttributes: attrs,
		})
		if err != nil {
			return false, fmt.Errorf("send message %s to the jobs queue %s: %w%s", m.MessageID, d.queueURL, err, awsHint(err, "send to the jobs queue"))
		}
		if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(target.url), ReceiptHandle: aws.String(m.receiptHandle)}); err != nil {
			// It is in both queues now: the worker runs it once, the copy left here is harmless.
			fmt.Fprintf(stderr, "warning: message %s was sent to the jobs queue as %s but deleting it from the dead-letter queue failed: %v\n", m.MessageID, aws.ToString(out.MessageId), err)
		}
		moved++
		fmt.Fprintf(stdout, "%s %s (export %s, reason %s, requested at %s) -> %s\n", verb, m.MessageID, orDash(m.ExportID), m.Reason, showRequestedAt(m), aws.ToString(out.MessageId))
		return true, nil
	})
	fmt.Fprintf(stdout, "%s %d message(s) from %s to %s; %d left in the dead-letter queue by the filters\n", verb, moved, target.url, d.queueURL, skipped)
	if err != nil {
		return fmt.Errorf("redrive stopped: %w%s", err, awsHint(err, "receive from the dead-letter queue"))
	}
	return nil
}

// walkDLQ receives the queue's messages (at most limit; 0: all) and calls visit for each, once.
// Messages stay hidden for visibility while the walk goes on; those visit did not consume
// (returned false) are made visible again at the end. wait is the long-poll wait of each
// receive (0: a short poll, which may miss messages but never blocks).
func walkDLQ(ctx context.Context, client sqsAPI, url string, limit int, visibility time.Duration, wait int32, visit func(dlqMessage) (bool, error)) error {
	secs := int32(min(max(visibility, 2*time.Second), 12*time.Hour) / time.Second)
	seen := map[string]bool{}
	var keep []dlqMessage
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, m := range keep {
			_, _ = client.ChangeMessageVisibility(rctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(url), ReceiptHandle: aws.String(m.receiptHandle), VisibilityTimeout: 0,
			})
		}
	}()
	for limit <= 0 || len(seen) < limit {
		n := int32(10)
		if limit > 0 {
			n = int32(min(10, limit-len(seen)))
		}
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: n, VisibilityTimeout: secs, WaitTimeSeconds: wait,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
			AttributeNames:              []types.QueueAttributeName{"All"}, //nolint:staticcheck // local-aws-sqs reads only this one
		})
		if err != nil {
			return err
		}
		fresh := 0
		for _, sm := range out.Messages {
			m := toDLQMessage(sm)
			if seen[m.MessageID] {
				keep = append(keep, m) // its earlier handle is stale; release with the new one
				continue
			}
			seen[m.MessageID] = true
			fresh++
			consumed, err := visit(m)
			if !consumed {
				keep = append(keep, m)
			}
			if err != nil {
				return err
			}
		}
		if fresh == 0 {
			return nil
		}
	}
	return nil
}

func toDLQMessage(sm types.Message) dlqMessage {
	dl := worker.ParseDeadLetter(sm.MessageAttributes)
	m := dlqMessage{
		MessageID: aws.ToString(sm.MessageId), Body: aws.ToString(sm.Body), receiptHandle: aws.ToString(sm.ReceiptHandle),
		Reason: dl.Reason, Error: dl.Error, ExportID: dl.ExportID, OriginalMessageID: dl.OriginalMessageID,
		ReceiveCount: dl.ReceiveCount, Failures: dl.Failures,
	}
	if !dl.FailedAt.IsZero() {
		m.FailedAt = dl.FailedAt.UTC().Format(time.RFC3339)
	}
	if m.ReceiveCount == 0 {
		m.ReceiveCount, _ = strconv.Atoi(sm.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	}
	if ms, err := strconv.ParseInt(sm.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		t := time.UnixMilli(ms).UTC()
		m.SentAt = &t
	}
	m.RequestedAt, m.RequestedAtFrom = requestedAt(m, dl.RequestedAt, m.SentAt)
	if m.ExportID == "" {
		var b struct {
			ExportID string `json:"export_id"`
		}
		if json.Unmarshal([]byte(m.Body), &b) == nil {
			m.ExportID = b.ExportID
		}
	}
	return m
}

// findInDLQ looks for the message messageID (sent by the worker as a copy naming it, or moved
// there by the redrive policy with its own id) in the DLQ, without consuming anything. It
// short-polls, so as not to hold up the progress display; it is called again and again.
func findInDLQ(ctx context.Context, client sqsAPI, url, messageID string) (dlqMessage, bool, error) {
	var found dlqMessage
	ok := false
	err := walkDLQ(ctx, client, url, 100, 5*time.Second, 0, func(m dlqMessage) (bool, error) {
		if !ok && (m.OriginalMessageID == messageID || m.MessageID == messageID) {
			found, ok = m, true
		}
		return false, nil
	})
	return found, ok, err
}

// sqsAPI is what the commands call on SQS; *sqs.Client satisfies it.
type sqsAPI interface {
	worker.SQS
	worker.QueueAttributesAPI
}

var _ sqsAPI = (*sqs.Client)(nil)

func newSQSClient(ctx context.Context) (*sqs.Client, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("aws: load config: %w", err)
	}
	return sqs.NewFromConfig(cfg, awsx.SQS(awsx.Timeouts{})), nil
}

// dlqTarget is the dead-letter queue a command works on.
type dlqTarget struct {
	url string
	// maxReceives is the jobs queue's maxReceiveCount, when its redrive policy could be read.
	maxReceives int
	err         error
}

// resolveDLQ finds the DLQ: the URL given, else the one the jobs queue's redrive policy
// names. It also reads the policy's maxReceiveCount when it can.
func resolveDLQ(ctx context.Context, client sqsAPI, queueURL, dlqURL string) dlqTarget {
	t := dlqTarget{url: dlqURL}
	if queueURL == "" {
		if dlqURL == "" {
			t.err = errors.New("EXPORT_DLQ_URL is not set: pass --dlq-url or set it (output dlq_url of the environment), or give the jobs queue (--queue-url or EXPORT_QUEUE_URL) whose redrive policy names it")
		}
		return t
	}
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy},
	})
	var policy struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
		MaxReceiveCount     any    `json:"maxReceiveCount"` // a number, or a string of one
	}
	if err == nil {
		if raw := out.Attributes[string(types.QueueAttributeNameRedrivePolicy)]; raw != "" {
			err = json.Unmarshal([]byte(raw), &policy)
		}
	}
	if n, cerr := strconv.Atoi(strings.Trim(fmt.Sprint(policy.MaxReceiveCount), `"`)); cerr == nil {
		t.maxReceives = n
	}
	if t.url != "" {
		return t
	}
	switch {
	case err != nil:
		t.err = fmt.Errorf("EXPORT_DLQ_URL is not set and the redrive policy of %s could not be read (%v%s): pass --dlq-url or set EXPORT_DLQ_URL", queueURL, err, awsHint(err, "read the jobs queue's attributes"))
	case policy.DeadLetterTargetArn == "":
		t.err = fmt.Errorf("EXPORT_DLQ_URL is not set and %s has no redrive policy: pass --dlq-url or set EXPORT_DLQ_URL", queueURL)
	default:
		t.url, t.err = queueURLFromARN(queueURL, policy.DeadLetterTargetArn)
	}
	return t
}

// queueURLFromARN builds the URL of a queue in the same region and account as sibling (a DLQ
// always is), from its ARN arn:aws:sqs:REGION:ACCOUNT:NAME.
func queueURLFromARN(sibling, arn string) (string, error) {
	parts := strings.Split(arn, ":")
	if len(parts) != 6 || parts[2] != "sqs" {
		return "", fmt.Errorf("dead-letter target %q is not an SQS queue ARN: pass --dlq-url", arn)
	}
	i := strings.LastIndex(sibling, "/")
	j := strings.LastIndex(sibling[:max(i, 0)], "/")
	if i < 0 || j < 0 {
		return "", fmt.Errorf("cannot derive the dead-letter queue's URL from %q: pass --dlq-url", sibling)
	}
	return sibling[:j+1] + parts[4] + "/" + parts[5], nil
}

// awsHint adds what a person can do about common AWS errors.
func awsHint(err error, doing string) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		code := api.ErrorCode()
		switch {
		case strings.Contains(code, "AccessDenied"):
			return fmt.Sprintf(" (these credentials may not %s: the instance role cannot; use a role with the operator policy, output operator_policy_arn)", doing)
		case strings.Contains(code, "NonExistentQueue"), strings.Contains(code, "QueueDoesNotExist"):
			return " (no such queue: check the URL and AWS_REGION)"
		case strings.Contains(code, "InvalidClientTokenId"), strings.Contains(code, "ExpiredToken"), strings.Contains(code, "SignatureDoesNotMatch"):
			return " (the AWS credentials are invalid or expired: log in again)"
		}
	}
	if s := err.Error(); strings.Contains(s, "failed to retrieve credentials") || strings.Contains(s, "no EC2 IMDS role found") {
		return " (no AWS credentials found: set AWS_PROFILE or log in with a role that has the operator policy)"
	}
	return ""
}

// showRequestedAt is a message's request time for people: "-" when unknown, "~" before an
// estimate.
func showRequestedAt(m dlqMessage) string {
	if m.RequestedAt == nil {
		return "-"
	}
	s := m.RequestedAt.UTC().Format(time.RFC3339)
	if m.RequestedAtFrom == requestedAtFailed {
		s = "~" + s
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine flattens s to one line of at most n characters.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return orDash(s)
}

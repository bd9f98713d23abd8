package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/jsontest"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

// receivedNotice is one message of a results queue.
type receivedNotice struct {
	Body   string
	Attrs  map[string]string
	Notice jobs.Notice
}

// newQueue creates a queue for the test (results, control); it is deleted after.
func (b *bundle) newQueue(t *testing.T, what string) string {
	t.Helper()
	q, err := b.st.SQS.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String("t-" + stacktest.RandomID() + "-" + what)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = b.st.SQS.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl}) })
	return aws.ToString(q.QueueUrl)
}

// receiveNotices reads the results queue until done says it has what it waits for (nil:
// for all of within); every notice is checked against docs/result-notice.schema.json and its
// attributes.
func (b *bundle) receiveNotices(t *testing.T, url string, within time.Duration, done func([]receivedNotice) bool) []receivedNotice {
	t.Helper()
	var got []receivedNotice
	deadline := time.Now().Add(within)
	for (done == nil || !done(got)) && time.Now().Before(deadline) {
		out, err := b.st.SQS.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url),
			MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		if err != nil {
			t.Fatalf("receive from the results queue: %v", err)
		}
		for _, m := range out.Messages {
			r := receivedNotice{Body: aws.ToString(m.Body), Attrs: map[string]string{}}
			for k, v := range m.MessageAttributes {
				r.Attrs[k] = aws.ToString(v.StringValue)
			}
			checkNotice(t, r.Body)
			if err := json.Unmarshal([]byte(r.Body), &r.Notice); err != nil {
				t.Fatalf("notice %s: %v", r.Body, err)
			}
			if r.Attrs["notice_id"] != r.Notice.NoticeID || r.Attrs["export_id"] != r.Notice.ExportID || r.Attrs["outcome"] != string(r.Notice.Outcome) {
				t.Errorf("notice attributes %v do not match its body %s", r.Attrs, r.Body)
			}
			got = append(got, r)
			_, _ = b.st.SQS.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
		}
	}
	if done != nil && !done(got) {
		t.Fatalf("the results queue did not get what was awaited within %s; got %d notices: %v", within, len(got), got)
	}
	return got
}

var noticeSchema = sync.OnceValues(func() (any, error) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "result-notice.schema.json"))
	if err != nil {
		return nil, err
	}
	return jsontest.Decode(b)
})

// checkNotice validates a notice the service sent against the schema upstream systems are
// given.
func checkNotice(t *testing.T, body string) {
	t.Helper()
	root, err := noticeSchema()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := jsontest.Validate(root, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if problems != nil {
		t.Errorf("notice %s is not valid to docs/result-notice.schema.json: %v", body, problems)
	}
}

// byOutcome indexes notices by export id and outcome.
func byOutcome(ns []receivedNotice) map[string]map[jobs.Outcome]jobs.Notice {
	out := map[string]map[jobs.Outcome]jobs.Notice{}
	for _, n := range ns {
		if out[n.Notice.ExportID] == nil {
			out[n.Notice.ExportID] = map[jobs.Outcome]jobs.Notice{}
		}
		out[n.Notice.ExportID][n.Notice.Outcome] = n.Notice
	}
	return out
}

// An export that fails for good is announced twice, as failed and as dead-lettered, and a
// message refused before its export ran as dead-lettered; each notice once, valid to the
// schema, with what upstream needs: reason, error, attempts, export id, requested_by.
func TestFailuresAreAnnouncedOnTheResultsQueue(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	results := b.newQueue(t, "results")
	// A bucket that does not exist: the export's first attempt fails for good (no_such_bucket).
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{"EXPORT_RESULTS_QUEUE_URL": results, "EXPORT_BUCKET": "no-such-bucket-" + stacktest.RandomID()}), "worker")

	failing, refused := "fail-"+stacktest.RandomID(), "refused-"+stacktest.RandomID()
	b.send(t, jobBody(t, jobs.Message{ExportID: failing, Kind: "registrations", RequestedBy: "crm-e2e", Params: json.RawMessage(`{"campaign_id":"` + fixtures.Campaigns[0] + `"}`)}))
	b.send(t, jobBody(t, jobs.Message{ExportID: refused, Kind: "registrations", RequestedBy: "crm-e2e", Params: json.RawMessage(`{"status":"registered"}`)}))

	got := b.receiveNotices(t, results, 60*time.Second, func(ns []receivedNotice) bool {
		o := byOutcome(ns)
		_, f := o[failing][jobs.OutcomeFailed]
		_, d := o[failing][jobs.OutcomeDeadLettered]
		_, r := o[refused][jobs.OutcomeDeadLettered]
		return f && d && r
	})
	// A little longer: a notice sent twice would show now.
	got = append(got, b.receiveNotices(t, results, 5*time.Second, nil)...)
	seen := map[string]int{}
	for _, n := range got {
		seen[n.Notice.NoticeID]++
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("notice %s arrived %d times in a run without faults", id, n)
		}
	}
	if len(seen) != 3 {
		t.Errorf("%d notices, want 3: %v", len(seen), got)
	}

	o := byOutcome(got)
	// The reason is the one the ledger recorded for the failure, a permanent one (SeaweedFS
	// answers AccessDenied for a bucket that does not exist).
	fe, _ := b.ledger(t, failing)
	if !fe.Permanent || fe.Reason == "" {
		t.Errorf("ledger of the failing export: reason %q, permanent %v", fe.Reason, fe.Permanent)
	}
	for _, outcome := range []jobs.Outcome{jobs.OutcomeFailed, jobs.OutcomeDeadLettered} {
		n := o[failing][outcome]
		if n.Reason != fe.Reason || n.Error != fe.Error || n.Attempts != 1 || n.Failures != 1 || n.RequestedBy != "crm-e2e" ||
			n.Kind != "registrations" || n.Destination != "internal" || n.RequestedAt == nil || n.Manifest != nil {
			t.Errorf("%s notice of the failing export: %+v", outcome, n)
		}
	}
	if f, d := o[failing][jobs.OutcomeFailed], o[failing][jobs.OutcomeDeadLettered]; d.At.Before(f.At) {
		t.Errorf("dead-lettered at %s, before it failed at %s", d.At, f.At)
	}
	n := o[refused][jobs.OutcomeDeadLettered]
	if n.Reason != jobs.ReasonInvalidParams || n.Attempts != 0 || n.RequestedBy != "crm-e2e" || n.Error == "" {
		t.Errorf("dead-lettered notice of the refused message: %+v", n)
	}
	if _, ok := o[refused][jobs.OutcomeFailed]; ok {
		t.Errorf("a message refused before its export ran was announced as failed")
	}

	// The outbox recorded them as sent; the DLQ holds both messages.
	for _, id := range []string{failing, refused} {
		e, _ := b.ledger(t, id)
		for _, n := range e.Notices {
			if n.Pending {
				t.Errorf("notice %s still pending: %+v", n.NoticeID, n)
			}
		}
	}
	if e, _ := b.ledger(t, failing); e.Status != ledger.Failed || !e.DeadLettered || len(e.Notices) != 2 {
		t.Errorf("ledger of the failing export: %s with notices %+v", e.Status, e.Notices)
	}
	if dlq := b.drainDLQ(t, 2, 10*time.Second); len(dlq) != 2 {
		t.Errorf("dead-letter queue holds %d messages, want 2", len(dlq))
	}
	if n := stacktest.Sum(p.Metrics(t), "export_notices_total", map[string]string{"result": "sent"}); n != 3 {
		t.Errorf("export_notices_total{result=sent} = %v, want 3", n)
	}
}

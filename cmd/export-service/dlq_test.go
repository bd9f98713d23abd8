package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
)

type sqstypesAttr = sqstypes.MessageAttributeValue

func strAttr(v string) sqstypes.MessageAttributeValue {
	return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

func optionsUpsert() options.Lister[options.UpdateOneOptions] {
	return options.UpdateOne().SetUpsert(true)
}

// deadLetters fills the DLQ as the worker and the redrive policy do: two messages sent by the
// worker with their attributes, one moved by the policy (no attributes).
func deadLetters(t *testing.T, st *stacktest.Stack, q stacktest.Queues) {
	t.Helper()
	ctx := context.Background()
	for _, m := range []*sqs.SendMessageInput{
		{MessageBody: aws.String(`{"version":1,"export_id":"k-1","kind":"users","params":{}}`), MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			"reason": strAttr("unknown_kind"), "error": strAttr("field \"kind\": unknown kind \"users\"\n(known: registrations)"), "export_id": strAttr("k-1"),
			"original_message_id": strAttr("orig-1"), "failed_at": strAttr("2026-11-26T09:00:00Z"),
			"receive_count": {DataType: aws.String("Number"), StringValue: aws.String("1")}}},
		{MessageBody: aws.String("this is not JSON"), MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			"reason": strAttr("malformed_message"), "error": strAttr("not valid JSON (at byte 1)"), "original_message_id": strAttr("orig-2"),
			"receive_count": {DataType: aws.String("Number"), StringValue: aws.String("1")}}},
		{MessageBody: aws.String(`{"version":1,"export_id":"slow-1","kind":"registrations","params":{"campaign_id":"c1"}}`)},
	} {
		m.QueueUrl = aws.String(q.DLQURL)
		if _, err := st.SQS.SendMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// Sent "before" the redrive starts (it skips messages that died while it runs).
	time.Sleep(1100 * time.Millisecond)
}

// visibleSoon returns the queue's visible count once it is want, or after 3 seconds: the local
// SQS makes a released message visible on its next tick, not within the call.
func visibleSoon(t *testing.T, st *stacktest.Stack, url string, want int) int {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		v, _ := st.QueueCounts(t, url)
		if v == want || time.Now().After(deadline) {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dlq list shows each message's reason, export id, error and receive count, deletes nothing
// and leaves the messages visible.
func TestDLQList(t *testing.T) {
	st := onStack(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	env := map[string]string{"EXPORT_DLQ_URL": q.DLQURL}
	if code, out, errOut := runCmd(t, env, "dlq", "list"); code != 0 || !strings.Contains(out, "is empty") {
		t.Errorf("empty DLQ: exit %d, %q %q", code, out, errOut)
	}
	deadLetters(t, st, q)

	code, out, errOut := runCmd(t, env, "dlq", "list", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got []dlqMessage
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	byExport := map[string]dlqMessage{}
	for _, m := range got {
		byExport[m.ExportID] = m
	}
	if len(got) != 3 {
		t.Fatalf("listed %d messages, want 3: %s", len(got), out)
	}
	if m := byExport["k-1"]; m.Reason != "unknown_kind" || !strings.Contains(m.Error, `unknown kind "users"`) || m.ReceiveCount != 1 ||
		m.OriginalMessageID != "orig-1" || m.FailedAt != "2026-11-26T09:00:00Z" || !strings.Contains(m.Body, `"users"`) {
		t.Errorf("worker-sent message: %+v", m)
	}
	if m := byExport["slow-1"]; m.Reason != jobs.ReasonMaxReceives || m.SentAt == nil {
		t.Errorf("policy-moved message: %+v (export id from the body, reason %s)", m, string(jobs.ReasonMaxReceives))
	}
	if m := byExport[""]; m.Reason != "malformed_message" {
		t.Errorf("malformed message: %+v", m)
	}
	if v := visibleSoon(t, st, q.DLQURL, 3); v != 3 {
		t.Errorf("%d messages visible after dlq list, want all 3 (nothing deleted, nothing left hidden)", v)
	}

	// The table, with the DLQ found through the jobs queue's redrive policy.
	code, out, errOut = runCmd(t, map[string]string{"EXPORT_QUEUE_URL": q.JobsURL}, "dlq", "list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"REASON", "unknown_kind", "k-1", `field "kind": unknown kind "users"; (known: registrations)`, "malformed_message", string(jobs.ReasonMaxReceives), "slow-1", "3 message(s) in " + q.DLQURL} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "this is not JSON") {
		t.Errorf("the table shows a body:\n%s", out)
	}

	if code, _, errOut := runCmd(t, nil, "dlq", "list"); code != 1 || !strings.Contains(errOut, "EXPORT_DLQ_URL is not set: pass --dlq-url or set it") {
		t.Errorf("no queue: exit %d, stderr %q", code, errOut)
	}
}

// dlq redrive moves messages back (send, then delete), filtered by reason; --dry-run moves
// nothing; a message that dies again while it runs is not moved twice.
func TestDLQRedrive(t *testing.T) {
	st := onStack(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	deadLetters(t, st, q)
	env := map[string]string{"EXPORT_QUEUE_URL": q.JobsURL, "EXPORT_DLQ_URL": q.DLQURL}

	code, out, errOut := runCmd(t, env, "dlq", "redrive", "--dry-run")
	if code != 0 || strings.Count(out, "would move ") != 3+1 || !strings.Contains(out, "would move 3 message(s)") {
		t.Errorf("--dry-run: exit %d\n%s%s", code, out, errOut)
	}
	if v := visibleSoon(t, st, q.DLQURL, 3); v != 3 {
		t.Errorf("after --dry-run the DLQ has %d visible, want 3", v)
	}

	code, out, errOut = runCmd(t, env, "dlq", "redrive", "--reason", string(jobs.ReasonMaxReceives))
	if code != 0 || !strings.Contains(out, "moved 1 message(s)") || !strings.Contains(out, "2 left in the dead-letter queue by the filters") {
		t.Errorf("--reason: exit %d\n%s%s", code, out, errOut)
	}
	id, body := receiveOne(t, st, q.JobsURL)
	if !strings.Contains(body, `"slow-1"`) || !strings.Contains(out, "-> "+id) {
		t.Errorf("jobs queue got %s (%s); output:\n%s", id, body, out)
	}
	if v := visibleSoon(t, st, q.DLQURL, 2); v != 2 {
		t.Errorf("the DLQ has %d visible, want 2", v)
	}

	// --max, and the DLQ found through the redrive policy.
	code, out, _ = runCmd(t, map[string]string{"EXPORT_QUEUE_URL": q.JobsURL}, "dlq", "redrive", "--max", "1")
	if code != 0 || !strings.Contains(out, "moved 1 message(s)") {
		t.Errorf("--max 1: exit %d\n%s", code, out)
	}
	if v := visibleSoon(t, st, q.DLQURL, 1); v != 1 {
		t.Errorf("after --max 1 the DLQ has %d visible, want 1", v)
	}

	// A message dead-lettered after the redrive began is left for the next run.
	if _, err := st.SQS.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(q.DLQURL), MessageBody: aws.String("again")}); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd(t, env, "dlq", "redrive")
	if code != 0 || !strings.Contains(out, "moved 1 message(s)") || !strings.Contains(out, "1 left") {
		t.Errorf("redrive: exit %d\n%s", code, out)
	}
	if v := visibleSoon(t, st, q.JobsURL, 2); v != 2 {
		t.Errorf("jobs queue has %d visible, want the 2 moved", v)
	}

	if code, _, errOut := runCmd(t, map[string]string{"EXPORT_DLQ_URL": q.DLQURL}, "dlq", "redrive"); code != 1 || !strings.Contains(errOut, "EXPORT_QUEUE_URL is not set: pass --queue-url or set it") {
		t.Errorf("no jobs queue: exit %d, stderr %q", code, errOut)
	}
}

// A redriven message carries its original request time (attribute requested_at, which the
// worker reads as on handover copies), so that a {date} key does not move to the day of the
// redrive: from the DLQ message's requested_at; for a message the redrive policy moved, from
// its SentTimestamp (kept from the original send); for one dead-lettered by a worker that did
// not record it, from its failure time, shown as an estimate. dlq list shows it.
func TestDLQRedriveCarriesTheRequestTime(t *testing.T) {
	st := onStack(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	ctx := context.Background()
	num := func(v string) sqstypesAttr {
		return sqstypesAttr{DataType: aws.String("Number"), StringValue: aws.String(v)}
	}
	const requested = "2026-11-20T23:59:59.123456789Z"
	for _, m := range []*sqs.SendMessageInput{
		// A worker that records requested_at (and a failure days later).
		{MessageBody: aws.String(`{"version":1,"export_id":"with-attr","kind":"registrations","params":{"campaign_id":"c"}}`), MessageAttributes: map[string]sqstypesAttr{
			"reason": strAttr("access_denied"), "error": strAttr("denied"), "export_id": strAttr("with-attr"), "receive_count": num("1"),
			"failed_at": strAttr("2026-11-23T10:00:00Z"), "requested_at": strAttr(requested)}},
		// A worker that did not record it: the failure time is the best there is.
		{MessageBody: aws.String(`{"version":1,"export_id":"old-worker","kind":"registrations","params":{"campaign_id":"c"}}`), MessageAttributes: map[string]sqstypesAttr{
			"reason": strAttr("invalid_params"), "error": strAttr("bad"), "export_id": strAttr("old-worker"), "receive_count": num("1"),
			"failed_at": strAttr("2026-11-25T08:30:00Z")}},
		// A garbled requested_at is not carried: the failure time stands in.
		{MessageBody: aws.String(`{"version":1,"export_id":"garbled","kind":"registrations","params":{"campaign_id":"c"}}`), MessageAttributes: map[string]sqstypesAttr{
			"reason": strAttr("invalid_params"), "export_id": strAttr("garbled"), "failed_at": strAttr("2026-11-24T08:30:00Z"), "requested_at": strAttr("yesterday")}},
		// Moved by the redrive policy: no attributes, its SentTimestamp is the original send's.
		{MessageBody: aws.String(`{"version":1,"export_id":"policy","kind":"registrations","params":{"campaign_id":"c"}}`)},
	} {
		m.QueueUrl = aws.String(q.DLQURL)
		if _, err := st.SQS.SendMessage(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond) // sent "before" the redrive starts
	env := map[string]string{"EXPORT_QUEUE_URL": q.JobsURL, "EXPORT_DLQ_URL": q.DLQURL}

	code, out, errOut := runCmd(t, env, "dlq", "list", "--json")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, errOut)
	}
	var listed []dlqMessage
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	byExport := map[string]dlqMessage{}
	for _, m := range listed {
		byExport[m.ExportID] = m
	}
	want := map[string]struct{ at, from string }{
		"with-attr":  {requested, requestedAtAttribute},
		"old-worker": {"2026-11-25T08:30:00Z", requestedAtFailed},
		"garbled":    {"2026-11-24T08:30:00Z", requestedAtFailed},
	}
	policy := byExport["policy"]
	if policy.SentAt == nil {
		t.Fatalf("policy-moved message has no SentTimestamp: %+v", policy)
	}
	want["policy"] = struct{ at, from string }{policy.SentAt.Format(time.RFC3339Nano), requestedAtSent}
	for id, w := range want {
		m := byExport[id]
		if m.RequestedAt == nil || m.RequestedAt.Format(time.RFC3339Nano) != w.at || m.RequestedAtFrom != w.from {
			t.Errorf("list %s: requested_at %v from %q, want %s from %q", id, m.RequestedAt, m.RequestedAtFrom, w.at, w.from)
		}
	}
	code, out, _ = runCmd(t, env, "dlq", "list")
	for _, s := range []string{"REQUESTED_AT", "2026-11-20T23:59:59Z", "~2026-11-25T08:30:00Z", "~: request time unknown"} {
		if code != 0 || !strings.Contains(out, s) {
			t.Errorf("table (exit %d) lacks %q:\n%s", code, s, out)
		}
	}

	code, out, errOut = runCmd(t, env, "dlq", "redrive")
	if code != 0 || !strings.Contains(out, "moved 4 message(s)") || !strings.Contains(out, "requested at 2026-11-20T23:59:59Z") {
		t.Fatalf("redrive: exit %d\n%s%s", code, out, errOut)
	}
	got := map[string]string{}
	deadline := time.Now().Add(15 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		res, err := st.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.JobsURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			VisibilityTimeout: 60, MessageAttributeNames: []string{"All"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range res.Messages {
			var b struct {
				ExportID string `json:"export_id"`
			}
			_ = json.Unmarshal([]byte(aws.ToString(m.Body)), &b)
			a, ok := m.MessageAttributes["requested_at"]
			if !ok {
				got[b.ExportID] = "(none)"
				continue
			}
			got[b.ExportID] = aws.ToString(a.StringValue)
			if aws.ToString(a.DataType) != "String" || m.MessageAttributes["redriven_from"].StringValue == nil {
				t.Errorf("%s: attributes %v", b.ExportID, m.MessageAttributes)
			}
		}
	}
	for id, w := range want {
		// As the worker reads it: RFC 3339 with nanoseconds.
		at, err := time.Parse(time.RFC3339Nano, got[id])
		if err != nil || at.Format(time.RFC3339Nano) != w.at {
			t.Errorf("redriven %s carries requested_at %q, want %s", id, got[id], w.at)
		}
	}
}

func TestQueueURLFromARN(t *testing.T) {
	for _, c := range []struct{ sibling, arn, want, err string }{
		{"https://sqs.us-east-1.amazonaws.com/123456789012/vf-export-prod1-jobs", "arn:aws:sqs:us-east-1:123456789012:vf-export-prod1-dlq", "https://sqs.us-east-1.amazonaws.com/123456789012/vf-export-prod1-dlq", ""},
		{"http://127.0.0.1:9324/123456789012/export-jobs", "arn:aws:sqs:us-east-1:123456789012:export-jobs-dlq", "http://127.0.0.1:9324/123456789012/export-jobs-dlq", ""},
		{"http://127.0.0.1:9324/123456789012/export-jobs", "arn:aws:sns:us-east-1:123456789012:topic", "", "not an SQS queue ARN"},
		{"export-jobs", "arn:aws:sqs:us-east-1:123456789012:export-jobs-dlq", "", "cannot derive"},
	} {
		got, err := queueURLFromARN(c.sibling, c.arn)
		if got != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("queueURLFromARN(%q, %q) = %q, %v; want %q, %q", c.sibling, c.arn, got, err, c.want, c.err)
		}
	}
}

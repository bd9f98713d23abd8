package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

// onStack points the AWS SDK, which reads the process environment, at the local stack, and
// returns the stack. Tests using it cannot run in parallel (t.Setenv).
func onStack(t *testing.T) *stacktest.Stack {
	t.Helper()
	st := stacktest.New(t)
	for _, k := range []string{"AWS_REGION", "AWS_ENDPOINT_URL_SQS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		t.Setenv(k, st.Env[k])
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_PROFILE", "")
	return st
}

func receiveOne(t *testing.T, st *stacktest.Stack, url string) (id, body string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, err := st.SQS.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 1, WaitTimeSeconds: 1, VisibilityTimeout: 60})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 1 {
			return aws.ToString(out.Messages[0].MessageId), aws.ToString(out.Messages[0].Body)
		}
	}
	t.Fatalf("no message on %s", url)
	return "", ""
}

func TestBuildParams(t *testing.T) {
	for _, c := range []struct {
		json   string
		params []string
		want   string
		err    string
	}{
		{"", nil, `{}`, ""},
		{"", []string{"campaign_id=c1", "status=verified"}, `{"campaign_id":"c1","status":"verified"}`, ""},
		{"", []string{"note=a=b"}, `{"note":"a=b"}`, ""},
		{"", []string{`fields:=["_id","status"]`, "n:=3"}, `{"fields":["_id","status"],"n":3}`, ""},
		{`{"campaign_id":"c1","status":"x"}`, []string{"status=verified"}, `{"campaign_id":"c1","status":"verified"}`, ""},
		{"", []string{"novalue"}, "", "want key=value"},
		{"", []string{"=v"}, "", "want key=value"},
		{"", []string{"fields:=[oops"}, "", "is not JSON"},
		{`["c1"]`, nil, "", "want a JSON object"},
		{`null`, nil, "", "want a JSON object"},
		// A repeated key is named, never resolved by keeping one of the two.
		{`{"campaign_id":"a","status":"x","campaign_id":"b"}`, nil, "", `--params: field "params.campaign_id": the key appears more than once`},
		{`{"campaign_id":"a","fields":[{"x":1,"x":2}]}`, nil, "", `field "params.fields[0].x"`},
		{"", []string{"campaign_id=a", "campaign_id=b"}, "", "--param campaign_id is given twice"},
		{"", []string{"n:=1", "n=2"}, "", "--param n is given twice"},
	} {
		got, err := buildParams(c.json, c.params)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("buildParams(%q, %q) error = %v, want %q", c.json, c.params, err, c.err)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("buildParams(%q, %q) = %s, %v; want %s", c.json, c.params, got, err, c.want)
		}
	}
}

// An invalid message is refused with every problem named, and nothing is sent.
func TestEnqueueRefusesInvalidMessages(t *testing.T) {
	st := onStack(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	env := map[string]string{"EXPORT_QUEUE_URL": q.JobsURL}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"--kind is required", "registrations"}},
		{[]string{"--kind", "users"}, []string{`unknown kind "users"`, "nothing was sent"}},
		{[]string{"--kind", "registrations"}, []string{`field "params.campaign_id"`}},
		{[]string{"--kind", "registrations", "--param", "campaign_id=c1", "--param", "status=nope", "--param", "x=1"},
			[]string{`field "params.status": "nope"`, `field "params.x": unknown field`}},
		{[]string{"--kind", "registrations", "--param", "campaign_id=c1", "--format", "xml"}, []string{`field "format"`}},
		{[]string{"--kind", "registrations", "--param", "campaign_id=c1", "--format", "ndjson", "--csv-bom"}, []string{`field "csv": only with format csv`}},
		{[]string{"--kind", "registrations", "--param", "campaign_id=c1", "--export-id", "-bad id"}, []string{`field "export_id"`}},
		{[]string{"--kind", "registrations", "--param", "campaign_id=c1", "--destination", "sfmc"}, []string{`destination "sfmc" is not configured (configured: internal, tmol)`}},
	} {
		env := map[string]string{"EXPORT_QUEUE_URL": q.JobsURL, "EXPORT_DESTINATIONS": `{"tmol": {"bucket": "tmol-drop"}}`}
		code, out, errOut := runCmd(t, env, append([]string{"enqueue"}, c.args...)...)
		if code != 1 {
			t.Errorf("%v: exit %d, want 1 (stdout %q)", c.args, code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%v: stderr %q lacks %q", c.args, errOut, w)
			}
		}
	}
	if code, _, errOut := runCmd(t, nil, "enqueue", "--kind", "registrations", "--param", "campaign_id=c1"); code != 1 ||
		!strings.Contains(errOut, "EXPORT_QUEUE_URL is not set: pass --queue-url or set it") {
		t.Errorf("no queue: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, env, "enqueue", "--kind", "registrations", "--param", "campaign_id=c1", "--wait"); code != 1 ||
		!strings.Contains(errOut, "MONGO_URI is not set") {
		t.Errorf("--wait without MONGO_URI: exit %d, stderr %q", code, errOut)
	}
	if v, f := st.QueueCounts(t, q.JobsURL); v+f != 0 {
		t.Errorf("the jobs queue has %d messages; nothing should have been sent", v+f)
	}
}

var idLine = regexp.MustCompile(`(?m)^export_id: (\S+)\nmessage_id: (\S+)$`)

// A valid message is sent as the worker will decode it; the ids printed are the real ones.
func TestEnqueueSendsTheMessage(t *testing.T) {
	st := onStack(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	code, out, errOut := runCmd(t, map[string]string{"EXPORT_QUEUE_URL": q.JobsURL}, "enqueue",
		"--kind", "registrations", "--params", `{"campaign_id":"cmp-1","status":"registered"}`, "--param", "status=verified",
		"--format", "csv", "--csv-delimiter", ";", "--csv-bom", "--export-id", "ops-test-1", "--requested-by", "ops:test")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	m := idLine.FindStringSubmatch(out)
	if m == nil || m[1] != "ops-test-1" {
		t.Fatalf("stdout %q lacks the ids", out)
	}
	id, body := receiveOne(t, st, q.JobsURL)
	if id != m[2] {
		t.Errorf("message id %s printed, %s sent", m[2], id)
	}
	msg, err := jobs.Decode([]byte(body))
	if err != nil {
		t.Fatalf("the worker could not decode %s: %v", body, err)
	}
	var params map[string]string
	_ = json.Unmarshal(msg.Params, &params)
	if msg.ExportID != "ops-test-1" || msg.Kind != "registrations" || msg.CSV == nil || msg.CSV.Delimiter != ";" || !msg.CSV.BOM ||
		msg.RequestedBy != "ops:test" || params["campaign_id"] != "cmp-1" || params["status"] != "verified" {
		t.Errorf("sent %s", body)
	}

	// A generated export id, and --queue-url over the environment.
	code, out, _ = runCmd(t, map[string]string{"EXPORT_QUEUE_URL": q.JobsURL + "-nope"}, "enqueue", "--queue-url", q.JobsURL,
		"--kind", "collection_fields", "--param", "collection=venues", "--param", `fields:=["_id","city"]`, "--format", "ndjson")
	if m = idLine.FindStringSubmatch(out); code != 0 || m == nil || !regexp.MustCompile(`^collection-fields-\d{8}T\d{6}Z-[0-9a-f]{6}$`).MatchString(m[1]) {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	if _, body := receiveOne(t, st, q.JobsURL); !strings.Contains(body, `"fields":["_id","city"]`) {
		t.Errorf("sent %s", body)
	}

	// A queue that does not exist: the error says so.
	code, _, errOut = runCmd(t, map[string]string{"EXPORT_QUEUE_URL": q.JobsURL + "-nope"}, "enqueue", "--kind", "registrations", "--param", "campaign_id=c1")
	if code != 1 || !strings.Contains(errOut, "no such queue") {
		t.Errorf("missing queue: exit %d, stderr %q", code, errOut)
	}
}

func TestJudge(t *testing.T) {
	now := time.Now()
	running := ledger.Entry{ExportID: "e", Status: ledger.Running, Attempts: 1, WorkerID: "w1"}
	failedPerm := ledger.Entry{ExportID: "e", Status: ledger.Failed, Attempts: 1, Reason: "access_denied", Error: "AccessDenied"}
	retry := func(n int) ledger.Entry {
		return ledger.Entry{ExportID: "e", Status: ledger.Failed, Attempts: n, Reason: "retryable", Error: "timeout"}
	}
	succeeded := ledger.Entry{ExportID: "e", Status: ledger.Succeeded, Attempts: 1, FinishedAt: now}
	cancelled := ledger.Entry{ExportID: "e", Status: ledger.Cancelled, Attempts: 1, Reason: "cancelled", Error: "cancelled by crm at 2026-12-01T00:00:00Z: wrong campaign"}
	none := ledger.Entry{}
	for _, c := range []struct {
		name           string
		before         ledger.Entry
		existed        bool
		e              ledger.Entry
		found          bool
		max            int
		state          string
		done, failed   bool
		detailContains string
	}{
		{"not started", none, false, none, false, 5, "queued", false, false, "waiting"},
		{"running", none, false, running, true, 5, "running", false, false, "attempt 1 on w1"},
		{"succeeded", none, false, succeeded, true, 5, "succeeded", true, false, ""},
		{"permanent", none, false, failedPerm, true, 5, "failed", true, true, "access_denied"},
		{"retrying", none, false, retry(2), true, 5, "retrying", false, false, "attempt 2 failed"},
		{"receives used up", none, false, retry(5), true, 5, "failed", true, true, "failed 5 times"},
		{"receives unknown", none, false, retry(9), true, 0, "retrying", false, false, ""},
		{"released", none, false, ledger.Entry{Status: ledger.Released, Attempts: 1}, true, 5, "released", false, false, ""},
		{"split", none, false, ledger.Entry{Status: ledger.Segmented, Attempts: 1, Progress: &ledger.Progress{Segments: 4, SegmentCounts: ledger.SegmentCounts{Done: 1, Running: 2, Waiting: 1}}},
			true, 5, "running", false, false, "running as 4 segments over the fleet: 1 done, 2 running, 1 waiting"},
		{"done before", succeeded, true, succeeded, true, 5, "succeeded", true, false, "duplicate"},
		{"failed before, not picked up yet", failedPerm, true, failedPerm, true, 5, "queued", false, false, "earlier attempt"},
		{"failed before, runs again", failedPerm, true, ledger.Entry{Status: ledger.Running, Attempts: 2}, true, 5, "running", false, false, ""},
		{"failed 4 times before, fails once more", retry(4), true, retry(5), true, 5, "retrying", false, false, ""},
		{"running elsewhere before", running, true, running, true, 5, "running", false, false, ""},
		{"cancelled", none, false, cancelled, true, 5, "cancelled", true, true, "cancelled by crm"},
		{"cancelled before", cancelled, true, cancelled, true, 5, "cancelled", true, true, "new id"},
		{"cancel requested, not started", none, false, ledger.Entry{ExportID: "e", CancelRequest: &ledger.CancelRequest{RequestedBy: "crm", RequestedAt: now}}, true, 5, "queued", false, false, "acknowledged without running"},
		{"cancel requested, running", none, false, func() ledger.Entry {
			e := running
			e.CancelRequest = &ledger.CancelRequest{RequestedBy: "crm", RequestedAt: now}
			return e
		}(), true, 5, "running", false, false, "cancel requested"},
	} {
		v := judge(c.before, c.existed, c.e, c.found, c.max, now)
		if v.state != c.state || v.done != c.done || v.failed != c.failed || !strings.Contains(v.detail, c.detailContains) {
			t.Errorf("%s: %+v; want state %s done %v failed %v detail ~%q", c.name, v, c.state, c.done, c.failed, c.detailContains)
		}
	}
}

func TestProgressBar(t *testing.T) {
	for _, c := range []struct {
		state              string
		rows, total, bytes int64
		want               string
	}{
		{"running", 50, 200, 1500, "running   [######..................] 50/200 rows (25%)  1.5 kB  3s"},
		{"running", 50, 0, 10, "running   50 rows  10 B  3s"},
		{"succeeded", 200, 200, 2_500_000, "succeeded [########################] 200/200 rows (100%)  2.5 MB  3s"},
		{"running", 300, 200, 0, "running   [########################] 300/200 rows (100%)  0 B  3s"},
	} {
		if got := progressBar(c.state, c.rows, c.total, c.bytes, 3*time.Second, 24); got != c.want {
			t.Errorf("progressBar(%s, %d, %d)\n got %q\nwant %q", c.state, c.rows, c.total, got, c.want)
		}
	}
}

// ledgerDoc writes a ledger entry as the worker does.
func ledgerDoc(t *testing.T, st *stacktest.Stack, dbName string, set bson.M) {
	t.Helper()
	ctx := context.Background()
	if _, err := st.Mongo.Database(dbName).Collection(ledger.Collection).UpdateOne(ctx, bson.M{"_id": set["_id"]}, bson.M{"$set": set}, optionsUpsert()); err != nil {
		t.Fatal(err)
	}
}

// enqueue --wait follows the export through the ledger to its end, and says how it ended
// with its exit code. The worker's part is played by the test.
func TestEnqueueWaitFollowsTheLedger(t *testing.T) {
	st := onStack(t)
	db := st.NewDatabase(t)
	for _, c := range []struct {
		name  string
		play  func(t *testing.T, q stacktest.Queues, exportID, msgID string)
		code  int
		wants []string
	}{
		{"succeeds", func(t *testing.T, q stacktest.Queues, id, _ string) {
			now := time.Now().UTC()
			ledgerDoc(t, st, db.Name(), bson.M{"_id": id, "status": "running", "attempts": 1, "worker_id": "w1", "rows": 40, "bytes": 900, "started_at": now, "updated_at": now, "lease_expires": now.Add(time.Minute), "kind": "registrations", "destination": "internal"})
			time.Sleep(1500 * time.Millisecond)
			ledgerDoc(t, st, db.Name(), bson.M{"_id": id, "status": "succeeded", "rows": 120, "bytes": 2400, "bucket": "exports", "key": "exports/registrations/c1/" + id + ".csv.gz", "finished_at": time.Now().UTC()})
		}, 0, []string{"queued: waiting for a worker", "running: attempt 1 on w1: 40 rows", "succeeded: 120 rows, 2.4 kB", "s3://exports/exports/registrations/c1/"}},
		{"fails permanently", func(t *testing.T, q stacktest.Queues, id, _ string) {
			ledgerDoc(t, st, db.Name(), bson.M{"_id": id, "status": "failed", "attempts": 1, "reason": "access_denied", "error": "s3: AccessDenied"})
		}, 1, []string{"failed permanently (access_denied)", "s3: AccessDenied"}},
		{"lands in the DLQ before it starts", func(t *testing.T, q stacktest.Queues, id, msgID string) {
			_, err := st.SQS.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(q.DLQURL), MessageBody: aws.String("{}"),
				MessageAttributes: map[string]sqstypesAttr{"reason": strAttr("unknown_destination"), "error": strAttr(`field "destination": unknown destination "x"`), "original_message_id": strAttr(msgID)}})
			if err != nil {
				t.Error(err)
			}
		}, 1, []string{"the message is in the dead-letter queue (reason unknown_destination)", "unknown destination"}},
		{"gives up at --timeout", func(*testing.T, stacktest.Queues, string, string) {}, 3, []string{"gave up waiting after 4s", "export-service status"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := st.NewQueues(t, 30*time.Second, 5)
			env := map[string]string{"EXPORT_QUEUE_URL": q.JobsURL, "MONGO_URI": st.Env["MONGO_URI"], "MONGO_DATABASE": db.Name()}
			id := "wait-" + stacktest.RandomID()
			type result struct {
				code        int
				out, errOut string
			}
			done := make(chan result, 1)
			go func() {
				code, out, errOut := runCmd(t, env, "enqueue", "--kind", "registrations", "--param", "campaign_id=c1", "--export-id", id,
					"--wait", "--poll", "100ms", "--timeout", "4s")
				done <- result{code, out, errOut}
			}()
			msgID, _ := receiveOne(t, st, q.JobsURL)
			time.Sleep(300 * time.Millisecond)
			c.play(t, q, id, msgID)
			var r result
			select {
			case r = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("enqueue --wait did not return")
			}
			if r.code != c.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, c.code, r.out, r.errOut)
			}
			all := r.out + r.errOut
			for _, w := range c.wants {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
			if strings.Contains(r.out, "\r") || strings.Contains(r.out, "\x1b[") {
				t.Errorf("progress bar drawn into a non-terminal:\n%q", r.out)
			}
		})
	}
}

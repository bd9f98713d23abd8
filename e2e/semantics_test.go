package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

func regJob(t *testing.T, exportID, campaign string) string {
	return jobBody(t, jobs.Message{ExportID: exportID, Kind: "registrations", Params: []byte(fmt.Sprintf(`{"campaign_id":%q}`, campaign))})
}

func regKey(exportID, campaign string) string {
	return fmt.Sprintf("exports/registrations/%s/%s.csv.gz", campaign, exportID)
}

func (b *bundle) ledger(t *testing.T, exportID string) (ledger.Entry, bool) {
	t.Helper()
	e, err := ledger.New(b.db).Status(context.Background(), exportID)
	if err != nil {
		return e, false
	}
	return e, true
}

// noticeOf is the export's result notice of the outcome in the outbox, nil if there is none.
func noticeOf(e ledger.Entry, outcome jobs.Outcome) *ledger.Notice {
	for i := range e.Notices {
		if e.Notices[i].Outcome == outcome {
			return &e.Notices[i]
		}
	}
	return nil
}

func (b *bundle) waitLedger(t *testing.T, exportID string, within time.Duration, cond func(ledger.Entry) bool) ledger.Entry {
	t.Helper()
	var last ledger.Entry
	eventually(t, within, "ledger entry of "+exportID, func() bool {
		e, ok := b.ledger(t, exportID)
		last = e
		return ok && cond(e)
	})
	return last
}

// objects lists the keys under prefix in the exports bucket.
func (b *bundle) objects(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := b.st.S3.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(b.st.Env["EXPORT_BUCKET"]), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list objects: %v", err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// dataObjects splits the keys under prefix into data objects and manifests.
func (b *bundle) dataObjects(t *testing.T, prefix string) (data, manifests []string) {
	t.Helper()
	for _, k := range b.objects(t, prefix) {
		if strings.HasSuffix(k, ".manifest.json") {
			manifests = append(manifests, k)
		} else {
			data = append(data, k)
		}
	}
	return data, manifests
}

// unfinishedUploads lists multipart uploads under prefix that were neither completed nor aborted.
func (b *bundle) unfinishedUploads(t *testing.T, prefix string) int {
	t.Helper()
	out, err := b.st.S3.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(b.st.Env["EXPORT_BUCKET"]), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list multipart uploads: %v", err)
	}
	return len(out.Uploads)
}

type dlqMessage struct {
	Body  string
	Attrs map[string]string
}

// drainDLQ receives every message on the dead-letter queue.
func (b *bundle) drainDLQ(t *testing.T, want int, within time.Duration) []dlqMessage {
	t.Helper()
	var got []dlqMessage
	deadline := time.Now().Add(within)
	for len(got) < want && time.Now().Before(deadline) {
		out, err := b.st.SQS.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(b.queues.DLQURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageAttributeNames: []string{"All"}, VisibilityTimeout: 60,
		})
		if err != nil {
			t.Fatalf("receive from dlq: %v", err)
		}
		for _, m := range out.Messages {
			d := dlqMessage{Body: aws.ToString(m.Body), Attrs: map[string]string{}}
			for k, v := range m.MessageAttributes {
				d.Attrs[k] = aws.ToString(v.StringValue)
			}
			got = append(got, d)
		}
	}
	return got
}

func countLines(out, substr string) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// The same export sent as several messages at once, and again after it finished: one run,
// one object; the other deliveries are acknowledged as duplicates.
func TestDuplicateDeliveriesRunOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 100)
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{"WORKER_CONCURRENCY": "4"}), "worker")
	id, campaign := "dup-"+stacktest.RandomID(), fixtures.Campaigns[0]
	for range 3 {
		b.send(t, regJob(t, id, campaign))
	}
	b.waitObject(t, b.st.Env["EXPORT_BUCKET"], regKey(id, campaign), 60*time.Second)
	e := b.waitLedger(t, id, 30*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	eventually(t, 30*time.Second, "three deliveries handled", func() bool {
		mfs := p.Metrics(t)
		return stacktest.Sum(mfs, "export_jobs_total", map[string]string{"outcome": "succeeded"})+
			stacktest.Sum(mfs, "export_jobs_total", map[string]string{"outcome": "duplicate"}) == 3
	})
	// Delivered again after it finished.
	b.send(t, regJob(t, id, campaign))
	eventually(t, 30*time.Second, "late duplicate acknowledged", func() bool {
		return stacktest.Sum(p.Metrics(t), "export_jobs_total", map[string]string{"outcome": "duplicate"}) == 3
	})
	if n := countLines(p.Output(), `"message":"export started"`); n != 1 {
		t.Errorf("the export started %d times, want 1", n)
	}
	if e2, _ := b.ledger(t, id); e2.Attempts != 1 || e2.Rows != e.Rows || e.Rows == 0 {
		t.Errorf("ledger = %+v, want one attempt with rows", e2)
	}
	if data, manifests := b.dataObjects(t, "exports/registrations/"+campaign+"/"+id); len(data) != 1 || len(manifests) != 1 {
		t.Errorf("objects = %v and manifests %v, want exactly one of each", data, manifests)
	}
	eventually(t, 10*time.Second, "jobs queue empty", func() bool { v, f := b.st.QueueCounts(t, b.queues.JobsURL); return v+f == 0 })
}

// Poison messages go to the dead-letter queue after one attempt with a readable reason, and
// the worker keeps serving.
func TestPoisonMessagesGoToDLQAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	p := stacktest.Start(t, b.workerEnv(t, nil), "worker")
	poison := map[string]string{
		"not json":      "this is not JSON",
		"wrong shape":   `{"version":1,"export_id":"shape-1","kind":"registrations","params":{"campaign_id":"c"},"bucket":"evil"}`,
		"unknown kind":  `{"version":1,"export_id":"kind-1","kind":"users","params":{}}`,
		"operator":      `{"version":1,"export_id":"op-1","kind":"registrations","params":{"campaign_id":{"$ne":null}}}`,
		"empty message": " ",
	}
	wantReason := map[string]string{"this is not JSON": "malformed_message", poison["wrong shape"]: "malformed_message",
		poison["unknown kind"]: "unknown_kind", poison["operator"]: "invalid_params", " ": "malformed_message"}
	for _, body := range poison {
		b.send(t, body)
	}
	good := "good-" + stacktest.RandomID()
	b.send(t, regJob(t, good, fixtures.Campaigns[2]))

	got := b.drainDLQ(t, len(poison), 60*time.Second)
	if len(got) != len(poison) {
		t.Fatalf("dead-letter queue has %d messages, want %d", len(got), len(poison))
	}
	for _, m := range got {
		if m.Attrs["reason"] != wantReason[m.Body] {
			t.Errorf("message %q: reason %q, want %q (error %q)", m.Body, m.Attrs["reason"], wantReason[m.Body], m.Attrs["error"])
		}
		if m.Attrs["receive_count"] != "1" || m.Attrs["error"] == "" {
			t.Errorf("message %q: attributes %v, want receive_count 1 and an error", m.Body, m.Attrs)
		}
	}
	for _, m := range got {
		if strings.Contains(m.Body, "unknown kind") || m.Attrs["reason"] == "unknown_kind" {
			if m.Attrs["export_id"] != "kind-1" || !strings.Contains(m.Attrs["error"], `unknown kind "users"`) {
				t.Errorf("unknown kind: attributes %v", m.Attrs)
			}
		}
	}
	b.waitObject(t, b.st.Env["EXPORT_BUCKET"], regKey(good, fixtures.Campaigns[2]), 30*time.Second)
	eventually(t, 10*time.Second, "dlq counter", func() bool {
		return stacktest.Sum(p.Metrics(t), "export_dlq_messages_total", nil) == float64(len(poison))
	})
	eventually(t, 10*time.Second, "jobs queue empty", func() bool { v, f := b.st.QueueCounts(t, b.queues.JobsURL); return v+f == 0 })
}

// proxy forwards TCP connections to target while it is up, and refuses them (closing them at
// once) while it is down: a dependency outage without stopping the shared server.
type proxy struct {
	ln     net.Listener
	target string
	up     atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	p.up.Store(true)
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.up.Load() {
				c.Close()
				continue
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *proxy) serve(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, c, u)
	p.mu.Unlock()
	go func() { _, _ = io.Copy(u, c); u.Close() }()
	_, _ = io.Copy(c, u)
	c.Close()
}

// cut closes every open connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

func hostOf(url string) string {
	return strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://")
}

// startWithS3Down starts a worker whose S3 is reached through a proxy that refuses every
// connection until the test sets it up, with the given retry backoff and one SDK attempt per
// call (so each delivery fails fast).
func (b *bundle) startWithS3Down(t *testing.T, retryBase, retryMax string) *proxy {
	t.Helper()
	s3p := newProxy(t, hostOf(b.st.Env["AWS_ENDPOINT_URL_S3"]))
	s3p.up.Store(false)
	stacktest.Start(t, b.workerEnv(t, map[string]string{
		"AWS_ENDPOINT_URL_S3": s3p.URL(), "RETRY_BASE": retryBase, "RETRY_MAX": retryMax, "AWS_MAX_ATTEMPTS": "1",
	}), "worker")
	return s3p
}

// S3 down during an export: the failure is retryable, the message comes back with a backoff,
// and once S3 is back the export succeeds.
func TestRetryableFailureRetriedThenSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t, 50)
	s3p := b.startWithS3Down(t, "2s", "3s")
	id, campaign := "retry-"+stacktest.RandomID(), fixtures.Campaigns[3]
	b.send(t, regJob(t, id, campaign))
	b.waitLedger(t, id, 60*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Failed && e.Reason == "retryable" })
	s3p.up.Store(true)
	b.waitObject(t, b.st.Env["EXPORT_BUCKET"], regKey(id, campaign), 60*time.Second)
	e := b.waitLedger(t, id, 10*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	if e.Attempts < 2 {
		t.Errorf("attempts = %d, want at least 2", e.Attempts)
	}
	if got := b.drainDLQ(t, 1, 2*time.Second); len(got) != 0 {
		t.Errorf("dead-letter queue has %v", got)
	}
}

// A failure that never recovers ends in the dead-letter queue through the queue's redrive
// policy after maxReceiveCount attempts.
func TestRetryableFailureEndsInDLQAfterMaxReceives(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	b.startWithS3Down(t, "1s", "1s")
	id := "never-" + stacktest.RandomID()
	b.send(t, regJob(t, id, fixtures.Campaigns[0]))
	got := b.drainDLQ(t, 1, 90*time.Second)
	if len(got) != 1 || !strings.Contains(got[0].Body, id) {
		t.Fatalf("dead-letter queue = %v, want the job", got)
	}
	e, _ := b.ledger(t, id)
	if e.Attempts != 5 || e.Status != ledger.Failed {
		t.Errorf("ledger = %d attempts, status %s; want 5 attempts (maxReceiveCount), failed", e.Attempts, e.Status)
	}
}

// A job running three times longer than the visibility timeout keeps its lease: a second
// worker on the same queue never runs it.
func TestLongJobKeepsItsLease(t *testing.T) {
	t.Parallel()
	b := setup(t, 40)
	env := map[string]string{"VISIBILITY_TIMEOUT": "3s", "EXPORT_FAULT_ROW_DELAY": "250ms"} // 40 rows: ~10s
	p1 := stacktest.Start(t, b.workerEnv(t, env), "worker")
	p2 := stacktest.Start(t, b.workerEnv(t, env), "worker")
	id, campaign := "long-"+stacktest.RandomID(), fixtures.Campaigns[1]
	b.send(t, regJob(t, id, campaign))
	b.waitObject(t, b.st.Env["EXPORT_BUCKET"], regKey(id, campaign), 60*time.Second)
	e := b.waitLedger(t, id, 10*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	if d := e.FinishedAt.Sub(e.StartedAt); d < 9*time.Second {
		t.Fatalf("the export took %s; the test needs it to outlive the 3s visibility timeout three times", d)
	}
	started := countLines(p1.Output(), `"message":"export started"`) + countLines(p2.Output(), `"message":"export started"`)
	if started != 1 || e.Attempts != 1 {
		t.Errorf("export started %d times, %d ledger attempts; want 1", started, e.Attempts)
	}
	eventually(t, 10*time.Second, "jobs queue empty", func() bool { v, f := b.st.QueueCounts(t, b.queues.JobsURL); return v+f == 0 })
}

// SIGTERM with a long drain deadline: the job in flight finishes, /heartbeat says 503 while
// draining, the process exits 0.
func TestSIGTERMLetsJobFinish(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{"DRAIN_TIMEOUT": "60s", "EXPORT_FAULT_ROW_DELAY": "200ms"}), "worker")
	id, campaign := "drain-"+stacktest.RandomID(), fixtures.Campaigns[0]
	b.send(t, regJob(t, id, campaign))
	b.waitLedger(t, id, 30*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Running })
	p.Signal(syscall.SIGTERM)
	eventually(t, 5*time.Second, "heartbeat 503 while draining", func() bool {
		code, body := p.Get("/heartbeat")
		return code == http.StatusServiceUnavailable && strings.Contains(body, `"draining":true`)
	})
	if code := p.Wait(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	b.waitObject(t, b.st.Env["EXPORT_BUCKET"], regKey(id, campaign), time.Second)
	if e, _ := b.ledger(t, id); e.Status != ledger.Succeeded {
		t.Errorf("ledger status %s, want succeeded", e.Status)
	}
	if v, f := b.st.QueueCounts(t, b.queues.JobsURL); v+f != 0 {
		t.Errorf("jobs queue has %d messages", v+f)
	}
}

// SIGTERM with a short drain deadline: the job is canceled, its message is back on the queue
// at once, the ledger says why, nothing is written, the process exits 0.
func TestSIGTERMShortDeadlineReleasesMessage(t *testing.T) {
	t.Parallel()
	b := setup(t, 100)
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{"DRAIN_TIMEOUT": "1s", "EXPORT_FAULT_ROW_DELAY": "300ms", "VISIBILITY_TIMEOUT": "60s"}), "worker")
	id, campaign := "release-"+stacktest.RandomID(), fixtures.Campaigns[2]
	b.send(t, regJob(t, id, campaign))
	b.waitLedger(t, id, 30*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Running })
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	// Visible again at once (well before the 60s lease it was received with; 10s leaves room
	// for a loaded machine).
	eventually(t, 10*time.Second, "message visible again", func() bool { v, _ := b.st.QueueCounts(t, b.queues.JobsURL); return v == 1 })
	e, _ := b.ledger(t, id)
	if e.Status != ledger.Released || e.Reason != "shutdown" || !strings.Contains(e.Error, "shutdown") {
		t.Errorf("ledger = status %q reason %q error %q, want released by shutdown", e.Status, e.Reason, e.Error)
	}
	if keys := b.objects(t, "exports/registrations/"+campaign+"/"+id); len(keys) != 0 {
		t.Errorf("objects written: %v", keys)
	}
	if n := b.unfinishedUploads(t, "exports/registrations/"+campaign+"/"+id); n != 0 {
		t.Errorf("%d unfinished multipart uploads left", n)
	}
}

// A worker killed with SIGKILL in the middle of an export: after the visibility timeout
// another worker completes it; exactly one complete object, no unfinished multipart upload.
func TestSIGKILLMidExportIsCompletedByAnotherWorker(t *testing.T) {
	t.Parallel()
	b := setup(t, 60)
	env := map[string]string{"VISIBILITY_TIMEOUT": "4s", "HANDOVER_DELAY": "1s"}
	slow := b.workerEnv(t, env)
	slow["EXPORT_FAULT_ROW_DELAY"] = "100ms"
	p1 := stacktest.Start(t, slow, "worker")
	id, campaign := "kill-"+stacktest.RandomID(), fixtures.Campaigns[3]
	b.send(t, regJob(t, id, campaign))
	b.waitLedger(t, id, 30*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Running && e.Rows > 5 })
	p1.Signal(syscall.SIGKILL)
	p1.Wait(10 * time.Second)
	// An export this small never reaches its first 5 MiB part, so the killed worker had no
	// multipart upload open yet; leave one as a worker killed later in a big export would.
	key := regKey(id, campaign)
	if _, err := b.st.S3.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{
		Bucket: aws.String(b.st.Env["EXPORT_BUCKET"]), Key: aws.String(key)}); err != nil {
		t.Fatalf("create the killed worker's multipart upload: %v", err)
	}

	p2 := stacktest.Start(t, b.workerEnv(t, env), "worker")
	b.waitObject(t, b.st.Env["EXPORT_BUCKET"], regKey(id, campaign), 60*time.Second)
	e := b.waitLedger(t, id, 10*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	if e.Attempts != 2 {
		t.Errorf("attempts = %d, want 2 (the killed one and the one that finished)", e.Attempts)
	}
	recs := gunzipCSV(t, b.waitObject(t, b.st.Env["EXPORT_BUCKET"], regKey(id, campaign), time.Second))
	if int64(len(recs)-1) != e.Rows || e.Rows == 0 {
		t.Errorf("object has %d rows, ledger %d", len(recs)-1, e.Rows)
	}
	if data, manifests := b.dataObjects(t, "exports/registrations/"+campaign+"/"+id); len(data) != 1 || len(manifests) != 1 {
		t.Errorf("objects = %v and manifests %v, want exactly one of each", data, manifests)
	}
	if n := b.unfinishedUploads(t, "exports/registrations/"+campaign+"/"+id); n != 0 {
		t.Errorf("%d unfinished multipart uploads left", n)
	}
	// The success line is written right after the ledger records the outcome.
	eventually(t, 10*time.Second, "the second attempt reports aborting the earlier upload", func() bool {
		return strings.Contains(p2.Output(), `"aborted_uploads":1`)
	})
	eventually(t, 20*time.Second, "jobs queue empty", func() bool { v, f := b.st.QueueCounts(t, b.queues.JobsURL); return v+f == 0 })
}

// An export longer than the message lease limit (SQS: 12h; here 4s) hands its message over
// and goes on under its ledger lease; the copies hop until it finishes; it runs once.
func TestExportOutlivingMessageLeaseIsHandedOver(t *testing.T) {
	t.Parallel()
	b := setup(t, 50)
	env := map[string]string{"VISIBILITY_TIMEOUT": "3s", "MAX_MESSAGE_LEASE": "4s", "HANDOVER_DELAY": "1s", "EXPORT_FAULT_ROW_DELAY": "200ms"} // ~10s
	p1 := stacktest.Start(t, b.workerEnv(t, env), "worker")
	p2 := stacktest.Start(t, b.workerEnv(t, env), "worker")
	id, campaign := "handover-"+stacktest.RandomID(), fixtures.Campaigns[0]
	b.send(t, regJob(t, id, campaign))
	b.waitObject(t, b.st.Env["EXPORT_BUCKET"], regKey(id, campaign), 60*time.Second)
	e := b.waitLedger(t, id, 10*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	out := p1.Output() + p2.Output()
	if e.Attempts != 1 || countLines(out, `"message":"export started"`) != 1 {
		t.Errorf("attempts %d, started %d times; want 1", e.Attempts, countLines(out, `"message":"export started"`))
	}
	if countLines(out, "message handed over") < 1 {
		t.Errorf("no handover logged:\n%s", out)
	}
	eventually(t, 20*time.Second, "the last copy acknowledged and the queue empty", func() bool {
		v, f := b.st.QueueCounts(t, b.queues.JobsURL)
		return v+f == 0
	})
	if got := b.drainDLQ(t, 1, time.Second); len(got) != 0 {
		t.Errorf("dead-letter queue has %v", got)
	}
}

// A copy of a running export's message that arrives while the export runs hops on without
// writing the ledger entry: only the owner writes a running entry (on FerretDB a concurrent
// write could undo the outcome the owner records meanwhile: CI saw a succeeded export put back
// to "running" and adopted by the next copy).
func TestAHopDoesNotWriteTheRunningExportsEntry(t *testing.T) {
	t.Parallel()
	b := setup(t, 40)
	// The owner hands its message over at once; the copy arrives and hops while it runs (~8s).
	env := map[string]string{"VISIBILITY_TIMEOUT": "3s", "MAX_MESSAGE_LEASE": "3s", "HANDOVER_DELAY": "1s", "EXPORT_FAULT_ROW_DELAY": "200ms"}
	p := stacktest.Start(t, b.workerEnv(t, env), "worker")
	id, campaign := "hop-"+stacktest.RandomID(), fixtures.Campaigns[1]
	b.send(t, regJob(t, id, campaign))
	// The owner recorded its copy as the carrier; that copy hops, and the entry must still
	// name it (before: the hop recorded its own copy, a non-owner write).
	var hopped string
	eventually(t, 30*time.Second, "the handover copy hops", func() bool {
		for _, l := range logLines(t, p.Output()) {
			if l.str("message") == "message re-sent delayed: its export is running elsewhere" {
				hopped = l.str("message_id")
			}
		}
		return hopped != ""
	})
	if after, _ := b.ledger(t, id); after.Status == ledger.Running && after.MessageID != hopped {
		t.Errorf("the hop wrote the running export's entry: message %s, want the hopped copy %s", after.MessageID, hopped)
	}
	e := b.waitLedger(t, id, 30*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	if e.Attempts != 1 {
		t.Errorf("attempts %d, want 1", e.Attempts)
	}
	eventually(t, 30*time.Second, "the copy acknowledged and the queue empty", func() bool {
		v, f := b.st.QueueCounts(t, b.queues.JobsURL)
		return v+f == 0
	})
}

// Load: 500 small exports enqueued at once through 2 worker processes: each has exactly one
// object and one succeeded ledger entry, nothing in the dead-letter queue.
func TestLoad500Exports(t *testing.T) {
	if testing.Short() {
		t.Skip("load run")
	}
	t.Parallel()
	b := setup(t, 5)
	env := map[string]string{"WORKER_CONCURRENCY": "8", "GZIP_LEVEL": "1"}
	stacktest.Start(t, b.workerEnv(t, env), "worker")
	stacktest.Start(t, b.workerEnv(t, env), "worker")
	run := stacktest.RandomID()
	const n = 500
	start := time.Now()
	ctx := context.Background()
	for i := 0; i < n; i += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for j := i; j < i+10; j++ {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{
				Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(regJob(t, fmt.Sprintf("load-%s-%03d", run, j), fixtures.Campaigns[j%len(fixtures.Campaigns)])),
			})
		}
		if _, err := b.st.SQS.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(b.queues.JobsURL), Entries: entries}); err != nil {
			t.Fatalf("send batch: %v", err)
		}
	}
	exports := b.db.Collection(ledger.Collection)
	eventually(t, 5*time.Minute, "500 succeeded ledger entries", func() bool {
		c, err := exports.CountDocuments(ctx, map[string]any{"status": ledger.Succeeded})
		return err == nil && c == n
	})
	took := time.Since(start)
	t.Logf("load: %d exports through 2 workers in %s: %.1f jobs/s", n, took.Round(time.Millisecond), n/took.Seconds())
	var keys int
	for _, c := range fixtures.Campaigns {
		data, _ := b.dataObjects(t, "exports/registrations/"+c+"/load-"+run)
		keys += len(data)
	}
	if keys != n {
		t.Errorf("%d objects, want %d", keys, n)
	}
	if c, _ := exports.CountDocuments(ctx, map[string]any{"attempts": map[string]any{"$ne": 1}}); c != 0 {
		t.Errorf("%d exports ran more than once", c)
	}
	if got := b.drainDLQ(t, 1, time.Second); len(got) != 0 {
		t.Errorf("dead-letter queue has %d messages", len(got))
	}
}

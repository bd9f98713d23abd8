package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

// waitOutput waits until the process's output has n lines containing substr.
func waitOutput(t *testing.T, p *stacktest.Proc, substr string, n int, within time.Duration) {
	t.Helper()
	eventually(t, within, "output line "+substr, func() bool { return countLines(p.Output(), substr) >= n })
}

// Shutdowns that release a long export's message, more of them than the queue's
// maxReceiveCount, do not send it to the dead-letter queue: a release sends a copy (its
// receive count starts again) and is not a failure in the ledger. The export completes.
func TestReleasesAtShutdownDoNotUseUpReceives(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	b := setup(t, 40)
	b.queues = st.NewQueues(t, 30*time.Second, 2) // a DLQ after 2 receives
	id, campaign := "deploys-"+stacktest.RandomID(), fixtures.Campaigns[1]
	b.send(t, regJob(t, id, campaign))
	slow := map[string]string{"DRAIN_TIMEOUT": "0s", "EXPORT_FAULT_ROW_DELAY": "100ms", "VISIBILITY_TIMEOUT": "60s"}
	for i := range 3 { // three deploys in the middle of the export
		p := stacktest.Start(t, b.workerEnv(t, slow), "worker")
		b.waitLedger(t, id, 30*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Running && e.Attempts == i+1 })
		p.Signal(syscall.SIGTERM)
		if code := p.Wait(20 * time.Second); code != 0 {
			t.Fatalf("deploy %d: exit code %d", i+1, code)
		}
	}
	stacktest.Start(t, b.workerEnv(t, map[string]string{"VISIBILITY_TIMEOUT": "60s"}), "worker")
	b.waitObject(t, b.st.Env["EXPORT_BUCKET"], regKey(id, campaign), 60*time.Second)
	e := b.waitLedger(t, id, 10*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	if e.Attempts != 4 || e.Failures != 0 {
		t.Errorf("ledger: %d attempts, %d failures; want 4 attempts, 0 failures", e.Attempts, e.Failures)
	}
	if got := b.drainDLQ(t, 1, 2*time.Second); len(got) != 0 {
		t.Errorf("dead-letter queue = %v, want empty", got)
	}
}

// A results queue that does not work never fails or re-runs a finished export: the export
// succeeds once, its notice waits in the ledger's outbox and is delivered once the queue works.
func TestBrokenResultsQueueNeverRerunsTheExport(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	name := "results-" + stacktest.RandomID()
	resultsURL := strings.TrimSuffix(b.st.Env["AWS_ENDPOINT_URL_SQS"], "/") + "/123456789012/" + name // not created yet
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{"EXPORT_RESULTS_QUEUE_URL": resultsURL, "RETRY_BASE": "1s", "RETRY_MAX": "2s"}), "worker")
	id, campaign := "notice-"+stacktest.RandomID(), fixtures.Campaigns[0]
	b.send(t, regJob(t, id, campaign))
	b.waitObject(t, b.st.Env["EXPORT_BUCKET"], regKey(id, campaign), 60*time.Second)
	e := b.waitLedger(t, id, 30*time.Second, func(e ledger.Entry) bool {
		n := noticeOf(e, jobs.OutcomeSucceeded)
		return e.Status == ledger.Succeeded && n != nil && n.Attempts >= 3
	})
	if n := noticeOf(e, jobs.OutcomeSucceeded); !n.Pending || n.Error == "" {
		t.Errorf("notice = %+v, want pending with the send's error", n)
	}
	eventually(t, 10*time.Second, "message deleted", func() bool { v, f := b.st.QueueCounts(t, b.queues.JobsURL); return v+f == 0 })

	q, err := b.st.SQS.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = b.st.SQS.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl}) })
	if aws.ToString(q.QueueUrl) != resultsURL {
		t.Fatalf("results queue URL %s, the worker was given %s", aws.ToString(q.QueueUrl), resultsURL)
	}
	notice := b.receiveNotices(t, resultsURL, 30*time.Second, func(ns []receivedNotice) bool { return len(ns) > 0 })[0].Notice
	e = b.waitLedger(t, id, 10*time.Second, func(e ledger.Entry) bool {
		n := noticeOf(e, jobs.OutcomeSucceeded)
		return n != nil && !n.Pending
	})
	if notice.ExportID != id || notice.Outcome != jobs.OutcomeSucceeded || notice.Manifest == nil || notice.Rows != e.Rows || notice.SHA256 != e.SHA256 {
		t.Errorf("notice = %+v, ledger rows %d sha %s", notice, e.Rows, e.SHA256)
	}
	if started := countLines(p.Output(), `"message":"export started"`); started != 1 || e.Attempts != 1 {
		t.Errorf("export started %d times, %d ledger attempts; want 1", started, e.Attempts)
	}
	if got := b.drainDLQ(t, 1, time.Second); len(got) != 0 {
		t.Errorf("dead-letter queue = %v", got)
	}
}

// Failures after a handover (when the failed attempt has no message to act on) end in the
// dead-letter queue after MAX_ATTEMPTS like any other, instead of re-running every
// HANDOVER_DELAY without end.
func TestFailuresAfterAHandoverEndInTheDLQ(t *testing.T) {
	t.Parallel()
	b := setup(t, 30)
	s3p := b.st.Proxy(t, stacktest.S3)
	env := stacktest.ProxyEnv(map[string]string{"VISIBILITY_TIMEOUT": "3s", "MAX_MESSAGE_LEASE": "4s", "HANDOVER_DELAY": "1s",
		"EXPORT_FAULT_ROW_DELAY": "200ms", "MAX_ATTEMPTS": "2", "RETRY_BASE": "1s", "RETRY_MAX": "1s", "AWS_MAX_ATTEMPTS": "1"}, s3p)
	p := stacktest.Start(t, b.workerEnv(t, env), "worker")
	id, campaign := "handfail-"+stacktest.RandomID(), fixtures.Campaigns[2]
	b.send(t, regJob(t, id, campaign))
	// Each run: S3 works until the message is handed over, then fails the upload at the end.
	for i := 1; i <= 2; i++ {
		waitOutput(t, p, "message handed over", i, 60*time.Second)
		s3p.Cut(t)
		waitOutput(t, p, `"message":"export failed"`, i, 60*time.Second)
		s3p.Restore(t)
	}
	got := b.drainDLQ(t, 1, 60*time.Second)
	if len(got) != 1 || !strings.Contains(got[0].Body, id) || got[0].Attrs["reason"] != string(jobs.ReasonMaxAttempts) {
		t.Fatalf("dead-letter queue = %+v, want the job with reason max_attempts", got)
	}
	time.Sleep(3 * time.Second) // room for a run that should not happen
	if n := countLines(p.Output(), `"message":"export started"`); n != 2 {
		t.Errorf("export started %d times, want 2 (MAX_ATTEMPTS)", n)
	}
	e, _ := b.ledger(t, id)
	if e.Status != ledger.Failed || e.Failures != 2 || !e.DeadLettered {
		t.Errorf("ledger = %s, %d failures, dead-lettered %v", e.Status, e.Failures, e.DeadLettered)
	}
}

// An export whose object and manifest are complete but whose success never reached the ledger
// (its worker died or lost MongoDB right after the manifest) is not run again when its message
// comes back: the next attempt finds the manifest and adopts the export.
func TestCompleteExportWhoseSuccessWasLostIsAdopted(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{"VISIBILITY_TIMEOUT": "5s"}), "worker")
	id, campaign := "adopt-"+stacktest.RandomID(), fixtures.Campaigns[3]
	body := regJob(t, id, campaign)
	b.send(t, body)
	key := regKey(id, campaign)
	b.waitObject(t, b.st.Env["EXPORT_BUCKET"], key, 60*time.Second)
	done := b.waitLedger(t, id, 10*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	before := b.lastModified(t, key)
	// As if Finish(succeeded) had been lost: the entry still says running, its lease expired.
	if _, err := b.db.Collection(ledger.Collection).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: ledger.Running}, {Key: "lease_expires", Value: time.Now().Add(-time.Second)}, {Key: "rows", Value: 0}}}}); err != nil {
		t.Fatal(err)
	}
	b.send(t, body) // the message comes back
	e := b.waitLedger(t, id, 30*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	if e.Rows != done.Rows || e.SHA256 != done.SHA256 {
		t.Errorf("adopted entry: rows %d sha %s; the export had %d, %s", e.Rows, e.SHA256, done.Rows, done.SHA256)
	}
	if n := countLines(p.Output(), `"message":"export started"`); n != 1 {
		t.Errorf("export started %d times, want 1", n)
	}
	if countLines(p.Output(), "adopted") != 1 {
		t.Errorf("no adoption logged:\n%s", p.Output())
	}
	if after := b.lastModified(t, key); !after.Equal(before) {
		t.Errorf("the object was written again (%s, first %s)", after, before)
	}
}

func (b *bundle) lastModified(t *testing.T, key string) time.Time {
	t.Helper()
	out, err := b.st.S3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(b.st.Env["EXPORT_BUCKET"]), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("head %s: %v", key, err)
	}
	return aws.ToTime(out.LastModified)
}

// An attempt that lost the export to another attempt (whose claim it has not noticed yet:
// its next ledger renewal is seconds away) commits nothing: the ledger fence is checked right
// before the object would be completed.
func TestTakenOverAttemptCommitsNoObject(t *testing.T) {
	t.Parallel()
	b := setup(t, 30)
	// Renewals every 10s; the export takes ~3s.
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{"VISIBILITY_TIMEOUT": "60s", "EXPORT_FAULT_ROW_DELAY": "100ms", "MAX_ATTEMPTS": "1"}), "worker")
	id, campaign := "fenced-"+stacktest.RandomID(), fixtures.Campaigns[0]
	b.send(t, regJob(t, id, campaign))
	b.waitLedger(t, id, 30*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Running })
	// Another attempt claims the export (as one whose clock runs ahead would).
	if _, err := b.db.Collection(ledger.Collection).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "token", Value: "another-attempt"}, {Key: "worker_id", Value: "elsewhere"}}}}); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, p, "another attempt owns the export", 1, 30*time.Second)
	if keys := b.objects(t, "exports/registrations/"+campaign+"/"+id); len(keys) != 0 {
		t.Errorf("the taken-over attempt wrote %v", keys)
	}
	if n := b.unfinishedUploads(t, "exports/registrations/"+campaign+"/"+id); n != 0 {
		t.Errorf("%d unfinished uploads left", n)
	}
	if e, _ := b.ledger(t, id); e.Token != "another-attempt" || e.Status != ledger.Running {
		t.Errorf("the taken-over attempt changed the ledger: %s %s", e.Status, e.Token)
	}
}

// An S3 that accepts connections and never answers (a stalled server, a half-open path) fails
// the attempt at its deadline, and the export with a retryable error, instead of hanging the
// job (and its slot, and its renewed lease) forever.
func TestStalledS3FailsTheJobInsteadOfHanging(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	s3p := b.st.Proxy(t, stacktest.S3)
	s3p.Inject(t, "timeout", "upstream", toxiproxy.Attributes{"timeout": 0})
	p := stacktest.Start(t, b.workerEnv(t, stacktest.ProxyEnv(map[string]string{"AWS_MAX_ATTEMPTS": "1", "RETRY_BASE": "60s", "RETRY_MAX": "60s"}, s3p)), "worker")
	id, campaign := "stall-"+stacktest.RandomID(), fixtures.Campaigns[1]
	b.send(t, regJob(t, id, campaign))
	// 20s per attempt by default; a hang shows as no outcome at all.
	waitOutput(t, p, `"message":"retryable failure: message will come back"`, 1, 90*time.Second)
	e, _ := b.ledger(t, id)
	if e.Status != ledger.Failed || e.Reason != "retryable" {
		t.Errorf("ledger = %s %q, want failed, retryable", e.Status, e.Reason)
	}
}

// An attempt that runs past MAX_EXPORT_DURATION (a day less than the bucket's rule that
// aborts unfinished uploads) fails permanently instead of running on while the rule aborts
// its upload under it; an object without a manifest left at its key is removed.
func TestExportPastItsMaximumDurationFails(t *testing.T) {
	t.Parallel()
	b := setup(t, 30)
	stacktest.Start(t, b.workerEnv(t, map[string]string{"MAX_EXPORT_DURATION": "2s", "EXPORT_FAULT_ROW_DELAY": "200ms"}), "worker") // ~6s
	id, campaign := "overtime-"+stacktest.RandomID(), fixtures.Campaigns[0]
	// What an earlier attempt that completed the object and died before its manifest leaves:
	// the export failing for good must not leave it for a reader to take as its result.
	if _, err := b.st.S3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(b.st.Env["EXPORT_BUCKET"]),
		Key: aws.String(regKey(id, campaign)), Body: strings.NewReader("left by a dead attempt")}); err != nil {
		t.Fatal(err)
	}
	b.send(t, regJob(t, id, campaign))
	got := b.drainDLQ(t, 1, 60*time.Second)
	if len(got) != 1 || got[0].Attrs["reason"] != "timeout" {
		t.Fatalf("dead-letter queue = %+v, want the job with reason timeout", got)
	}
	if keys := b.objects(t, "exports/registrations/"+campaign+"/"+id); len(keys) != 0 {
		t.Errorf("objects written: %v", keys)
	}
	if n := b.unfinishedUploads(t, "exports/registrations/"+campaign+"/"+id); n != 0 {
		t.Errorf("%d unfinished uploads left", n)
	}
}

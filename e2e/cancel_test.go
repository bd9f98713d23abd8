package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

// cancelMessage is the body of a cancel message.
func cancelMessage(t *testing.T, exportID, by, reason string) string {
	t.Helper()
	b, err := jobs.CancelMessage{ExportID: exportID, RequestedBy: by, Reason: reason}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkCancelled checks what a cancelled export leaves: the ledger says cancelled (by whom and
// why), no object, no manifest and no unfinished upload at its key, no dead-letter message,
// nothing left on the jobs queue, and one cancelled notice valid to the schema.
func (b *bundle) checkCancelled(t *testing.T, results, id, key string, attempts int, by, reason string) ledger.Entry {
	t.Helper()
	e := b.waitLedger(t, id, 60*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Cancelled })
	if e.Reason != jobs.ReasonCancelled || !strings.Contains(e.Error, by) || !strings.Contains(e.Error, reason) || e.Checkpoint != nil || e.Attempts != attempts {
		t.Errorf("ledger: reason %q, error %q, checkpoint %+v, attempts %d; want cancelled by %s (%s) after %d attempt(s), no checkpoint", e.Reason, e.Error, e.Checkpoint, e.Attempts, by, reason, attempts)
	}
	if data, manifests := b.dataObjects(t, key); len(data)+len(manifests) != 0 {
		t.Errorf("a cancelled export left objects %v and manifests %v", data, manifests)
	}
	if n := b.unfinishedUploads(t, key); n != 0 {
		t.Errorf("a cancelled export left %d unfinished multipart upload(s)", n)
	}
	eventually(t, 30*time.Second, "the jobs queue empty", func() bool { v, f := b.st.QueueCounts(t, b.queues.JobsURL); return v+f == 0 })
	if dlq := b.drainDLQ(t, 1, 2*time.Second); len(dlq) != 0 {
		t.Errorf("dead-letter queue: %v", dlq)
	}
	got := b.receiveNotices(t, results, 30*time.Second, func(ns []receivedNotice) bool { return len(ns) > 0 })
	got = append(got, b.receiveNotices(t, results, 3*time.Second, nil)...)
	if len(got) != 1 {
		t.Fatalf("%d notices, want one: %v", len(got), got)
	}
	n := got[0].Notice
	if n.Outcome != jobs.OutcomeCancelled || n.ExportID != id || n.Reason != jobs.ReasonCancelled || n.Error != e.Error || n.Attempts != attempts || n.Manifest != nil {
		t.Errorf("notice %+v, want cancelled with the ledger's error after %d attempt(s)", n, attempts)
	}
	return e
}

// A queued export that is cancelled (with the cancel command) is acknowledged without running
// when a worker receives it; status shows the request before and the cancel after.
func TestCancelOfAQueuedExport(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	results := b.newQueue(t, "results")
	campaign := fixtures.Campaigns[0]
	id := "cancel-queued-" + stacktest.RandomID()
	b.send(t, regJob(t, id, campaign))

	env := b.cliEnv()
	code, out, errOut := runCLI(t, env, "cancel", id, "--requested-by", "ops-e2e", "--reason", "wrong campaign")
	if code != 0 || !strings.Contains(out, "has not started") {
		t.Fatalf("cancel: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, env, "status", id)
	if code != 0 || !strings.Contains(out, "cancel requested") || !strings.Contains(out, "wrong campaign") {
		t.Errorf("status before a worker saw it: exit %d\n%s%s", code, out, errOut)
	}

	p := stacktest.Start(t, b.workerEnv(t, map[string]string{"EXPORT_RESULTS_QUEUE_URL": results}), "worker")
	b.checkCancelled(t, results, id, regKey(id, campaign), 0, "ops-e2e", "wrong campaign")
	if n := countLines(p.Output(), `"message":"export started"`); n != 0 {
		t.Errorf("the cancelled export started %d time(s)", n)
	}
	code, out, errOut = runCLI(t, env, "status", id)
	if code != 0 || !strings.Contains(out, "status       cancelled by ops-e2e") || !strings.Contains(out, "no object or manifest was written") || !strings.Contains(out, "notice       cancelled") {
		t.Errorf("status after: exit %d\n%s%s", code, out, errOut)
	}
	// Cancelling it again says so, and changes nothing.
	if code, out, errOut = runCLI(t, env, "cancel", id); code != 0 || !strings.Contains(out, "cancelled already") {
		t.Errorf("cancel again: exit %d\n%s%s", code, out, errOut)
	}
	if n := stacktest.Sum(p.Metrics(t), "export_jobs_total", map[string]string{"outcome": "cancelled"}); n != 1 {
		t.Errorf("export_jobs_total{outcome=cancelled} = %v, want 1", n)
	}
}

// A running multipart export that gets a cancel message stops within the ledger renewal
// interval: its upload is aborted, no object and no manifest are written, the ledger says
// cancelled and the results queue gets the cancelled notice.
func TestCancelOfARunningExportStopsWithinTheRenewalInterval(t *testing.T) {
	t.Parallel()
	const rows = 8000
	b, campaign := newNoisyBundle(t, "cmp-cancel-", rows, 30*time.Second)
	results := b.newQueue(t, "results")
	// 9s lease: renewed every 3s. 3ms a row: 24s for the export, its first 5 MiB part after
	// about 3,400 rows.
	const renewal = 3 * time.Second
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{"EXPORT_RESULTS_QUEUE_URL": results, "VISIBILITY_TIMEOUT": "9s",
		"S3_PART_SIZE_MB": "5", "EXPORT_FAULT_ROW_DELAY": "3ms", "WORKER_CONCURRENCY": "2"}), "worker")
	id := "cancel-running-" + stacktest.RandomID()
	key := resumeKey(id, campaign)
	b.send(t, resumeJob(t, id, campaign))
	cp := b.waitCheckpoint(t, id, 3*time.Minute, "the first part", func(*jobs.Checkpoint) bool { return true })
	if n := b.unfinishedUploads(t, key); n != 1 {
		t.Fatalf("%d uploads in progress at the first checkpoint, want 1", n)
	}

	sent := time.Now()
	b.send(t, cancelMessage(t, id, "crm-e2e", "partner withdrew"))
	e := b.checkCancelled(t, results, id, key, 1, "crm-e2e", "partner withdrew")
	t.Logf("cancelled %s after the cancel message was sent; the checkpoint had %d rows, the attempt read %d of %d",
		e.FinishedAt.Sub(sent).Round(time.Millisecond), cp.Mark.Rows, e.Rows, rows)
	if e.Rows >= rows {
		t.Errorf("the cancelled attempt read %d rows: all of them", e.Rows)
	}
	// From the moment the worker recorded the request to the attempt's stop: at most one
	// renewal interval, and a little for the upload's abort and the ledger's writes.
	const stopLine = "export cancelled: stopped, its upload aborted, nothing written"
	eventually(t, 10*time.Second, "the attempt's stop logged", func() bool { return len(procLines(p, stopLine)) > 0 })
	requested, stopped := procLines(p, "cancel requested: the export stops at its next lease renewal if running, and will not run otherwise"), procLines(p, stopLine)
	if len(requested) != 1 || len(stopped) != 1 {
		t.Fatalf("log lines: %d cancel requested, %d export cancelled; want one each", len(requested), len(stopped))
	}
	took := logTime(t, stopped[0]).Sub(logTime(t, requested[0]))
	t.Logf("the attempt stopped %s after the worker recorded the request (renewal interval %s)", took.Round(time.Millisecond), renewal)
	if took > renewal+2*time.Second {
		t.Errorf("the attempt stopped %s after the cancel was recorded; the renewal interval is %s", took, renewal)
	}
}

// An export that succeeded is not cancelled: the command says it finished (exit 1), a cancel
// message is refused, and the object, manifest and ledger stay.
func TestCancelOfAFinishedExportIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	results := b.newQueue(t, "results")
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{"EXPORT_RESULTS_QUEUE_URL": results}), "worker")
	campaign := fixtures.Campaigns[1]
	id := "cancel-done-" + stacktest.RandomID()
	key := regKey(id, campaign)
	b.send(t, regJob(t, id, campaign))
	before := b.waitLedger(t, id, 60*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	b.receiveNotices(t, results, 30*time.Second, func(ns []receivedNotice) bool { return len(ns) == 1 })

	code, out, errOut := runCLI(t, b.cliEnv(), "cancel", id)
	if code != 1 || !strings.Contains(errOut, "already succeeded") || !strings.Contains(errOut, key) {
		t.Errorf("cancel: exit %d, want 1 saying it succeeded\n%s%s", code, out, errOut)
	}
	b.send(t, cancelMessage(t, id, "crm-e2e", "too late"))
	eventually(t, 30*time.Second, "the cancel message refused", func() bool { return len(procLines(p, "cancel refused: the export succeeded already")) == 1 })
	eventually(t, 30*time.Second, "the jobs queue empty", func() bool { v, f := b.st.QueueCounts(t, b.queues.JobsURL); return v+f == 0 })

	after, _ := b.ledger(t, id)
	if after.Status != ledger.Succeeded || after.CancelRequest != nil || !after.FinishedAt.Equal(before.FinishedAt) || after.SHA256 != before.SHA256 {
		t.Errorf("ledger after the cancels: %s, cancel request %+v", after.Status, after.CancelRequest)
	}
	b.checkOneObject(t, key)
	if ns := b.receiveNotices(t, results, 3*time.Second, nil); len(ns) != 0 {
		t.Errorf("notices after the refused cancels: %v", ns)
	}
	if n := stacktest.Sum(p.Metrics(t), "export_cancels_total", map[string]string{"event": "refused"}); n != 1 {
		t.Errorf("export_cancels_total{event=refused} = %v, want 1", n)
	}
}

// logTime is the time of a log line.
func logTime(t *testing.T, l logLine) time.Time {
	t.Helper()
	s, _ := l["time"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("log line time %q: %v", s, err)
	}
	return at
}

// A cancel of an export split into segments over the fleet stops its running segments, aborts
// the shared upload, and ends the export as cancelled once, with one notice; the segments not
// started are acknowledged unrun.
func TestCancelOfASplitExportStopsItsSegments(t *testing.T) {
	t.Parallel()
	const rows = 14_000 // two segments of at least twice S3's least part
	b, campaign := newNoisyBundle(t, "cmp-cancel-split-", rows, 20*time.Second)
	results := b.newQueue(t, "results")
	// Three jobs at once: two segments, and a slot free for the cancel message (a message
	// waits for a free slot; see TestCancelReachesAFullWorker).
	env := segmentEnv(rows, 3)
	env["SEGMENT_ROWS"], env["MAX_SEGMENTS"] = "7000", "2"
	// 6ms a row: a segment takes 42s at least.
	env["EXPORT_RESULTS_QUEUE_URL"], env["EXPORT_FAULT_ROW_DELAY"] = results, "6ms"
	p := stacktest.Start(t, b.workerEnv(t, env), "worker")
	id := "cancel-split-" + stacktest.RandomID()
	key := resumeKey(id, campaign)
	b.send(t, resumeJob(t, id, campaign))
	eventually(t, 5*time.Minute, "both segments running", func() bool {
		e, _ := b.ledger(t, ledger.SegmentID(id, 0))
		f, _ := b.ledger(t, ledger.SegmentID(id, 1))
		return e.Status == ledger.Running && f.Status == ledger.Running && e.Rows > 0 && f.Rows > 0
	})
	if n := b.unfinishedUploads(t, key); n != 1 {
		t.Fatalf("%d uploads in progress, want the split export's one", n)
	}

	b.send(t, cancelMessage(t, id, "crm-e2e", "campaign closed"))
	parent := b.waitLedger(t, id, 60*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Cancelled })
	if parent.Segments == nil || parent.Reason != jobs.ReasonCancelled || !strings.Contains(parent.Error, "campaign closed") {
		t.Errorf("the export's entry: segments %v, reason %q, error %q", parent.Segments != nil, parent.Reason, parent.Error)
	}
	eventually(t, 60*time.Second, "the segments stopped", func() bool {
		for i := range 2 {
			if s, _ := b.ledger(t, ledger.SegmentID(id, i)); s.Status == ledger.Running {
				return false
			}
		}
		return true
	})
	for i := range 2 {
		if s, _ := b.ledger(t, ledger.SegmentID(id, i)); s.Status == ledger.Succeeded {
			t.Errorf("segment %d succeeded after the cancel", i)
		}
	}
	got := b.receiveNotices(t, results, 30*time.Second, func(ns []receivedNotice) bool { return len(ns) > 0 })
	got = append(got, b.receiveNotices(t, results, 3*time.Second, nil)...)
	if len(got) != 1 || got[0].Notice.Outcome != jobs.OutcomeCancelled || got[0].Notice.ExportID != id {
		t.Errorf("notices %v, want the export's one cancelled notice", got)
	}
	eventually(t, 30*time.Second, "the jobs queue empty", func() bool { v, f := b.st.QueueCounts(t, b.queues.JobsURL); return v+f == 0 })
	if data, manifests := b.dataObjects(t, key); len(data)+len(manifests) != 0 {
		t.Errorf("objects %v, manifests %v", data, manifests)
	}
	if n := b.unfinishedUploads(t, key); n != 0 {
		t.Errorf("%d unfinished uploads: the shared upload was not aborted", n)
	}
	if dlq := b.drainDLQ(t, 1, 2*time.Second); len(dlq) != 0 {
		t.Errorf("dead-letter queue: %v", dlq)
	}
	if n := stacktest.Sum(p.Metrics(t), "export_cancels_total", map[string]string{"event": "carried_out"}); n < 1 {
		t.Errorf("export_cancels_total{event=carried_out} = %v", n)
	}
}

// A cancel on the control queue reaches a worker whose every slot is busy, at once: the running
// export stops within the renewal interval, and an export queued behind it is acknowledged
// unrun when its turn comes. A job message sent to the control queue by mistake is refused.
func TestCancelReachesAFullWorker(t *testing.T) {
	t.Parallel()
	const rows = 8000
	b, campaign := newNoisyBundle(t, "cmp-cancel-full-", rows, 30*time.Second)
	results, control := b.newQueue(t, "results"), b.newQueue(t, "control")
	const renewal = 3 * time.Second
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{"EXPORT_RESULTS_QUEUE_URL": results, "EXPORT_CONTROL_QUEUE_URL": control,
		"VISIBILITY_TIMEOUT": "9s", "S3_PART_SIZE_MB": "5", "EXPORT_FAULT_ROW_DELAY": "3ms", "WORKER_CONCURRENCY": "1"}), "worker")
	running, queued := "cancel-full-"+stacktest.RandomID(), "cancel-behind-"+stacktest.RandomID()
	b.send(t, resumeJob(t, running, campaign))
	b.waitCheckpoint(t, running, 3*time.Minute, "the first part", func(*jobs.Checkpoint) bool { return true })
	b.send(t, resumeJob(t, queued, campaign)) // waits: the one slot is busy

	sendTo := func(url, body string) {
		t.Helper()
		if _, err := b.st.SQS.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	sendTo(control, cancelMessage(t, queued, "crm-e2e", "duplicate request"))
	sendTo(control, cancelMessage(t, running, "crm-e2e", "partner withdrew"))
	sendTo(control, resumeJob(t, "misrouted-"+stacktest.RandomID(), campaign))

	e := b.waitLedger(t, running, 60*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Cancelled })
	const stopLine = "export cancelled: stopped, its upload aborted, nothing written"
	eventually(t, 10*time.Second, "the attempt's stop logged", func() bool { return len(procLines(p, stopLine)) > 0 })
	requested := procLines(p, "cancel requested: the export stops at its next lease renewal if running, and will not run otherwise")
	stopped := procLines(p, stopLine)
	if len(requested) != 2 || len(stopped) != 1 {
		t.Fatalf("log lines: %d cancel requested, %d export cancelled; want 2 and 1", len(requested), len(stopped))
	}
	var asked time.Time
	for _, l := range requested {
		if l["export_id"] == running {
			asked = logTime(t, l)
		}
	}
	took := logTime(t, stopped[0]).Sub(asked)
	t.Logf("the running export stopped %s after its cancel was recorded (renewal interval %s), having read %d of %d rows", took.Round(time.Millisecond), renewal, e.Rows, rows)
	if took > renewal+2*time.Second {
		t.Errorf("the running export stopped %s after the cancel was recorded; the renewal interval is %s", took, renewal)
	}
	q := b.waitLedger(t, queued, 60*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Cancelled })
	if q.Attempts != 0 || !strings.Contains(q.Error, "duplicate request") {
		t.Errorf("the queued export: attempts %d, error %q; want cancelled unrun", q.Attempts, q.Error)
	}
	for _, id := range []string{running, queued} {
		key := resumeKey(id, campaign)
		if data, manifests := b.dataObjects(t, key); len(data)+len(manifests) != 0 {
			t.Errorf("%s left objects %v, manifests %v", id, data, manifests)
		}
		if n := b.unfinishedUploads(t, key); n != 0 {
			t.Errorf("%s left %d unfinished uploads", id, n)
		}
	}
	dlq := b.drainDLQ(t, 1, 10*time.Second)
	if len(dlq) != 1 || dlq[0].Attrs["reason"] != string(jobs.ReasonInvalidMessage) || !strings.Contains(dlq[0].Attrs["error"], "control queue takes cancel messages only") {
		t.Errorf("dead-letter queue %v, want the misrouted job message refused", dlq)
	}
	eventually(t, 30*time.Second, "the queues empty", func() bool {
		v, f := b.st.QueueCounts(t, b.queues.JobsURL)
		cv, cf := b.st.QueueCounts(t, control)
		return v+f+cv+cf == 0
	})
	ns := b.receiveNotices(t, results, 30*time.Second, func(ns []receivedNotice) bool { return len(ns) >= 2 })
	if o := byOutcome(ns); len(ns) != 2 || o[running][jobs.OutcomeCancelled].Attempts != 1 || o[queued][jobs.OutcomeCancelled].Attempts != 0 {
		t.Errorf("notices %v, want the two exports' cancelled notices", ns)
	}
}

// An export whose worker died after writing its object and manifest, before recording its
// success, and was asked to cancel meanwhile (the ledger said running): the message's next
// delivery adopts the complete export (it stays succeeded, one succeeded notice, no cancelled
// one) instead of recording a cancel over a complete object.
func TestCancelAfterAnUnrecordedSuccessAdoptsTheExport(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	results := b.newQueue(t, "results")
	stacktest.Start(t, b.workerEnv(t, map[string]string{"VISIBILITY_TIMEOUT": "5s", "EXPORT_RESULTS_QUEUE_URL": results}), "worker")
	campaign := fixtures.Campaigns[3]
	id := "cancel-late-" + stacktest.RandomID()
	key, body := regKey(id, campaign), regJob(t, id, campaign)
	b.send(t, body)
	done := b.waitLedger(t, id, 60*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	got := b.receiveNotices(t, results, 20*time.Second, func(ns []receivedNotice) bool { return len(ns) > 0 })

	// As if the worker had been killed between its manifest and its outcome: the entry says
	// running, its lease expired.
	if _, err := b.db.Collection(ledger.Collection).UpdateOne(context.Background(), bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: ledger.Running}, {Key: "lease_expires", Value: time.Now().Add(-time.Second)}}}}); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI(t, b.cliEnv(), "cancel", id, "--reason", "too late"); code != 0 || !strings.Contains(out, "cancel requested") {
		t.Fatalf("cancel: exit %d\n%s%s", code, out, errOut)
	}
	b.send(t, body) // its message comes back
	e := b.waitLedger(t, id, 60*time.Second, func(e ledger.Entry) bool { return e.Status != ledger.Running })
	if e.Status != ledger.Succeeded || e.SHA256 != done.SHA256 || e.Rows != done.Rows {
		t.Errorf("ledger: %s (%q), rows %d; want adopted as succeeded with its %d rows", e.Status, e.Error, e.Rows, done.Rows)
	}
	b.checkOneObject(t, key)
	got = append(got, b.receiveNotices(t, results, 5*time.Second, nil)...)
	ids := map[string]bool{}
	for _, n := range got {
		ids[n.Notice.NoticeID] = true
		if n.Notice.Outcome != jobs.OutcomeSucceeded {
			t.Errorf("notice %s: an export that completed is announced %s", n.Notice.NoticeID, n.Notice.Outcome)
		}
	}
	if len(ids) != 1 {
		t.Errorf("notice ids %v, want the export's one succeeded notice", ids)
	}
}

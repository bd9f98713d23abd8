package ledger

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
)

// ledgerBundle is a ledger in a fresh database of the real MongoDB and a planned job.
type ledgerBundle struct {
	l   *Ledger
	job *jobs.Job
}

func newLedgerBundle(t *testing.T) ledgerBundle {
	t.Helper()
	st := stacktest.New(t)
	db := st.NewDatabase(t)
	e := &jobs.Exporter{Kinds: jobs.DefaultRegistry(), Destinations: map[string]jobs.Destination{"internal": {Name: "internal", Bucket: "b", Prefix: "exports/"}}}
	msg, err := jobs.Decode([]byte(`{"version":1,"export_id":"x-` + stacktest.RandomID() + `","kind":"registrations","params":{"campaign_id":"c"}}`))
	if err != nil {
		t.Fatal(err)
	}
	job, err := e.PrepareMessage(msg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ledgerBundle{l: New(db), job: job}
}

func (b ledgerBundle) claim(t *testing.T, messageID string, max int) (ClaimResult, Entry, ClaimInfo) {
	t.Helper()
	r, e, info, err := b.l.Claim(context.Background(), b.job, ClaimOptions{WorkerID: "w-" + messageID, MessageID: messageID, Lease: time.Minute, MaxFailures: max})
	if err != nil {
		t.Fatal(err)
	}
	return r, e, info
}

// expire makes the running attempt's lease look expired, as a claimer whose clock runs ahead
// (or that comes after a dead worker) sees it.
func (b ledgerBundle) expire(t *testing.T) {
	t.Helper()
	_, err := b.l.coll.UpdateOne(context.Background(), bson.D{{Key: "_id", Value: b.job.Message.ExportID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "lease_expires", Value: time.Now().Add(-time.Second)}}}})
	if err != nil {
		t.Fatal(err)
	}
}

// An attempt that was taken over can write nothing: not its progress, not its outcome, and its
// fence (checked before its object and manifest are committed) refuses.
func TestStaleAttemptIsFenced(t *testing.T) {
	t.Parallel()
	b := newLedgerBundle(t)
	ctx := context.Background()
	r, old, _ := b.claim(t, "m1", 5)
	if r != Claimed {
		t.Fatalf("first claim = %v", r)
	}
	if err := b.l.Fence(ctx, old, time.Minute); err != nil {
		t.Fatalf("fence of the owner: %v", err)
	}
	b.expire(t)
	r, cur, info := b.claim(t, "m1", 5)
	if r != Claimed || !info.Crashed || cur.Token == old.Token || cur.Attempts != 2 {
		t.Fatalf("takeover = %v %+v (token %q, old %q)", r, info, cur.Token, old.Token)
	}
	for what, err := range map[string]error{
		"fence":   b.l.Fence(ctx, old, time.Minute),
		"renew":   b.l.Renew(ctx, old, time.Minute, nil),
		"finish":  b.l.Finish(ctx, old, Succeeded, jobs.Result{}, nil, ""),
		"message": b.l.SetMessage(ctx, old, "m9"),
	} {
		if !IsLeaseLost(err) {
			t.Errorf("%s of the stale attempt = %v, want lease lost", what, err)
		}
	}
	if err := b.l.Fence(ctx, cur, time.Minute); err != nil {
		t.Errorf("fence of the new owner: %v", err)
	}
	got, _ := b.l.Get(ctx, b.job.Message.ExportID)
	if got.Status != Running || got.Token != cur.Token {
		t.Errorf("entry = %s %s, want running under the new token", got.Status, got.Token)
	}
}

// Of concurrent claims exactly one wins.
func TestConcurrentClaimsHaveOneWinner(t *testing.T) {
	t.Parallel()
	b := newLedgerBundle(t)
	var wg sync.WaitGroup
	results := make([]ClaimResult, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _, _, err := b.l.Claim(context.Background(), b.job, ClaimOptions{WorkerID: "w", MessageID: "m", Lease: time.Minute})
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		}()
	}
	wg.Wait()
	won := 0
	for _, r := range results {
		if r == Claimed {
			won++
		}
	}
	if won != 1 {
		t.Errorf("claims = %v, want exactly one Claimed", results)
	}
}

// Failures count toward the bound; releases do not; a crashed attempt does. When the bound is
// reached, or the failure was permanent, the message that carried the attempt is not run again
// (Exhausted): that is how a failure after a handover reaches the DLQ. A message redriven from
// the DLQ (another message id) gets a new budget.
func TestFailuresReleasesAndCrashesCount(t *testing.T) {
	t.Parallel()
	b := newLedgerBundle(t)
	ctx := context.Background()
	fail := func(e Entry, err error) {
		t.Helper()
		reason, _ := jobs.IsPermanent(err)
		if err := b.l.Finish(ctx, e, Failed, jobs.Result{}, err, reason); err != nil {
			t.Fatal(err)
		}
	}
	_, e, _ := b.claim(t, "m1", 3)
	fail(e, errors.New("s3 down"))
	_, e, _ = b.claim(t, "m1", 3)
	if e.Failures != 1 {
		t.Fatalf("failures = %d after one failure", e.Failures)
	}
	for range 4 { // four deploys
		if err := b.l.Finish(ctx, e, Released, jobs.Result{}, errors.New("shutdown"), "shutdown"); err != nil {
			t.Fatal(err)
		}
		_, e, _ = b.claim(t, "m1", 3)
	}
	if e.Failures != 1 {
		t.Fatalf("failures = %d after releases, want 1", e.Failures)
	}
	b.expire(t) // the worker died
	r, e, info := b.claim(t, "m1", 3)
	if r != Claimed || !info.Crashed || e.Failures != 2 {
		t.Fatalf("after a crash: %v %+v failures %d, want claimed with 2 failures", r, info, e.Failures)
	}
	fail(e, errors.New("s3 down again"))
	if r, e, _ = b.claim(t, "m1", 3); r != Exhausted || e.Failures != 3 {
		t.Fatalf("after the third failure: %v with %d failures, want Exhausted", r, e.Failures)
	}
	// Another message of the export (a redrive after the DLQ) runs, with a new budget once
	// the DLQ send was recorded.
	if err := b.l.MarkDeadLettered(ctx, b.job.Message.ExportID, "m1"); err != nil {
		t.Fatal(err)
	}
	if r, e, _ = b.claim(t, "m2", 3); r != Claimed || e.Failures != 0 {
		t.Fatalf("redriven message: %v with %d failures, want claimed with 0", r, e.Failures)
	}
	fail(e, jobs.Permanentf("no_such_bucket", "bucket gone"))
	if r, e, _ = b.claim(t, "m2", 3); r != Exhausted || e.Reason != "no_such_bucket" || !e.Permanent {
		t.Fatalf("after a permanent failure: %v %q permanent=%v, want Exhausted no_such_bucket", r, e.Reason, e.Permanent)
	}
}

// A crash that uses up the budget (a message that kills its worker every time) ends the
// export: Exhausted, recorded as failed with max_attempts.
func TestRepeatedCrashesExhaustTheExport(t *testing.T) {
	t.Parallel()
	b := newLedgerBundle(t)
	for i := range 3 {
		r, _, _ := b.claim(t, "m1", 3)
		if r != Claimed {
			t.Fatalf("claim %d = %v", i, r)
		}
		b.expire(t)
	}
	r, e, _ := b.claim(t, "m1", 3)
	if r != Exhausted || e.Reason != jobs.ReasonMaxAttempts || e.Status != Failed {
		t.Fatalf("after 3 crashes: %v %s %q, want Exhausted, failed, max_attempts", r, e.Status, e.Reason)
	}
	got, _ := b.l.Get(context.Background(), b.job.Message.ExportID)
	if got.Status != Failed || got.Failures != 3 {
		t.Errorf("entry = %s with %d failures", got.Status, got.Failures)
	}
}

// Once an export that failed for good is in the dead-letter queue, other copies of its message
// (handover, hop and release copies can coexist) find it marked, while a message redriven from
// the queue (not a copy) starts a new budget.
func TestDeadLetteredExportIsMarkedForItsOtherCopies(t *testing.T) {
	t.Parallel()
	b := newLedgerBundle(t)
	ctx := context.Background()
	_, e, _ := b.claim(t, "m1", 1)
	if err := b.l.Finish(ctx, e, Failed, jobs.Result{}, errors.New("s3 down"), jobs.ReasonMaxAttempts); err != nil {
		t.Fatal(err)
	}
	copyClaim := func(id string) (ClaimResult, Entry) {
		r, e, _, err := b.l.Claim(ctx, b.job, ClaimOptions{WorkerID: "w", MessageID: id, Lease: time.Minute, MaxFailures: 1, Copy: true})
		if err != nil {
			t.Fatal(err)
		}
		return r, e
	}
	if r, e := copyClaim("copy-1"); r != Exhausted || e.DeadLettered {
		t.Fatalf("first copy: %v dead-lettered=%v, want Exhausted, not yet dead-lettered", r, e.DeadLettered)
	}
	if err := b.l.MarkDeadLettered(ctx, b.job.Message.ExportID, "copy-1"); err != nil {
		t.Fatal(err)
	}
	if r, e := copyClaim("copy-2"); r != Exhausted || !e.DeadLettered {
		t.Fatalf("second copy: %v dead-lettered=%v, want Exhausted and marked", r, e.DeadLettered)
	}
	if r, e, _ := b.claim(t, "redriven", 1); r != Claimed || e.Failures != 0 {
		t.Fatalf("redriven message: %v with %d failures, want a new budget", r, e.Failures)
	}
}

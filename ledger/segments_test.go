package ledger

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/jobs"
)

// Of workers claiming the completion of one split export at once, exactly one wins (an
// insert of a unique _id, atomic on FerretDB too); a claim older than the stale limit is the
// claim of a dead worker and is taken over; a released claim can be taken at once.
func TestOneWorkerCompletesASplitExport(t *testing.T) {
	b := newLedgerBundle(t)
	id := b.job.Message.ExportID
	ctx := context.Background()
	var wins sync.Map
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			won, err := b.l.ClaimCompletion(ctx, id, "w"+string(rune('0'+w)), time.Hour)
			if err != nil {
				t.Error(err)
			}
			wins.Store(w, won)
		})
	}
	wg.Wait()
	n := 0
	wins.Range(func(_, v any) bool {
		if v.(bool) {
			n++
		}
		return true
	})
	if n != 1 {
		t.Fatalf("%d workers won the completion, want 1", n)
	}
	if won, err := b.l.ClaimCompletion(ctx, id, "late", time.Hour); err != nil || won {
		t.Errorf("a fresh claim was taken over: %v %v", won, err)
	}
	if won, err := b.l.ClaimCompletion(ctx, id, "late", -time.Second); err != nil || !won {
		t.Errorf("a stale claim was not taken over: %v %v", won, err)
	}
	if err := b.l.ReleaseCompletion(ctx, id, "late"); err != nil {
		t.Fatal(err)
	}
	if won, err := b.l.ClaimCompletion(ctx, id, "next", time.Hour); err != nil || !won {
		t.Errorf("a released claim was not free: %v %v", won, err)
	}
}

// A split export ends once: succeeded or failed, whichever is recorded first; Status adds up
// its segments while it runs.
func TestASplitExportEndsOnce(t *testing.T) {
	b := newLedgerBundle(t)
	ctx := context.Background()
	id := b.job.Message.ExportID
	_, e, _ := b.claim(t, "m1", 5)
	plan := &jobs.SegmentPlan{UploadID: "u", Bounds: []bson.RawValue{bsonValue(t, int32(10)), bsonValue(t, int32(20))}, PartsPerSegment: 3333}
	if err := b.l.EndSegmented(ctx, id, Failed, jobs.Result{}, errors.New("x"), jobs.ReasonRetryable); !IsNotSegmented(err) {
		t.Fatalf("ending an export that was never split: %v, want not segmented", err)
	}
	if err := b.l.SetSegmentPlan(ctx, e, plan); err != nil {
		t.Fatal(err)
	}
	if err := b.l.MarkSegmented(ctx, e); err != nil {
		t.Fatal(err)
	}
	// Segment 0 succeeded with 5 rows, segment 1 runs with 3 so far, segment 2 never started.
	seg := func(i int) *jobs.Job { j := *b.job; j.Message.ExportID = SegmentID(id, i); return &j }
	_, s0, _, err := b.l.Claim(ctx, seg(0), ClaimOptions{WorkerID: "w", MessageID: "s0", Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.l.Finish(ctx, s0, Succeeded, jobs.Result{Stats: jobs.Stats{Rows: 5}, Segment: &jobs.SegmentDone{Rows: 5}}, nil, ""); err != nil {
		t.Fatal(err)
	}
	_, s1, _, err := b.l.Claim(ctx, seg(1), ClaimOptions{WorkerID: "w", MessageID: "s1", Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	p := new(jobs.Progress)
	p.Rows.Store(3)
	if err := b.l.Renew(ctx, s1, time.Minute, p); err != nil {
		t.Fatal(err)
	}
	st, err := b.l.Status(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != Segmented || st.Progress == nil || st.Progress.Done != 1 || st.Progress.Running != 1 || st.Progress.Waiting != 1 || st.Rows != 8 {
		t.Errorf("status %s, progress %+v, rows %d; want segmented, 1 done, 1 running, 1 waiting, 8 rows", st.Status, st.Progress, st.Rows)
	}
	if got := Describe(st, time.Now()); got != "running as 3 segments over the fleet: 1 done, 1 running, 1 waiting" {
		t.Errorf("Describe: %q", got)
	}
	if c, _, _, err := b.l.Claim(ctx, b.job, ClaimOptions{WorkerID: "w2", MessageID: "m2", Lease: time.Minute}); err != nil || c != InSegments {
		t.Errorf("a duplicate of the export's message: claim %v, %v; want InSegments", c, err)
	}
	cause := jobs.Permanentf(jobs.ReasonInvalidParams, "segment 1 of 3 failed for good")
	if err := b.l.EndSegmented(ctx, id, Failed, jobs.Result{}, cause, jobs.ReasonInvalidParams); err != nil {
		t.Fatal(err)
	}
	if err := b.l.EndSegmented(ctx, id, Succeeded, jobs.Result{}, nil, ""); !IsNotSegmented(err) {
		t.Errorf("a second outcome: %v, want not segmented", err)
	}
	got, err := b.l.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != Failed || !got.Permanent || got.Error != cause.Error() {
		t.Errorf("entry: %s permanent %v error %q; want the failure", got.Status, got.Permanent, got.Error)
	}
}

func bsonValue(t *testing.T, v any) bson.RawValue {
	t.Helper()
	typ, data, err := bson.MarshalValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return bson.RawValue{Type: typ, Value: data}
}

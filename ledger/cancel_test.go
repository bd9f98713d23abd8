package ledger

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/jobs"
)

func (b ledgerBundle) id() string { return b.job.Message.ExportID }

// get returns the export's entry, or that of one of its segments.
func (b ledgerBundle) get(t *testing.T, id string) Entry {
	t.Helper()
	e, err := b.l.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (b ledgerBundle) requestCancel(t *testing.T, by, reason string) (Entry, bool) {
	t.Helper()
	e, recorded, err := b.l.RequestCancel(context.Background(), b.id(), by, reason)
	if err != nil {
		t.Fatal(err)
	}
	return e, recorded
}

func (b ledgerBundle) finish(t *testing.T, e Entry, status Status, cause error, reason jobs.Reason) {
	t.Helper()
	if err := b.l.Finish(context.Background(), e, status, jobs.Result{}, cause, reason); err != nil {
		t.Fatal(err)
	}
}

// split claims the export and splits it into 3 segments (status Segmented).
func (b ledgerBundle) split(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	_, e, _ := b.claim(t, "m1", 5)
	plan := &jobs.SegmentPlan{UploadID: "u", Bounds: []bson.RawValue{bsonValue(t, int32(10)), bsonValue(t, int32(20))}, PartsPerSegment: 3333}
	if err := b.l.SetSegmentPlan(ctx, e, plan); err != nil {
		t.Fatal(err)
	}
	if err := b.l.MarkSegmented(ctx, e); err != nil {
		t.Fatal(err)
	}
}

// claimSegment claims segment i of the export under message messageID.
func (b ledgerBundle) claimSegment(t *testing.T, i int, messageID string) (ClaimResult, Entry) {
	t.Helper()
	j := *b.job
	j.Message.ExportID = SegmentID(b.id(), i)
	r, e, _, err := b.l.Claim(context.Background(), &j, ClaimOptions{WorkerID: "w-" + messageID, MessageID: messageID, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return r, e
}

// A cancel is recorded for an export in any state but succeeded, once; the entry is returned
// as found and left as it is (the claim or the owner carries the cancel out).
func TestRequestCancel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		setup    func(t *testing.T, b ledgerBundle)
		status   Status
		recorded bool
	}{
		{"not claimed yet", func(*testing.T, ledgerBundle) {}, "", true},
		{"running", func(t *testing.T, b ledgerBundle) { b.claim(t, "m1", 5) }, Running, true},
		{"released", func(t *testing.T, b ledgerBundle) {
			_, e, _ := b.claim(t, "m1", 5)
			b.finish(t, e, Released, nil, jobs.ReasonShutdown)
		}, Released, true},
		{"failed retryably", func(t *testing.T, b ledgerBundle) {
			_, e, _ := b.claim(t, "m1", 5)
			b.finish(t, e, Failed, errors.New("s3 down"), jobs.ReasonRetryable)
		}, Failed, true},
		{"failed for good", func(t *testing.T, b ledgerBundle) {
			_, e, _ := b.claim(t, "m1", 5)
			b.finish(t, e, Failed, jobs.Permanentf(jobs.ReasonTimeout, "too long"), jobs.ReasonTimeout)
		}, Failed, true},
		{"succeeded", func(t *testing.T, b ledgerBundle) {
			_, e, _ := b.claim(t, "m1", 5)
			b.finish(t, e, Succeeded, nil, "")
		}, Succeeded, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newLedgerBundle(t)
			ctx := context.Background()
			tc.setup(t, b)
			var before Entry
			if tc.status != "" {
				before = b.get(t, b.id())
			}
			start := time.Now().Add(-time.Second)
			e, recorded := b.requestCancel(t, "crm", "wrong campaign")
			if recorded != tc.recorded || e.Status != tc.status || e.ExportID != b.id() {
				t.Fatalf("RequestCancel = %s %q recorded %v; want %q recorded %v", e.ExportID, e.Status, recorded, tc.status, tc.recorded)
			}
			c, err := b.l.CancelRequested(ctx, b.id())
			if err != nil {
				t.Fatal(err)
			}
			if !tc.recorded {
				if c != nil {
					t.Fatalf("a succeeded export has a cancel request: %+v", c)
				}
			} else {
				if c == nil || c.ExportID != b.id() || c.RequestedBy != "crm" || c.Reason != "wrong campaign" ||
					c.RequestedAt.Before(start) || c.RequestedAt.After(time.Now()) {
					t.Fatalf("cancel request = %+v", c)
				}
				// The request of an export is the request of its segments.
				if s, err := b.l.CancelRequested(ctx, SegmentID(b.id(), 2)); err != nil || s == nil || *s != *c {
					t.Errorf("the request of segment 2 = %+v, %v; want the export's %+v", s, err, c)
				}
				// Asked again: not recorded again, and the first request stands.
				if _, again := b.requestCancel(t, "ops", "changed my mind"); again {
					t.Error("a second request was recorded")
				}
				if c2, err := b.l.CancelRequested(ctx, b.id()); err != nil || c2 == nil || *c2 != *c {
					t.Errorf("after a second request: %+v, %v; want the first %+v", c2, err, c)
				}
			}
			// The entry is not changed by the request.
			if tc.status == "" {
				if _, err := b.l.Get(ctx, b.id()); !errors.Is(err, ErrNotFound) {
					t.Errorf("an export not claimed yet got an entry: %v", err)
				}
			} else if after := b.get(t, b.id()); after.Status != before.Status || !after.UpdatedAt.Equal(before.UpdatedAt) || after.Attempts != before.Attempts {
				t.Errorf("the entry changed: %s %s attempts %d, was %s %s attempts %d",
					after.Status, after.UpdatedAt, after.Attempts, before.Status, before.UpdatedAt, before.Attempts)
			}
		})
	}
}

// Whoever claims an export after its cancel was requested carries it out, unless the export
// succeeded, runs under a live lease (its owner stops it) or runs as segments (they stop).
func TestClaimCarriesOutTheCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("not claimed yet", func(t *testing.T) {
		t.Parallel()
		b := newLedgerBundle(t)
		b.requestCancel(t, "crm", "wrong campaign")
		r, e, _ := b.claim(t, "m1", 5)
		if r != ClaimCancelled || e.Status != Cancelled {
			t.Fatalf("claim = %v, entry %q; want ClaimCancelled, cancelled", r, e.Status)
		}
		got := b.get(t, b.id())
		if got.Status != Cancelled || got.Attempts != 0 || got.Failures != 0 || got.Reason != jobs.ReasonCancelled || got.Token != "" ||
			got.Kind != "registrations" || got.Destination != "internal" || got.Key != b.job.Key || got.FinishedAt.IsZero() {
			t.Fatalf("entry = %+v; want cancelled, 0 attempts, reason cancelled, the job's kind, destination and key", got)
		}
		for _, want := range []string{"cancelled", "by crm", "wrong campaign"} {
			if !strings.Contains(got.Error, want) || !strings.Contains(e.Error, want) {
				t.Errorf("error %q (returned %q) does not say %q", got.Error, e.Error, want)
			}
		}
	})

	t.Run("released with a checkpoint", func(t *testing.T) {
		t.Parallel()
		b := newLedgerBundle(t)
		_, e1, _ := b.claim(t, "m1", 5)
		if err := b.l.SaveCheckpoint(ctx, e1, testCheckpoint(t, 100, int32(7)), time.Minute); err != nil {
			t.Fatal(err)
		}
		b.finish(t, e1, Released, nil, jobs.ReasonShutdown)
		b.requestCancel(t, "crm", "")
		r, e, _ := b.claim(t, "m1", 5)
		if r != ClaimCancelled || e.Status != Cancelled || e.Checkpoint != nil {
			t.Fatalf("claim = %v, entry %q, checkpoint %v; want ClaimCancelled, cancelled, none", r, e.Status, e.Checkpoint)
		}
		got := b.get(t, b.id())
		if got.Status != Cancelled || got.Checkpoint != nil || got.Attempts != 1 || got.Reason != jobs.ReasonCancelled || !strings.Contains(got.Error, "by crm") {
			t.Fatalf("entry = %s, checkpoint %v, attempts %d, %q %q; want cancelled without the checkpoint, 1 attempt",
				got.Status, got.Checkpoint, got.Attempts, got.Reason, got.Error)
		}
	})

	t.Run("failed retryably", func(t *testing.T) {
		t.Parallel()
		b := newLedgerBundle(t)
		_, e1, _ := b.claim(t, "m1", 5)
		b.finish(t, e1, Failed, errors.New("s3 down"), jobs.ReasonRetryable)
		b.requestCancel(t, "crm", "")
		if r, _, _ := b.claim(t, "m1", 5); r != ClaimCancelled {
			t.Fatalf("claim = %v, want ClaimCancelled", r)
		}
		if got := b.get(t, b.id()); got.Status != Cancelled || got.Failures != 1 || got.Permanent || got.Reason != jobs.ReasonCancelled {
			t.Fatalf("entry = %s, %d failures, permanent %v, %q; want cancelled, 1 failure", got.Status, got.Failures, got.Permanent, got.Reason)
		}
	})

	t.Run("running under a live lease", func(t *testing.T) {
		t.Parallel()
		b := newLedgerBundle(t)
		_, owner, _ := b.claim(t, "m1", 5)
		b.requestCancel(t, "crm", "")
		r, e, _ := b.claim(t, "m2", 5)
		if r != Busy || e.Token != owner.Token {
			t.Fatalf("claim = %v (token %q); want Busy, the owner's %q", r, e.Token, owner.Token)
		}
		if got := b.get(t, b.id()); got.Status != Running || got.Token != owner.Token {
			t.Fatalf("entry = %s %s; want still running under the owner", got.Status, got.Token)
		}
		// The owner stops it.
		if err := b.l.Fence(ctx, owner, time.Minute); !errors.Is(err, ErrCancelRequested) {
			t.Fatalf("the owner's fence = %v, want the cancel", err)
		}
	})

	t.Run("running with an expired lease", func(t *testing.T) {
		t.Parallel()
		b := newLedgerBundle(t)
		_, owner, _ := b.claim(t, "m1", 5)
		b.requestCancel(t, "crm", "")
		b.expire(t)
		// Claimed as usual: the attempt that died may have completed the export (its new
		// owner adopts the manifest if so), and otherwise its new owner carries out the cancel.
		r, now, info := b.claim(t, "m2", 5)
		if r != Claimed || !info.Crashed || now.Attempts != 2 {
			t.Fatalf("claim = %v, crashed %v, %d attempts; want Claimed over the attempt that died", r, info.Crashed, now.Attempts)
		}
		if err := b.l.Fence(ctx, now, time.Minute); !errors.Is(err, ErrCancelRequested) {
			t.Fatalf("the new owner's fence = %v, want the cancel", err)
		}
		if err := b.l.Finish(ctx, now, Cancelled, jobs.Result{}, errors.New("cancelled by crm"), jobs.ReasonCancelled); err != nil {
			t.Fatal(err)
		}
		// The dead owner, should it come back, cannot undo it.
		if err := b.l.Finish(ctx, owner, Succeeded, jobs.Result{}, nil, ""); !IsLeaseLost(err) {
			t.Fatalf("the old owner's outcome: %v, want lease lost", err)
		}
		if got := b.get(t, b.id()); got.Status != Cancelled {
			t.Fatalf("entry = %s after the old owner's outcome, want cancelled", got.Status)
		}
	})

	t.Run("succeeded before the cancel was carried out", func(t *testing.T) {
		t.Parallel()
		b := newLedgerBundle(t)
		_, owner, _ := b.claim(t, "m1", 5)
		b.requestCancel(t, "crm", "")
		b.finish(t, owner, Succeeded, nil, "") // the owner got there first
		r, e, _ := b.claim(t, "m1", 5)
		if r != AlreadyDone || e.Status != Succeeded {
			t.Fatalf("claim = %v, entry %s; want AlreadyDone, succeeded", r, e.Status)
		}
		if got := b.get(t, b.id()); got.Status != Succeeded || got.Reason != "" || got.Error != "" {
			t.Fatalf("entry = %s %q %q; want succeeded", got.Status, got.Reason, got.Error)
		}
	})

	t.Run("split into segments", func(t *testing.T) {
		t.Parallel()
		b := newLedgerBundle(t)
		b.split(t)
		if r, _ := b.claimSegment(t, 0, "s0"); r != Claimed {
			t.Fatalf("claim of segment 0 before the cancel = %v", r)
		}
		b.requestCancel(t, "crm", "")
		if r, e, _ := b.claim(t, "m2", 5); r != InSegments || e.Status != Segmented {
			t.Fatalf("claim of the export = %v, entry %s; want InSegments", r, e.Status)
		}
		if got := b.get(t, b.id()); got.Status != Segmented {
			t.Fatalf("export entry = %s, want segmented", got.Status)
		}
		// A segment not started yet is cancelled by its claim; a running one is its owner's.
		r, e := b.claimSegment(t, 1, "s1")
		if r != ClaimCancelled || e.Status != Cancelled || e.ExportID != SegmentID(b.id(), 1) {
			t.Fatalf("claim of segment 1 = %v, %s %s; want ClaimCancelled", r, e.ExportID, e.Status)
		}
		if got := b.get(t, SegmentID(b.id(), 1)); got.Status != Cancelled || got.Attempts != 0 || !strings.Contains(got.Error, "by crm") {
			t.Fatalf("segment 1 = %s, %d attempts, %q; want cancelled by crm, 0 attempts", got.Status, got.Attempts, got.Error)
		}
		if r, _ := b.claimSegment(t, 0, "s0-dup"); r != Busy {
			t.Fatalf("claim of the running segment 0 = %v, want Busy", r)
		}
		if got := b.get(t, SegmentID(b.id(), 0)); got.Status != Running {
			t.Fatalf("segment 0 = %s, want running", got.Status)
		}
	})

	t.Run("claimed again after it was cancelled", func(t *testing.T) {
		t.Parallel()
		b := newLedgerBundle(t)
		_, e1, _ := b.claim(t, "m1", 5)
		b.finish(t, e1, Released, nil, jobs.ReasonShutdown)
		b.requestCancel(t, "crm", "")
		if r, _, _ := b.claim(t, "m1", 5); r != ClaimCancelled {
			t.Fatalf("first claim = %v", r)
		}
		before := b.get(t, b.id())
		time.Sleep(5 * time.Millisecond) // a rewrite would show in updated_at
		r, e, _ := b.claim(t, "m1", 5)
		if r != ClaimCancelled || e.Status != Cancelled {
			t.Fatalf("second claim = %v, %s; want ClaimCancelled", r, e.Status)
		}
		after := b.get(t, b.id())
		if !after.UpdatedAt.Equal(before.UpdatedAt) || !after.FinishedAt.Equal(before.FinishedAt) || after.Attempts != before.Attempts ||
			after.Error != before.Error || after.Status != Cancelled {
			t.Fatalf("the entry changed: %+v, was %+v", after, before)
		}
	})
}

// The running owner learns of the cancel at its fence, which renews nothing then, and records
// it: the checkpoint goes (its upload is aborted).
func TestTheOwnerCarriesOutTheCancel(t *testing.T) {
	t.Parallel()
	b := newLedgerBundle(t)
	ctx := context.Background()
	_, e, _ := b.claim(t, "m1", 5)
	if err := b.l.SaveCheckpoint(ctx, e, testCheckpoint(t, 100, int32(7)), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.l.Fence(ctx, e, time.Minute); err != nil {
		t.Fatalf("fence before the cancel: %v", err)
	}
	b.requestCancel(t, "crm", "wrong campaign")
	before := b.get(t, b.id())
	err := b.l.Fence(ctx, e, time.Hour)
	if !errors.Is(err, ErrCancelRequested) {
		t.Fatalf("fence after the cancel = %v, want ErrCancelRequested", err)
	}
	var c *CancelRequest
	if !errors.As(err, &c) || c.RequestedBy != "crm" || c.Reason != "wrong campaign" {
		t.Fatalf("fence error %v is not the cancel request (%+v)", err, c)
	}
	if got := b.get(t, b.id()); !got.LeaseExpires.Equal(before.LeaseExpires) || !got.UpdatedAt.Equal(before.UpdatedAt) {
		t.Fatalf("the fence renewed the lease of a cancelled export: %s, was %s", got.LeaseExpires, before.LeaseExpires)
	}
	b.finish(t, e, Cancelled, err, jobs.ReasonCancelled)
	got := b.get(t, b.id())
	if got.Status != Cancelled || got.Checkpoint != nil || got.Reason != jobs.ReasonCancelled || got.Error != c.Error() || got.Permanent || got.Failures != 0 {
		t.Fatalf("entry = %s, checkpoint %v, %q %q, permanent %v, %d failures; want cancelled without the checkpoint, not a failure",
			got.Status, got.Checkpoint, got.Reason, got.Error, got.Permanent, got.Failures)
	}
	if !Ended(got) {
		t.Error("a cancelled export has not ended")
	}
	if r, _, _ := b.claim(t, "m1", 5); r != ClaimCancelled {
		t.Errorf("a later delivery's claim = %v, want ClaimCancelled", r)
	}

	// A segment's owner sees the cancel of its export.
	s := newLedgerBundle(t)
	s.split(t)
	_, seg := s.claimSegment(t, 0, "s0")
	s.requestCancel(t, "crm", "")
	if err := s.l.Fence(ctx, seg, time.Minute); !errors.Is(err, ErrCancelRequested) {
		t.Fatalf("a segment's fence after its export's cancel = %v, want ErrCancelRequested", err)
	}
}

// A split export that is cancelled has ended: no later outcome changes it, and a split export
// that succeeded cannot be cancelled.
func TestACancelledSplitExportEndsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := &CancelRequest{RequestedAt: time.Now().UTC(), RequestedBy: "crm"}

	b := newLedgerBundle(t)
	b.split(t)
	if err := b.l.EndSegmented(ctx, b.id(), Cancelled, jobs.Result{}, c, jobs.ReasonCancelled); err != nil {
		t.Fatal(err)
	}
	got := b.get(t, b.id())
	if got.Status != Cancelled || got.Reason != jobs.ReasonCancelled || got.Error != c.Error() || got.Permanent {
		t.Fatalf("entry = %s %q %q permanent %v; want cancelled", got.Status, got.Reason, got.Error, got.Permanent)
	}
	for _, later := range []Status{Succeeded, Failed, Cancelled} {
		var cause error
		if later == Failed {
			cause = jobs.Permanentf(jobs.ReasonInvalidParams, "segment 1 of 3 failed for good")
		}
		if err := b.l.EndSegmented(ctx, b.id(), later, jobs.Result{Stats: jobs.Stats{Rows: 9}}, cause, ""); !IsNotSegmented(err) {
			t.Errorf("EndSegmented(%s) after the cancel: %v, want not segmented", later, err)
		}
	}
	if after := b.get(t, b.id()); after.Status != Cancelled || after.Rows != 0 || !after.UpdatedAt.Equal(got.UpdatedAt) {
		t.Fatalf("entry after the refused outcomes = %s, %d rows; want the cancel unchanged", after.Status, after.Rows)
	}

	s := newLedgerBundle(t)
	s.split(t)
	if err := s.l.EndSegmented(ctx, s.id(), Succeeded, jobs.Result{Stats: jobs.Stats{Rows: 9}}, nil, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.l.EndSegmented(ctx, s.id(), Cancelled, jobs.Result{}, c, jobs.ReasonCancelled); !IsNotSegmented(err) {
		t.Fatalf("cancelling a split export that succeeded: %v, want not segmented", err)
	}
	if got := s.get(t, s.id()); got.Status != Succeeded || got.Rows != 9 || got.Error != "" {
		t.Fatalf("entry = %s, %d rows, %q; want succeeded with 9 rows", got.Status, got.Rows, got.Error)
	}
}

// Status shows the cancel request and the notices, and an export asked to cancel before any
// worker claimed it; Describe says what the request means.
func TestStatusShowsTheCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Now()

	b := newLedgerBundle(t)
	if _, err := b.l.Status(ctx, b.id()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status of an unknown export: %v, want ErrNotFound", err)
	}
	b.requestCancel(t, "crm", "wrong campaign")
	st, err := b.l.Status(ctx, b.id())
	if err != nil {
		t.Fatal(err)
	}
	if st.ExportID != b.id() || st.Status != "" || st.CancelRequest == nil || st.CancelRequest.RequestedBy != "crm" || st.Attempts != 0 {
		t.Fatalf("status of an export asked to cancel before its claim = %+v", st)
	}
	d := Describe(st, now)
	for _, want := range []string{"cancel requested", "by crm", "wrong campaign", "not started", "without running"} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe(queued, cancel requested) = %q, does not say %q", d, want)
		}
	}

	// Carried out, with its notices in the order they were recorded.
	if r, _, _ := b.claim(t, "m1", 5); r != ClaimCancelled {
		t.Fatalf("claim = %v", r)
	}
	first := jobs.NewNotice(jobs.OutcomeDeadLettered, b.id(), 0, 0, nil)
	second := jobs.NewNotice(jobs.OutcomeCancelled, b.id(), 0, 0, nil).WithError(jobs.ReasonCancelled, errors.New("cancelled by crm"))
	b.record(t, first, second)
	other := jobs.NewNotice(jobs.OutcomeSucceeded, "other-"+b.id(), 1, 0, nil)
	if _, err := b.l.RecordNotice(ctx, other); err != nil {
		t.Fatal(err)
	}
	st, err = b.l.Status(ctx, b.id())
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != Cancelled || st.CancelRequest == nil || st.CancelRequest.Reason != "wrong campaign" {
		t.Fatalf("status = %s, cancel request %+v; want cancelled, with the request", st.Status, st.CancelRequest)
	}
	if len(st.Notices) != 2 || st.Notices[0].NoticeID != first.NoticeID || st.Notices[1].NoticeID != second.NoticeID ||
		st.Notices[1].Outcome != jobs.OutcomeCancelled || !st.Notices[1].Pending {
		t.Fatalf("notices = %+v; want %s then %s, pending", st.Notices, first.NoticeID, second.NoticeID)
	}
	d = Describe(st, now)
	if !strings.Contains(d, "cancelled by crm") || !strings.Contains(d, "wrong campaign") || !strings.Contains(d, "no object or manifest") ||
		strings.Contains(d, "cancel requested") {
		t.Errorf("Describe(cancelled) = %q; want who and why, that nothing was written, and no pending request", d)
	}

	// Running, asked to cancel: it stops at its next renewal.
	r := newLedgerBundle(t)
	r.claim(t, "m1", 5)
	r.requestCancel(t, "ops", "")
	st, err = r.l.Status(ctx, r.id())
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != Running || st.CancelRequest == nil || len(st.Notices) != 0 {
		t.Fatalf("status = %s, cancel request %+v, notices %v; want running with the request, no notices", st.Status, st.CancelRequest, st.Notices)
	}
	d = Describe(st, time.Now())
	for _, want := range []string{"running", "cancel requested", "by ops", "next lease renewal"} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe(running, cancel requested) = %q, does not say %q", d, want)
		}
	}

	// Released, asked to cancel: its message is acknowledged when it comes back.
	d = Describe(Entry{Status: Released, CancelRequest: &CancelRequest{RequestedAt: now, RequestedBy: "ops"}}, now)
	for _, want := range []string{"released", "cancel requested", "by ops", "without running"} {
		if !strings.Contains(d, want) {
			t.Errorf("Describe(released, cancel requested) = %q, does not say %q", d, want)
		}
	}
}

// A cancel's reason, valid by the cancel message's rule (at most MaxCancelReason characters),
// is recorded whole.
func TestRequestCancelKeepsAValidReason(t *testing.T) {
	t.Parallel()
	b := newLedgerBundle(t)
	reason := strings.Repeat("é", jobs.MaxCancelReason)
	if _, err := jobs.DecodeCancel([]byte(`{"version":1,"type":"cancel_export","export_id":"x","reason":"` + reason + `"}`)); err != nil {
		t.Fatalf("the reason is not valid: %v", err)
	}
	b.requestCancel(t, "crm", reason)
	c, err := b.l.CancelRequested(context.Background(), b.id())
	if err != nil {
		t.Fatal(err)
	}
	if c == nil {
		t.Fatal("no cancel request recorded")
	}
	if c.Reason != reason {
		t.Fatalf("reason recorded as %d bytes, want the %d bytes sent", len(c.Reason), len(reason))
	}
}

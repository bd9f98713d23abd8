package ledger

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/verifiedfan/export-service/jobs"
)

// An owner's write whose attempt is canceled while it is on its way is still made, and made
// before the call returns: a write left to finish on the server after its client went away
// could land after the attempt's outcome and undo it (FerretDB updates are a read and a later
// replace of the whole entry, not atomic).
func TestAnOwnersWriteIsNotAbandonedWhenItsAttemptIsCanceled(t *testing.T) {
	b := newLedgerBundle(t)
	_, e, _ := b.claim(t, "m1", 5)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := new(jobs.Progress)
	p.Rows.Store(42)
	if err := b.l.Renew(ctx, e, time.Hour, p); err != nil {
		t.Fatalf("renew with a canceled context: %v", err)
	}
	got, err := b.l.Get(context.Background(), e.ExportID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Rows != 42 || time.Until(got.LeaseExpires) < 50*time.Minute {
		t.Errorf("entry after the renewal: rows %d, lease until %s; want 42 and about an hour from now", got.Rows, got.LeaseExpires)
	}
}

// The owner's writes from one process (lease renewals, checkpoints, its outcome) are made one
// after the other, so none undoes another: the outcome recorded while renewals are under way
// stays recorded.
func TestTheOutcomeSurvivesConcurrentRenewals(t *testing.T) {
	b := newLedgerBundle(t)
	for round := range 5 {
		_, e, _ := b.claim(t, "m"+string(rune('a'+round)), 0)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for range 5 {
					_ = b.l.Renew(context.Background(), e, time.Minute, nil) // lease lost once finished
				}
			}()
		}
		close(start)
		time.Sleep(5 * time.Millisecond)
		if err := b.l.Finish(context.Background(), e, Released, jobs.Result{}, nil, ""); err != nil {
			t.Fatalf("round %d: finish: %v", round, err)
		}
		wg.Wait()
		got, err := b.l.Get(context.Background(), e.ExportID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != Released {
			t.Fatalf("round %d: status %q after the outcome and concurrent renewals, want %q", round, got.Status, Released)
		}
	}
}

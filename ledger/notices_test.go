package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/jobs"
)

// record puts the notices in the outbox, a few milliseconds apart (their order is that of
// their times, stored to the millisecond).
func (b ledgerBundle) record(t *testing.T, ns ...*jobs.Notice) {
	t.Helper()
	for _, n := range ns {
		if _, err := b.l.RecordNotice(context.Background(), n); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Millisecond)
	}
}

func noticeIDs(ns []Notice) []string {
	ids := make([]string, len(ns))
	for i, n := range ns {
		ids[i] = n.NoticeID
	}
	return ids
}

func sameIDs(got []Notice, want ...*jobs.Notice) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].NoticeID != want[i].NoticeID {
			return false
		}
	}
	return true
}

// A notice is in the outbox once, as first recorded: recording it again (a redelivered
// message, an adopting worker) changes nothing.
func TestRecordNoticeIsIdempotent(t *testing.T) {
	t.Parallel()
	b := newLedgerBundle(t)
	ctx := context.Background()
	first := jobs.NewNotice(jobs.OutcomeFailed, b.id(), 3, 3, nil).WithJob(b.job).WithError(jobs.ReasonRetryable, errors.New("first telling"))
	if recorded, err := b.l.RecordNotice(ctx, first); err != nil || !recorded {
		t.Fatalf("the first record: recorded %v, %v", recorded, err)
	}
	again := jobs.NewNotice(jobs.OutcomeFailed, b.id(), 3, 3, nil).WithError(jobs.ReasonMaxAttempts, errors.New("second telling"))
	if again.NoticeID != first.NoticeID {
		t.Fatalf("notice ids %s and %s differ", again.NoticeID, first.NoticeID)
	}
	// The second says it was there already: its caller leaves the sending to the first.
	if recorded, err := b.l.RecordNotice(ctx, again); err != nil || recorded {
		t.Fatalf("the second record: recorded %v, %v; want false", recorded, err)
	}
	n, err := b.l.notices().CountDocuments(ctx, bson.D{{Key: "_id", Value: first.NoticeID}})
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d documents of notice %s, want 1", n, first.NoticeID)
	}
	ns, err := b.l.Notices(ctx, b.id())
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 {
		t.Fatalf("notices = %v, want one", noticeIDs(ns))
	}
	got := ns[0]
	if got.ExportID != b.id() || got.Outcome != jobs.OutcomeFailed || !got.Pending || got.Attempts != 0 || got.CreatedAt.IsZero() {
		t.Fatalf("notice = %+v; want pending, not tried yet", got)
	}
	var body jobs.Notice
	if err := json.Unmarshal([]byte(got.Body), &body); err != nil {
		t.Fatal(err)
	}
	if body.NoticeID != first.NoticeID || body.Error != "first telling" || body.Reason != jobs.ReasonRetryable || body.Kind != "registrations" {
		t.Fatalf("body = %s; want the first notice's", got.Body)
	}
}

// The outbox hands out the notices due, oldest first and as many as asked; a failed send puts
// a notice off and counts it; a sent notice is not handed out again.
func TestPendingNotices(t *testing.T) {
	t.Parallel()
	b := newLedgerBundle(t)
	ctx := context.Background()
	other := "other-" + b.id()
	before := time.Now().Add(-time.Second)
	a1 := jobs.NewNotice(jobs.OutcomeFailed, b.id(), 1, 1, nil)
	a2 := jobs.NewNotice(jobs.OutcomeDeadLettered, b.id(), 1, 1, nil)
	o1 := jobs.NewNotice(jobs.OutcomeSucceeded, other, 1, 0, nil)
	a3 := jobs.NewNotice(jobs.OutcomeSucceeded, b.id(), 2, 1, nil)
	b.record(t, a1, a2, o1, a3)
	pending := func(now time.Time, limit int) []Notice {
		t.Helper()
		ns, err := b.l.PendingNotices(ctx, now, limit)
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}

	if got := pending(before, 10); len(got) != 0 {
		t.Fatalf("notices due before they were recorded: %v", noticeIDs(got))
	}
	if got := pending(time.Now(), 10); !sameIDs(got, a1, a2, o1, a3) {
		t.Fatalf("pending = %v, want all four, oldest first", noticeIDs(got))
	}
	if got := pending(time.Now(), 2); !sameIDs(got, a1, a2) {
		t.Fatalf("pending, 2 at most = %v, want the two oldest", noticeIDs(got))
	}

	// A failed send puts it off, counted, and keeps it pending.
	next := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	if err := b.l.NoticeFailed(ctx, a1.NoticeID, errors.New("sqs down"), next); err != nil {
		t.Fatal(err)
	}
	if got := pending(time.Now(), 10); !sameIDs(got, a2, o1, a3) {
		t.Fatalf("pending after a1's failed send = %v, want it put off", noticeIDs(got))
	}
	if got := pending(next.Add(time.Minute), 10); !sameIDs(got, a2, o1, a3, a1) {
		t.Fatalf("pending an hour later = %v, want a1 last (due last)", noticeIDs(got))
	}
	if err := b.l.NoticeFailed(ctx, a1.NoticeID, errors.New(strings.Repeat("x", 1000)), next.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	n, err := b.l.PendingNotice(ctx, a1.NoticeID)
	if err != nil {
		t.Fatal(err)
	}
	if n == nil || !n.Pending || n.Attempts != 2 || !n.NextAt.Equal(next.Add(time.Minute)) || len(n.Error) > 600 || !strings.HasPrefix(n.Error, "xxx") {
		t.Fatalf("a1 after two failed sends = %+v; want pending, 2 attempts, due at %s, its error clipped", n, next.Add(time.Minute))
	}

	// Sent: not pending any more, and a late report of either kind changes nothing.
	if err := b.l.NoticeSent(ctx, a2.NoticeID); err != nil {
		t.Fatal(err)
	}
	if n, err := b.l.PendingNotice(ctx, a2.NoticeID); err != nil || n != nil {
		t.Fatalf("PendingNotice of a sent notice = %+v, %v; want nil", n, err)
	}
	if got := pending(time.Now(), 10); !sameIDs(got, o1, a3) {
		t.Fatalf("pending after a2 was sent = %v", noticeIDs(got))
	}
	if err := b.l.NoticeSent(ctx, a2.NoticeID); err != nil {
		t.Fatal(err)
	}
	if err := b.l.NoticeFailed(ctx, a2.NoticeID, errors.New("late failure"), time.Now()); err != nil {
		t.Fatal(err)
	}
	ns, err := b.l.Notices(ctx, b.id())
	if err != nil {
		t.Fatal(err)
	}
	if !sameIDs(ns, a1, a2, a3) {
		t.Fatalf("the export's notices = %v, want its three, in order", noticeIDs(ns))
	}
	if s := ns[1]; s.Pending || s.SentAt.IsZero() || s.Attempts != 1 || s.Error != "" {
		t.Fatalf("a2 after it was sent = %+v; want sent once, no error", s)
	}
	if got := pending(next.Add(time.Hour), 10); !sameIDs(got, o1, a3, a1) {
		t.Fatalf("pending = %v, want a2 never again", noticeIDs(got))
	}

	// The other export's notices are its own.
	ns, err = b.l.Notices(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if !sameIDs(ns, o1) {
		t.Fatalf("the other export's notices = %v, want only its own", noticeIDs(ns))
	}
	if ns, err := b.l.Notices(ctx, "nobody"); err != nil || len(ns) != 0 {
		t.Fatalf("notices of an export without any = %v, %v", noticeIDs(ns), err)
	}
}

// A completion notice an earlier version left pending in its entry is moved into the outbox as
// the export's succeeded notice (its manifest's fields), and removed from the entry; a sent one
// is left alone.
func TestMigrateLegacyNotices(t *testing.T) {
	t.Parallel()
	b := newLedgerBundle(t)
	ctx := context.Background()
	m := jobs.Manifest{ManifestVersion: jobs.ManifestVersion, ExportID: b.id(), Kind: "registrations", Bucket: "b", Key: "k.csv.gz", Rows: 7, SHA256: strings.Repeat("ab", 32)}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	other := b.id() + "-sent"
	for _, d := range []bson.D{
		{{Key: "_id", Value: b.id()}, {Key: "status", Value: Succeeded}, {Key: "attempts", Value: 2}, {Key: "failures", Value: 1},
			{Key: "notice", Value: bson.D{{Key: "body", Value: string(body)}, {Key: "pending", Value: true}, {Key: "attempts", Value: 3}}}},
		{{Key: "_id", Value: other}, {Key: "status", Value: Succeeded}, {Key: "attempts", Value: 1},
			{Key: "notice", Value: bson.D{{Key: "body", Value: string(body)}, {Key: "pending", Value: false}}}},
	} {
		if _, err := b.l.coll.InsertOne(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	n, err := b.l.MigrateLegacyNotices(ctx)
	if err != nil || n != 1 {
		t.Fatalf("MigrateLegacyNotices = %d, %v; want 1 moved", n, err)
	}
	got, err := b.l.PendingNotice(ctx, jobs.NoticeID(b.id(), jobs.OutcomeSucceeded, 0))
	if err != nil || got == nil {
		t.Fatalf("the moved notice: %+v, %v", got, err)
	}
	var notice jobs.Notice
	if err := json.Unmarshal([]byte(got.Body), &notice); err != nil || notice.Outcome != jobs.OutcomeSucceeded || notice.Manifest == nil ||
		notice.Key != m.Key || notice.Rows != 7 || notice.SHA256 != m.SHA256 || notice.Attempts != 2 || notice.Failures != 1 {
		t.Errorf("the moved notice: %s (%v)", got.Body, err)
	}
	var raw bson.M
	if err := b.l.coll.FindOne(ctx, bson.D{{Key: "_id", Value: b.id()}}).Decode(&raw); err != nil || raw["notice"] != nil {
		t.Errorf("the entry still holds its notice: %v (%v)", raw["notice"], err)
	}
	if err := b.l.coll.FindOne(ctx, bson.D{{Key: "_id", Value: other}}).Decode(&raw); err != nil || raw["notice"] == nil {
		t.Errorf("a sent notice was moved or removed: %v (%v)", raw["notice"], err)
	}
	if n, err := b.l.MigrateLegacyNotices(ctx); err != nil || n != 0 {
		t.Errorf("a second migration moved %d (%v), want 0", n, err)
	}
}

package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/clip"
	"github.com/verifiedfan/export-service/jobs"
)

// The outbox of result notices: one document per notice in NoticesCollection, its _id the
// notice id, written when the outcome is recorded and marked sent once the results queue took
// it. A notice is recorded before or with what makes its outcome final, and again by whoever
// finds the outcome later (a redelivered message, an adopting worker): the insert of an id that
// is there already changes nothing, so every outcome gets its notice once in the outbox.
// Notices live apart from the exports' entries because they are written by others than an
// export's owner (the dead-lettering, a cancel), and on FerretDB concurrent updates of one
// document can lose one of them; an insert cannot.

// NoticesCollection holds the result notices.
const NoticesCollection = "export_notices"

// Notice is a result notice in the outbox.
type Notice struct {
	NoticeID string       `bson:"_id" json:"notice_id"`
	ExportID string       `bson:"export_id" json:"-"`
	Outcome  jobs.Outcome `bson:"outcome" json:"outcome"`
	// Body is the notice, as JSON.
	Body      string    `bson:"body" json:"-"`
	Pending   bool      `bson:"pending" json:"pending"`
	Attempts  int       `bson:"attempts" json:"attempts"`
	NextAt    time.Time `bson:"next_at" json:"next_at,omitzero"`
	SentAt    time.Time `bson:"sent_at,omitempty" json:"sent_at,omitzero"`
	Error     string    `bson:"error,omitempty" json:"error,omitempty"`
	CreatedAt time.Time `bson:"created_at" json:"created_at"`
}

func (l *Ledger) notices() *mongo.Collection {
	return l.coll.Database().Collection(NoticesCollection)
}

// RecordNotice puts n in the outbox, pending, unless a notice of its id is there already;
// recorded says this call put it there (and should send it).
func (l *Ledger) RecordNotice(ctx context.Context, n *jobs.Notice) (recorded bool, err error) {
	body, err := n.Encode()
	if err != nil {
		return false, err
	}
	now := time.Now().UTC()
	_, err = l.notices().InsertOne(ctx, Notice{NoticeID: n.NoticeID, ExportID: n.ExportID, Outcome: n.Outcome, Body: string(body),
		Pending: true, NextAt: now, CreatedAt: now})
	switch {
	case mongo.IsDuplicateKeyError(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("ledger: record notice %s: %w", n.NoticeID, err)
	}
	return true, nil
}

// PendingNotices returns up to limit notices due to be sent, oldest first.
func (l *Ledger) PendingNotices(ctx context.Context, now time.Time, limit int) ([]Notice, error) {
	cur, err := l.notices().Find(ctx, bson.D{{Key: "pending", Value: true}, {Key: "next_at", Value: bson.D{{Key: "$lte", Value: now}}}},
		options.Find().SetLimit(int64(limit)).SetSort(bson.D{{Key: "next_at", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("ledger: find pending notices: %w", err)
	}
	var out []Notice
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("ledger: read pending notices: %w", err)
	}
	return out, nil
}

// PendingNotice returns the notice if it is pending, nil if it was sent.
func (l *Ledger) PendingNotice(ctx context.Context, noticeID string) (*Notice, error) {
	var n Notice
	err := l.notices().FindOne(ctx, bson.D{{Key: "_id", Value: noticeID}, {Key: "pending", Value: true}}).Decode(&n)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: read notice %s: %w", noticeID, err)
	}
	return &n, nil
}

// NoticeSent records that the notice was sent.
func (l *Ledger) NoticeSent(ctx context.Context, noticeID string) error {
	_, err := l.notices().UpdateOne(ctx, bson.D{{Key: "_id", Value: noticeID}, {Key: "pending", Value: true}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "pending", Value: false}, {Key: "sent_at", Value: time.Now().UTC()}, {Key: "error", Value: ""}}},
			{Key: "$inc", Value: bson.D{{Key: "attempts", Value: 1}}}})
	if err != nil {
		return fmt.Errorf("ledger: record notice %s as sent: %w", noticeID, err)
	}
	return nil
}

// NoticeFailed records a failed send of the notice and when to try again.
func (l *Ledger) NoticeFailed(ctx context.Context, noticeID string, cause error, next time.Time) error {
	_, err := l.notices().UpdateOne(ctx, bson.D{{Key: "_id", Value: noticeID}, {Key: "pending", Value: true}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "next_at", Value: next.UTC()}, {Key: "error", Value: clip.String(cause.Error(), 500)}}},
			{Key: "$inc", Value: bson.D{{Key: "attempts", Value: 1}}}})
	if err != nil {
		return fmt.Errorf("ledger: record the failed send of notice %s: %w", noticeID, err)
	}
	return nil
}

// Notices returns the export's notices, oldest first.
func (l *Ledger) Notices(ctx context.Context, exportID string) ([]Notice, error) {
	cur, err := l.notices().Find(ctx, bson.D{{Key: "export_id", Value: exportID}}, options.Find().SetSort(bson.D{{Key: "created_at", Value: 1}}))
	if err != nil {
		return nil, fmt.Errorf("ledger: find the notices of export %s: %w", exportID, err)
	}
	var out []Notice
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("ledger: read the notices of export %s: %w", exportID, err)
	}
	return out, nil
}

// legacyNotice is the completion notice an entry held before result notices had a collection
// of their own (its body the manifest's JSON).
type legacyNotice struct {
	Body    string `bson:"body"`
	Pending bool   `bson:"pending"`
}

// MigrateLegacyNotices moves the pending completion notices that entries written by earlier
// versions still hold (a results queue that was down across the upgrade, or a worker of the
// earlier version still running in a rolling deploy) into the outbox, as succeeded notices,
// and removes them from their entries. It returns how many it moved.
func (l *Ledger) MigrateLegacyNotices(ctx context.Context) (int, error) {
	cur, err := l.coll.Find(ctx, bson.D{{Key: "notice.pending", Value: true}})
	if err != nil {
		return 0, fmt.Errorf("ledger: find earlier completion notices: %w", err)
	}
	var entries []struct {
		Entry  `bson:",inline"`
		Notice legacyNotice `bson:"notice"`
	}
	if err := cur.All(ctx, &entries); err != nil {
		return 0, fmt.Errorf("ledger: read earlier completion notices: %w", err)
	}
	moved := 0
	for _, e := range entries {
		var m jobs.Manifest
		if err := json.Unmarshal([]byte(e.Notice.Body), &m); err != nil {
			return moved, fmt.Errorf("ledger: decode the earlier completion notice of export %s: %w", e.ExportID, err)
		}
		if _, err := l.RecordNotice(ctx, jobs.NewNotice(jobs.OutcomeSucceeded, e.ExportID, e.Attempts, e.Failures, &m)); err != nil {
			return moved, err
		}
		if _, err := l.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: e.ExportID}, {Key: "notice.pending", Value: true}},
			bson.D{{Key: "$unset", Value: bson.D{{Key: "notice", Value: ""}}}}); err != nil {
			return moved, fmt.Errorf("ledger: remove the earlier completion notice of export %s: %w", e.ExportID, err)
		}
		moved++
	}
	return moved, nil
}

// noticeIndexes are the outbox's indexes: the scan for due notices, and an export's notices.
var noticeIndexes = []jobs.Index{
	{Name: "pending_1_next_at_1", Keys: []string{"pending", "next_at"}},
	{Name: "export_id_1_created_at_1", Keys: []string{"export_id", "created_at"}},
}

// CreateIndexes creates the ledger's indexes (the `indexes` command; idempotent). It returns
// the "collection.index" names it ensured and every failure.
func CreateIndexes(ctx context.Context, db *mongo.Database) ([]string, error) {
	done, errs := jobs.CreateCollectionIndexes(ctx, db.Collection(NoticesCollection), noticeIndexes)
	return done, errors.Join(errs...)
}

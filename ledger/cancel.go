package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/verifiedfan/export-service/internal/clip"
	"github.com/verifiedfan/export-service/jobs"
)

// A cancel is a request in CancelsCollection, one document per export, inserted by the cancel
// command or a cancel message and never changed: an insert cannot be lost to a concurrent
// update of the export's entry (on FerretDB an update is a read and a later replace). Whoever
// next handles the export carries it out:
//   - a claim of its message (queued, waiting for a retry, released) records it cancelled and
//     the message is acknowledged without running (ClaimCancelled);
//   - the running attempt sees it at its next lease renewal, or at its fence before it commits
//     its object or manifest (ErrCancelRequested), aborts its upload and records it cancelled;
//   - the segments of a split export see it the same way (by the export's id).
//
// An export that succeeded is not cancelled; one that succeeds before its cancel is carried
// out stays succeeded.

// CancelsCollection holds the cancel requests.
const CancelsCollection = "export_cancels"

// CancelRequest is an export's cancel request.
type CancelRequest struct {
	ExportID    string    `bson:"_id" json:"-"`
	RequestedAt time.Time `bson:"requested_at" json:"requested_at"`
	RequestedBy string    `bson:"requested_by,omitempty" json:"requested_by,omitempty"`
	Reason      string    `bson:"reason,omitempty" json:"reason,omitempty"`
}

// Error is what a cancelled export records as its error.
func (c *CancelRequest) Error() string {
	s := "cancelled"
	if c.RequestedBy != "" {
		s += " by " + c.RequestedBy
	}
	s += " at " + c.RequestedAt.UTC().Format(time.RFC3339)
	if c.Reason != "" {
		s += ": " + c.Reason
	}
	return s
}

// Is makes a *CancelRequest match ErrCancelRequested.
func (c *CancelRequest) Is(target error) bool { return target == ErrCancelRequested }

// ErrCancelRequested is the error of an attempt whose export was cancelled: its fence returns
// it (the *CancelRequest), so that nothing is committed.
var ErrCancelRequested = errors.New("ledger: the export was cancelled")

func (l *Ledger) cancels() *mongo.Collection {
	return l.coll.Database().Collection(CancelsCollection)
}

// ExportOf is the export a ledger id belongs to: the id itself, or a segment's export.
func ExportOf(id string) string {
	export, _, _ := strings.Cut(id, "/segment/")
	return export
}

// RequestCancel records a cancel request of the export, unless it succeeded already. It
// returns the entry as found (Status "" when the export was not claimed yet) and whether the
// request was recorded now (false: it succeeded, or was asked to cancel before).
func (l *Ledger) RequestCancel(ctx context.Context, exportID, by, reason string) (Entry, bool, error) {
	e, err := l.Get(ctx, exportID)
	switch {
	case errors.Is(err, ErrNotFound):
		e = Entry{ExportID: exportID}
	case err != nil:
		return e, false, err
	case e.Status == Succeeded:
		return e, false, nil
	}
	_, err = l.cancels().InsertOne(ctx, CancelRequest{ExportID: exportID, RequestedAt: time.Now().UTC().Truncate(time.Millisecond),
		RequestedBy: by, Reason: clip.String(reason, 4*jobs.MaxCancelReason)}) // characters of up to 4 bytes
	if mongo.IsDuplicateKeyError(err) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("ledger: record the cancel of export %s: %w", exportID, err)
	}
	return e, true, nil
}

// CancelRequested returns the cancel request of the export (or of the export a segment id
// belongs to), nil if there is none.
func (l *Ledger) CancelRequested(ctx context.Context, id string) (*CancelRequest, error) {
	var c CancelRequest
	err := l.cancels().FindOne(ctx, bson.D{{Key: "_id", Value: ExportOf(id)}}).Decode(&c)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: read the cancel request of export %s: %w", ExportOf(id), err)
	}
	return &c, nil
}

// CancelErr is the export's cancel request as an error (a *CancelRequest, matching
// ErrCancelRequested), the error of reading it, or nil when there is none: the check of a
// fence before a commit.
func (l *Ledger) CancelErr(ctx context.Context, id string) error {
	c, err := l.CancelRequested(ctx, id)
	if c != nil {
		return c
	}
	return err
}

// claimCancelled carries out the cancel c of the claimed unit (an export, or a segment whose
// export was cancelled): an entry not claimed yet, or whose attempt is not running, is recorded
// cancelled. It returns what the claim found: ClaimCancelled (with the entry as recorded), or
// AlreadyDone, InSegments or Busy (a running attempt stops at its next lease renewal).
// handled is false for an attempt that died running (its lease expired): it may have completed
// the export before it died, so the unit is claimed as usual; its new owner adopts a complete
// export, or carries out the cancel.
func (l *Ledger) claimCancelled(ctx context.Context, job *jobs.Job, c *CancelRequest) (res ClaimResult, e Entry, handled bool, err error) {
	id := job.Message.ExportID
	for range 5 {
		now := time.Now().UTC().Truncate(time.Millisecond)
		e, err := l.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			doc := bson.D{{Key: "_id", Value: id}, {Key: "status", Value: Cancelled}, {Key: "attempts", Value: 0}, {Key: "failures", Value: 0},
				{Key: "kind", Value: job.Plan.Kind.Name}, {Key: "destination", Value: job.Destination.Name},
				{Key: "bucket", Value: job.Destination.Bucket}, {Key: "key", Value: job.Key},
				{Key: "reason", Value: jobs.ReasonCancelled}, {Key: "error", Value: c.Error()},
				{Key: "created_at", Value: now}, {Key: "updated_at", Value: now}, {Key: "finished_at", Value: now}}
			_, err := l.coll.InsertOne(ctx, doc)
			if mongo.IsDuplicateKeyError(err) {
				continue
			}
			if err != nil {
				return 0, e, true, fmt.Errorf("ledger: record the cancel of export %s: %w", id, err)
			}
			return ClaimCancelled, Entry{ExportID: id, Status: Cancelled, Reason: jobs.ReasonCancelled, Error: c.Error(), FinishedAt: now}, true, nil
		}
		if err != nil {
			return 0, e, true, err
		}
		switch {
		case e.Status == Cancelled:
			return ClaimCancelled, e, true, nil
		case e.Status == Succeeded:
			return AlreadyDone, e, true, nil
		case e.Status == Segmented:
			return InSegments, e, true, nil
		case e.Status == Running && !e.LeaseExpires.Before(now):
			return Busy, e, true, nil
		case e.Status == Running:
			return 0, e, false, nil
		}
		filter := bson.D{{Key: "_id", Value: id}, {Key: "attempts", Value: e.Attempts},
			{Key: "status", Value: e.Status}, {Key: "lease_expires", Value: e.LeaseExpires}}
		set := bson.D{{Key: "status", Value: Cancelled}, {Key: "reason", Value: jobs.ReasonCancelled}, {Key: "error", Value: c.Error()},
			{Key: "permanent", Value: false}, {Key: "updated_at", Value: now}, {Key: "finished_at", Value: now}, {Key: "lease_expires", Value: now}}
		r, err := l.coll.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: set}, {Key: "$unset", Value: bson.D{{Key: "checkpoint", Value: ""}}}})
		if err != nil {
			return 0, e, true, fmt.Errorf("ledger: record the cancel of export %s: %w", id, err)
		}
		if r.MatchedCount == 1 {
			e.Status, e.Reason, e.Error, e.Permanent, e.FinishedAt, e.Checkpoint = Cancelled, jobs.ReasonCancelled, c.Error(), false, now, nil
			return ClaimCancelled, e, true, nil
		}
	}
	return 0, Entry{}, true, fmt.Errorf("ledger: record the cancel of export %s: the entry kept changing", id)
}

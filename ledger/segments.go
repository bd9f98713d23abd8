package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/verifiedfan/export-service/jobs"
)

// An export split into segments has its own entry (status Segmented, with the plan) and one
// entry per segment, SegmentID(export, i), claimed, leased, checkpointed and finished like an
// export. The segment that finds every segment succeeded completes the export; which one does
// is decided by the insert of a document with a unique _id into CompletionsCollection (an
// insert is atomic on FerretDB too, where a conditional update is not).

// CompletionsCollection holds the claims of completing a split export.
const CompletionsCollection = "export_completions"

// SegmentID is the ledger id of segment i of an export.
func SegmentID(exportID string, i int) string { return exportID + "/segment/" + strconv.Itoa(i) }

// SetSegmentPlan records the plan of the running attempt's export, before its segments'
// messages are sent: a planner that dies after sending some finds it at its next attempt and
// sends them again (their entries make duplicates harmless).
func (l *Ledger) SetSegmentPlan(ctx context.Context, e Entry, plan *jobs.SegmentPlan) error {
	return l.ownUpdate(ctx, e, "record the segment plan", bson.D{{Key: "segments", Value: plan}, {Key: "updated_at", Value: time.Now().UTC()}})
}

// MarkSegmented ends the planner's attempt: the export runs as its segments now.
func (l *Ledger) MarkSegmented(ctx context.Context, e Entry) error {
	now := time.Now().UTC()
	return l.ownUpdate(ctx, e, "record the split", bson.D{{Key: "status", Value: Segmented}, {Key: "lease_expires", Value: now}, {Key: "updated_at", Value: now}})
}

// Segments returns the entries of the export's k segments, in order; a segment whose message
// was not run yet has none (its Status is "").
func (l *Ledger) Segments(ctx context.Context, exportID string, k int) ([]Entry, error) {
	ids := make(bson.A, k)
	for i := range k {
		ids[i] = SegmentID(exportID, i)
	}
	cur, err := l.coll.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
	if err != nil {
		return nil, fmt.Errorf("ledger: read the segments of export %s: %w", exportID, err)
	}
	var found []Entry
	if err := cur.All(ctx, &found); err != nil {
		return nil, fmt.Errorf("ledger: read the segments of export %s: %w", exportID, err)
	}
	out := make([]Entry, k)
	for i := range out {
		out[i].ExportID = SegmentID(exportID, i)
	}
	for _, e := range found {
		for i := range out {
			if out[i].ExportID == e.ExportID {
				out[i] = e
			}
		}
	}
	return out, nil
}

// SegmentCounts are the segments of an export by state.
type SegmentCounts struct {
	Done    int `json:"done"`
	Running int `json:"running"`
	Waiting int `json:"waiting"`
	Failed  int `json:"failed"`
}

// CountSegments says how many of the export's segments are done, running, waiting (not
// started, released, or failed and to be retried) and failed for good.
func CountSegments(segs []Entry) SegmentCounts {
	var c SegmentCounts
	for _, s := range segs {
		switch {
		case s.Status == Succeeded:
			c.Done++
		case s.Status == Running:
			c.Running++
		case s.Status == Failed && s.Permanent:
			c.Failed++
		default:
			c.Waiting++
		}
	}
	return c
}

// ClaimCompletion makes this worker the one completing the split export, if no other is: the
// first insert of the export's completion document wins. A claim older than stale is the claim
// of a worker that died completing it: it is replaced (the completion is idempotent, so two
// completers after such a takeover do no harm).
func (l *Ledger) ClaimCompletion(ctx context.Context, exportID, workerID string, stale time.Duration) (bool, error) {
	coll := l.coll.Database().Collection(CompletionsCollection)
	now := time.Now().UTC()
	for range 2 {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: exportID}, {Key: "worker_id", Value: workerID}, {Key: "at", Value: now}})
		if err == nil {
			return true, nil
		}
		if !mongo.IsDuplicateKeyError(err) {
			return false, fmt.Errorf("ledger: claim the completion of export %s: %w", exportID, err)
		}
		res, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: exportID}, {Key: "at", Value: bson.D{{Key: "$lt", Value: now.Add(-stale)}}}})
		if err != nil {
			return false, fmt.Errorf("ledger: claim the completion of export %s: %w", exportID, err)
		}
		if res.DeletedCount == 0 {
			return false, nil
		}
	}
	return false, nil
}

// ReleaseCompletion gives the completion up after it failed, so that the next try of a
// segment's message completes the export at once.
func (l *Ledger) ReleaseCompletion(ctx context.Context, exportID, workerID string) error {
	_, err := l.coll.Database().Collection(CompletionsCollection).DeleteOne(ctx, bson.D{{Key: "_id", Value: exportID}, {Key: "worker_id", Value: workerID}})
	if err != nil {
		return fmt.Errorf("ledger: give up the completion of export %s: %w", exportID, err)
	}
	return nil
}

// Ended says whether an export has ended: succeeded, failed for good, or cancelled.
func Ended(e Entry) bool {
	return e.Status == Succeeded || e.Status == Cancelled || e.Status == Failed && e.Permanent
}

// errNotSegmented says a split export was not waiting for its segments any more.
var errNotSegmented = errors.New("the export is not running in segments any more")

// IsNotSegmented reports whether err says the split export had ended already.
func IsNotSegmented(err error) bool { return errors.Is(err, errNotSegmented) }

// EndSegmented records the outcome of a split export (Succeeded; Failed for good, with the
// segment's error and reason; or Cancelled), unless it has ended already.
func (l *Ledger) EndSegmented(ctx context.Context, exportID string, status Status, res jobs.Result, cause error, reason jobs.Reason) error {
	set := outcomeSet(status, res, cause, reason)
	// Whatever the planner's attempt recorded (it may have failed, retryably, after sending
	// the segments' messages), the export has not ended until it succeeded or failed for good.
	filter := bson.D{{Key: "_id", Value: exportID}, {Key: "segments", Value: bson.D{{Key: "$exists", Value: true}}},
		{Key: "status", Value: bson.D{{Key: "$nin", Value: bson.A{Succeeded, Cancelled}}}}, {Key: "permanent", Value: bson.D{{Key: "$ne", Value: true}}}}
	r, err := l.coll.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("ledger: record %s of export %s: %w", status, exportID, err)
	}
	if r.MatchedCount == 0 {
		return fmt.Errorf("ledger: record %s of export %s: %w", status, exportID, errNotSegmented)
	}
	return nil
}

// Progress is what a split export's segments have done so far, for a person (Status).
type Progress struct {
	Segments int `json:"segments"`
	SegmentCounts
	Rows              int64 `json:"rows"`
	Bytes             int64 `json:"bytes"`
	BytesUncompressed int64 `json:"bytes_uncompressed"`
}

// Status returns the export's entry with its notices and cancel request; for a split export
// that is not finished, its segments' Progress too, and its rows and bytes are their sums so
// far. An export not claimed yet but asked to cancel has an entry of its id and cancel request
// only; otherwise it is ErrNotFound.
func (l *Ledger) Status(ctx context.Context, exportID string) (Entry, error) {
	e, err := l.Get(ctx, exportID)
	c, cerr := l.CancelRequested(ctx, exportID)
	if cerr != nil {
		return e, cerr
	}
	if errors.Is(err, ErrNotFound) && c != nil {
		return Entry{ExportID: exportID, CancelRequest: c}, nil
	}
	if err != nil {
		return e, err
	}
	e.CancelRequest = c
	if e.Notices, err = l.Notices(ctx, exportID); err != nil {
		return e, err
	}
	if e.Segments == nil || e.Status == Succeeded {
		return e, nil
	}
	segs, err := l.Segments(ctx, exportID, e.Segments.Segments())
	if err != nil {
		return e, err
	}
	p := &Progress{Segments: len(segs), SegmentCounts: CountSegments(segs)}
	for _, s := range segs {
		p.Rows += s.Rows
		p.Bytes += s.Bytes
		p.BytesUncompressed += s.BytesUncompressed
	}
	e.Progress = p
	if e.Status == Segmented || e.Status == Running {
		e.Rows, e.Bytes, e.BytesUncompressed = p.Rows, p.Bytes, p.BytesUncompressed
	}
	return e, nil
}

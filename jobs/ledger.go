package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Ledger statuses.
const (
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	// StatusReleased: the attempt was stopped by a shutdown and its message put back.
	StatusReleased = "released"
)

// LedgerCollection is the collection of the export ledger.
const LedgerCollection = "exports"

// LedgerEntry is one export's document in the ledger: the single source of truth of whether an
// export ran, is running (and under whose lease) or failed.
type LedgerEntry struct {
	ExportID string `bson:"_id"`
	Status   string `bson:"status"`
	Attempts int    `bson:"attempts"`
	WorkerID string `bson:"worker_id"`
	// MessageID is the SQS message that carries the running attempt (see the handover of
	// exports longer than the visibility limit in worker.ExportHandler).
	MessageID         string    `bson:"message_id"`
	LeaseExpires      time.Time `bson:"lease_expires"`
	Kind              string    `bson:"kind"`
	Destination       string    `bson:"destination"`
	Bucket            string    `bson:"bucket"`
	Key               string    `bson:"key"`
	Rows              int64     `bson:"rows"`
	BytesUncompressed int64     `bson:"bytes_uncompressed"`
	Bytes             int64     `bson:"bytes"`
	SHA256            string    `bson:"sha256,omitempty"`
	Error             string    `bson:"error,omitempty"`
	Reason            string    `bson:"reason,omitempty"`
	CreatedAt         time.Time `bson:"created_at"`
	StartedAt         time.Time `bson:"started_at"`
	UpdatedAt         time.Time `bson:"updated_at"`
	FinishedAt        time.Time `bson:"finished_at,omitempty"`
}

// Ledger records exports in MongoDB.
type Ledger struct {
	coll *mongo.Collection
}

// NewLedger returns the ledger in db.
func NewLedger(db *mongo.Database) *Ledger {
	return &Ledger{coll: db.Collection(LedgerCollection)}
}

// ClaimResult says what a claim found.
type ClaimResult int

const (
	// Claimed: this attempt owns the export now.
	Claimed ClaimResult = iota
	// AlreadyDone: the export succeeded before; the message is a duplicate.
	AlreadyDone
	// Busy: another attempt holds a live lease on the export.
	Busy
)

// Attempt is a claimed export: the lease this worker holds on it.
type Attempt struct {
	ExportID string
	WorkerID string
	Number   int
}

// Claim atomically takes the export for workerID, unless it already succeeded or another
// attempt holds a lease that has not expired. It returns the entry as it is after the claim
// (or as found, when not claimed).
func (l *Ledger) Claim(ctx context.Context, job *Job, workerID, messageID string, lease time.Duration) (ClaimResult, LedgerEntry, error) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	id := job.Message.ExportID
	filter := bson.D{{Key: "_id", Value: id}, {Key: "$or", Value: bson.A{
		bson.D{{Key: "status", Value: bson.D{{Key: "$in", Value: bson.A{StatusFailed, StatusReleased}}}}},
		bson.D{{Key: "status", Value: StatusRunning}, {Key: "lease_expires", Value: bson.D{{Key: "$lt", Value: now}}}},
	}}}
	update := bson.D{
		{Key: "$set", Value: bson.D{
			{Key: "status", Value: StatusRunning},
			{Key: "worker_id", Value: workerID},
			{Key: "message_id", Value: messageID},
			{Key: "lease_expires", Value: now.Add(lease)},
			{Key: "kind", Value: job.Plan.Kind.Name},
			{Key: "destination", Value: job.Destination.Name},
			{Key: "bucket", Value: job.Destination.Bucket},
			{Key: "key", Value: job.Key},
			{Key: "rows", Value: int64(0)},
			{Key: "bytes_uncompressed", Value: int64(0)},
			{Key: "bytes", Value: int64(0)},
			{Key: "error", Value: ""},
			{Key: "reason", Value: ""},
			{Key: "started_at", Value: now},
			{Key: "updated_at", Value: now},
		}},
		{Key: "$inc", Value: bson.D{{Key: "attempts", Value: 1}}},
		{Key: "$setOnInsert", Value: bson.D{{Key: "created_at", Value: now}}},
	}
	var e LedgerEntry
	err := l.coll.FindOneAndUpdate(ctx, filter, update,
		options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&e)
	if err == nil {
		return Claimed, e, nil
	}
	if !mongo.IsDuplicateKeyError(err) {
		return 0, e, fmt.Errorf("jobs: ledger: claim export %s: %w", id, err)
	}
	// The export exists and did not match: it is done or leased by someone else.
	e, err = l.Get(ctx, id)
	if err != nil {
		return 0, e, err
	}
	if e.Status == StatusSucceeded {
		return AlreadyDone, e, nil
	}
	return Busy, e, nil
}

// errLeaseLost is returned by Renew when the attempt no longer owns the export.
var errLeaseLost = errors.New("jobs: ledger: lease lost")

// IsLeaseLost reports whether err says the attempt lost its ledger lease.
func IsLeaseLost(err error) bool { return errors.Is(err, errLeaseLost) }

// ownFilter matches the export only while this attempt still owns it.
func ownFilter(e LedgerEntry) bson.D {
	return bson.D{{Key: "_id", Value: e.ExportID}, {Key: "worker_id", Value: e.WorkerID},
		{Key: "attempts", Value: e.Attempts}, {Key: "status", Value: StatusRunning}}
}

// Renew extends the attempt's lease and records its progress. It fails with a lease-lost
// error when another attempt took the export over.
func (l *Ledger) Renew(ctx context.Context, e LedgerEntry, lease time.Duration, p *Progress) error {
	now := time.Now().UTC()
	set := bson.D{{Key: "lease_expires", Value: now.Add(lease)}, {Key: "updated_at", Value: now}}
	if p != nil {
		set = append(set, bson.E{Key: "rows", Value: p.Rows.Load()},
			bson.E{Key: "bytes_uncompressed", Value: p.BytesUncompressed.Load()},
			bson.E{Key: "bytes", Value: p.BytesCompressed.Load()})
	}
	res, err := l.coll.UpdateOne(ctx, ownFilter(e), bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("jobs: ledger: renew lease of export %s: %w", e.ExportID, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("export %s: %w", e.ExportID, errLeaseLost)
	}
	return nil
}

// SetMessage records that the running attempt is now carried by another SQS message.
func (l *Ledger) SetMessage(ctx context.Context, e LedgerEntry, messageID string) error {
	res, err := l.coll.UpdateOne(ctx, ownFilter(e), bson.D{{Key: "$set", Value: bson.D{{Key: "message_id", Value: messageID}}}})
	if err != nil {
		return fmt.Errorf("jobs: ledger: set message of export %s: %w", e.ExportID, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("export %s: %w", e.ExportID, errLeaseLost)
	}
	return nil
}

// HandOver moves the running attempt from the message fromID to toID, if it is still
// carried by fromID; it reports whether it did. Any holder of the message fromID may call it.
func (l *Ledger) HandOver(ctx context.Context, exportID, fromID, toID string) (bool, error) {
	res, err := l.coll.UpdateOne(ctx,
		bson.D{{Key: "_id", Value: exportID}, {Key: "status", Value: StatusRunning}, {Key: "message_id", Value: fromID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "message_id", Value: toID}}}})
	if err != nil {
		return false, fmt.Errorf("jobs: ledger: hand export %s over to message %s: %w", exportID, toID, err)
	}
	return res.MatchedCount == 1, nil
}

// Finish records the attempt's outcome: status (succeeded, failed or released), the result's
// counts, and the error and its reason if any.
func (l *Ledger) Finish(ctx context.Context, e LedgerEntry, status string, res Result, cause error, reason string) error {
	now := time.Now().UTC()
	set := bson.D{
		{Key: "status", Value: status},
		{Key: "rows", Value: res.Stats.Rows},
		{Key: "bytes_uncompressed", Value: res.Stats.BytesUncompressed},
		{Key: "bytes", Value: res.Stats.BytesCompressed},
		{Key: "updated_at", Value: now},
		{Key: "finished_at", Value: now},
		{Key: "lease_expires", Value: now},
	}
	if res.Stats.SHA256 != "" {
		set = append(set, bson.E{Key: "sha256", Value: res.Stats.SHA256})
	}
	if cause != nil {
		set = append(set, bson.E{Key: "error", Value: truncate(cause.Error(), 2000)}, bson.E{Key: "reason", Value: reason})
	}
	r, err := l.coll.UpdateOne(ctx, ownFilter(e), bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("jobs: ledger: record %s of export %s: %w", status, e.ExportID, err)
	}
	if r.MatchedCount == 0 {
		return fmt.Errorf("export %s: %w", e.ExportID, errLeaseLost)
	}
	return nil
}

// Get returns an export's ledger entry.
func (l *Ledger) Get(ctx context.Context, exportID string) (LedgerEntry, error) {
	var e LedgerEntry
	err := l.coll.FindOne(ctx, bson.D{{Key: "_id", Value: exportID}}).Decode(&e)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return e, fmt.Errorf("jobs: ledger: export %s: %w", exportID, ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("jobs: ledger: get export %s: %w", exportID, err)
	}
	return e, nil
}

// ErrNotFound means the ledger has no entry for an export.
var ErrNotFound = errors.New("not found")

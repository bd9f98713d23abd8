// Package ledger keeps the export ledger: one MongoDB document per export that says whether it
// ran, is running (under whose lease and fencing token) or failed, how often it failed, and
// the completion notice waiting to be sent. The worker writes it; the status command and
// enqueue --wait read it and say what it means (Describe).
package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/clip"
	"github.com/verifiedfan/export-service/jobs"
)

// Status is the state of an export in the ledger.
type Status string

// Statuses.
const (
	Running   Status = "running"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	// Released: the attempt was stopped by a shutdown and its message put back; not a failure.
	Released Status = "released"
	// Segmented: the export was split into segments (Entry.Segments), each with an entry of
	// its own (SegmentID); it ends when the last of them completes it, or one fails for good.
	Segmented Status = "segmented"
	// Cancelled: the export was cancelled (see CancelRequest) before it completed; it wrote
	// no object and no manifest, and does not run again.
	Cancelled Status = "cancelled"
)

// Collection is the collection of the export ledger.
const Collection = "exports"

// Entry is one export's document in the ledger: the single source of truth of whether an
// export ran, is running (and under whose lease) or failed.
type Entry struct {
	ExportID string `bson:"_id" json:"export_id"`
	Status   Status `bson:"status" json:"status"`
	// Attempts counts the claims of the export (every attempt that started).
	Attempts int `bson:"attempts" json:"attempts"`
	// Failures counts the attempts that failed: a recorded failure, or an attempt whose lease
	// expired while it ran (its worker died). Releases at shutdown do not count. The worker
	// dead-letters the export when it reaches its bound, whatever SQS's receive count says
	// (a handover or release copy starts that count again at 1).
	Failures int `bson:"failures" json:"failures"`
	// Token fences the attempt that holds the export: every write of a running attempt, and
	// the commit of its object and manifest, matches it, so an attempt that was taken over
	// can change nothing (however the hosts' clocks disagree about its lease).
	Token    string `bson:"token" json:"-"`
	WorkerID string `bson:"worker_id" json:"worker_id,omitempty"`
	// MessageID is the SQS message that carries the running attempt (see the handover of
	// exports longer than the visibility limit in worker.ExportHandler).
	MessageID string `bson:"message_id" json:"message_id,omitempty"`
	// LeaseExpires matters only while the export runs (JSON shows it then only).
	LeaseExpires      time.Time   `bson:"lease_expires" json:"-"`
	Kind              string      `bson:"kind" json:"kind"`
	Destination       string      `bson:"destination" json:"destination"`
	Bucket            string      `bson:"bucket" json:"bucket,omitempty"`
	Key               string      `bson:"key" json:"key,omitempty"`
	Rows              int64       `bson:"rows" json:"rows"`
	BytesUncompressed int64       `bson:"bytes_uncompressed" json:"bytes_uncompressed"`
	Bytes             int64       `bson:"bytes" json:"bytes"`
	SHA256            string      `bson:"sha256,omitempty" json:"sha256,omitempty"`
	Error             string      `bson:"error,omitempty" json:"error,omitempty"`
	Reason            jobs.Reason `bson:"reason,omitempty" json:"reason,omitempty"`
	// Permanent says the recorded failure is one retrying cannot fix.
	Permanent bool `bson:"permanent,omitempty" json:"permanent,omitempty"`
	// DeadLettered is set when the export's message was sent to the dead-letter queue; a
	// message redriven from there starts a new budget of failures.
	DeadLettered bool      `bson:"dead_lettered,omitempty" json:"dead_lettered,omitempty"`
	CreatedAt    time.Time `bson:"created_at" json:"created_at,omitzero"`
	StartedAt    time.Time `bson:"started_at" json:"started_at,omitzero"`
	UpdatedAt    time.Time `bson:"updated_at" json:"updated_at,omitzero"`
	FinishedAt   time.Time `bson:"finished_at,omitempty" json:"finished_at,omitzero"`
	// Checkpoint is the running export's last checkpoint: its upload and where its stream
	// stands after the last part stored. The next attempt continues from it; it is removed
	// when the export succeeds or fails for good.
	Checkpoint *jobs.Checkpoint `bson:"checkpoint,omitempty" json:"checkpoint,omitempty"`
	// Resumes counts the attempts that started from a checkpoint, Restarts those whose
	// checkpoint's upload was gone (they started over); RowsResumed the rows they did not read
	// again, RowsReread the rows earlier attempts had read past their last checkpoint (or past
	// the start, without one) that were read again: at least that many, since an attempt that
	// was killed read more than it last recorded.
	Resumes     int   `bson:"resumes,omitempty" json:"resumes,omitempty"`
	Restarts    int   `bson:"restarts,omitempty" json:"restarts,omitempty"`
	RowsResumed int64 `bson:"rows_resumed,omitempty" json:"rows_resumed,omitempty"`
	RowsReread  int64 `bson:"rows_reread,omitempty" json:"rows_reread,omitempty"`
	// Notices are the export's result notices, as Status read them from the outbox (not
	// stored here: see NoticesCollection).
	Notices []Notice `bson:"-" json:"notices,omitempty"`
	// CancelRequest is the export's cancel request, as Status read it (not stored here: see
	// CancelsCollection).
	CancelRequest *CancelRequest `bson:"-" json:"cancel_request,omitempty"`
	// Segments is the plan of an export split into segments; SegmentDone is what a finished
	// segment (an entry of its own, SegmentID) stored, for the export's completion.
	Segments    *jobs.SegmentPlan `bson:"segments,omitempty" json:"segments,omitempty"`
	SegmentDone *jobs.SegmentDone `bson:"segment_done,omitempty" json:"segment_done,omitempty"`
	// Progress is a split export's segments' progress, as Status read it (not stored).
	Progress *Progress `bson:"-" json:"progress,omitempty"`
}

// MarshalJSON is the entry as the status command prints it: times in UTC, and the lease
// expiry only while the export runs.
func (e Entry) MarshalJSON() ([]byte, error) {
	type plain Entry
	out := struct {
		plain
		LeaseExpires *time.Time `json:"lease_expires,omitempty"`
	}{plain: plain(e)}
	for _, t := range []*time.Time{&out.CreatedAt, &out.StartedAt, &out.UpdatedAt, &out.FinishedAt} {
		if !t.IsZero() {
			*t = t.UTC()
		}
	}
	if e.Status == Running && !e.LeaseExpires.IsZero() {
		t := e.LeaseExpires.UTC()
		out.LeaseExpires = &t
	}
	return json.Marshal(out)
}

// Ledger records exports in MongoDB.
type Ledger struct {
	coll *mongo.Collection
	// owners serializes this process's owner writes to one export (see ownUpdate), striped
	// by export id.
	owners [64]sync.Mutex
}

// New returns the ledger in db.
func New(db *mongo.Database) *Ledger {
	return &Ledger{coll: db.Collection(Collection)}
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
	// Exhausted: the attempt this message carried failed and may not run again: its failure
	// was permanent, or the export used up its failures (the entry says which). The message
	// belongs in the dead-letter queue. This is how a failure after a handover (when the
	// failed attempt had no message to act on) reaches the DLQ.
	Exhausted
	// InSegments: the export was split into segments; its segments' messages run it.
	InSegments
	// ClaimCancelled: the export was cancelled; the message is acknowledged without running
	// (and a checkpoint's upload aborted).
	ClaimCancelled
)

// ClaimOptions are the rules of a claim.
type ClaimOptions struct {
	WorkerID  string
	MessageID string
	Lease     time.Duration
	// MaxFailures is the number of failed attempts after which a delivery of the message
	// that carried them is not run again (Exhausted). 0 means no bound.
	MaxFailures int
	// Copy says the message is a copy the worker made of the export's carrier (a handover,
	// hop or release copy): it carries the export whatever message id the ledger recorded.
	Copy bool
}

// ClaimInfo describes what a successful claim took over.
type ClaimInfo struct {
	// TookOver is the status the export had before the claim ("" for a new export).
	TookOver Status
	// Crashed says the previous attempt was still "running" with an expired lease: its worker
	// died (or lost MongoDB) without recording an outcome. Its object may be complete.
	Crashed bool
	// PreviousRows is the rows the previous attempt had read when it last said so.
	PreviousRows int64
}

// newToken returns a random fencing token.
func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Claim takes the export for this attempt, unless it already succeeded, another attempt holds
// a lease that has not expired, or the message's attempt failed for good (Exhausted). The
// decision is made on the entry as read, and the claim is a conditional update of exactly that
// version of the entry: of concurrent claims exactly one wins, the others see what it wrote.
// It returns the entry as it is after the claim (or as found, when not claimed).
func (l *Ledger) Claim(ctx context.Context, job *jobs.Job, o ClaimOptions) (ClaimResult, Entry, ClaimInfo, error) {
	id := job.Message.ExportID
	if c, err := l.CancelRequested(ctx, id); err != nil {
		return 0, Entry{}, ClaimInfo{}, err
	} else if c != nil {
		res, e, handled, err := l.claimCancelled(ctx, job, c)
		if handled || err != nil {
			return res, e, ClaimInfo{}, err
		}
		// An attempt that died running: claimed as usual, so that the worker adopts what it
		// may have completed (its manifest) before it carries out the cancel.
	}
	// Most claims are of a new export: create its entry first, one round trip; an entry that
	// exists already answers DuplicateKey, and the claim decides on what it says.
	create := true
	for range 5 {
		now := time.Now().UTC().Truncate(time.Millisecond)
		if create {
			e, err := l.insertClaim(ctx, job, o, now)
			if err == nil {
				return Claimed, e, ClaimInfo{}, nil
			}
			if !mongo.IsDuplicateKeyError(err) {
				return 0, e, ClaimInfo{}, fmt.Errorf("ledger: claim export %s: %w", id, err)
			}
		}
		e, err := l.Get(ctx, id)
		if create = errors.Is(err, ErrNotFound); create {
			continue // deleted since (by an operator): create it again
		}
		if err != nil {
			return 0, e, ClaimInfo{}, err
		}
		info := ClaimInfo{TookOver: e.Status, PreviousRows: e.Rows}
		failures := e.Failures
		switch {
		case e.Status == Succeeded:
			return AlreadyDone, e, info, nil
		case e.Status == Segmented:
			return InSegments, e, info, nil
		case e.Status == Running && !e.LeaseExpires.Before(now):
			return Busy, e, info, nil
		case e.Status == Running:
			info.Crashed = true
			failures++
		case e.Status == Failed && e.MessageID != o.MessageID && e.DeadLettered && !o.Copy:
			failures = 0 // redriven from the dead-letter queue: a new budget
		}
		if (e.MessageID == o.MessageID || o.Copy) && (e.Permanent && e.Status == Failed || o.MaxFailures > 0 && failures >= o.MaxFailures) {
			if info.Crashed {
				// Record the crashed attempt, so the entry says why the export stopped.
				if err := l.exhaust(ctx, e, failures, now); err != nil {
					continue
				}
				e.Status, e.Failures, e.Reason, e.Error = Failed, failures, jobs.ReasonMaxAttempts, crashedError
			}
			return Exhausted, e, info, nil
		}
		set := claimSet(job, o, failures, now)
		// Exactly the version read: the attempt counter changes with every claim, the lease
		// with every renewal, the status with every outcome.
		filter := bson.D{{Key: "_id", Value: id}, {Key: "attempts", Value: e.Attempts},
			{Key: "status", Value: e.Status}, {Key: "lease_expires", Value: e.LeaseExpires}}
		update := bson.D{{Key: "$set", Value: set}, {Key: "$inc", Value: bson.D{{Key: "attempts", Value: 1}}}}
		var after Entry
		err = l.coll.FindOneAndUpdate(ctx, filter, update, options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&after)
		if errors.Is(err, mongo.ErrNoDocuments) {
			continue // changed since it was read
		}
		if err != nil {
			return 0, e, info, fmt.Errorf("ledger: claim export %s: %w", id, err)
		}
		return Claimed, after, info, nil
	}
	return 0, Entry{}, ClaimInfo{}, fmt.Errorf("ledger: claim export %s: the entry kept changing under concurrent claims", id)
}

// claimSet is what a claim writes into the entry.
func claimSet(job *jobs.Job, o ClaimOptions, failures int, now time.Time) bson.D {
	return bson.D{
		{Key: "status", Value: Running},
		{Key: "token", Value: newToken()},
		{Key: "failures", Value: failures},
		{Key: "worker_id", Value: o.WorkerID},
		{Key: "message_id", Value: o.MessageID},
		{Key: "lease_expires", Value: now.Add(o.Lease)},
		{Key: "kind", Value: job.Plan.Kind.Name},
		{Key: "destination", Value: job.Destination.Name},
		{Key: "bucket", Value: job.Destination.Bucket},
		{Key: "key", Value: job.Key},
		{Key: "rows", Value: int64(0)},
		{Key: "bytes_uncompressed", Value: int64(0)},
		{Key: "bytes", Value: int64(0)},
		{Key: "error", Value: ""},
		{Key: "reason", Value: ""},
		{Key: "permanent", Value: false},
		{Key: "dead_lettered", Value: false},
		{Key: "started_at", Value: now},
		{Key: "updated_at", Value: now},
	}
}

// insertClaim creates the entry of a new export, claimed by this attempt, and returns it as
// written.
func (l *Ledger) insertClaim(ctx context.Context, job *jobs.Job, o ClaimOptions, now time.Time) (Entry, error) {
	doc := append(claimSet(job, o, 0, now), bson.E{Key: "_id", Value: job.Message.ExportID},
		bson.E{Key: "attempts", Value: 1}, bson.E{Key: "created_at", Value: now})
	var e Entry
	if _, err := l.coll.InsertOne(ctx, doc); err != nil {
		return e, err
	}
	raw, err := bson.Marshal(doc)
	if err == nil {
		err = bson.Unmarshal(raw, &e)
	}
	return e, err
}

// crashedError is the error recorded for an export whose last attempt died.
const crashedError = "the attempt's worker stopped without recording an outcome (killed?), and the export used up its attempts"

// exhaust records that the crashed attempt of e was the last one it may have.
func (l *Ledger) exhaust(ctx context.Context, e Entry, failures int, now time.Time) error {
	res, err := l.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: e.ExportID}, {Key: "attempts", Value: e.Attempts}, {Key: "status", Value: Running}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: Failed}, {Key: "failures", Value: failures},
			{Key: "reason", Value: jobs.ReasonMaxAttempts}, {Key: "error", Value: crashedError},
			{Key: "updated_at", Value: now}, {Key: "finished_at", Value: now}}}})
	if err != nil {
		return fmt.Errorf("ledger: record the end of export %s: %w", e.ExportID, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("export %s: %w", e.ExportID, errLeaseLost)
	}
	return nil
}

// errLeaseLost is returned by the writes of an attempt that no longer owns the export.
var errLeaseLost = errors.New("ledger: lease lost")

// IsLeaseLost reports whether err says the attempt lost its ledger lease.
func IsLeaseLost(err error) bool { return errors.Is(err, errLeaseLost) }

// ownFilter matches the export only while this attempt still owns it.
func ownFilter(e Entry) bson.D {
	return bson.D{{Key: "_id", Value: e.ExportID}, {Key: "token", Value: e.Token}, {Key: "status", Value: Running}}
}

// ownUpdate applies update to the export if this attempt still owns it.
//
// The owner's writes (renewals, checkpoints, its outcome) come from several goroutines. On
// FerretDB an update is a read and a later replace of the whole entry, so two concurrent
// updates of one entry can lose one of them: a renewal could put a finished export back to
// "running". So the writes of this process to one export are made one at a time, and a write
// is never abandoned because its context was canceled (its server would go on and apply it
// later, after what came next): only the context's deadline bounds it.
func (l *Ledger) ownUpdate(ctx context.Context, e Entry, what string, set bson.D, more ...bson.E) error {
	if d, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(context.WithoutCancel(ctx), d)
		defer cancel()
	} else {
		ctx = context.WithoutCancel(ctx)
	}
	mu := l.ownerLock(e.ExportID)
	mu.Lock()
	defer mu.Unlock()
	update := append(bson.D{{Key: "$set", Value: set}}, more...)
	res, err := l.coll.UpdateOne(ctx, ownFilter(e), update)
	if err != nil {
		return fmt.Errorf("ledger: %s of export %s: %w", what, e.ExportID, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("ledger: %s of export %s: %w", what, e.ExportID, errLeaseLost)
	}
	return nil
}

// ownerLock returns the lock of this process's owner writes to the export.
func (l *Ledger) ownerLock(exportID string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(exportID))
	return &l.owners[h.Sum32()%uint32(len(l.owners))]
}

// Renew extends the attempt's lease and records its progress. It fails with a lease-lost
// error when another attempt took the export over.
func (l *Ledger) Renew(ctx context.Context, e Entry, lease time.Duration, p *jobs.Progress) error {
	now := time.Now().UTC()
	set := bson.D{{Key: "lease_expires", Value: now.Add(lease)}, {Key: "updated_at", Value: now}}
	if p != nil {
		set = append(set, bson.E{Key: "rows", Value: p.Rows.Load()},
			bson.E{Key: "bytes_uncompressed", Value: p.BytesUncompressed.Load()},
			bson.E{Key: "bytes", Value: p.BytesCompressed.Load()})
	}
	return l.ownUpdate(ctx, e, "renew lease", set)
}

// SaveCheckpoint records the attempt's checkpoint, and renews its lease (a stored part is a
// sign of life). It fails with a lease-lost error when another attempt took the export over.
func (l *Ledger) SaveCheckpoint(ctx context.Context, e Entry, cp jobs.Checkpoint, lease time.Duration) error {
	now := time.Now().UTC()
	cp.Attempt = e.Attempts
	return l.ownUpdate(ctx, e, "save the checkpoint", bson.D{{Key: "checkpoint", Value: cp},
		{Key: "lease_expires", Value: now.Add(lease)}, {Key: "updated_at", Value: now}})
}

// RecordResume counts an attempt's start over what earlier attempts did: a start from a
// checkpoint (resumed), or a start over because the checkpoint's upload was gone (restart);
// rowsResumed rows it need not read again, rowsReread rows read before that it reads again.
func (l *Ledger) RecordResume(ctx context.Context, e Entry, resumed, restart bool, rowsResumed, rowsReread int64) error {
	inc := bson.D{{Key: "rows_resumed", Value: rowsResumed}, {Key: "rows_reread", Value: rowsReread}}
	if resumed {
		inc = append(inc, bson.E{Key: "resumes", Value: 1})
	}
	if restart {
		inc = append(inc, bson.E{Key: "restarts", Value: 1})
	}
	return l.ownUpdate(ctx, e, "record the resume", bson.D{{Key: "updated_at", Value: time.Now().UTC()}}, bson.E{Key: "$inc", Value: inc})
}

// Fence checks that the attempt still owns the export and that the export was not cancelled
// (the *CancelRequest, matching ErrCancelRequested), and renews its lease: it is called right
// before the attempt commits anything visible (its object, its manifest).
func (l *Ledger) Fence(ctx context.Context, e Entry, lease time.Duration) error {
	if err := l.CancelErr(ctx, e.ExportID); err != nil {
		return err
	}
	now := time.Now().UTC()
	return l.ownUpdate(ctx, e, "check the fence", bson.D{{Key: "lease_expires", Value: now.Add(lease)}, {Key: "updated_at", Value: now}})
}

// SetMessage records that the running attempt is now carried by another SQS message.
func (l *Ledger) SetMessage(ctx context.Context, e Entry, messageID string) error {
	return l.ownUpdate(ctx, e, "set message", bson.D{{Key: "message_id", Value: messageID}})
}

// Finish records the attempt's outcome: status (succeeded, failed or released), the result's
// counts, and the error and its reason if any. A failure counts toward the export's failures;
// a release does not.
func (l *Ledger) Finish(ctx context.Context, e Entry, status Status, res jobs.Result, cause error, reason jobs.Reason) error {
	set := outcomeSet(status, res, cause, reason)
	if res.Segment != nil && status == Succeeded {
		set = append(set, bson.E{Key: "segment_done", Value: res.Segment})
	}
	var more []bson.E
	if status == Failed {
		more = append(more, bson.E{Key: "$inc", Value: bson.D{{Key: "failures", Value: 1}}})
	}
	if _, permanent := jobs.IsPermanent(cause); status == Succeeded || status == Cancelled || status == Failed && permanent {
		// Nothing will continue it: the object is complete, or its upload was aborted.
		more = append(more, bson.E{Key: "$unset", Value: bson.D{{Key: "checkpoint", Value: ""}}})
	}
	return l.ownUpdate(ctx, e, "record "+string(status), set, more...)
}

// outcomeSet is what an outcome writes into an entry: status, counts, end times, the error and
// its reason (permanent only for a failure).
func outcomeSet(status Status, res jobs.Result, cause error, reason jobs.Reason) bson.D {
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
		_, permanent := jobs.IsPermanent(cause)
		set = append(set, bson.E{Key: "error", Value: clip.String(cause.Error(), 2000)}, bson.E{Key: "reason", Value: reason},
			bson.E{Key: "permanent", Value: permanent && status == Failed})
	}
	return set
}

// Adopt records as succeeded an export whose object and manifest are complete although its
// attempt never said so (its worker died, or lost MongoDB, between writing the manifest and
// recording the outcome): the manifest found at the destination is the proof.
func (l *Ledger) Adopt(ctx context.Context, e Entry, m *jobs.Manifest) error {
	now := time.Now().UTC()
	set := bson.D{
		{Key: "status", Value: Succeeded},
		{Key: "rows", Value: m.Rows},
		{Key: "bytes_uncompressed", Value: m.BytesUncompressed},
		{Key: "bytes", Value: m.BytesCompressed},
		{Key: "sha256", Value: m.SHA256},
		{Key: "key", Value: m.Key},
		{Key: "updated_at", Value: now},
		{Key: "finished_at", Value: now},
		{Key: "lease_expires", Value: now},
	}
	return l.ownUpdate(ctx, e, "adopt the completed object", set, bson.E{Key: "$unset", Value: bson.D{{Key: "checkpoint", Value: ""}}})
}

// MarkDeadLettered records that the failed export's message messageID went to the dead-letter
// queue: other copies of its message are then acknowledged instead of dead-lettered again, and
// a message redriven from the queue starts a new budget.
func (l *Ledger) MarkDeadLettered(ctx context.Context, exportID, messageID string) error {
	_, err := l.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: exportID}, {Key: "status", Value: Failed}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "dead_lettered", Value: true}, {Key: "updated_at", Value: time.Now().UTC()}}}})
	if err != nil {
		return fmt.Errorf("ledger: mark export %s dead-lettered: %w", exportID, err)
	}
	return nil
}

// Get returns an export's ledger entry.
func (l *Ledger) Get(ctx context.Context, exportID string) (Entry, error) {
	var e Entry
	err := l.coll.FindOne(ctx, bson.D{{Key: "_id", Value: exportID}}).Decode(&e)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return e, fmt.Errorf("ledger: export %s: %w", exportID, ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("ledger: get export %s: %w", exportID, err)
	}
	return e, nil
}

// ErrNotFound means the ledger has no entry for an export.
var ErrNotFound = errors.New("not found")

package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/jobs/encode"
)

// Destination is a named place exports may be written to.
type Destination struct {
	Name string
	// Bucket is informational (logs, manifest); the sink already targets it.
	Bucket string
	// Prefix is prepended to every object key, for example "exports/".
	Prefix string
	// Keys is the object key template after Prefix; the zero value is DefaultKeyTemplate.
	Keys KeyTemplate
	Sink Sink
}

// Exporter turns job messages into objects: it decodes and plans a message, queries MongoDB
// and runs the pipeline into the message's destination.
type Exporter struct {
	DB           *mongo.Database
	Kinds        *Registry
	Destinations map[string]Destination
	// GzipLevel is the gzip level (0 means 6).
	GzipLevel int
	// BatchSize is the cursor batch size (0 means the server's default).
	BatchSize int32
	// WrapSource, if set, wraps every export's source (fault-injection tests).
	WrapSource func(Source) Source
	// Compressors is how many goroutines compress one export (0 means 1); Buffers is the
	// budget its part buffers come from (nil: the heap); MemberSize is the uncompressed bytes
	// of a gzip member (0: 4 MiB). See PipelineOptions.
	Compressors int
	Buffers     Buffers
	MemberSize  int64
}

// Job is a decoded, validated and planned message, ready to run.
type Job struct {
	Message     Message
	Plan        *Plan
	Destination Destination
	Key         string
	// RequestedAt is when the job was requested (the SQS message's SentTimestamp): stable
	// across redeliveries, unlike the time a delivery runs.
	RequestedAt time.Time
	// Attempt is the ledger's number of this attempt; 0 if unknown. The first attempt of an
	// export has no earlier upload to clean up.
	Attempt int
	// Resume, if set, is the checkpoint an earlier attempt left: Run continues it.
	Resume *Checkpoint
}

// RunOptions are an attempt's hooks into Run.
type RunOptions struct {
	// Progress, if not nil, is updated while the export runs.
	Progress *Progress
	// Fence, if not nil, is called right before the object and then the manifest are
	// committed; its error stops the commit (an attempt that lost its claim on the export
	// must not write either).
	Fence func(context.Context) error
	// Checkpoint, if not nil, records each checkpoint (see PipelineOptions.Checkpoint).
	Checkpoint func(context.Context, Checkpoint) error
	// Stop ends the export at its next stored part (see PipelineOptions.Stop).
	Stop <-chan struct{}
	// OnStart, if not nil, is called when the export's stream starts: from the checkpoint cp,
	// or from the beginning (cp nil), which can follow a start from a checkpoint whose upload
	// turned out to be gone.
	OnStart func(ctx context.Context, cp *Checkpoint)
}

// IncompleteAborter is implemented by sinks that can abort unfinished uploads of a key left
// behind by an earlier attempt (a worker killed in the middle of an upload).
type IncompleteAborter interface {
	// AbortIncomplete aborts the unfinished uploads of key but keep (a checkpoint's).
	AbortIncomplete(ctx context.Context, key, keep string) (int, error)
}

// Result describes a completed export.
// Where it was written is job.Destination.Bucket and job.Key (and Written, as the sink saw it).
type Result struct {
	// AbortedUploads counts unfinished uploads of earlier attempts this run cleaned up.
	AbortedUploads int
	Stats          Stats
	Written        Written
	Started        time.Time
	Finished       time.Time
	// Manifest is the manifest written after the object, when the export succeeded.
	Manifest *Manifest
	// Resumed is the checkpoint the run continued from, if any; RowsRead are the rows it read
	// itself.
	Resumed  *Checkpoint
	RowsRead int64
	// Restarted says why the job's checkpoint could not be continued (the run started over),
	// if it could not.
	Restarted string
	// Segment is what a segment run stored (RunSegment), for the export's completion.
	Segment *SegmentDone
}

// PrepareMessage validates and plans an already decoded message requested at requestedAt (the
// first SQS delivery's SentTimestamp, carried across copies), and computes its object key once.
func (e *Exporter) PrepareMessage(m Message, requestedAt time.Time) (*Job, error) {
	plan, err := e.Kinds.Plan(m)
	if err != nil {
		return nil, err
	}
	dest, ok := e.Destinations[m.Destination]
	if !ok {
		return nil, Permanentf(ReasonUnknownDestination, `field "destination": unknown destination %q`, m.Destination)
	}
	job := &Job{Message: m, Plan: plan, Destination: dest, RequestedAt: requestedAt}
	if job.Key, err = job.objectKey(); err != nil {
		return nil, err
	}
	return job, nil
}

// objectKey is the deterministic key of the job's object, from its destination's prefix and
// key template: the same export always writes the same key, so a redelivered message can never
// produce a second object. A template using {date} takes the date of RequestedAt. Its errors
// are permanent (reason "invalid_key").
func (j *Job) objectKey() (string, error) {
	return j.Destination.Keys.Render(j.Destination.Prefix, KeyVars{
		ExportID: j.Message.ExportID,
		Kind:     j.Plan.Kind.Name,
		Campaign: j.Plan.Vars[KeyVarCampaign],
		Format:   j.Message.Format,
		Date:     j.RequestedAt,
	})
}

// Run executes a prepared job: from the start, or from job.Resume when its upload can still
// be continued (the run starts over otherwise, and says why in Result.Restarted).
func (e *Exporter) Run(ctx context.Context, job *Job, o RunOptions) (Result, error) {
	res := Result{Started: time.Now().UTC()}
	_, resumable := job.Destination.Sink.(PartSink)
	cp := job.Resume
	switch {
	case cp == nil:
	case !resumable:
		res.Restarted, cp = "the destination cannot continue an upload", nil
	case cp.Key != job.Key:
		res.Restarted, cp = fmt.Sprintf("the checkpoint is of key %q, the export now writes %q", cp.Key, job.Key), nil
	case cp.Mark.Rows > 0 && cp.Mark.LastID.Type == 0:
		res.Restarted, cp = "the checkpoint has no _id to continue after", nil
	}
	if a, ok := job.Destination.Sink.(IncompleteAborter); ok && job.Attempt != 1 {
		keep := ""
		if cp != nil {
			keep = cp.Upload.UploadID
		}
		n, err := a.AbortIncomplete(ctx, job.Key, keep)
		res.AbortedUploads = n
		if err != nil {
			return res, fmt.Errorf("jobs: export %s: clean up earlier uploads: %w", job.Message.ExportID, err)
		}
	}
	prog := o.Progress
	if prog == nil {
		prog = new(Progress)
	}
	if cp != nil {
		if err := e.checkUpload(ctx, job, cp); errors.Is(err, ErrUploadGone) {
			res.Restarted, cp = err.Error(), nil
		} else if err != nil {
			return res, fmt.Errorf("jobs: export %s: check the checkpoint's upload: %w", job.Message.ExportID, err)
		}
	}
	for {
		if o.OnStart != nil {
			o.OnStart(ctx, cp)
		}
		stats, written, err := e.stream(ctx, job, cp, o, prog)
		res.Stats, res.Written, res.Finished = stats, written, time.Now().UTC()
		res.RowsRead = stats.Rows
		if cp != nil {
			res.RowsRead -= cp.Mark.Rows
		}
		if cp != nil && errors.Is(err, ErrUploadGone) {
			// Gone since it was checked (a rare race): start over.
			_ = e.checkUpload(ctx, job, cp)
			res.Restarted, cp = err.Error(), nil
			if ctx.Err() == nil {
				continue
			}
		}
		if err != nil {
			return res, fmt.Errorf("jobs: export %s to %s: %w", job.Message.ExportID, job.Destination.Name, err)
		}
		res.Resumed = cp
		break
	}
	// The manifest comes last: its presence means the data object is complete.
	manifest := NewManifest(job, res)
	if _, err := writeManifest(ctx, job.Destination.Sink, manifest, o.Fence); err != nil {
		return res, fmt.Errorf("jobs: export %s to %s: %w", job.Message.ExportID, job.Destination.Name, err)
	}
	res.Manifest = manifest
	return res, nil
}

// checkUpload checks that cp's upload can be continued; when it cannot (ErrUploadGone), the
// upload is aborted, best effort: one that is there but cannot be continued is not left to the
// bucket's lifecycle rule (a partner's bucket may have none).
func (e *Exporter) checkUpload(ctx context.Context, job *Job, cp *Checkpoint) error {
	ps := job.Destination.Sink.(PartSink)
	err := ps.CheckUpload(ctx, job.Key, cp.Upload)
	if errors.Is(err, ErrUploadGone) {
		_ = ps.AbortUpload(ctx, job.Key, cp.Upload.UploadID)
	}
	return err
}

// stream runs the job's query (from cp, if not nil) through the pipeline into its destination.
func (e *Exporter) stream(ctx context.Context, job *Job, cp *Checkpoint, o RunOptions, prog *Progress) (Stats, Written, error) {
	return e.streamInto(ctx, job, cp, o, prog, nil, false)
}

// object is the job's object as its sink writes it.
func (e *Exporter) object(job *Job, o RunOptions) Object {
	return Object{
		Key:             job.Key,
		ContentType:     job.Message.Format.ContentType(),
		ContentEncoding: "gzip",
		Metadata:        map[string]string{"export-id": job.Message.ExportID, "kind": job.Plan.Kind.Name},
		BeforeCommit:    o.Fence,
	}
}

// streamInto is stream, into the segment seg of a shared upload when seg is not nil, without
// the CSV header when noHeader (a segment after the first).
func (e *Exporter) streamInto(ctx context.Context, job *Job, cp *Checkpoint, o RunOptions, prog *Progress, seg *UploadSegment, noHeader bool) (Stats, Written, error) {
	p := job.Plan
	opts := options.Find().SetSort(p.Sort).SetProjection(p.Projection)
	if e.BatchSize > 0 {
		opts.SetBatchSize(e.BatchSize)
	}
	coll := e.DB.Collection(p.Collection)
	guard, err := newEndGuard(ctx, coll, p.Filter)
	if err != nil {
		return Stats{}, Written{}, fmt.Errorf("query %s: %w", p.Collection, err)
	}
	filter := p.Filter
	if cp != nil {
		// The rows after the checkpoint's last one, in the sort's order. Within the bracket of
		// the highest _id (the usual case: one _id type) a plain range does, and is what an
		// index serves best; documents of a later bracket were added after the export began.
		after := AfterID(cp.Mark.LastID)
		if guard.hi.Type == 0 || SameIDBracket(guard.hi, cp.Mark.LastID) {
			after = bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: cp.Mark.LastID}}}}
		}
		filter = bson.D{{Key: "$and", Value: bson.A{p.Filter, after}}}
		guard.last = cp.Mark.LastID
	}
	cur, err := coll.Find(ctx, filter, opts)
	if err != nil {
		return Stats{}, Written{}, fmt.Errorf("query %s: %w", p.Collection, err)
	}
	var src Source = &CursorSource{Cursor: cur}
	if e.WrapSource != nil {
		src = e.WrapSource(src)
	}
	guard.Source = src
	src = guard
	defer func() { _ = src.Close(context.WithoutCancel(ctx)) }()

	newEnc := func(w io.Writer) (encode.Encoder, error) {
		return encode.New(job.Message.Format, w, p.Columns, job.Message.EncoderOptions())
	}
	return Stream(ctx, src, newEnc, job.Destination.Sink, e.object(job, o), PipelineOptions{
		GzipLevel: e.GzipLevel, Progress: prog, Compressors: e.Compressors, MemberSize: e.MemberSize,
		Buffers: e.Buffers, Resume: cp, Checkpoint: o.Checkpoint, Stop: o.Stop, Segment: seg, NoHeader: noHeader,
	})
}

// ObjectReader is implemented by sinks that can read back a small object they wrote.
type ObjectReader interface {
	// ReadObject returns the object at key, at most limit bytes of it; ErrNoObject when there
	// is none.
	ReadObject(ctx context.Context, key string, limit int64) ([]byte, error)
}

// ObjectDeleter is implemented by sinks that can delete an object they wrote.
type ObjectDeleter interface {
	DeleteObject(ctx context.Context, key string) error
}

// ErrNoObject is ReadObject's answer for a key that holds no object.
var ErrNoObject = errors.New("no such object")

// FindManifest returns the manifest of the job's export found at its destination, or nil if
// there is none (or the sink cannot read, or the manifest there is another export's). A
// complete manifest proves a complete object: an attempt that died between writing it and
// recording its success need not be run again.
func (e *Exporter) FindManifest(ctx context.Context, job *Job) (*Manifest, error) {
	r, ok := job.Destination.Sink.(ObjectReader)
	if !ok {
		return nil, nil
	}
	body, err := r.ReadObject(ctx, ManifestKey(job.Key), 1<<20)
	if errors.Is(err, ErrNoObject) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: read the manifest of export %s: %w", job.Message.ExportID, err)
	}
	var m Manifest
	if err := json.Unmarshal(body, &m); err != nil || m.ExportID != job.Message.ExportID || m.Key != job.Key {
		return nil, nil // not this export's: it will be overwritten by the run
	}
	return &m, nil
}

// DiscardIncomplete aborts the job's unfinished uploads (a checkpoint's included: it will
// never be continued) and deletes its data object if it has no manifest: an attempt that
// completed the object and died before its manifest leaves it, and an export that then fails
// for good must not leave a file a reader could take for its result. It reports whether it
// deleted an object. A sink that cannot read or delete leaves the object (its missing manifest
// says it is incomplete).
func (e *Exporter) DiscardIncomplete(ctx context.Context, job *Job) (bool, error) {
	if a, ok := job.Destination.Sink.(IncompleteAborter); ok {
		if _, err := a.AbortIncomplete(ctx, job.Key, ""); err != nil {
			return false, fmt.Errorf("jobs: abort the unfinished uploads of export %s: %w", job.Message.ExportID, err)
		}
	}
	r, okr := job.Destination.Sink.(ObjectReader)
	d, okd := job.Destination.Sink.(ObjectDeleter)
	if !okr || !okd {
		return false, nil
	}
	if m, err := e.FindManifest(ctx, job); err != nil || m != nil {
		return false, err // complete, or unknown: leave it
	}
	if _, err := r.ReadObject(ctx, job.Key, 1); errors.Is(err, ErrNoObject) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("jobs: look for the incomplete object of export %s: %w", job.Message.ExportID, err)
	}
	if err := d.DeleteObject(ctx, job.Key); err != nil {
		return false, fmt.Errorf("jobs: delete the incomplete object of export %s: %w", job.Message.ExportID, err)
	}
	return true, nil
}

// endGuard makes sure a cursor that ended without an error really reached the end of the
// export. A cursor can end early without saying so (a server or proxy that answers a getMore
// on a lost cursor with an empty last batch: seen once under fault injection, 281 of 900 rows
// committed as a success). Before the query runs, the guard notes the highest _id it matches;
// when the cursor ends, it asks the server whether a document of the query remains after the
// last one read, up to that mark. If one does, the source fails (retryable) instead of ending,
// and the sink commits nothing. Documents added during the export (above the mark) and
// documents deleted meanwhile do not count. Exports are sorted by _id, so "after" is the
// server's own order across BSON types. Two small indexed queries per export.
type endGuard struct {
	Source
	coll    *mongo.Collection
	filter  any
	hi      bson.RawValue // zero Type: the query matched nothing at the start
	last    bson.RawValue
	rows    int64
	checked bool
	err     error
}

func newEndGuard(ctx context.Context, coll *mongo.Collection, filter any) (*endGuard, error) {
	g := &endGuard{coll: coll, filter: filter}
	raw, err := coll.FindOne(ctx, filter, options.FindOne().SetSort(bson.D{{Key: "_id", Value: -1}}).
		SetProjection(bson.D{{Key: "_id", Value: 1}})).Raw()
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
	case err != nil:
		return nil, fmt.Errorf("find the last document: %w", err)
	default:
		v := raw.Lookup("_id")
		g.hi = bson.RawValue{Type: v.Type, Value: append([]byte(nil), v.Value...)}
	}
	return g, nil
}

// Next implements Source.
func (g *endGuard) Next(ctx context.Context) bool {
	if g.Source.Next(ctx) {
		v := g.Source.Current().Lookup("_id")
		g.last = bson.RawValue{Type: v.Type, Value: append(g.last.Value[:0], v.Value...)}
		g.rows++
		return true
	}
	if !g.checked && g.Source.Err() == nil && ctx.Err() == nil && g.hi.Type != 0 {
		g.checked = true
		g.err = g.check(ctx)
	}
	return false
}

func (g *endGuard) check(ctx context.Context) error {
	// _id ranges are type-bracketed ({$gt: 3} matches no string); AfterID and
	// UpToID follow the sort order across BSON types.
	conds := bson.A{g.filter}
	if g.last.Type != 0 {
		conds = append(conds, AfterID(g.last))
	}
	conds = append(conds, UpToID(g.hi))
	left := bson.D{{Key: "$and", Value: conds}}
	err := g.coll.FindOne(ctx, left, options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return nil
	case err != nil:
		return fmt.Errorf("check that the cursor reached the end of the export: %w", err)
	}
	return fmt.Errorf("the cursor ended after %d rows, before the end of the export (documents remain after _id %v): %w", g.rows, g.last, errCursorEndedEarly)
}

// errCursorEndedEarly: a cursor ended without an error before the end of its query.
var errCursorEndedEarly = errors.New("cursor ended early")

// Err implements Source.
func (g *endGuard) Err() error {
	if err := g.Source.Err(); err != nil {
		return err
	}
	return g.err
}

// CursorSource adapts a *mongo.Cursor to Source.
type CursorSource struct {
	Cursor *mongo.Cursor
}

var _ Source = (*CursorSource)(nil)

// Next implements Source.
func (c *CursorSource) Next(ctx context.Context) bool { return c.Cursor.Next(ctx) }

// Current implements Source.
func (c *CursorSource) Current() bson.Raw { return c.Cursor.Current }

// Err implements Source.
func (c *CursorSource) Err() error { return c.Cursor.Err() }

// Close implements Source.
func (c *CursorSource) Close(ctx context.Context) error { return c.Cursor.Close(ctx) }

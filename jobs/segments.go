package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/klauspost/compress/flate"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/jobs/encode"
)

// One export, many workers: a large export is planned as K segments over disjoint _id ranges
// of its query (SplitPoints). Every segment is a message of its own that any worker runs,
// resumable like an export, into the export's ONE multipart upload, within its own range of
// part numbers (PutSegment). The last segment to finish completes the upload with every part
// in order and the full-object checksum combined from the segments' (CompleteSegments). The
// gunzipped object is the unsegmented export's: only segment 0 writes the CSV header, and
// the segments' rows, in order, are the query's.

// UploadSegment is one segment's share of a shared multipart upload.
type UploadSegment struct {
	// UploadID is the shared upload (SegmentSink.CreateUpload).
	UploadID string
	// FirstPart is the segment's first part number; the segment may use the numbers
	// FirstPart..FirstPart+MaxParts-1.
	FirstPart, MaxParts int
	// Last says the segment is the object's last: its last part may be under MinPartSize.
	Last bool
}

// SegmentWritten is what a segment stored.
type SegmentWritten struct {
	// Parts are the segment's parts, in order, numbered from its FirstPart with no gap.
	Parts []StoredPart `bson:"parts" json:"-"`
	// Size is the segment's bytes.
	Size int64 `bson:"size" json:"bytes_compressed"`
	// Checksum is the CRC of the segment's own bytes (base64, of the sink's algorithm).
	Checksum string `bson:"checksum" json:"checksum"`
}

// SegmentSink is a PartSink whose uploads can be shared by the segments of an export.
type SegmentSink interface {
	PartSink
	// CreateUpload creates the multipart upload of obj the segments share.
	CreateUpload(ctx context.Context, obj Object) (string, error)
	// PutSegment stores parts as the segment seg of its upload; never creates, completes or
	// aborts it. Every part but the last segment's last is at least MinPartSize (a short
	// tail is merged into the part before it); a segment too small for that fails
	// permanently. checkpoint and resume are as for PutParts.
	PutSegment(ctx context.Context, obj Object, seg UploadSegment, parts Parts, resume *UploadState, checkpoint func(context.Context, UploadState, Mark) error) (SegmentWritten, error)
	// CompleteSegments completes the upload with the parts of segs, in order, and the
	// full-object checksum combined from theirs, after obj.BeforeCommit.
	CompleteSegments(ctx context.Context, obj Object, uploadID string, segs []SegmentWritten) (Written, error)
}

// MaxUploadParts is S3's limit of parts in one multipart upload.
const MaxUploadParts = 10000

// SegmentPlan is how an export is split: kept in the export's ledger entry, read by every
// segment's worker.
type SegmentPlan struct {
	// UploadID is the export's one multipart upload.
	UploadID string `bson:"upload_id" json:"upload_id"`
	// Bounds are SplitPlan.Bounds: segment i is the rows after Bounds[i-1] up to Bounds[i].
	Bounds []bson.RawValue `bson:"bounds" json:"-"`
	// Rows are the rows the query had when it was split; Method how the bounds were found.
	Rows   int64  `bson:"rows" json:"rows"`
	Method string `bson:"method" json:"method"`
	// PartsPerSegment is each segment's range of part numbers.
	PartsPerSegment int `bson:"parts_per_segment" json:"parts_per_segment"`
	// Message is the export's job message, as received; RequestedAt its request time.
	Message     string    `bson:"message" json:"-"`
	RequestedAt time.Time `bson:"requested_at" json:"requested_at"`
	PlannedAt   time.Time `bson:"planned_at" json:"planned_at"`
}

// Segments is the number of segments.
func (p *SegmentPlan) Segments() int { return len(p.Bounds) + 1 }

// Upload is segment i's share of the upload.
func (p *SegmentPlan) Upload(i int) UploadSegment {
	return UploadSegment{UploadID: p.UploadID, FirstPart: i*p.PartsPerSegment + 1, MaxParts: p.PartsPerSegment, Last: i == len(p.Bounds)}
}

// Filter is segment i's query: the export's filter within the segment's _id range.
func (p *SegmentPlan) Filter(filter bson.D, i int) bson.D {
	sp := SplitPlan{Bounds: p.Bounds}
	lo, hi := sp.Segment(i)
	return SegmentFilter(filter, lo, hi)
}

// SegmentDone is what a finished segment reports to the one completing the export.
type SegmentDone struct {
	Segment           int            `bson:"segment" json:"segment"`
	Rows              int64          `bson:"rows" json:"rows"`
	BytesUncompressed int64          `bson:"bytes_uncompressed" json:"bytes_uncompressed"`
	SHA256            string         `bson:"sha256" json:"sha256"`
	Started           time.Time      `bson:"started" json:"started_at"`
	Finished          time.Time      `bson:"finished" json:"finished_at"`
	Written           SegmentWritten `bson:"written" json:"written"`
}

// SegmentOptions choose which exports are split.
type SegmentOptions struct {
	// Rows is the least rows of a segment: an export of at least 2*Rows rows is split into
	// rows/Rows segments (at most Max). 0 turns segmenting off.
	Rows int64
	// Max bounds the segments of one export (0: 8); the parts of each are 10,000/segments.
	Max int
}

// PlanSegments decides whether job is split: when its query has at least twice opts.Rows
// rows and its destination can share an upload, it finds the bounds and creates the upload,
// and returns the plan; else nil (run it whole). The plan's Message is the caller's to set.
func (e *Exporter) PlanSegments(ctx context.Context, job *Job, opts SegmentOptions) (*SegmentPlan, error) {
	ss, ok := job.Destination.Sink.(SegmentSink)
	if !ok || opts.Rows <= 0 {
		return nil, nil
	}
	maxSeg := opts.Max
	if maxSeg <= 0 {
		maxSeg = 8
	}
	p := job.Plan
	coll := e.DB.Collection(p.Collection)
	// The collection's size from its metadata first: most exports are of collections too
	// small to split, and counting the query's rows is a scan on some servers.
	if all, err := coll.EstimatedDocumentCount(ctx); err == nil && all < 2*opts.Rows {
		return nil, nil
	}
	rows, err := coll.CountDocuments(ctx, p.Filter)
	if err != nil {
		return nil, fmt.Errorf("jobs: plan the segments of export %s: count: %w", job.Message.ExportID, err)
	}
	k := int(min(rows/opts.Rows, int64(maxSeg)))
	// Every segment but the last must compress to at least MinPartSize (S3's least part size):
	// the compressed size of a row is measured on a sample, and a segment is not made under
	// twice that least size.
	perRow, err := e.sampleRowBytes(ctx, job, 2000)
	if err != nil {
		return nil, fmt.Errorf("jobs: plan the segments of export %s: %w", job.Message.ExportID, err)
	}
	if perRow > 0 {
		k = int(min(float64(k), float64(rows)*perRow/(2*MinPartSize)))
	}
	if k < 2 {
		return nil, nil
	}
	split, err := splitPoints(ctx, coll, p.Filter, k, rows, true)
	if err != nil {
		return nil, fmt.Errorf("jobs: plan the segments of export %s: %w", job.Message.ExportID, err)
	}
	if split.Segments() < 2 {
		return nil, nil
	}
	id, err := ss.CreateUpload(ctx, e.object(job, RunOptions{}))
	if err != nil {
		return nil, fmt.Errorf("jobs: plan the segments of export %s: create the upload: %w", job.Message.ExportID, err)
	}
	return &SegmentPlan{
		UploadID: id, Bounds: split.Bounds, Rows: split.Rows, Method: split.Method,
		PartsPerSegment: MaxUploadParts / split.Segments(), RequestedAt: job.RequestedAt, PlannedAt: time.Now().UTC(),
	}, nil
}

// RunSegment runs segment i of plan for job: from job.Resume (the segment's checkpoint) when
// its parts are still there, else from the segment's start. Result.Segment says what it
// stored; no manifest is written (CompleteSegments writes the export's).
func (e *Exporter) RunSegment(ctx context.Context, job *Job, plan *SegmentPlan, i int, o RunOptions) (Result, error) {
	res := Result{Started: time.Now().UTC()}
	ss, ok := job.Destination.Sink.(SegmentSink)
	if !ok {
		return res, Permanentf(ReasonInvalidParams, "jobs: export %s: destination %s cannot take segments", job.Message.ExportID, job.Destination.Name)
	}
	seg := plan.Upload(i)
	cp := job.Resume
	if cp != nil && (cp.Key != job.Key || cp.Upload.UploadID != seg.UploadID || cp.Mark.Rows > 0 && cp.Mark.LastID.Type == 0) {
		res.Restarted, cp = "the checkpoint is not of this segment's upload", nil
	}
	if cp != nil {
		if err := ss.CheckUpload(ctx, job.Key, cp.Upload); errors.Is(err, ErrUploadGone) {
			res.Restarted, cp = err.Error(), nil
		} else if err != nil {
			return res, fmt.Errorf("jobs: export %s segment %d: check the checkpoint's parts: %w", job.Message.ExportID, i, err)
		}
	}
	segJob := *job
	segPlan := *job.Plan
	segPlan.Filter = plan.Filter(job.Plan.Filter, i)
	segJob.Plan = &segPlan
	prog := o.Progress
	if prog == nil {
		prog = new(Progress)
	}
	for {
		if o.OnStart != nil {
			o.OnStart(ctx, cp)
		}
		stats, written, err := e.streamInto(ctx, &segJob, cp, o, prog, &seg, i > 0)
		res.Stats, res.Written, res.Finished = stats, written, time.Now().UTC()
		res.RowsRead = stats.Rows
		if cp != nil {
			res.RowsRead -= cp.Mark.Rows
		}
		if cp != nil && errors.Is(err, ErrUploadGone) && ctx.Err() == nil {
			res.Restarted, cp = err.Error(), nil
			continue
		}
		if err != nil {
			return res, fmt.Errorf("jobs: export %s segment %d of %d: %w", job.Message.ExportID, i, plan.Segments(), err)
		}
		res.Resumed = cp
		res.Segment = &SegmentDone{
			Segment: i, Rows: stats.Rows, BytesUncompressed: stats.BytesUncompressed, SHA256: stats.SHA256,
			Started: res.Started, Finished: res.Finished, Written: *written.Segment,
		}
		return res, nil
	}
}

// CompleteSegments completes the upload of a split export from its segments (all of them, in
// order) and writes its one manifest: rows and bytes are the segments' sums, the S3
// full-object checksum is combined from theirs, and the manifest lists each segment. There is
// no SHA-256 of the whole object (one cannot be combined from the segments'); each segment's
// is in the manifest.
func (e *Exporter) CompleteSegments(ctx context.Context, job *Job, plan *SegmentPlan, segs []SegmentDone, fence func(context.Context) error) (Result, error) {
	res := Result{Finished: time.Now().UTC()}
	ss, ok := job.Destination.Sink.(SegmentSink)
	if !ok {
		return res, fmt.Errorf("jobs: export %s: destination %s cannot take segments", job.Message.ExportID, job.Destination.Name)
	}
	if len(segs) != plan.Segments() {
		return res, fmt.Errorf("jobs: export %s: %d segments done of %d", job.Message.ExportID, len(segs), plan.Segments())
	}
	written := make([]SegmentWritten, len(segs))
	for i, s := range segs {
		if s.Segment != i {
			return res, fmt.Errorf("jobs: export %s: segment %d where %d belongs", job.Message.ExportID, s.Segment, i)
		}
		written[i] = s.Written
		res.Stats.Rows += s.Rows
		res.Stats.BytesUncompressed += s.BytesUncompressed
		res.Stats.BytesCompressed += s.Written.Size
		if i == 0 || s.Started.Before(res.Started) {
			res.Started = s.Started
		}
	}
	obj := e.object(job, RunOptions{Fence: fence})
	w, err := ss.CompleteSegments(ctx, obj, plan.UploadID, written)
	if err != nil {
		return res, fmt.Errorf("jobs: export %s: complete the upload of its %d segments: %w", job.Message.ExportID, len(segs), err)
	}
	res.Written = w
	manifest := NewManifest(job, res)
	manifest.Segments = segs
	if _, err := writeManifest(ctx, job.Destination.Sink, manifest, fence); err != nil {
		return res, fmt.Errorf("jobs: export %s to %s: %w", job.Message.ExportID, job.Destination.Name, err)
	}
	res.Manifest = manifest
	return res, nil
}

// sampleRowBytes is the compressed bytes of a row of job, measured on up to n of its rows
// (in no order: whatever the server returns first) encoded and compressed as the export does;
// 0 if the query has no row.
func (e *Exporter) sampleRowBytes(ctx context.Context, job *Job, n int64) (float64, error) {
	p := job.Plan
	cur, err := e.DB.Collection(p.Collection).Find(ctx, p.Filter, options.Find().SetProjection(p.Projection).SetLimit(n))
	if err != nil {
		return 0, fmt.Errorf("sample %s: %w", p.Collection, err)
	}
	defer func() { _ = cur.Close(context.WithoutCancel(ctx)) }()
	var out countingWriter
	zw, err := flate.NewWriter(&out, e.level())
	if err != nil {
		return 0, err
	}
	enc, err := encode.New(job.Message.Format, zw, p.Columns, job.Message.EncoderOptions())
	if err != nil {
		return 0, err
	}
	var rows int64
	for cur.Next(ctx) {
		if err := enc.Encode(cur.Current); err != nil {
			return 0, fmt.Errorf("sample %s: %w", p.Collection, err)
		}
		rows++
	}
	if err := cur.Err(); err != nil {
		return 0, fmt.Errorf("sample %s: %w", p.Collection, err)
	}
	if err := zw.Close(); err != nil || rows == 0 {
		return 0, err
	}
	return float64(out) / float64(rows), nil
}

// level is the export's gzip level.
func (e *Exporter) level() int {
	if e.GzipLevel == 0 {
		return 6
	}
	return e.GzipLevel
}

type countingWriter int64

func (c *countingWriter) Write(b []byte) (int, error) {
	*c += countingWriter(len(b))
	return len(b), nil
}

package jobs

import (
	"context"
	"fmt"
	"io"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Destination is a named place exports may be written to.
type Destination struct {
	Name string
	// Bucket is informational (logs, manifest); the sink already targets it.
	Bucket string
	// Prefix is prepended to every object key, for example "exports/".
	Prefix string
	Sink   Sink
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
}

// IncompleteAborter is implemented by sinks that can abort unfinished uploads of a key left
// behind by an earlier attempt (a worker killed in the middle of an upload).
type IncompleteAborter interface {
	AbortIncomplete(ctx context.Context, key string) (int, error)
}

// Result describes a completed export.
type Result struct {
	Bucket   string
	Key      string
	// AbortedUploads counts unfinished uploads of earlier attempts this run cleaned up.
	AbortedUploads int
	Stats    Stats
	Written  Written
	Started  time.Time
	Finished time.Time
}

// Prepare decodes, validates and plans a message body. Its errors are permanent.
func (e *Exporter) Prepare(body []byte) (*Job, error) {
	m, err := Decode(body)
	if err != nil {
		return nil, err
	}
	return e.PrepareMessage(m)
}

// PrepareMessage validates and plans an already decoded message.
func (e *Exporter) PrepareMessage(m Message) (*Job, error) {
	plan, err := e.Kinds.Plan(m)
	if err != nil {
		return nil, err
	}
	dest, ok := e.Destinations[m.Destination]
	if !ok {
		return nil, Permanentf("unknown_destination", `field "destination": unknown destination %q`, m.Destination)
	}
	return &Job{Message: m, Plan: plan, Destination: dest, Key: ObjectKey(dest.Prefix, m, plan)}, nil
}

// ObjectKey is the deterministic key of an export's object: the same export always writes the
// same key, so a redelivered message can never produce a second object.
func ObjectKey(prefix string, m Message, p *Plan) string {
	campaign := p.Vars["campaign"]
	if campaign == "" {
		campaign = "all"
	}
	return fmt.Sprintf("%s%s/%s/%s.%s.gz", prefix, p.Kind.Name, campaign, m.ExportID, m.Format.Extension())
}

// Run executes a prepared job. prog, if not nil, is updated while it runs.
func (e *Exporter) Run(ctx context.Context, job *Job, prog *Progress) (Result, error) {
	res := Result{Bucket: job.Destination.Bucket, Key: job.Key, Started: time.Now().UTC()}
	if a, ok := job.Destination.Sink.(IncompleteAborter); ok {
		n, err := a.AbortIncomplete(ctx, job.Key)
		res.AbortedUploads = n
		if err != nil {
			return res, fmt.Errorf("jobs: export %s: clean up earlier uploads: %w", job.Message.ExportID, err)
		}
	}
	p := job.Plan
	opts := options.Find().SetSort(p.Sort).SetProjection(p.Projection)
	if e.BatchSize > 0 {
		opts.SetBatchSize(e.BatchSize)
	}
	cur, err := e.DB.Collection(p.Collection).Find(ctx, p.Filter, opts)
	if err != nil {
		return res, fmt.Errorf("jobs: query %s for export %s: %w", p.Collection, job.Message.ExportID, err)
	}
	var src Source = &CursorSource{Cursor: cur}
	if e.WrapSource != nil {
		src = e.WrapSource(src)
	}
	defer func() { _ = src.Close(context.WithoutCancel(ctx)) }()

	newEnc := func(w io.Writer) (Encoder, error) {
		return NewEncoder(job.Message.Format, w, p.Columns, EncoderOptions{})
	}
	obj := Object{
		Key:             job.Key,
		ContentType:     job.Message.Format.ContentType(),
		ContentEncoding: "gzip",
		Metadata:        map[string]string{"export-id": job.Message.ExportID, "kind": p.Kind.Name},
	}
	stats, written, err := Run(ctx, src, newEnc, job.Destination.Sink, obj, PipelineOptions{GzipLevel: e.GzipLevel, Progress: prog})
	res.Stats, res.Written, res.Finished = stats, written, time.Now().UTC()
	if err != nil {
		return res, fmt.Errorf("jobs: export %s to %s: %w", job.Message.ExportID, job.Destination.Name, err)
	}
	return res, nil
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

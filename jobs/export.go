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
	// Notifier, if set, is sent each completed export's manifest (EXPORT_RESULTS_QUEUE_URL).
	Notifier Notifier
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
	Bucket string
	Key    string
	// AbortedUploads counts unfinished uploads of earlier attempts this run cleaned up.
	AbortedUploads int
	Stats          Stats
	Written        Written
	Started        time.Time
	Finished       time.Time
	// Manifest is the manifest written after the object, when the export succeeded.
	Manifest *Manifest
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
	job := &Job{Message: m, Plan: plan, Destination: dest}
	if job.Key, err = job.ObjectKey(); err != nil {
		return nil, err
	}
	return job, nil
}

// ObjectKey is the deterministic key of the job's object, from its destination's prefix and
// key template: the same export always writes the same key, so a redelivered message can never
// produce a second object. A template using {date} takes the date of RequestedAt; without one
// (a caller that has no request time) the key falls back to DefaultKeyTemplate. Its errors are
// permanent (reason "invalid_key").
func (j *Job) ObjectKey() (string, error) {
	tmpl := j.Destination.Keys
	if tmpl.Uses(KeyVarDate) && j.RequestedAt.IsZero() {
		tmpl = KeyTemplate{}
	}
	return tmpl.Render(j.Destination.Prefix, KeyVars{
		ExportID: j.Message.ExportID,
		Kind:     j.Plan.Kind.Name,
		Campaign: j.Plan.Vars[KeyVarCampaign],
		Format:   j.Message.Format,
		Date:     j.RequestedAt,
	})
}

// Run executes a prepared job. prog, if not nil, is updated while it runs.
func (e *Exporter) Run(ctx context.Context, job *Job, prog *Progress) (Result, error) {
	// RequestedAt may have been set after PrepareMessage: the key follows it.
	key, err := job.ObjectKey()
	if err != nil {
		return Result{}, err
	}
	job.Key = key
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
		return NewEncoder(job.Message.Format, w, p.Columns, job.Message.EncoderOptions())
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
	// The manifest comes last: its presence means the data object is complete.
	manifest := NewManifest(job, res)
	if _, err := writeManifest(ctx, job.Destination.Sink, manifest); err != nil {
		return res, fmt.Errorf("jobs: export %s to %s: %w", job.Message.ExportID, job.Destination.Name, err)
	}
	res.Manifest = manifest
	if e.Notifier != nil {
		if err := e.Notifier.Notify(ctx, manifest); err != nil {
			return res, fmt.Errorf("jobs: export %s to %s: %w", job.Message.ExportID, job.Destination.Name, err)
		}
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

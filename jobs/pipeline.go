package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/jobs/encode"
)

// Source yields the documents of an export in order. *mongo.Cursor satisfies it through
// CursorSource; benchmarks and fault-injection tests use their own.
type Source interface {
	// Next advances to the next document; false at the end or on error (see Err).
	Next(ctx context.Context) bool
	// Current is the current document, valid until the next call to Next.
	Current() bson.Raw
	// Err is the error that stopped Next, if any.
	Err() error
	// Close releases the source.
	Close(ctx context.Context) error
}

// Object describes the object a sink writes.
type Object struct {
	Key             string
	ContentType     string
	ContentEncoding string
	Metadata        map[string]string
	// BeforeCommit, if set, is called by the sink right before the object becomes visible (before
	// CompleteMultipartUpload, or before the single PutObject of a short body). If it returns an
	// error nothing is committed, the upload is aborted and Put returns that error, wrapped: the
	// worker's ledger fence uses it so that an attempt that lost its claim cannot commit.
	BeforeCommit func(ctx context.Context) error
}

// Written is what a sink reports about a completed object.
type Written struct {
	Bucket string
	Key    string
	ETag   string
	// Checksum is the full-object checksum of the whole object (base64, as S3's
	// x-amz-checksum-* headers carry it), computed from the stream and confirmed by the server
	// when it answers with one; empty if the sink has none.
	Checksum string
	// ChecksumAlgorithm names the algorithm of Checksum, for example "CRC32C".
	ChecksumAlgorithm string
	Parts             int
	// Segment is what a segment stored (PipelineOptions.Segment); the upload is not complete.
	Segment *SegmentWritten
}

// Sink stores one object from a stream of unknown length. The object must become visible only
// when complete: body ends only when it returns io.EOF itself; if it returns any other error
// (one that wraps io.EOF included: see StreamError) or ctx ends, Put fails and leaves no object
// (and no unfinished multipart upload) behind.
type Sink interface {
	Put(ctx context.Context, obj Object, body io.Reader) (Written, error)
}

// Stats are the counts of one pipeline run.
type Stats struct {
	Rows              int64
	BytesUncompressed int64
	BytesCompressed   int64
	// SHA256 is the hex SHA-256 of the compressed bytes handed to the sink.
	SHA256 string
}

// Progress is read by the worker while a job runs (for progress logs and the ledger). Its
// fields are updated atomically by the pipeline.
type Progress struct {
	Rows              atomic.Int64
	BytesUncompressed atomic.Int64
	BytesCompressed   atomic.Int64
}

// PipelineOptions configure Stream.
type PipelineOptions struct {
	// GzipLevel is the compression level (1 fastest .. 9 smallest); 0 means 6.
	GzipLevel int
	// Progress, if set, is updated as the export runs.
	Progress *Progress
	// Compressors is how many goroutines compress the export's chunks in parallel; 0 means 1.
	Compressors int
	// MemberSize is the uncompressed bytes of a gzip member (0: 4 MiB), ChunkSize those of a
	// chunk compressed at once (0: 1 MiB). Both are cut at row boundaries. An export continued
	// from a checkpoint is byte for byte an uninterrupted one's only if they did not change.
	MemberSize int64
	ChunkSize  int
	// Buffers is the budget part buffers come from; nil means the heap.
	Buffers Buffers
	// Resume, if set, continues the stream of this checkpoint: src yields the rows after its
	// Mark.LastID, and sink must be a PartSink.
	Resume *Checkpoint
	// Checkpoint, if set, is called after each part is stored (PartSink sinks only), in part
	// order; its error fails the export (wrap ErrKeepUpload when the attempt lost the export).
	Checkpoint func(context.Context, Checkpoint) error
	// Stop, once closed, ends the export after the parts already made are stored and
	// checkpointed: Stream returns ErrStopped (and keeps the upload, if it was checkpointed).
	Stop <-chan struct{}
	// Segment, if set, stores the stream as this segment of a shared upload (the sink must be
	// a SegmentSink): Written.Segment says what it stored, and nothing is completed.
	Segment *UploadSegment
	// NoHeader leaves out the format's header (a segment after the first).
	NoHeader bool
}

// ErrStopped is Stream's error when PipelineOptions.Stop ended the export before its end.
var ErrStopped = errors.New("jobs: export stopped after its last stored part")

// StreamError is how a failed producer ends the stream a sink reads: the pipe's reader returns
// it instead of io.EOF. It does not unwrap to its cause, on purpose: a cause that wraps io.EOF
// (the MongoDB driver's error for a connection closed between two replies) must never read as
// the end of the stream to a sink that tests errors.Is(err, io.EOF). Stream returns the cause
// itself, not the sink's report of this error.
type StreamError struct{ cause error }

func (e *StreamError) Error() string { return "jobs: the export stream failed: " + e.cause.Error() }

// Cause is the producer's error.
func (e *StreamError) Cause() error { return e.cause }

// PanicError is a panic recovered in one of an export's goroutines. Recovered makes it the
// job's permanent failure (reason "panic"), so that one bad job cannot crash the process.
type PanicError struct {
	// Where names the goroutine's work ("jobs: export producer").
	Where string
	Value any
	// Stack is the panicking goroutine's stack, for the log.
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("%s: panic: %v", e.Where, e.Value) }

// Recovered turns the value of recover() into a permanent error of reason "panic". Call it
// from the deferred function that recovered, so that the stack is the panic's.
func Recovered(where string, v any) error {
	return Permanent(ReasonPanic, &PanicError{Where: where, Value: v, Stack: debug.Stack()})
}

// errSinkDone unblocks the producer when the sink returned before reading everything.
var errSinkDone = errors.New("jobs: sink stopped reading")

// Stream streams src through enc (made by newEnc for the writer it is given) and gzip into
// sink as obj. The compressed stream is cut into parts of whole rows and whole gzip members
// (see gzipParts), compressed on opts.Compressors goroutines. A PartSink stores the parts as
// they come and reports each (opts.Checkpoint), and can continue from a checkpoint
// (opts.Resume); any other sink reads them as one stream. Memory does not grow with the
// export. If the source or encoder fails, the sink sees the failure and must not complete the
// object; the source's error is returned (it is the cause), not the sink's report of it.
func Stream(ctx context.Context, src Source, newEnc func(io.Writer) (encode.Encoder, error), sink Sink, obj Object, opts PipelineOptions) (Stats, Written, error) {
	prog := opts.Progress
	if prog == nil {
		prog = new(Progress)
	}
	ps, resumable := sink.(PartSink)
	if opts.Resume != nil && !resumable {
		return Stats{}, Written{}, errors.New("jobs: this sink cannot continue an upload")
	}
	po := partsOptions{
		level: opts.GzipLevel, workers: opts.Compressors, chunkSize: opts.ChunkSize,
		memberSize: opts.MemberSize, buffers: opts.Buffers, progress: prog,
	}
	if resumable {
		po.target = ps.PartSize
	}
	var resumeUpload *UploadState
	if cp := opts.Resume; cp != nil {
		po.resume, po.firstPart, resumeUpload = &cp.Mark, len(cp.Upload.Parts)+1, &cp.Upload
		prog.Rows.Store(cp.Mark.Rows)
		prog.BytesUncompressed.Store(cp.Mark.BytesUncompressed)
		prog.BytesCompressed.Store(cp.Mark.BytesCompressed)
	}
	gp := newGzipParts(ctx, po)

	prodDone := make(chan error, 1)
	go func() {
		var err error
		defer func() {
			if r := recover(); r != nil {
				err = Recovered("jobs: export producer", r)
			}
			switch {
			case err == nil:
				err = gp.Close()
			case errors.Is(err, ErrStopped):
				gp.Stop()
			default:
				gp.Fail(err)
			}
			prodDone <- err
		}()
		err = produce(ctx, src, newEnc, gp, opts.Resume == nil && !opts.NoHeader, prog, opts.Stop)
	}()

	var written Written
	var sinkErr error
	if resumable {
		var checkpoint func(context.Context, UploadState, Mark) error
		if opts.Checkpoint != nil {
			checkpoint = func(ctx context.Context, up UploadState, m Mark) error {
				return opts.Checkpoint(ctx, Checkpoint{Key: obj.Key, Upload: up, Mark: m, At: time.Now().UTC()})
			}
		}
		if opts.Segment != nil {
			written, sinkErr = putSegment(ctx, sink, obj, *opts.Segment, gp, resumeUpload, checkpoint)
		} else {
			written, sinkErr = putParts(ctx, ps, obj, gp, resumeUpload, checkpoint)
		}
	} else {
		r := &partsReader{ctx: ctx, parts: gp}
		written, sinkErr = put(ctx, sink, obj, r)
		r.close()
	}
	gp.setErr(errSinkDone)
	prodErr := <-prodDone
	gp.drain()

	final := gp.final
	stats := Stats{Rows: final.Rows, BytesUncompressed: final.BytesUncompressed, BytesCompressed: final.BytesCompressed}
	if final.SHA256 == nil { // it did not finish: how far it got
		stats = Stats{Rows: prog.Rows.Load(), BytesUncompressed: prog.BytesUncompressed.Load(), BytesCompressed: prog.BytesCompressed.Load()}
	}
	switch {
	case prodErr != nil && !errors.Is(prodErr, errSinkDone) && !errors.Is(prodErr, ErrStopped):
		return stats, Written{}, prodErr
	case sinkErr != nil:
		return stats, Written{}, sinkErr
	case prodErr != nil && errors.Is(prodErr, ErrStopped):
		return stats, Written{}, prodErr
	case prodErr != nil:
		return stats, Written{}, fmt.Errorf("jobs: sink returned before reading the whole export")
	case final.SHA256 == nil:
		return stats, Written{}, fmt.Errorf("jobs: the sink returned before the export's last part")
	}
	sum, err := sumOf(final.SHA256)
	if err != nil {
		return stats, Written{}, fmt.Errorf("jobs: the export's SHA-256: %w", err)
	}
	stats.SHA256 = sum
	return stats, written, nil
}

// put is sink.Put with a panic made an error, so that the pipe is closed and the producer,
// blocked writing to it, is not left behind.
func put(ctx context.Context, sink Sink, obj Object, body io.Reader) (w Written, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Recovered("jobs: sink", r)
		}
	}()
	return sink.Put(ctx, obj, body)
}

// putParts is ps.PutParts with a panic made an error.
func putParts(ctx context.Context, ps PartSink, obj Object, parts Parts, resume *UploadState, checkpoint func(context.Context, UploadState, Mark) error) (w Written, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Recovered("jobs: sink", r)
		}
	}()
	return ps.PutParts(ctx, obj, parts, resume, checkpoint)
}

// putSegment is PutSegment of a SegmentSink with a panic made an error.
func putSegment(ctx context.Context, sink Sink, obj Object, seg UploadSegment, parts Parts, resume *UploadState, checkpoint func(context.Context, UploadState, Mark) error) (w Written, err error) {
	ss, ok := sink.(SegmentSink)
	if !ok {
		return Written{}, errors.New("jobs: this sink cannot store a segment of a shared upload")
	}
	defer func() {
		if r := recover(); r != nil {
			err = Recovered("jobs: sink", r)
		}
	}()
	sw, err := ss.PutSegment(ctx, obj, seg, parts, resume, checkpoint)
	if err != nil {
		return Written{}, err
	}
	return Written{Key: obj.Key, Parts: len(sw.Parts), Segment: &sw}, nil
}

// produce reads and encodes every row into gp; begin says the stream starts here (and needs
// its header).
func produce(ctx context.Context, src Source, newEnc func(io.Writer) (encode.Encoder, error), gp *gzipParts, begin bool, prog *Progress, stop <-chan struct{}) error {
	enc, err := newEnc(gp)
	if err != nil {
		return err
	}
	if begin {
		if err := enc.Begin(); err != nil {
			return err
		}
	}
	for src.Next(ctx) {
		doc := src.Current()
		if err := enc.Encode(doc); err != nil {
			return err
		}
		prog.Rows.Add(1)
		if err := gp.EndRow(doc.Lookup("_id")); err != nil {
			return err
		}
		select {
		case <-stop:
			return ErrStopped
		default:
		}
	}
	if err := src.Err(); err != nil {
		return fmt.Errorf("jobs: read source after %d rows: %w", prog.Rows.Load(), err)
	}
	return ctx.Err()
}

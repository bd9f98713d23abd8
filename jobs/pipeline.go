package jobs

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
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
}

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

// Stream streams src through enc (made by newEnc for the writer it is given) and gzip into sink as obj.
// Memory does not grow with the export: documents flow through an io.Pipe in bounded buffers.
// If the source or encoder fails, the sink sees a read error and must not complete the object;
// the source's error is returned (it is the cause), not the sink's report of it.
func Stream(ctx context.Context, src Source, newEnc func(io.Writer) (encode.Encoder, error), sink Sink, obj Object, opts PipelineOptions) (Stats, Written, error) {
	level := opts.GzipLevel
	if level == 0 {
		level = 6
	}
	prog := opts.Progress
	if prog == nil {
		prog = new(Progress)
	}
	pr, pw := io.Pipe()
	h := sha256.New()

	prodDone := make(chan error, 1)
	go func() {
		var err error
		defer func() {
			if r := recover(); r != nil {
				err = Recovered("jobs: export producer", r)
			}
			// Only a nil error closes the pipe with io.EOF: the sink sees the end of a complete
			// stream. Any failure reaches it as a StreamError, which cannot be mistaken for it.
			if err != nil {
				_ = pw.CloseWithError(&StreamError{cause: err})
			} else {
				_ = pw.Close()
			}
			prodDone <- err
		}()
		err = produce(ctx, src, newEnc, &countingWriter{w: pw, h: h, n: &prog.BytesCompressed}, level, prog)
	}()

	written, sinkErr := put(ctx, sink, obj, pr)
	_ = pr.CloseWithError(errSinkDone)
	prodErr := <-prodDone

	stats := Stats{
		Rows:              prog.Rows.Load(),
		BytesUncompressed: prog.BytesUncompressed.Load(),
		BytesCompressed:   prog.BytesCompressed.Load(),
	}
	switch {
	case prodErr != nil && !errors.Is(prodErr, errSinkDone):
		return stats, Written{}, prodErr
	case sinkErr != nil:
		return stats, Written{}, sinkErr
	case prodErr != nil:
		return stats, Written{}, fmt.Errorf("jobs: sink returned before reading the whole export")
	}
	stats.SHA256 = hex.EncodeToString(h.Sum(nil))
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

func produce(ctx context.Context, src Source, newEnc func(io.Writer) (encode.Encoder, error), out io.Writer, level int, prog *Progress) error {
	// gzip writes a few hundred bytes at a time; each write through the io.Pipe is a goroutine
	// switch, so gather them into blocks first.
	zout := bufio.NewWriterSize(out, 64<<10)
	zw, err := getGzip(zout, level)
	if err != nil {
		return fmt.Errorf("jobs: gzip level %d: %w", level, err)
	}
	// The encoder fills 64 KiB blocks that gzip compresses on another goroutine: encoding and
	// compression run on two cores instead of taking turns (gzip is most of the CPU).
	h := NewHandoff(&countingWriter{w: zw, n: &prog.BytesUncompressed}, 64<<10, 4)
	defer h.Close()
	enc, err := newEnc(h)
	if err != nil {
		return err
	}
	if err := enc.Begin(); err != nil {
		return err
	}
	for src.Next(ctx) {
		if err := enc.Encode(src.Current()); err != nil {
			return err
		}
		prog.Rows.Add(1)
	}
	if err := src.Err(); err != nil {
		return fmt.Errorf("jobs: read source after %d rows: %w", prog.Rows.Load(), err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := h.Close(); err != nil {
		return fmt.Errorf("jobs: flush encoder: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("jobs: finish gzip: %w", err)
	}
	if err := zout.Flush(); err != nil {
		return fmt.Errorf("jobs: flush gzip: %w", err)
	}
	// Only a writer that finished cleanly is reused; after a failure or a panic it is left to
	// the GC.
	gzipWriters[level].Put(zw)
	return nil
}

// gzipWriters keep gzip writers (about 1 MiB of state each) for the next job, by level: a
// small export would otherwise spend most of its allocations, and much of its CPU, on a new one.
var gzipWriters [gzip.BestCompression + 1]sync.Pool

func getGzip(w io.Writer, level int) (*gzip.Writer, error) {
	if level >= 0 && level < len(gzipWriters) {
		if zw, ok := gzipWriters[level].Get().(*gzip.Writer); ok {
			zw.Reset(w)
			return zw, nil
		}
	}
	return gzip.NewWriterLevel(w, level)
}

// countingWriter counts (and optionally hashes) what passes through it.
type countingWriter struct {
	w io.Writer
	h hash.Hash
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if c.h != nil {
		c.h.Write(p[:n])
	}
	c.n.Add(int64(n))
	return n, err
}

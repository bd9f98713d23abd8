package jobs

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// MinPartSize is S3's smallest part: every part of a multipart upload but the last must be at
// least this large, or CompleteMultipartUpload fails with EntityTooSmall.
const MinPartSize = 5 << 20

// Part is a piece of an export's compressed stream that holds whole rows in whole gzip
// members (a sequence of gzip members is one gzip file, RFC 1952 section 2.2), so that an
// export can stop after any part and a later attempt can continue with the next one. Every
// part but the last is at least MinPartSize.
type Part struct {
	Data []byte
	// Last says the stream ends with this part.
	Last bool
	// Mark is the stream's state right after this part.
	Mark    Mark
	release func()
}

// NewPart returns a part of data; release, if not nil, gives its buffer back to its budget.
func NewPart(data []byte, last bool, mark Mark, release func()) *Part {
	return &Part{Data: data, Last: last, Mark: mark, release: release}
}

// Release gives the part's buffer back to the budget it came from. Data is nil after it.
func (p *Part) Release() {
	if p.release != nil {
		p.release()
		p.release = nil
	}
	p.Data = nil
}

// Mark is the state of an export's stream right after a part: what a later attempt needs to
// continue it as if it had never stopped.
type Mark struct {
	Rows              int64 `bson:"rows" json:"rows"`
	BytesUncompressed int64 `bson:"bytes_uncompressed" json:"bytes_uncompressed"`
	BytesCompressed   int64 `bson:"bytes" json:"bytes"`
	// LastID is the _id of the last row in the part; the next attempt reads the rows after it
	// in the query's order (_id ascending, across BSON types: see AfterID).
	LastID bson.RawValue `bson:"last_id" json:"-"`
	// SHA256 is the marshalled state of the SHA-256 of the compressed bytes so far.
	SHA256 []byte `bson:"sha256_state" json:"-"`
}

// Parts yields the parts of a stream in order.
type Parts interface {
	// Next returns the next part, or io.EOF (itself) after the last one. The caller releases
	// each part when done with it.
	Next(ctx context.Context) (*Part, error)
}

// StoredPart is one part a sink stored.
type StoredPart struct {
	Number   int    `bson:"n" json:"n"`
	ETag     string `bson:"etag" json:"etag"`
	Checksum string `bson:"checksum,omitempty" json:"checksum,omitempty"`
	Size     int64  `bson:"size" json:"size"`
}

// UploadState is a multipart upload's progress as a sink reports it after each stored part:
// enough for a later attempt to continue the same upload.
type UploadState struct {
	UploadID string       `bson:"upload_id" json:"upload_id"`
	Parts    []StoredPart `bson:"parts" json:"parts"`
	// Size is the bytes stored in Parts.
	Size int64 `bson:"size" json:"size"`
	// ChecksumAlgorithm and ChecksumState are the whole-object checksum's algorithm and its
	// marshalled running state after Parts.
	ChecksumAlgorithm string `bson:"checksum_algorithm,omitempty" json:"checksum_algorithm,omitempty"`
	ChecksumState     []byte `bson:"checksum_state,omitempty" json:"-"`
}

// Checkpoint is what the ledger keeps of a running export after each stored part: the upload
// and the stream's state. A later attempt of the export (a retry, a recovery after its worker
// died, a released or handed-over message) continues from it.
type Checkpoint struct {
	// Key is the object key being written; a checkpoint of another key is not resumed.
	Key    string      `bson:"key" json:"key"`
	Upload UploadState `bson:"upload" json:"upload"`
	Mark   Mark        `bson:"mark" json:"mark"`
	At     time.Time   `bson:"at" json:"at"`
	// Attempt is the ledger attempt that wrote it.
	Attempt int `bson:"attempt" json:"attempt"`
}

// PartSink is a Sink that stores a stream of parts in a multipart upload that outlives the
// attempt: each stored part is reported so that it can be checkpointed, and a later attempt
// can continue the upload from a checkpoint.
type PartSink interface {
	Sink
	// PartSize is the size a part numbered n should reach (a part may be larger, and every
	// part but the last is at least MinPartSize).
	PartSize(n int) int64
	// PutParts stores parts as obj. With resume, it continues that upload after its parts
	// (ErrUploadGone if the upload or one of its parts is no longer there: start over).
	// checkpoint, if not nil, is called in part order after each part is stored with every
	// part before it, with the upload's state and that part's mark; its error fails the put.
	// A first part that is also the last is written with a single request, without an upload.
	// On a failure, an upload that was never checkpointed is aborted; a checkpointed one is
	// kept for a later attempt unless the failure is permanent (then it is aborted) or the
	// checkpoint said the attempt lost the export (then it belongs to the new owner).
	PutParts(ctx context.Context, obj Object, parts Parts, resume *UploadState, checkpoint func(context.Context, UploadState, Mark) error) (Written, error)
	// AbortUpload aborts an upload of key (a checkpoint's, when its export fails for good).
	AbortUpload(ctx context.Context, key, uploadID string) error
	// CheckUpload says whether the upload of st can be continued: nil, an error wrapping
	// ErrUploadGone, or another error (the check itself failed).
	CheckUpload(ctx context.Context, key string, st UploadState) error
}

// ErrUploadGone says a checkpoint's upload can no longer be continued: it was aborted (by the
// bucket's lifecycle rule, say) or lacks a part the checkpoint recorded.
var ErrUploadGone = errors.New("the checkpoint's upload is gone")

// ErrKeepUpload, wrapped by a checkpoint function's error, tells the sink to keep the upload
// whatever happens: the attempt lost the export, and the upload is the new owner's.
var ErrKeepUpload = errors.New("the upload belongs to another attempt")

// Buffers is a budget of byte buffers shared by every job (sink.BufferPool).
type Buffers interface {
	// Get returns a buffer of len size, waiting for room in the budget until ctx ends.
	Get(ctx context.Context, size int64) ([]byte, error)
	// Put gives a buffer back.
	Put(b []byte)
}

// heapBuffers allocate without a budget.
type heapBuffers struct{}

func (heapBuffers) Get(_ context.Context, size int64) ([]byte, error) { return make([]byte, size), nil }
func (heapBuffers) Put([]byte)                                        {}

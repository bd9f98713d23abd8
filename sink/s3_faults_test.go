package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/verifiedfan/export-service/jobs"
)

// eofWrapper ends a body with an error that wraps io.EOF, as the MongoDB driver reports a
// connection closed between two getMore replies.
var errConnClosed = fmt.Errorf("connection(127.0.0.1:27017[-3]) incomplete read of message header: %w", io.EOF)

// A body that fails with an error wrapping io.EOF has not ended: it is a failure. Nothing is
// committed at the key, whether the bytes read so far fit one part (PutObject) or not
// (multipart), and no upload is left behind.
func TestS3WrappedEOFIsAFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{PartSize: 5 << 20, Concurrency: 2})
	for _, size := range []int{1000, 3 << 20, 12 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			key := fmt.Sprintf("%swrapped-eof-%d.gz", b.prefix, size)
			_, err := sk.Put(context.Background(), jobs.Object{Key: key}, &failingReader{r: bytes.NewReader(randomBytes(9, size)), err: errConnClosed})
			if err == nil {
				t.Fatal("Put succeeded on a body that failed")
			}
			if !strings.Contains(err.Error(), "incomplete read") {
				t.Errorf("err = %v, want the body's error", err)
			}
			if b.exists(t, bucket, key) {
				t.Errorf("%s was committed from a truncated body", key)
			}
		})
	}
	if n := b.uploads(t, bucket, b.prefix); n != 0 {
		t.Errorf("%d multipart uploads left behind", n)
	}
}

var _ = errors.New

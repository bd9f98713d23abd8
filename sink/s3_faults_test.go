package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/verifiedfan/export-service/internal/awsx"
	"github.com/verifiedfan/export-service/internal/stacktest"
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

// The commit hook runs once, right before the object becomes visible: after every part is
// stored (multipart) or before the single PutObject. When it fails, nothing is committed, the
// upload is aborted and Put returns the hook's error.
func TestS3BeforeCommit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{PartSize: 5 << 20, Concurrency: 2})
	fenced := errors.New("fenced: another attempt claimed the export")
	for _, size := range []int{1000, 12 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := randomBytes(11, size)
			for _, fail := range []bool{true, false} {
				key := fmt.Sprintf("%scommit-%d-%v.gz", b.prefix, size, fail)
				calls := 0
				obj := jobs.Object{Key: key, BeforeCommit: func(ctx context.Context) error {
					calls++
					if b.exists(t, bucket, key) {
						t.Error("the object is visible before the commit hook ran")
					}
					if size > smallBufSize {
						// Every part is stored already: the hook is the last step before Complete.
						up, err := b.admin.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)})
						if err != nil || len(up.Uploads) != 1 {
							t.Fatalf("uploads of %s: %v", key, err)
						}
						parts, err := b.admin.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: up.Uploads[0].UploadId})
						if err != nil || len(parts.Parts) != 3 {
							t.Errorf("%d parts stored when the hook ran (%v), want 3", len(parts.Parts), err)
						}
					}
					if fail {
						return fenced
					}
					return nil
				}}
				_, err := sk.Put(context.Background(), obj, bytes.NewReader(data))
				if calls != 1 {
					t.Errorf("hook called %d times", calls)
				}
				if fail != errors.Is(err, fenced) || !fail && err != nil {
					t.Fatalf("fail=%v: err = %v", fail, err)
				}
				if fail && b.exists(t, bucket, key) {
					t.Errorf("%s was committed although the hook refused", key)
				}
				if !fail && !bytes.Equal(b.get(t, bucket, key), data) {
					t.Errorf("%s differs", key)
				}
			}
		})
	}
	if n := b.uploads(t, bucket, b.prefix); n != 0 {
		t.Errorf("%d uploads left", n)
	}
}

// panickingReader yields n bytes of r, then panics.
type panickingReader struct {
	r io.Reader
	n int
}

func (p *panickingReader) Read(b []byte) (int, error) {
	if p.n <= 0 {
		panic("reader exploded")
	}
	m, err := p.r.Read(b[:min(len(b), p.n)])
	p.n -= m
	return m, err
}

// panicOnPart is an HTTP client that panics on the upload of part 2, as a bug in the SDK or a
// checksum would on a part upload's goroutine.
type panicOnPart struct{ inner aws.HTTPClient }

func (p panicOnPart) Do(r *http.Request) (*http.Response, error) {
	if strings.Contains(r.URL.RawQuery, "partNumber=2") {
		panic("part upload exploded")
	}
	return p.inner.Do(r)
}

// A panic while reading the body (single-part or in the middle of a multipart upload) or on a
// part upload's goroutine fails the Put with a permanent error of reason "panic", the process
// goes on, and nothing is left: no object, no upload.
func TestS3PanicsFailThePut(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	pool := NewBufferPool(64 << 20)
	sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{PartSize: 5 << 20, Concurrency: 2, Buffers: pool})
	panicky := NewS3(s3.NewFromConfig(b.base, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(b.env["AWS_ENDPOINT_URL_S3"])
		o.UsePathStyle = true
		o.HTTPClient = panicOnPart{inner: awshttp.NewBuildableClient()}
	}), bucket, S3Options{PartSize: 5 << 20, Concurrency: 2, Buffers: pool})
	for _, tc := range []struct {
		name string
		sk   *S3
		body io.Reader
	}{
		{"reader single part", sk, &panickingReader{r: bytes.NewReader(randomBytes(12, 1000)), n: 500}},
		{"reader multipart", sk, &panickingReader{r: bytes.NewReader(randomBytes(12, 20<<20)), n: 12 << 20}},
		{"part upload", panicky, bytes.NewReader(randomBytes(13, 12<<20))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := b.prefix + strings.ReplaceAll(tc.name, " ", "-")
			_, err := tc.sk.Put(context.Background(), jobs.Object{Key: key}, tc.body)
			var pe *jobs.PanicError
			if reason, _ := jobs.IsPermanent(err); reason != "panic" || !errors.As(err, &pe) || len(pe.Stack) == 0 {
				t.Fatalf("err = %v, want a permanent panic error", err)
			}
			if b.exists(t, bucket, key) {
				t.Errorf("%s exists", key)
			}
			// Every part buffer came back: a panic does not shrink the process's budget.
			if st := pool.Stats(); st.InUse != 0 {
				t.Errorf("%d bytes of part buffers still in use after the panic", st.InUse)
			}
		})
	}
	if n := b.uploads(t, bucket, b.prefix); n != 0 {
		t.Errorf("%d uploads left", n)
	}
}

// A bucket that stops answering (Toxiproxy's timeout toxic in front of SeaweedFS) fails the Put
// within its attempts' deadlines, instead of hanging the job: before the upload, while parts
// upload, and the abort that follows is bounded too.
func TestS3StalledServerFailsWithinDeadlines(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	p := b.st.Proxy(t, stacktest.S3)
	client := s3.NewFromConfig(b.base, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(p.Endpoint())
		o.UsePathStyle = true
		o.Retryer = retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = 2; so.MaxBackoff = 50 * time.Millisecond })
	})
	opts := S3Options{PartSize: 5 << 20, Concurrency: 2, Timeouts: awsx.Timeouts{Default: 500 * time.Millisecond, Operations: map[string]time.Duration{"CompleteMultipartUpload": time.Second}}, AbortTimeout: time.Minute}
	sk := NewS3(client, bucket, opts)

	// Small body: PutObject.
	toxic := p.Inject(t, "timeout", "upstream", toxiproxy.Attributes{"timeout": 0})
	start := time.Now()
	_, err := sk.Put(context.Background(), jobs.Object{Key: b.prefix + "stalled-small"}, bytes.NewReader([]byte("x")))
	var ate *awsx.AttemptTimeoutError
	if !errors.As(err, &ate) || time.Since(start) > 5*time.Second {
		t.Fatalf("small put: %v after %s", err, time.Since(start))
	}
	if _, permanent := jobs.IsPermanent(err); permanent {
		t.Errorf("a timeout is permanent: %v", err)
	}
	if err := p.RemoveToxic(toxic); err != nil {
		t.Fatal(err)
	}

	// Multipart: the server stalls once the first part is read; the abort stalls too.
	var read atomic.Int64
	var once sync.Once
	body := &hookReader{r: bytes.NewReader(randomBytes(14, 16<<20)), after: func(n int64) {
		if read.Add(n) > 6<<20 {
			once.Do(func() { p.Inject(t, "timeout", "upstream", toxiproxy.Attributes{"timeout": 0}) })
		}
	}}
	key := b.prefix + "stalled-multipart"
	start = time.Now()
	_, err = sk.Put(context.Background(), jobs.Object{Key: key}, body)
	took := time.Since(start)
	if err == nil || took > 20*time.Second {
		t.Fatalf("multipart put: %v after %s", err, took)
	}
	t.Logf("multipart put failed after %s: %v", took, err)
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	// The abort could not reach the server: a later attempt cleans up.
	if _, err := sk.AbortIncomplete(context.Background(), key, ""); err != nil {
		t.Fatal(err)
	}
	if b.exists(t, bucket, key) || b.uploads(t, bucket, b.prefix) != 0 {
		t.Error("something was left behind")
	}
}

// hookReader calls after with the bytes of each read.
type hookReader struct {
	r     io.Reader
	after func(int64)
}

func (h *hookReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.after(int64(n))
	return n, err
}

// The worker's own credentials expired when it called AssumeRole (its instance credentials
// could not be refreshed during an IMDS hiccup): STS answers ExpiredToken, which retrying with
// fresh credentials fixes; the job must come back, not go to the dead-letter queue. A refusal of
// the role itself stays permanent. The errors are the SDK's own types, wrapped as the SDK and the
// credentials cache wrap them.
func TestClassifyExpiredWorkerCredentialsIsRetryable(t *testing.T) {
	t.Parallel()
	wrap := func(api error) error {
		// As the SDK reports a failed AssumeRole inside a failed S3 call.
		resp := &awshttp.ResponseError{RequestID: "req-1", ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 400}}, Err: api,
		}}
		return fmt.Errorf("operation error S3: PutObject: failed to refresh cached credentials, %w",
			&AssumeRoleError{Destination: "sfmc", RoleARN: "arn:aws:iam::123456789012:role/x", Err: fmt.Errorf("operation error STS: AssumeRole, %w", resp)})
	}
	for _, tc := range []struct {
		err    error
		reason string
	}{
		{&smithy.GenericAPIError{Code: "ExpiredToken", Message: "The security token included in the request is expired"}, ""},
		{&ststypes.ExpiredTokenException{Message: aws.String("expired")}, ""},
		{&ststypes.ExpiredTokenException{ErrorCodeOverride: aws.String("ExpiredToken")}, ""},
		{&smithy.GenericAPIError{Code: "RequestExpired"}, ""},
		{&smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized to perform sts:AssumeRole"}, "access_denied"},
		{&smithy.GenericAPIError{Code: "InvalidClientTokenId"}, "access_denied"},
	} {
		reason, permanent := jobs.IsPermanent(Classify(wrap(tc.err)))
		if string(reason) != tc.reason || permanent != (tc.reason != "") {
			t.Errorf("%v: reason %q (permanent %v), want %q", tc.err, reason, permanent, tc.reason)
		}
	}
}

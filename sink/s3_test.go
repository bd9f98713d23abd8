package sink

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
)

// bundle holds clients of the local stack for sink tests: admin (sees everything), the
// worker's base identity, and STS signed by the worker.
type bundle struct {
	st     *stacktest.Stack
	env    map[string]string
	admin  *s3.Client
	base   aws.Config
	prefix string // this test's own key prefix
}

func setup(t testing.TB) *bundle {
	t.Helper()
	st := stacktest.New(t)
	b := &bundle{st: st, env: st.Env, admin: st.S3, prefix: "sinktest/" + stacktest.RandomID() + "/"}
	b.base = aws.Config{
		Region:      st.Env["AWS_REGION"],
		Credentials: credentials.NewStaticCredentialsProvider(st.Env["AWS_ACCESS_KEY_ID"], st.Env["AWS_SECRET_ACCESS_KEY"], ""),
	}
	return b
}

// s3Client is an S3 client of the stack with creds; rec, if set, records each request.
func (b *bundle) s3Client(creds aws.CredentialsProvider, rec *recorder) *s3.Client {
	return s3.NewFromConfig(b.base, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(b.env["AWS_ENDPOINT_URL_S3"])
		o.UsePathStyle = true
		o.Credentials = creds
		if rec != nil {
			rec.inner = awshttp.NewBuildableClient()
			o.HTTPClient = rec
		}
	})
}

func (b *bundle) sts() *sts.Client {
	return sts.NewFromConfig(b.base, func(o *sts.Options) { o.BaseEndpoint = aws.String(b.env["AWS_ENDPOINT_URL_STS"]) })
}

// recorder records the access key that signed each request, by operation.
type recorder struct {
	inner aws.HTTPClient
	mu    sync.Mutex
	reqs  []recorded
}

type recorded struct {
	Method, Query, AccessKey string
	At                       time.Time
}

var credentialPattern = regexp.MustCompile(`Credential=([^/]+)/`)

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	rec := recorded{Method: req.Method, Query: req.URL.RawQuery, At: time.Now()}
	if m := credentialPattern.FindStringSubmatch(req.Header.Get("Authorization")); m != nil {
		rec.AccessKey = m[1]
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
	return r.inner.Do(req)
}

func (r *recorder) partKeys() (keys []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, q := range r.reqs {
		if q.Method == http.MethodPut && strings.Contains(q.Query, "partNumber=") {
			keys = append(keys, q.AccessKey)
		}
	}
	return keys
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

func crc64nvme(b []byte) string {
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint64(nil, crc64.Checksum(b, crc64.MakeTable(0x9a6c9329ac4bc9b5))))
}

func crc32c(b []byte) string {
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))))
}

// get downloads an object with the admin identity.
func (b *bundle) get(t *testing.T, bucket, key string) []byte {
	t.Helper()
	out, err := b.admin.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get s3://%s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (b *bundle) exists(t *testing.T, bucket, key string) bool {
	t.Helper()
	_, err := b.admin.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	var nf *s3types.NotFound
	if errors.As(err, &nf) {
		return false
	}
	if err != nil {
		t.Fatalf("head s3://%s/%s: %v", bucket, key, err)
	}
	return true
}

func (b *bundle) uploads(t *testing.T, bucket, prefix string) int {
	t.Helper()
	out, err := b.admin.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatalf("list uploads: %v", err)
	}
	return len(out.Uploads)
}

// A body shorter than one part is one PutObject; a longer one a multipart upload of base-size
// parts. Either way the object has the content type, encoding, metadata and a full-object
// checksum that the server stored and that matches one computed here independently.
func TestS3WritesObjects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		name         string
		size         int
		checksum     string
		wantParts    int
		sse, storage string
	}{
		{"small CRC64NVME", 1000, ChecksumCRC64NVME, 1, "", ""},
		{"small CRC32C", 1000, ChecksumCRC32C, 1, "", ""},
		{"empty", 0, ChecksumCRC64NVME, 1, "", ""},
		{"multipart CRC64NVME", 23 << 20, ChecksumCRC64NVME, 5, "", ""},
		{"multipart CRC32C", 11 << 20, ChecksumCRC32C, 3, "", ""},
		{"exactly two parts", 10 << 20, ChecksumCRC64NVME, 2, "", ""},
		// SeaweedFS implements SSE-S3 and storage classes; SSE-KMS needs a KMS it lacks here.
		{"small AES256 STANDARD_IA", 1000, ChecksumCRC32C, 1, "AES256", "STANDARD_IA"},
		{"multipart AES256 STANDARD_IA", 11 << 20, ChecksumCRC32C, 3, "AES256", "STANDARD_IA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := randomBytes(uint64(tc.size), tc.size)
			key := b.prefix + strings.ReplaceAll(tc.name, " ", "-") + ".gz"
			sk := NewS3(b.s3Client(b.base.Credentials, nil), b.env["EXPORT_BUCKET"], S3Options{PartSize: 5 << 20, Concurrency: 2, Checksum: tc.checksum, SSE: tc.sse, StorageClass: tc.storage})
			w, stats, err := sk.putReader(context.Background(), jobs.Object{
				Key: key, ContentType: "text/csv; charset=utf-8", ContentEncoding: "gzip",
				Metadata: map[string]string{"export-id": "e-1"},
			}, bytes.NewReader(data))
			if err != nil {
				t.Fatalf("put: %v", err)
			}
			if w.Parts != tc.wantParts || stats.Parts != tc.wantParts {
				t.Errorf("parts = %d (stats %d), want %d", w.Parts, stats.Parts, tc.wantParts)
			}
			if bound := int64(3 * 5 << 20); stats.PeakBuffered > bound {
				t.Errorf("part buffers peaked at %d bytes, bound (concurrency+1) x part size = %d", stats.PeakBuffered, bound)
			}
			if got := b.get(t, b.env["EXPORT_BUCKET"], key); !bytes.Equal(got, data) {
				t.Fatalf("object has %d bytes, differing from the %d written", len(got), len(data))
			}
			want := crc64nvme(data)
			if tc.checksum == ChecksumCRC32C {
				want = crc32c(data)
			}
			if w.Checksum != want || w.ChecksumAlgorithm != tc.checksum {
				t.Errorf("written checksum %s %s, want %s %s", w.ChecksumAlgorithm, w.Checksum, tc.checksum, want)
			}
			head, err := b.admin.HeadObject(context.Background(), &s3.HeadObjectInput{
				Bucket: aws.String(b.env["EXPORT_BUCKET"]), Key: aws.String(key), ChecksumMode: s3types.ChecksumModeEnabled,
			})
			if err != nil {
				t.Fatal(err)
			}
			stored := aws.ToString(head.ChecksumCRC64NVME)
			if tc.checksum == ChecksumCRC32C {
				stored = aws.ToString(head.ChecksumCRC32C)
			}
			if !sameChecksum(stored, want) {
				t.Errorf("server stored checksum %q (type %s), want %s", stored, head.ChecksumType, want)
			}
			if string(head.ServerSideEncryption) != tc.sse || string(head.StorageClass) != tc.storage {
				t.Errorf("head: encryption %q, storage class %q; want %q, %q", head.ServerSideEncryption, head.StorageClass, tc.sse, tc.storage)
			}
			if aws.ToString(head.ContentType) != "text/csv; charset=utf-8" || aws.ToString(head.ContentEncoding) != "gzip" || head.Metadata["export-id"] != "e-1" {
				t.Errorf("head: content type %q, encoding %q, metadata %v", aws.ToString(head.ContentType), aws.ToString(head.ContentEncoding), head.Metadata)
			}
		})
	}
}

// Parts grow as the stream grows (here every 2 parts instead of every 1,000), the buffers stay
// within max((concurrency+1) x base, 2 x part), and the server accepts the mixed sizes and the
// full-object checksum of the whole.
func TestS3PartsGrow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{PartSize: 5 << 20, Concurrency: 2})
	sk.perTier = 2
	data := randomBytes(8, 62<<20) // 5+5+10+10+20 MiB, then 12 MiB of a 40 MiB part
	rec := &recorder{}
	sk.client = b.s3Client(b.base.Credentials, rec)
	key := b.prefix + "growing.gz"
	w, stats, err := sk.putReader(context.Background(), jobs.Object{Key: key}, onlyReader{bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	if w.Parts != 6 {
		t.Errorf("%d parts, want 6", w.Parts)
	}
	if bound := int64(2 * 40 << 20); stats.PeakBuffered > bound {
		t.Errorf("buffers peaked at %d, bound %d", stats.PeakBuffered, bound)
	}
	if got := b.get(t, bucket, key); !bytes.Equal(got, data) {
		t.Fatal("object differs")
	}
	parts, err := b.admin.GetObjectAttributes(context.Background(), &s3.GetObjectAttributesInput{
		Bucket: aws.String(bucket), Key: aws.String(key), ObjectAttributes: []s3types.ObjectAttributes{s3types.ObjectAttributesObjectParts, s3types.ObjectAttributesChecksum},
	})
	if err != nil || parts.ObjectParts == nil {
		t.Fatalf("GetObjectAttributes: %v", err)
	}
	var sizes []int64
	for _, p := range parts.ObjectParts.Parts {
		sizes = append(sizes, aws.ToInt64(p.Size)>>20)
	}
	if want := []int64{5, 5, 10, 10, 20, 12}; !slices.Equal(sizes, want) {
		t.Errorf("part sizes (MiB) as the server stored them: %v, want %v", sizes, want)
	}
	if w.Checksum != crc32c(data) {
		t.Errorf("checksum %s, want %s", w.Checksum, crc32c(data))
	}
}

// Which checksums does SeaweedFS verify? Both CRC32C and CRC64NVME: a part whose checksum
// header does not match its bytes is refused (BadDigest), and so is a completion whose
// full-object checksum does not match the parts. This is what makes the checksums the sink
// sends worth sending.
func TestServerVerifiesChecksums(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	bucket := b.env["EXPORT_BUCKET"]
	part1, part2 := randomBytes(1, 5<<20), randomBytes(2, 1<<20)
	for _, alg := range []string{ChecksumCRC64NVME, ChecksumCRC32C} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			sum := crc64nvme
			set := func(crc64p, crc32p **string, v string) { *crc64p = aws.String(v) }
			if alg == ChecksumCRC32C {
				sum = crc32c
				set = func(crc64p, crc32p **string, v string) { *crc32p = aws.String(v) }
			}
			key := b.prefix + "verify-" + alg
			create, err := b.admin.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
				Bucket: aws.String(bucket), Key: aws.String(key),
				ChecksumAlgorithm: s3types.ChecksumAlgorithm(alg), ChecksumType: s3types.ChecksumTypeFullObject,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_, _ = b.admin.AbortMultipartUpload(context.Background(), &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: create.UploadId})
			})
			uploadPart := func(n int32, data []byte, checksum string) (*s3.UploadPartOutput, error) {
				in := &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: create.UploadId, PartNumber: aws.Int32(n), Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data)))}
				set(&in.ChecksumCRC64NVME, &in.ChecksumCRC32C, checksum)
				return b.admin.UploadPart(ctx, in)
			}
			// A part whose checksum is that of other bytes (one bit flipped in transit).
			if _, err := uploadPart(1, part1, sum(part2)); errorCode(err) != "BadDigest" {
				t.Errorf("part with a wrong %s: err = %v, want BadDigest", alg, err)
			}
			p1, err := uploadPart(1, part1, sum(part1))
			if err != nil {
				t.Fatalf("part 1: %v", err)
			}
			p2, err := uploadPart(2, part2, sum(part2))
			if err != nil {
				t.Fatalf("part 2: %v", err)
			}
			parts := []s3types.CompletedPart{{ETag: p1.ETag, PartNumber: aws.Int32(1)}, {ETag: p2.ETag, PartNumber: aws.Int32(2)}}
			set(&parts[0].ChecksumCRC64NVME, &parts[0].ChecksumCRC32C, sum(part1))
			set(&parts[1].ChecksumCRC64NVME, &parts[1].ChecksumCRC32C, sum(part2))
			complete := func(whole string) error {
				in := &s3.CompleteMultipartUploadInput{
					Bucket: aws.String(bucket), Key: aws.String(key), UploadId: create.UploadId,
					MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts}, ChecksumType: s3types.ChecksumTypeFullObject,
				}
				set(&in.ChecksumCRC64NVME, &in.ChecksumCRC32C, whole)
				_, err := b.admin.CompleteMultipartUpload(ctx, in)
				return err
			}
			// The whole object's checksum of other bytes: refused, nothing appears.
			if err := complete(sum(append(bytes.Clone(part2), part1...))); errorCode(err) != "BadDigest" {
				t.Errorf("complete with a wrong full-object %s: err = %v, want BadDigest", alg, err)
			}
			if b.exists(t, bucket, key) {
				t.Fatal("the object appeared although its checksum was wrong")
			}
			if err := complete(sum(append(bytes.Clone(part1), part2...))); err != nil {
				t.Fatalf("complete with the right checksum: %v", err)
			}
		})
	}
}

// failingReader yields n bytes, then fails.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, f.err
	}
	return n, err
}

// A stream that fails after some parts were stored leaves no object and no upload behind,
// and the stream's error is the one returned; so does a canceled context.
func TestS3AbortsOnFailure(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{PartSize: 5 << 20})
	boom := errors.New("cursor died")
	key := b.prefix + "failed.gz"
	_, err := sk.Put(context.Background(), jobs.Object{Key: key}, &failingReader{r: bytes.NewReader(randomBytes(3, 12<<20)), err: boom})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want the stream's error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(randomBytes(4, 7<<20))
		cancel()
		_, _ = pw.Write(randomBytes(5, 7<<20))
		pw.Close()
	}()
	key2 := b.prefix + "canceled.gz"
	if _, err := sk.Put(ctx, jobs.Object{Key: key2}, pr); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: err = %v", err)
	}
	pr.Close()
	for _, k := range []string{key, key2} {
		if b.exists(t, bucket, k) {
			t.Errorf("%s exists after a failed upload", k)
		}
	}
	if n := b.uploads(t, bucket, b.prefix); n != 0 {
		t.Errorf("%d multipart uploads left behind", n)
	}
}

// AbortIncomplete removes the unfinished uploads of exactly one key.
func TestS3AbortIncomplete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	bucket := b.env["EXPORT_BUCKET"]
	key := b.prefix + "x.csv.gz"
	for _, k := range []string{key, key, key + ".other"} {
		if _, err := b.admin.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(k)}); err != nil {
			t.Fatal(err)
		}
	}
	sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{})
	n, err := sk.AbortIncomplete(ctx, key, "")
	if err != nil || n != 2 {
		t.Fatalf("AbortIncomplete = %d, %v; want 2", n, err)
	}
	if left := b.uploads(t, bucket, b.prefix); left != 1 {
		t.Errorf("%d uploads left, want the other key's 1", left)
	}
	if n, err := sk.AbortIncomplete(ctx, key+".other", ""); err != nil || n != 1 {
		t.Errorf("AbortIncomplete(other) = %d, %v", n, err)
	}
}

// slowReader yields chunk bytes of data every pause.
type slowReader struct {
	data  []byte
	chunk int
	pause time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.pause)
	n := copy(p[:min(len(p), s.chunk)], s.data)
	s.data = s.data[n:]
	return n, nil
}

// An upload that outlives its credentials: the cache refreshes them before they are due
// (RefreshBefore), between parts of one multipart upload, and the upload completes. Proven by
// the AssumeRole calls counted by OnCall and by the access keys that signed the parts.
//
// SeaweedFS issues sessions of at least 15 minutes (as AWS does), and a shorter token lifetime
// needs the stack restarted with STACK_STS_MAX_SESSION_LENGTH, which would break every other
// test running on it. RefreshBefore = Duration - 1.5s makes the SDK treat each session as
// expired 1.5s after it was issued: the same code path as a real expiry (CredentialsCache
// finds the credentials expired and calls AssumeRole again), without a restart.
func TestAssumeRoleRefreshedMidUpload(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var mu sync.Mutex
	calls := map[string]int{}
	creds := NewAssumeRoleCredentials(b.sts(), AssumeRole{
		Destination: "sfmc", RoleARN: b.env["SFMC_ROLE_ARN"], ExternalID: "vf-export-test", SessionName: "sink-test",
		Duration: 15 * time.Minute, RefreshBefore: 15*time.Minute - 1500*time.Millisecond,
		OnCall: func(dest string, err error) {
			mu.Lock()
			defer mu.Unlock()
			calls[fmt.Sprintf("%s/%v", dest, err)]++
		},
	})
	rec := &recorder{}
	bucket := b.env["SFMC_BUCKET"]
	sk := NewS3(b.s3Client(creds, rec), bucket, S3Options{PartSize: 5 << 20, Concurrency: 1, Destination: "sfmc", RoleARN: b.env["SFMC_ROLE_ARN"], Credentials: creds})
	data := randomBytes(6, 21<<20)
	key := b.prefix + "slow.gz"
	// About 1 MiB per 300 ms: 5 parts over about 6 seconds.
	w, err := sk.Put(context.Background(), jobs.Object{Key: key}, &slowReader{data: data, chunk: 1 << 20, pause: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if got := b.get(t, bucket, key); !bytes.Equal(got, data) || w.Parts != 5 {
		t.Fatalf("object: %d bytes in %d parts", len(got), w.Parts)
	}
	mu.Lock()
	ok := calls["sfmc/<nil>"]
	mu.Unlock()
	keys := rec.partKeys()
	distinct := map[string]bool{}
	for _, k := range keys {
		distinct[k] = true
	}
	t.Logf("AssumeRole calls %v; parts signed with %d access keys: %v", calls, len(distinct), keys)
	if ok < 3 {
		t.Errorf("AssumeRole succeeded %d times during a 6s upload of 1.5s sessions, want at least 3", ok)
	}
	if len(distinct) < 2 {
		t.Errorf("every part was signed with one access key: the credentials were not refreshed mid-upload")
	}
	if len(calls) != 1 {
		t.Errorf("AssumeRole failures: %v", calls)
	}
}

// A role the worker may not assume: the upload fails permanently with reason access_denied,
// the error names the destination and the role, and nothing is written.
func TestAssumeRoleDeniedIsPermanent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var failures int
	var mu sync.Mutex
	role := b.env["FORBIDDEN_ROLE_ARN"]
	creds := NewAssumeRoleCredentials(b.sts(), AssumeRole{
		Destination: "forbidden", RoleARN: role, SessionName: "sink-test", Duration: 15 * time.Minute,
		OnCall: func(_ string, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures++
			}
		},
	})
	bucket := b.env["SFMC_BUCKET"]
	sk := NewS3(b.s3Client(creds, nil), bucket, S3Options{Destination: "forbidden", RoleARN: role, Credentials: creds})
	for _, size := range []int{100, 9 << 20} { // PutObject and multipart
		key := fmt.Sprintf("%sdenied-%d.gz", b.prefix, size)
		_, err := sk.Put(context.Background(), jobs.Object{Key: key}, bytes.NewReader(randomBytes(7, size)))
		reason, permanent := jobs.IsPermanent(err)
		if !permanent || reason != "access_denied" {
			t.Fatalf("size %d: err = %v; want permanent access_denied", size, err)
		}
		for _, want := range []string{`destination "forbidden"`, role} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		}
		if b.exists(t, bucket, key) {
			t.Errorf("%s was written", key)
		}
	}
	if n := b.uploads(t, bucket, b.prefix); n != 0 {
		t.Errorf("%d uploads left", n)
	}
	// Cleaning up earlier attempts needs the role too: the same permanent error, not a
	// "may not list uploads" shrug.
	if _, err := sk.AbortIncomplete(context.Background(), b.prefix+"x", ""); !strings.Contains(fmt.Sprint(err), role) {
		t.Errorf("AbortIncomplete: %v", err)
	} else if reason, _ := jobs.IsPermanent(err); reason != "access_denied" {
		t.Errorf("AbortIncomplete: reason %q", reason)
	}
	mu.Lock()
	defer mu.Unlock()
	if failures == 0 {
		t.Error("OnCall saw no failed AssumeRole")
	}
}

// STS out of reach is an outage, not a verdict: the failure is retryable.
func TestAssumeRoleUnreachableIsRetryable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dead := "http://" + stacktest.FreeAddr(t) // nothing listens there
	stsClient := sts.NewFromConfig(b.base, func(o *sts.Options) { o.BaseEndpoint = aws.String(dead); o.RetryMaxAttempts = 1 })
	creds := NewAssumeRoleCredentials(stsClient, AssumeRole{Destination: "sfmc", RoleARN: b.env["SFMC_ROLE_ARN"], SessionName: "sink-test", Duration: 15 * time.Minute})
	sk := NewS3(b.s3Client(creds, nil), b.env["SFMC_BUCKET"], S3Options{Destination: "sfmc", RoleARN: b.env["SFMC_ROLE_ARN"], Credentials: creds})
	_, err := sk.Put(context.Background(), jobs.Object{Key: b.prefix + "unreachable"}, bytes.NewReader([]byte("x")))
	if err == nil {
		t.Fatal("put succeeded without credentials")
	}
	if reason, permanent := jobs.IsPermanent(err); permanent {
		t.Errorf("err = %v: permanent (%s), want retryable", err, reason)
	}
	if !strings.Contains(err.Error(), `destination "sfmc"`) {
		t.Errorf("err = %v does not name the destination", err)
	}
}

// Errors of STS are sorted by what retrying can do.
func TestClassifyAssumeRoleErrors(t *testing.T) {
	t.Parallel()
	wrap := func(code string, status int) error {
		api := &smithy.GenericAPIError{Code: code, Message: "test"}
		return fmt.Errorf("operation error S3: PutObject: failed to retrieve credentials: %w",
			&AssumeRoleError{Destination: "sfmc", RoleARN: "arn:aws:iam::123456789012:role/x", Err: fmt.Errorf("https response error StatusCode: %d: %w", status, api)})
	}
	for code, want := range map[string]string{
		"AccessDenied": "access_denied", "InvalidClientTokenId": "access_denied", "RegionDisabledException": "access_denied",
		"ValidationError": "invalid_destination", "MalformedPolicyDocument": "invalid_destination",
		"Throttling": "", "ServiceUnavailable": "", "InternalFailure": "", "IDPCommunicationError": "",
	} {
		reason, permanent := jobs.IsPermanent(Classify(wrap(code, 400)))
		if string(reason) != want || permanent != (want != "") {
			t.Errorf("%s: reason %q permanent %v, want %q", code, reason, permanent, want)
		}
	}
	// A connection error reaching STS is retryable too.
	if _, permanent := jobs.IsPermanent(Classify(&AssumeRoleError{Destination: "d", RoleARN: "r", Err: errors.New("dial tcp: connection refused")})); permanent {
		t.Error("connection refused is permanent")
	}
	// S3's own codes keep their meaning.
	if reason, _ := jobs.IsPermanent(Classify(fmt.Errorf("x: %w", &smithy.GenericAPIError{Code: "NoSuchBucket"}))); reason != "no_such_bucket" {
		t.Errorf("NoSuchBucket: %q", reason)
	}
	if _, permanent := jobs.IsPermanent(Classify(fmt.Errorf("x: %w", &smithy.GenericAPIError{Code: "SlowDown"}))); permanent {
		t.Error("SlowDown is permanent")
	}
}

// onlyReader hides bytes.Reader's WriterTo and Seeker: the sink sees a stream of unknown
// length, as it does behind the pipeline's io.Pipe.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

package sink

import (
	"bytes"
	"context"
	"encoding"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/verifiedfan/export-service/jobs"
)

// sliceParts is a jobs.Parts over a slice of byte slices: each part is copied into a buffer of
// pool, given back by the part's release func. The last slice is the Last part; a part's mark
// has Rows = its part number.
type sliceParts struct {
	pool  *BufferPool
	data  [][]byte
	first int // the part number of data[0]
	// before, if set, runs ahead of yielding data[i]; its error (or panic) is Next's.
	before func(ctx context.Context, i int) error

	i                int
	given, released  atomic.Int64
	doubleReleased   atomic.Bool
	releasedByNumber sync.Map
}

func (s *sliceParts) Next(ctx context.Context) (*jobs.Part, error) {
	if s.i == len(s.data) {
		return nil, io.EOF
	}
	if s.before != nil {
		if err := s.before(ctx, s.i); err != nil {
			return nil, err
		}
	}
	d := s.data[s.i]
	buf, err := s.pool.Get(ctx, int64(len(d)))
	if err != nil {
		return nil, err
	}
	copy(buf, d)
	n := s.first + s.i
	s.i++
	s.given.Add(1)
	release := func() {
		if _, again := s.releasedByNumber.LoadOrStore(n, true); again {
			s.doubleReleased.Store(true)
		}
		s.released.Add(1)
		s.pool.Put(buf)
	}
	return jobs.NewPart(buf[:len(d)], s.i == len(s.data), jobs.Mark{Rows: int64(n), BytesCompressed: int64(n) * 1000}, release), nil
}

// checkBudget fails unless every part buffer went back to pool, each exactly once.
func checkBudget(t *testing.T, pool *BufferPool, srcs ...*sliceParts) {
	t.Helper()
	if st := pool.Stats(); st.InUse != 0 || st.Waiting != 0 {
		t.Errorf("part buffers: %d bytes still in use, %d waiting", st.InUse, st.Waiting)
	}
	for _, s := range srcs {
		if g, r := s.given.Load(), s.released.Load(); g != r || s.doubleReleased.Load() {
			t.Errorf("%d parts given, %d releases (a part released twice: %v)", g, r, s.doubleReleased.Load())
		}
	}
}

// cpLog is a checkpoint function that records what it is called with.
type cpLog struct {
	// fail, if set, runs first; its error is the checkpoint's.
	fail func(call int, st jobs.UploadState) error
	// check, if set, runs on every call (from the part's goroutine: t.Error only).
	check func(st jobs.UploadState)

	inFlight   atomic.Int32
	overlapped atomic.Bool

	mu           sync.Mutex
	calls        int
	failures     int
	afterFailure int    // calls made after one had returned an error
	uploadID     string // of the last call
	states       []jobs.UploadState
	marks        []jobs.Mark
}

func (c *cpLog) checkpoint(_ context.Context, st jobs.UploadState, m jobs.Mark) error {
	if c.inFlight.Add(1) > 1 {
		c.overlapped.Store(true)
	}
	defer c.inFlight.Add(-1)
	c.mu.Lock()
	c.calls++
	call := c.calls
	c.uploadID = st.UploadID
	if c.failures > 0 {
		c.afterFailure++
	}
	c.mu.Unlock()
	if c.check != nil {
		c.check(st)
	}
	if c.fail != nil {
		if err := c.fail(call, st); err != nil {
			c.mu.Lock()
			c.failures++
			c.mu.Unlock()
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.states = append(c.states, st)
	c.marks = append(c.marks, m)
	return nil
}

func (c *cpLog) snapshot() ([]jobs.UploadState, []jobs.Mark) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.states), slices.Clone(c.marks)
}

func (c *cpLog) lastState() jobs.UploadState {
	st, _ := c.snapshot()
	if len(st) == 0 {
		return jobs.UploadState{}
	}
	return st[len(st)-1]
}

func (c *cpLog) seenUploadID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uploadID
}

// wait returns once n checkpoints succeeded.
func (c *cpLog) wait(ctx context.Context, n int) error {
	return pollUntil(ctx, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.states) >= n
	})
}

func pollUntil(ctx context.Context, cond func() bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("test: condition not reached in 30s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// partHooks is an HTTP client that runs before ahead of each part upload (to delay or fail
// it) and records the part numbers whose uploads the server accepted, in that order.
type partHooks struct {
	inner  aws.HTTPClient
	before func(r *http.Request, n int) error

	mu       sync.Mutex
	answered []int
}

func (h *partHooks) Do(r *http.Request) (*http.Response, error) {
	n := 0
	if r.Method == http.MethodPut {
		n, _ = strconv.Atoi(r.URL.Query().Get("partNumber"))
	}
	if n == 0 {
		return h.inner.Do(r)
	}
	if h.before != nil {
		if err := h.before(r, n); err != nil {
			return nil, err
		}
	}
	resp, err := h.inner.Do(r)
	if err == nil && resp.StatusCode == http.StatusOK {
		h.mu.Lock()
		h.answered = append(h.answered, n)
		h.mu.Unlock()
	}
	return resp, err
}

func (h *partHooks) stored() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.answered)
}

// hookedSink is a sink of the export bucket whose requests go through h; attempts is the
// SDK's attempts per request (0: its default).
// failingPart returns hooks that fail the upload of part n (none when n is 0) as a reset
// connection, and the attempts a sink with them should make (1: no SDK retry hides it).
func failingPart(n int) (*partHooks, int) {
	h := &partHooks{}
	if n == 0 {
		return h, 0
	}
	h.before = func(_ *http.Request, part int) error {
		if part == n {
			return errors.New("connection reset by peer")
		}
		return nil
	}
	return h, 1
}

func (b *bundle) hookedSink(h *partHooks, attempts int, opts S3Options) *S3 {
	h.inner = awshttp.NewBuildableClient()
	client := s3.NewFromConfig(b.base, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(b.env["AWS_ENDPOINT_URL_S3"])
		o.UsePathStyle = true
		o.HTTPClient = h
		if attempts > 0 {
			o.RetryMaxAttempts = attempts
		}
	})
	return NewS3(client, b.env["EXPORT_BUCKET"], opts)
}

// uploadIDs are the unfinished uploads of exactly key.
func (b *bundle) uploadIDs(t *testing.T, bucket, key string) []string {
	t.Helper()
	out, err := b.admin.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(key)})
	if err != nil {
		t.Fatalf("list uploads: %v", err)
	}
	var ids []string
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) == key {
			ids = append(ids, aws.ToString(u.UploadId))
		}
	}
	return ids
}

// serverParts are the parts the server holds of an upload, by number (nil: no such upload).
func (b *bundle) serverParts(t *testing.T, bucket, key, uploadID string) map[int]s3types.Part {
	t.Helper()
	out, err := b.admin.ListParts(context.Background(), &s3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(uploadID)})
	if errorCode(err) == "NoSuchUpload" {
		return nil
	}
	if err != nil {
		t.Fatalf("list parts of %s: %v", uploadID, err)
	}
	parts := map[int]s3types.Part{}
	for _, p := range out.Parts {
		parts[int(aws.ToInt32(p.PartNumber))] = p
	}
	return parts
}

func partNumbers(m map[int]s3types.Part) []int {
	var ns []int
	for n := range m {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

// getChecked downloads an object with its stored checksum of alg (ChecksumMode enabled).
func (b *bundle) getChecked(t *testing.T, bucket, key, alg string) ([]byte, string) {
	t.Helper()
	out, err := b.admin.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ChecksumMode: s3types.ChecksumModeEnabled})
	if err != nil {
		t.Fatalf("get s3://%s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	if alg == ChecksumCRC64NVME {
		return data, aws.ToString(out.ChecksumCRC64NVME)
	}
	return data, aws.ToString(out.ChecksumCRC32C)
}

func makeParts(seed uint64, sizes ...int) [][]byte {
	parts := make([][]byte, len(sizes))
	for i, n := range sizes {
		parts[i] = randomBytes(seed*100+uint64(i)+1, n)
	}
	return parts
}

func concat(parts [][]byte) []byte { return bytes.Join(parts, nil) }

func sumOf(alg string, data []byte) string {
	if alg == ChecksumCRC64NVME {
		return crc64nvme(data)
	}
	return crc32c(data)
}

// stateSum is the checksum a marshalled running checksum state stands for, restored into a
// hash of this test's own.
func stateSum(alg string, state []byte) (string, error) {
	var h hash.Hash = crc32.New(crc32.MakeTable(crc32.Castagnoli))
	if alg == ChecksumCRC64NVME {
		h = crc64.New(crc64.MakeTable(0x9a6c9329ac4bc9b5))
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

// checkState checks that st is the state of an upload after exactly parts 1..len(parts) of
// parts: numbers, sizes, per-part checksums, size, and the running checksum of their bytes.
func checkState(t *testing.T, st jobs.UploadState, uploadID, alg string, parts [][]byte) {
	t.Helper()
	if st.UploadID != uploadID || uploadID == "" {
		t.Errorf("state of upload %q, want %q", st.UploadID, uploadID)
	}
	if st.ChecksumAlgorithm != alg {
		t.Errorf("state's checksum algorithm %q, want %q", st.ChecksumAlgorithm, alg)
	}
	var numbers []int
	var sum int64
	for i, p := range st.Parts {
		numbers = append(numbers, p.Number)
		sum += p.Size
		if i < len(parts) && (p.Size != int64(len(parts[i])) || p.Checksum != sumOf(alg, parts[i]) || p.ETag == "") {
			t.Errorf("state part %d: size %d checksum %s etag %q; want size %d checksum %s", p.Number, p.Size, p.Checksum, p.ETag, len(parts[i]), sumOf(alg, parts[i]))
		}
	}
	var want []int
	for i := range parts {
		want = append(want, i+1)
	}
	if !slices.Equal(numbers, want) {
		t.Errorf("state lists parts %v, want %v", numbers, want)
	}
	if sum != st.Size || st.Size != int64(len(concat(parts))) {
		t.Errorf("state size %d, its parts sum to %d, want %d", st.Size, sum, len(concat(parts)))
	}
	got, err := stateSum(alg, st.ChecksumState)
	if want := sumOf(alg, concat(parts)); err != nil || got != want {
		t.Errorf("state's running checksum %s (%v), want that of parts 1..%d: %s", got, err, len(parts), want)
	}
}

var partSizes = []int{5 << 20, 5<<20 + 1001, 5<<20 + 7, 6 << 20, 5 << 20, 1<<20 + 3}

// Checkpoints come once per part but the last, in part order and one at a time, although
// parts finish out of order (part 1 is held back until part 2 is stored, part 3 until part 4,
// Concurrency 3):
// each lists exactly parts 1..k, which the server holds by then, with its running checksum and
// the mark of part k. The object is the concatenation of the parts, and its full-object
// checksum, as written and as the server returns it, is the one computed here.
func TestPutPartsCheckpointsInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	for _, alg := range []string{ChecksumCRC32C, ChecksumCRC64NVME} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			parts := makeParts(1, partSizes...)
			full := concat(parts)
			key := b.prefix + "in-order-" + alg
			// Part 1 is stored after part 2, part 3 after part 4.
			h := &partHooks{}
			h.before = func(r *http.Request, n int) error {
				if n == 1 || n == 3 {
					return pollUntil(r.Context(), func() bool { return slices.Contains(h.stored(), n+1) })
				}
				return nil
			}
			pool := NewBufferPool(64 << 20)
			sk := b.hookedSink(h, 0, S3Options{Concurrency: 3, Buffers: pool, Checksum: alg})
			cps := &cpLog{}
			cps.check = func(st jobs.UploadState) {
				// Every part the checkpoint records is stored already, as recorded.
				have := b.serverParts(t, bucket, key, st.UploadID)
				for _, p := range st.Parts {
					if sp, ok := have[p.Number]; !ok || trimETag(aws.ToString(sp.ETag)) != trimETag(p.ETag) || aws.ToInt64(sp.Size) != p.Size {
						t.Errorf("checkpoint of %d parts: part %d is not stored as recorded (server: %v)", len(st.Parts), p.Number, partNumbers(have))
					}
				}
			}
			src := &sliceParts{pool: pool, data: parts, first: 1}
			w, err := sk.PutParts(ctx, jobs.Object{Key: key}, src, nil, cps.checkpoint)
			if err != nil {
				t.Fatalf("PutParts: %v", err)
			}
			order := h.stored()
			t.Logf("parts stored in the order %v", order)
			if i1, i2 := slices.Index(order, 1), slices.Index(order, 2); i1 < i2 {
				t.Fatalf("part 1 was stored before part 2 (%v): the parts did not finish out of order", order)
			}
			states, marks := cps.snapshot()
			if len(states) != len(parts)-1 || cps.calls != len(parts)-1 {
				t.Fatalf("%d checkpoints (%d calls) for %d parts, want %d", len(states), cps.calls, len(parts), len(parts)-1)
			}
			if cps.overlapped.Load() {
				t.Error("checkpoints ran concurrently")
			}
			for k, st := range states {
				checkState(t, st, states[0].UploadID, alg, parts[:k+1])
				if marks[k].Rows != int64(k+1) {
					t.Errorf("checkpoint %d has the mark of part %d", k+1, marks[k].Rows)
				}
			}
			if w.Parts != len(parts) || w.Key != key || w.ChecksumAlgorithm != alg {
				t.Errorf("written: %+v", w)
			}
			got, stored := b.getChecked(t, bucket, key, alg)
			if !bytes.Equal(got, full) {
				t.Fatalf("object has %d bytes, differing from the %d bytes of the parts", len(got), len(full))
			}
			want := sumOf(alg, got)
			if w.Checksum != want {
				t.Errorf("written checksum %s, want %s", w.Checksum, want)
			}
			if !sameChecksum(stored, want) {
				t.Errorf("server's checksum %q, want %s", stored, want)
			}
			if ids := b.uploadIDs(t, bucket, key); len(ids) != 0 {
				t.Errorf("uploads left: %v", ids)
			}
			checkBudget(t, pool, src)
		})
	}
}

// A first part that is also the last is one PutObject: no upload, no checkpoint.
func TestPutPartsSinglePart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	pool := NewBufferPool(64 << 20)
	h := &partHooks{}
	sk := b.hookedSink(h, 0, S3Options{Concurrency: 3, Buffers: pool})
	data := randomBytes(21, 3<<20)
	src := &sliceParts{pool: pool, data: [][]byte{data}, first: 1}
	cps := &cpLog{}
	key := b.prefix + "single"
	w, err := sk.PutParts(context.Background(), jobs.Object{Key: key}, src, nil, cps.checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if cps.calls != 0 || len(h.stored()) != 0 || w.Parts != 1 {
		t.Errorf("%d checkpoints, part uploads %v, %d parts written; want a single PutObject", cps.calls, h.stored(), w.Parts)
	}
	got, stored := b.getChecked(t, bucket, key, ChecksumCRC32C)
	if !bytes.Equal(got, data) || w.Checksum != crc32c(data) || !sameChecksum(stored, crc32c(data)) {
		t.Errorf("object: %d bytes, written checksum %s, stored %s; want %s", len(got), w.Checksum, stored, crc32c(data))
	}
	checkBudget(t, pool, src)
}

// An attempt that fails after k parts were stored and checkpointed keeps its upload, and
// another attempt continues it from the last checkpoint: it stores parts k+1.. only (numbered
// after the recorded ones), checkpoints states that list the resumed parts too, and the object
// is the whole stream, with the checksum of a one-shot put of the same bytes. Parts an
// attempt stored beyond its last checkpoint are replaced (or dropped, when the new stream has
// fewer parts).
func TestPutPartsResume(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	for _, tc := range []struct {
		name string
		// stale, if set, are the sizes of the parts after k that the first attempt stores
		// (other bytes than the second's), failing its checkpoint after part k+1.
		stale []int
		sizes []int
	}{
		{name: "stream fails after a checkpoint", sizes: partSizes[:5]},
		{name: "checkpoint fails, stale parts after it", sizes: []int{5 << 20, 5<<20 + 5, 5<<20 + 9, 70000}, stale: []int{5<<20 + 11, 5<<20 + 13, 5<<20 + 17, 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			const k = 2
			parts := makeParts(2, tc.sizes...)
			full := concat(parts)
			key := b.prefix + "resume-" + strings.ReplaceAll(tc.name, " ", "-")
			pool := NewBufferPool(64 << 20)

			// The first attempt.
			h1 := &partHooks{}
			sk1 := b.hookedSink(h1, 0, S3Options{Concurrency: 3, Buffers: pool})
			cps1 := &cpLog{}
			boom := errors.New("cursor lost")
			src1 := &sliceParts{pool: pool, data: parts, first: 1}
			wantErr := boom
			if tc.stale == nil {
				src1.before = func(ctx context.Context, i int) error {
					if i < k {
						return nil
					}
					if err := cps1.wait(ctx, k); err != nil {
						return err
					}
					return boom
				}
			} else {
				src1.data = append(slices.Clone(parts[:k]), makeParts(3, tc.stale...)...)
				ledgerDown := errors.New("ledger unavailable")
				wantErr = ledgerDown
				// Parts k+2 and k+3 are stored before part k+1, whose checkpoint fails.
				h1.before = func(r *http.Request, n int) error {
					if n != k+1 {
						return nil
					}
					return pollUntil(r.Context(), func() bool { s := h1.stored(); return slices.Contains(s, k+2) && slices.Contains(s, k+3) })
				}
				cps1.fail = func(call int, st jobs.UploadState) error {
					if call <= k {
						return nil
					}
					return ledgerDown
				}
			}
			_, err := sk1.PutParts(ctx, jobs.Object{Key: key}, src1, nil, cps1.checkpoint)
			if !errors.Is(err, wantErr) {
				t.Fatalf("first attempt: err = %v, want %v", err, wantErr)
			}
			if _, permanent := jobs.IsPermanent(err); permanent {
				t.Fatalf("first attempt: %v is permanent", err)
			}
			checkBudget(t, pool, src1)
			states, _ := cps1.snapshot()
			if len(states) != k {
				t.Fatalf("first attempt: %d checkpoints, want %d", len(states), k)
			}
			cp := states[k-1]
			checkState(t, cp, cp.UploadID, ChecksumCRC32C, parts[:k])
			if ids := b.uploadIDs(t, bucket, key); !slices.Equal(ids, []string{cp.UploadID}) {
				t.Fatalf("uploads after the first attempt: %v, want the checkpoint's %s", ids, cp.UploadID)
			}
			if b.exists(t, bucket, key) {
				t.Fatal("the object exists after the first attempt")
			}
			onServer := partNumbers(b.serverParts(t, bucket, key, cp.UploadID))
			t.Logf("first attempt: the server holds parts %v, the checkpoint records %d", onServer, k)
			if tc.stale != nil && !slices.Contains(onServer, k+3) {
				t.Fatalf("the server holds parts %v, want stale parts past the checkpoint", onServer)
			}

			// An attempt that continues it and fails (retryably) before storing a part keeps it:
			// the upload was checkpointed, by an earlier attempt.
			srcFail := &sliceParts{pool: pool, data: parts[k:], first: k + 1, before: func(context.Context, int) error { return boom }}
			again := cp
			again.Parts = slices.Clone(cp.Parts)
			if _, err := sk1.PutParts(ctx, jobs.Object{Key: key}, srcFail, &again, cps1.checkpoint); !errors.Is(err, boom) {
				t.Fatalf("resumed attempt failing at once: %v", err)
			}
			if ids := b.uploadIDs(t, bucket, key); !slices.Equal(ids, []string{cp.UploadID}) {
				t.Fatalf("uploads after a resumed attempt failed: %v, want %s kept", ids, cp.UploadID)
			}

			// The second attempt continues from the checkpoint (a copy, as from the ledger).
			h2 := &partHooks{}
			sk2 := b.hookedSink(h2, 0, S3Options{Concurrency: 3, Buffers: pool})
			cps2 := &cpLog{}
			src2 := &sliceParts{pool: pool, data: parts[k:], first: k + 1}
			resume := cp
			resume.Parts = slices.Clone(cp.Parts)
			resume.ChecksumState = bytes.Clone(cp.ChecksumState)
			w, err := sk2.PutParts(ctx, jobs.Object{Key: key}, src2, &resume, cps2.checkpoint)
			if err != nil {
				t.Fatalf("resumed attempt: %v", err)
			}
			checkBudget(t, pool, src1, src2)
			uploaded := h2.stored()
			slices.Sort(uploaded)
			var want []int
			for n := k + 1; n <= len(parts); n++ {
				want = append(want, n)
			}
			if !slices.Equal(uploaded, want) {
				t.Errorf("the resumed attempt stored parts %v, want %v", uploaded, want)
			}
			states2, marks2 := cps2.snapshot()
			if len(states2) != len(parts)-1-k {
				t.Errorf("resumed attempt: %d checkpoints, want %d", len(states2), len(parts)-1-k)
			}
			for j, st := range states2 {
				checkState(t, st, cp.UploadID, ChecksumCRC32C, parts[:k+1+j])
				if marks2[j].Rows != int64(k+1+j) {
					t.Errorf("resumed checkpoint %d has the mark of part %d", j, marks2[j].Rows)
				}
			}
			if w.Parts != len(parts) {
				t.Errorf("written: %d parts, want %d", w.Parts, len(parts))
			}
			got, stored := b.getChecked(t, bucket, key, ChecksumCRC32C)
			if !bytes.Equal(got, full) {
				t.Fatalf("object has %d bytes, differing from the %d of the whole stream", len(got), len(full))
			}
			oneShot, err := sk2.Put(ctx, jobs.Object{Key: key + ".one-shot"}, bytes.NewReader(full))
			if err != nil {
				t.Fatal(err)
			}
			if w.Checksum != oneShot.Checksum || w.Checksum != crc32c(got) || !sameChecksum(stored, oneShot.Checksum) {
				t.Errorf("resumed object's checksum %s (server %s), one-shot put's %s, of its bytes %s", w.Checksum, stored, oneShot.Checksum, crc32c(got))
			}
			if ids := b.uploadIDs(t, bucket, key); len(ids) != 0 {
				t.Errorf("uploads left: %v", ids)
			}
			checkBudget(t, pool, src1, src2)
		})
	}
}

// keptUpload runs an attempt over four parts that fails (retryably) after two were stored
// and checkpointed, and returns its last checkpoint.
func keptUpload(t *testing.T, b *bundle, key string, parts [][]byte) jobs.UploadState {
	t.Helper()
	pool := NewBufferPool(64 << 20)
	sk := NewS3(b.s3Client(b.base.Credentials, nil), b.env["EXPORT_BUCKET"], S3Options{Concurrency: 2, Buffers: pool})
	cps := &cpLog{}
	boom := errors.New("cursor lost")
	src := &sliceParts{pool: pool, data: parts, first: 1, before: func(ctx context.Context, i int) error {
		if i < 2 {
			return nil
		}
		if err := cps.wait(ctx, 2); err != nil {
			return err
		}
		return boom
	}}
	if _, err := sk.PutParts(context.Background(), jobs.Object{Key: key}, src, nil, cps.checkpoint); !errors.Is(err, boom) {
		t.Fatalf("first attempt: %v", err)
	}
	checkBudget(t, pool, src)
	cp := cps.lastState()
	if len(cp.Parts) != 2 || !slices.Equal(b.uploadIDs(t, b.env["EXPORT_BUCKET"], key), []string{cp.UploadID}) {
		t.Fatalf("first attempt: checkpoint %+v, uploads %v", cp, b.uploadIDs(t, b.env["EXPORT_BUCKET"], key))
	}
	return cp
}

// A checkpoint whose upload was aborted, lacks a part, holds a part of another ETag or size
// than recorded, or was written with another checksum, cannot be continued: ErrUploadGone,
// nothing is written, no upload is created, and no part is added to the old one. Aborting an
// upload that is gone already is not an error.
func TestPutPartsResumeGone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	parts := makeParts(4, 5<<20, 5<<20, 5<<20, 1000)
	for _, tc := range []struct {
		name string
		// spoil changes the upload or the checkpoint between the attempts.
		spoil    func(t *testing.T, key string, cp *jobs.UploadState)
		checksum string
		aborted  bool
	}{
		{name: "aborted", aborted: true, spoil: func(t *testing.T, key string, cp *jobs.UploadState) {
			sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{})
			for range 2 {
				if err := sk.AbortUpload(context.Background(), key, cp.UploadID); err != nil {
					t.Fatalf("AbortUpload: %v", err)
				}
			}
			if ids := b.uploadIDs(t, bucket, key); len(ids) != 0 {
				t.Fatalf("uploads after AbortUpload: %v", ids)
			}
		}},
		{name: "recorded ETag differs", spoil: func(t *testing.T, key string, cp *jobs.UploadState) {
			// The checkpoint recorded part 1 with another ETag than the one the server holds
			// (that of part 2: a real ETag of the upload).
			cp.Parts[0].ETag = cp.Parts[1].ETag
		}},
		{name: "part missing", spoil: func(t *testing.T, key string, cp *jobs.UploadState) {
			cp.Parts = append(cp.Parts, jobs.StoredPart{Number: 3, ETag: `"0123456789abcdef0123456789abcdef"`, Size: 5 << 20})
			cp.Size += 5 << 20
		}},
		{name: "part of another size", spoil: func(t *testing.T, key string, cp *jobs.UploadState) {
			cp.Parts[1].Size++
			cp.Size++
		}},
		{name: "checksum changed", checksum: ChecksumCRC64NVME, spoil: func(*testing.T, string, *jobs.UploadState) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := b.prefix + "gone-" + strings.ReplaceAll(tc.name, " ", "-")
			cp := keptUpload(t, b, key, parts)
			t.Cleanup(func() {
				_, _ = NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{}).AbortIncomplete(context.Background(), key, "")
			})
			before := partNumbers(b.serverParts(t, bucket, key, cp.UploadID))
			tc.spoil(t, key, &cp)
			pool := NewBufferPool(64 << 20)
			h := &partHooks{}
			sk := b.hookedSink(h, 0, S3Options{Concurrency: 2, Buffers: pool, Checksum: tc.checksum})
			cps := &cpLog{}
			src := &sliceParts{pool: pool, data: parts[2:], first: 3}
			_, err := sk.PutParts(context.Background(), jobs.Object{Key: key}, src, &cp, cps.checkpoint)
			if !errors.Is(err, jobs.ErrUploadGone) {
				t.Fatalf("err = %v, want ErrUploadGone", err)
			}
			if _, permanent := jobs.IsPermanent(err); permanent {
				t.Errorf("%v is permanent: the export must start over, not fail", err)
			}
			if b.exists(t, bucket, key) {
				t.Error("the object was written")
			}
			if cps.calls != 0 || len(h.stored()) != 0 {
				t.Errorf("%d checkpoints and part uploads %v after ErrUploadGone", cps.calls, h.stored())
			}
			ids := b.uploadIDs(t, bucket, key)
			if tc.aborted && len(ids) != 0 || !tc.aborted && !slices.Equal(ids, []string{cp.UploadID}) {
				t.Errorf("uploads %v after ErrUploadGone: an upload was created (or the old one %s removed)", ids, cp.UploadID)
			}
			if !tc.aborted {
				if after := partNumbers(b.serverParts(t, bucket, key, cp.UploadID)); !slices.Equal(after, before) {
					t.Errorf("the upload held parts %v, now %v", before, after)
				}
			}
			checkBudget(t, pool, src)
		})
	}
}

// listedParts are the entries ListParts returns for an upload, in its order: SeaweedFS keeps
// every upload of a part number (files "%04d_<uuid>.part") and lists them all.
func (b *bundle) listedParts(t *testing.T, bucket, key, uploadID string) []s3types.Part {
	t.Helper()
	out, err := b.admin.ListParts(context.Background(), &s3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(uploadID)})
	if err != nil {
		t.Fatalf("list parts of %s: %v", uploadID, err)
	}
	return out.Parts
}

// Another attempt stored part 1 of a checkpointed upload again, with other bytes. S3 keeps only
// the latest upload of a part: the checkpoint's part 1 is gone, and so is the upload for
// continuing (ErrUploadGone). SeaweedFS keeps both, lists both (in the random order of their
// file names) and completes with the one whose ETag is given: there, continuing is correct too.
// Either way the object is never made of the replacement's bytes, and a refused resume
// creates nothing.
func TestPutPartsResumeReplacedPart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	bucket := b.env["EXPORT_BUCKET"]
	parts := makeParts(6, 5<<20, 5<<20, 5<<20, 1000)
	key := b.prefix + "replaced"
	cp := keptUpload(t, b, key, parts)
	t.Cleanup(func() {
		_, _ = NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{}).AbortIncomplete(context.Background(), key, "")
	})
	other := randomBytes(99, len(parts[0]))
	replaced, err := b.admin.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: aws.String(bucket), Key: aws.String(key), UploadId: aws.String(cp.UploadID), PartNumber: aws.Int32(1),
		Body: bytes.NewReader(other), ContentLength: aws.Int64(int64(len(other))), ChecksumCRC32C: aws.String(crc32c(other)),
	})
	if err != nil {
		t.Fatalf("upload part 1 again: %v", err)
	}
	if trimETag(aws.ToString(replaced.ETag)) == trimETag(cp.Parts[0].ETag) {
		t.Fatal("the replacement has the ETag of the checkpoint's part 1")
	}
	var part1 []string
	for _, p := range b.listedParts(t, bucket, key, cp.UploadID) {
		if aws.ToInt32(p.PartNumber) == 1 {
			part1 = append(part1, trimETag(aws.ToString(p.ETag)))
		}
	}
	keepsEvery := slices.Contains(part1, trimETag(cp.Parts[0].ETag))
	t.Logf("the server lists part 1 as %v (checkpoint's %s, replacement's %s)", part1, trimETag(cp.Parts[0].ETag), trimETag(aws.ToString(replaced.ETag)))

	pool := NewBufferPool(64 << 20)
	sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{Concurrency: 2, Buffers: pool})
	src := &sliceParts{pool: pool, data: parts[2:], first: 3}
	w, err := sk.PutParts(ctx, jobs.Object{Key: key}, src, &cp, nil)
	checkBudget(t, pool, src)
	switch {
	case errors.Is(err, jobs.ErrUploadGone):
		t.Logf("resume refused: %v", err)
		if b.exists(t, bucket, key) {
			t.Error("the object was written")
		}
		if ids := b.uploadIDs(t, bucket, key); !slices.Equal(ids, []string{cp.UploadID}) {
			t.Errorf("uploads %v, want only the old %s", ids, cp.UploadID)
		}
	case !keepsEvery:
		t.Fatalf("the server holds only the replacement of part 1, and the resume returned %v, want ErrUploadGone", err)
	case err != nil:
		t.Fatalf("resume: %v, want ErrUploadGone or the object", err)
	default:
		t.Log("resumed: the server completed with the checkpoint's part 1")
		got, stored := b.getChecked(t, bucket, key, ChecksumCRC32C)
		if full := concat(parts); !bytes.Equal(got, full) || w.Checksum != crc32c(full) || !sameChecksum(stored, crc32c(full)) {
			t.Fatalf("object of %d bytes (checksum %s, server %s) differs from the checkpoint's stream", len(got), w.Checksum, stored)
		}
		if ids := b.uploadIDs(t, bucket, key); len(ids) != 0 {
			t.Errorf("uploads left: %v", ids)
		}
	}
}

// A legitimate resume is not refused on a server that lists every upload of a part number, as
// SeaweedFS does (it failed at random when listParts kept one copy per number). Attempt 1 checkpoints part 1,
// stores part 2 (bytes X) and fails before checkpointing it; attempt 2 continues, stores part 2
// again (bytes Y: the rows after the mark changed) and checkpoints it, then fails; attempt 3
// continues from that checkpoint. ListParts then lists part 2 twice, X and Y, ordered by their
// random file names, and listParts keeps whichever comes last in its map: when it is X, the
// checkpoint's part 2 (Y) is taken as missing and the export starts over (ErrUploadGone),
// although CompleteMultipartUpload with Y's ETag would use Y and be correct. Each round was a
// coin flip; six rounds failed with probability 63/64.
func TestPutPartsResumeTwiceOverStalePart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	for round := range 6 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			key := fmt.Sprintf("%stwice-%d", b.prefix, round)
			t.Cleanup(func() {
				_, _ = NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{}).AbortIncomplete(context.Background(), key, "")
			})
			pool := NewBufferPool(64 << 20)
			sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{Concurrency: 2, Buffers: pool})
			parts := makeParts(uint64(40+round), 5<<20, 5<<20, 300)
			stale := randomBytes(uint64(80+round), 5<<20)

			// Attempt 1: part 1 checkpointed, part 2 (stale bytes) stored, its checkpoint fails.
			cps1 := &cpLog{fail: func(call int, _ jobs.UploadState) error {
				if call > 1 {
					return errors.New("ledger unavailable")
				}
				return nil
			}}
			src1 := &sliceParts{pool: pool, data: [][]byte{parts[0], stale, parts[2]}, first: 1, before: func(_ context.Context, i int) error {
				if i == 2 {
					return errors.New("cursor lost")
				}
				return nil
			}}
			if _, err := sk.PutParts(ctx, jobs.Object{Key: key}, src1, nil, cps1.checkpoint); err == nil {
				t.Fatal("attempt 1 succeeded")
			}
			cp1 := cps1.lastState()
			if len(cp1.Parts) != 1 {
				t.Fatalf("attempt 1 checkpointed %d parts, want 1", len(cp1.Parts))
			}

			// Attempt 2: part 2 again with the new bytes, checkpointed; then the stream fails.
			cps2 := &cpLog{}
			src2 := &sliceParts{pool: pool, data: parts[1:], first: 2, before: func(ctx context.Context, i int) error {
				if i == 0 {
					return nil
				}
				if err := cps2.wait(ctx, 1); err != nil {
					return err
				}
				return errors.New("cursor lost")
			}}
			if _, err := sk.PutParts(ctx, jobs.Object{Key: key}, src2, &cp1, cps2.checkpoint); err == nil || errors.Is(err, jobs.ErrUploadGone) {
				t.Fatalf("attempt 2: %v, want the stream's failure", err)
			}
			cp2 := cps2.lastState()
			if len(cp2.Parts) != 2 {
				t.Fatalf("attempt 2 checkpointed %d parts, want 2", len(cp2.Parts))
			}
			var listed []string
			for _, p := range b.listedParts(t, bucket, key, cp2.UploadID) {
				listed = append(listed, fmt.Sprintf("%d:%s", aws.ToInt32(p.PartNumber), trimETag(aws.ToString(p.ETag))))
			}
			t.Logf("the server lists %v; the checkpoint records part 2 as %s", listed, trimETag(cp2.Parts[1].ETag))

			// Attempt 3 continues from attempt 2's checkpoint.
			src3 := &sliceParts{pool: pool, data: parts[2:], first: 3}
			if _, err := sk.PutParts(ctx, jobs.Object{Key: key}, src3, &cp2, nil); err != nil {
				t.Fatalf("attempt 3: %v; want the object: the checkpoint's part 2 is stored", err)
			}
			if got := b.get(t, bucket, key); !bytes.Equal(got, concat(parts)) {
				t.Fatalf("object of %d bytes differs", len(got))
			}
			checkBudget(t, pool, src1, src2, src3)
		})
	}
}

// Which failed uploads are aborted: those never checkpointed (a failed checkpoint, no
// checkpoint function, a failed part upload) and those failing for good after a checkpoint
// (a permanent error, a panic); a checkpointed upload failing retryably (or canceled) is kept
// for the next attempt, and so is an upload whose checkpoint said it is another attempt's
// (ErrKeepUpload), even at the first checkpoint and even wrapped in a permanent error. Every
// part buffer comes back to the budget whatever happened.
func TestPutPartsAbortPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	parts := makeParts(5, 5<<20, 5<<20+3, 5<<20+5, 5<<20, 4000)
	boom := errors.New("cursor lost")
	ledgerDown := errors.New("ledger unavailable")
	lost := fmt.Errorf("lease lost: %w", jobs.ErrKeepUpload)
	tooLarge := jobs.Permanentf(jobs.ReasonTooLarge, "the export grew too large")
	// afterCheckpoint makes the stream fail with fail once part 1 was checkpointed.
	afterCheckpoint := func(fail func(ctx context.Context) error) func(*cpLog) func(context.Context, int) error {
		return func(cps *cpLog) func(context.Context, int) error {
			return func(ctx context.Context, i int) error {
				if i < 2 {
					return nil
				}
				if err := cps.wait(ctx, 1); err != nil {
					return err
				}
				return fail(ctx)
			}
		}
	}
	for _, tc := range []struct {
		name         string
		stream       func(cps *cpLog) func(ctx context.Context, i int) error
		checkpoint   func(call int, st jobs.UploadState) error
		noCheckpoint bool
		failPart     int // a part number whose upload fails
		cancel       bool
		wantErr      error
		wantReason   jobs.Reason // of a permanent error
		kept         bool
	}{
		{name: "checkpoint fails", checkpoint: func(int, jobs.UploadState) error { return ledgerDown }, wantErr: ledgerDown},
		{name: "no checkpoint function, stream fails", noCheckpoint: true, stream: func(*cpLog) func(context.Context, int) error {
			return func(_ context.Context, i int) error {
				if i == 3 {
					return boom
				}
				return nil
			}
		}, wantErr: boom},
		{name: "part 1 upload fails", failPart: 1},
		{name: "checkpointed, then permanent failure", stream: afterCheckpoint(func(context.Context) error { return tooLarge }), wantErr: tooLarge, wantReason: jobs.ReasonTooLarge},
		{name: "checkpointed, then panic", stream: afterCheckpoint(func(context.Context) error { panic("stream exploded") }), wantReason: jobs.ReasonPanic},
		{name: "checkpointed, then retryable failure", stream: afterCheckpoint(func(context.Context) error { return boom }), wantErr: boom, kept: true},
		{name: "checkpointed, then canceled", cancel: true, wantErr: context.Canceled, kept: true},
		{name: "first checkpoint says keep", checkpoint: func(int, jobs.UploadState) error { return lost }, wantErr: jobs.ErrKeepUpload, kept: true},
		{name: "keep wins over permanent", checkpoint: func(call int, _ jobs.UploadState) error {
			if call == 2 {
				return jobs.Permanent(jobs.ReasonPanic, lost)
			}
			return nil
		}, wantErr: jobs.ErrKeepUpload, wantReason: jobs.ReasonPanic, kept: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			key := b.prefix + "policy-" + strings.ReplaceAll(strings.ReplaceAll(tc.name, " ", "-"), ",", "")
			t.Cleanup(func() {
				_, _ = NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{}).AbortIncomplete(context.Background(), key, "")
			})
			pool := NewBufferPool(64 << 20)
			h, attempts := failingPart(tc.failPart)
			sk := b.hookedSink(h, attempts, S3Options{Concurrency: 3, Buffers: pool})
			cps := &cpLog{fail: tc.checkpoint}
			src := &sliceParts{pool: pool, data: parts, first: 1}
			if tc.stream != nil {
				src.before = tc.stream(cps)
			}
			if tc.cancel {
				src.before = afterCheckpoint(func(ctx context.Context) error {
					cancel()
					return ctx.Err()
				})(cps)
			}
			checkpoint := cps.checkpoint
			if tc.noCheckpoint {
				checkpoint = nil
			}
			_, err := sk.PutParts(ctx, jobs.Object{Key: key}, src, nil, checkpoint)
			if err == nil {
				t.Fatal("PutParts succeeded")
			}
			t.Logf("err = %v", err)
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if reason, _ := jobs.IsPermanent(err); reason != tc.wantReason {
				t.Errorf("permanent reason %q, want %q", reason, tc.wantReason)
			}
			if b.exists(t, bucket, key) {
				t.Error("the object was written")
			}
			ids := b.uploadIDs(t, bucket, key)
			id := cps.seenUploadID()
			if st := cps.lastState(); st.UploadID != "" {
				id = st.UploadID
			}
			switch {
			case tc.kept && (len(ids) != 1 || ids[0] != id):
				t.Errorf("uploads %v, want the checkpointed %q kept", ids, id)
			case !tc.kept && len(ids) != 0:
				t.Errorf("uploads %v left, want the upload aborted", ids)
			case !tc.kept && id != "" && b.serverParts(t, bucket, key, id) != nil:
				t.Errorf("upload %s still has parts", id)
			}
			if tc.kept {
				if have := b.serverParts(t, bucket, key, id); len(have) == 0 {
					t.Errorf("the kept upload %s holds no part", id)
				}
			}
			checkBudget(t, pool, src)
			cps.mu.Lock()
			defer cps.mu.Unlock()
			if cps.afterFailure > 0 {
				t.Logf("%d checkpoint calls after one had failed", cps.afterFailure)
			}
		})
	}
}

// AbortIncomplete with keep aborts every other upload of the key and keeps that one (the
// checkpoint's, which the attempt continues); another key's upload is not touched.
func TestS3AbortIncompleteKeep(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	bucket := b.env["EXPORT_BUCKET"]
	key := b.prefix + "keep.csv.gz"
	var ids []string
	for _, k := range []string{key, key, key, key + ".other"} {
		out, err := b.admin.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(k)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, aws.ToString(out.UploadId))
	}
	sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{})
	t.Cleanup(func() {
		_, _ = sk.AbortIncomplete(context.Background(), key, "")
		_, _ = sk.AbortIncomplete(context.Background(), key+".other", "")
	})
	keep := ids[1]
	n, err := sk.AbortIncomplete(ctx, key, keep)
	if err != nil || n != 2 {
		t.Fatalf("AbortIncomplete(keep %s) = %d, %v; want 2", keep, n, err)
	}
	if left := b.uploadIDs(t, bucket, key); !slices.Equal(left, []string{keep}) {
		t.Errorf("uploads of the key: %v, want only the kept %s", left, keep)
	}
	for _, id := range []string{ids[0], ids[2]} {
		if b.serverParts(t, bucket, key, id) != nil {
			t.Errorf("upload %s is still there", id)
		}
	}
	if left := b.uploadIDs(t, bucket, key+".other"); !slices.Equal(left, []string{ids[3]}) {
		t.Errorf("uploads of the other key: %v, want %s", left, ids[3])
	}
	// Again: nothing more to abort, the kept one stays.
	if n, err := sk.AbortIncomplete(ctx, key, keep); err != nil || n != 0 {
		t.Errorf("AbortIncomplete again = %d, %v; want 0", n, err)
	}
	if left := b.uploadIDs(t, bucket, key); !slices.Equal(left, []string{keep}) {
		t.Errorf("uploads of the key: %v, want %s", left, keep)
	}
}

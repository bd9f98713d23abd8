package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/verifiedfan/export-service/jobs"
)

// cut cuts data into parts of 5 MiB and a shorter tail (none when the length is a multiple),
// as a segment's parts source would.
func cut(data []byte) [][]byte {
	var parts [][]byte
	for len(data) > MinPartSize {
		parts = append(parts, data[:MinPartSize])
		data = data[MinPartSize:]
	}
	return append(parts, data)
}

// segCase is one segment of a test object: its bytes and range.
type segCase struct {
	data []byte
	seg  Segment
}

// segments returns the test object's segments of sizes, in ranges of 100 part numbers
// (1.., 101.., 201..) of upload id; the last is Last.
func segments(seed uint64, id string, sizes ...int) []segCase {
	cs := make([]segCase, len(sizes))
	for i, n := range sizes {
		cs[i] = segCase{data: randomBytes(seed*10+uint64(i), n), seg: Segment{UploadID: id, FirstPart: 1 + 100*i, MaxParts: 100, Last: i == len(sizes)-1}}
	}
	return cs
}

// storedCheck is a cpLog check that every part a checkpoint records is on the server as
// recorded.
func storedCheck(t *testing.T, b *bundle, key string) func(st jobs.UploadState) {
	return func(st jobs.UploadState) {
		have := b.serverParts(t, b.env["EXPORT_BUCKET"], key, st.UploadID)
		for _, p := range st.Parts {
			if sp, ok := have[p.Number]; !ok || trimETag(aws.ToString(sp.ETag)) != trimETag(p.ETag) || aws.ToInt64(sp.Size) != p.Size {
				t.Errorf("checkpoint of %d parts: part %d is not stored as recorded (server: %v)", len(st.Parts), p.Number, partNumbers(have))
			}
		}
	}
}

// checkSegState checks that st is the state of a segment from first after its parts (sizes):
// numbers from first, sizes, and the running CRC of the segment's own bytes, data.
func checkSegState(t *testing.T, st jobs.UploadState, id, alg string, first int, sizes []int, data []byte) {
	t.Helper()
	if st.UploadID != id || st.ChecksumAlgorithm != alg {
		t.Errorf("state of upload %q (%s), want %q (%s)", st.UploadID, st.ChecksumAlgorithm, id, alg)
	}
	var numbers, want []int
	var size int
	for i, p := range st.Parts {
		numbers = append(numbers, p.Number)
		if i < len(sizes) && p.Size != int64(sizes[i]) {
			t.Errorf("state part %d: %d bytes, want %d", p.Number, p.Size, sizes[i])
		}
	}
	for i, n := range sizes {
		want = append(want, first+i)
		size += n
	}
	if !slices.Equal(numbers, want) {
		t.Errorf("state lists parts %v, want %v", numbers, want)
	}
	if st.Size != int64(size) {
		t.Errorf("state size %d, want %d", st.Size, size)
	}
	if got, err := stateSum(alg, st.ChecksumState); err != nil || got != sumOf(alg, data[:size]) {
		t.Errorf("state's running checksum %s (%v), want the segment's own over its first %d bytes: %s", got, err, size, sumOf(alg, data[:size]))
	}
}

// putSegments runs every segment of cs concurrently with sk, each from its own parts source
// (cut) and checkpoint log.
func putSegments(ctx context.Context, sk *S3, pool *BufferPool, key string, cs []segCase, cps []*cpLog) ([]SegmentWritten, []error, []*sliceParts) {
	ws := make([]SegmentWritten, len(cs))
	errs := make([]error, len(cs))
	srcs := make([]*sliceParts, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		srcs[i] = &sliceParts{pool: pool, data: cut(c.data), first: 1}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws[i], errs[i] = sk.PutSegment(ctx, jobs.Object{Key: key}, c.seg, srcs[i], nil, cps[i].checkpoint)
		}()
	}
	wg.Wait()
	return ws, errs, srcs
}

// completeSegments completes the upload with every segment's parts in order and the
// combined checksum.
func completeSegments(ctx context.Context, sk *S3, obj jobs.Object, id, alg string, ws []SegmentWritten) (jobs.Written, string, error) {
	var all []jobs.StoredPart
	var sums []SegmentChecksum
	var size int64
	for _, w := range ws {
		all = append(all, w.Parts...)
		sums = append(sums, SegmentChecksum{Checksum: w.Checksum, Size: w.Size})
		size += w.Size
	}
	combined, err := CombineChecksums(alg, sums)
	if err != nil {
		return jobs.Written{}, "", err
	}
	w, err := sk.CompleteUpload(ctx, obj, id, all, combined, size)
	return w, combined, err
}

// Three segments of one upload, run at once, each in its range of part numbers: the first two
// end in a short tail, merged into their part before (12 MiB+7 is parts of 5 MiB and 7 MiB+7,
// 6 MiB one part of 6 MiB), the last keeps its short last part (8 MiB: 5 MiB and 3 MiB). Every
// part but the object's last is at least 5 MiB on the server, checkpoints list stored parts
// with the running CRC of their segment's own bytes, and the completed object is the
// concatenation, with the full-object checksum combined from the segments' on both sides.
func TestSegmentsShareOneUpload(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	for _, alg := range []string{ChecksumCRC32C, ChecksumCRC64NVME} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			key := b.prefix + "segments-" + alg
			pool := NewBufferPool(128 << 20)
			sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{Concurrency: 3, Buffers: pool, Checksum: alg})
			t.Cleanup(func() { _, _ = sk.AbortIncomplete(context.Background(), key, "") })
			id, err := sk.CreateUpload(ctx, jobs.Object{Key: key})
			if err != nil || id == "" {
				t.Fatalf("CreateUpload: %q, %v", id, err)
			}
			cs := segments(1, id, 12<<20+7, 6<<20, 8<<20)
			cps := make([]*cpLog, len(cs))
			for i := range cps {
				cps[i] = &cpLog{check: storedCheck(t, b, key)}
			}
			ws, errs, srcs := putSegments(ctx, sk, pool, key, cs, cps)
			for i, err := range errs {
				if err != nil {
					t.Fatalf("segment %d: %v", i, err)
				}
			}
			checkBudget(t, pool, srcs...)

			wantParts := [][]int{{5 << 20, 7<<20 + 7}, {6 << 20}, {5 << 20, 3 << 20}}
			var full []byte
			for i, w := range ws {
				c := cs[i]
				full = append(full, c.data...)
				var sizes, numbers, want []int
				for j, p := range w.Parts {
					sizes = append(sizes, int(p.Size))
					numbers = append(numbers, p.Number)
					want = append(want, c.seg.FirstPart+j)
				}
				if !slices.Equal(sizes, wantParts[i]) || !slices.Equal(numbers, want) {
					t.Errorf("segment %d: parts %v of sizes %v, want %v of %v", i, numbers, sizes, want, wantParts[i])
				}
				if w.Size != int64(len(c.data)) || w.Checksum != sumOf(alg, c.data) {
					t.Errorf("segment %d: %d bytes, checksum %s; want %d, %s", i, w.Size, w.Checksum, len(c.data), sumOf(alg, c.data))
				}
				// One checkpoint per stored part but the segment's last.
				states, marks := cps[i].snapshot()
				if len(states) != len(wantParts[i])-1 || cps[i].calls != len(states) {
					t.Errorf("segment %d: %d checkpoints (%d calls), want %d", i, len(states), cps[i].calls, len(wantParts[i])-1)
				}
				for k, st := range states {
					checkSegState(t, st, id, alg, c.seg.FirstPart, wantParts[i][:k+1], c.data)
					if marks[k].Rows != int64(k+1) {
						t.Errorf("segment %d: checkpoint %d has the mark of part %d", i, k+1, marks[k].Rows)
					}
				}
			}

			// Before completing: what the server holds.
			have := b.serverParts(t, bucket, key, id)
			numbers := partNumbers(have)
			if want := []int{1, 2, 101, 201, 202}; !slices.Equal(numbers, want) {
				t.Fatalf("the server holds parts %v, want %v", numbers, want)
			}
			for _, n := range numbers[:len(numbers)-1] {
				if size := aws.ToInt64(have[n].Size); size < MinPartSize {
					t.Errorf("part %d has %d bytes, under %d, and is not the last", n, size, MinPartSize)
				}
			}

			commits := 0
			obj := jobs.Object{Key: key, BeforeCommit: func(context.Context) error { commits++; return nil }}
			w, combined, err := completeSegments(ctx, sk, obj, id, alg, ws)
			if err != nil {
				t.Fatalf("CompleteUpload: %v", err)
			}
			if commits != 1 {
				t.Errorf("BeforeCommit ran %d times", commits)
			}
			if want := sumOf(alg, full); combined != want || w.Checksum != want || w.Parts != 5 || w.ChecksumAlgorithm != alg {
				t.Errorf("written %+v, combined %s; want checksum %s and 5 parts", w, combined, want)
			}
			got, stored := b.getChecked(t, bucket, key, alg)
			if !bytes.Equal(got, full) {
				t.Fatalf("object of %d bytes differs from the %d bytes of the segments", len(got), len(full))
			}
			if !sameChecksum(stored, combined) {
				t.Errorf("the server's full-object checksum %q, combined %s", stored, combined)
			}
			if ids := b.uploadIDs(t, bucket, key); len(ids) != 0 {
				t.Errorf("uploads left: %v", ids)
			}
			checkBudget(t, pool, srcs...)
		})
	}
}

// Without the merge (the test hook), the first two segments end in parts of 2 MiB and 1 MiB,
// and the server refuses the object (EntityTooSmall): the merge is what makes segments work.
func TestSegmentsUnmergedTooSmall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	ctx := context.Background()
	key := b.prefix + "segments-unmerged"
	pool := NewBufferPool(128 << 20)
	sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{Concurrency: 3, Buffers: pool})
	sk.noSegmentMerge = true
	t.Cleanup(func() {
		_, _ = sk.AbortIncomplete(context.Background(), key, "")
	})
	id, err := sk.CreateUpload(ctx, jobs.Object{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	cs := segments(2, id, 7<<20, 6<<20, 3<<20)
	cps := []*cpLog{{}, {}, {}}
	ws, errs, srcs := putSegments(ctx, sk, pool, key, cs, cps)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
	}
	checkBudget(t, pool, srcs...)
	var sizes []int64
	have := b.serverParts(t, bucket, key, id)
	for _, n := range partNumbers(have) {
		sizes = append(sizes, aws.ToInt64(have[n].Size))
	}
	t.Logf("unmerged parts on the server: %v bytes", sizes)
	_, _, err = completeSegments(ctx, sk, jobs.Object{Key: key}, id, ChecksumCRC32C, ws)
	if err == nil {
		t.Skip("the server completed an upload with non-last parts under 5 MiB: it does not enforce S3's least part size, so this test cannot show the merge matters")
	}
	if code := errorCode(err); code != "EntityTooSmall" {
		t.Fatalf("CompleteUpload: %v (code %q), want EntityTooSmall", err, code)
	}
	t.Logf("CompleteUpload: %v", err)
	if b.exists(t, bucket, key) {
		t.Error("the object exists")
	}
	// A failed completion does not abort the upload: the coordinator decides.
	if ids := b.uploadIDs(t, bucket, key); !slices.Equal(ids, []string{id}) {
		t.Errorf("uploads %v, want %s kept", ids, id)
	}
}

// A segment other than the object's last with fewer than 5 MiB (one short part, or none)
// fails with ErrSegmentTooSmall, permanently, uploading nothing and checkpointing nothing; the
// shared upload stays. The object's last segment may be that small.
func TestSegmentTooSmall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		data [][]byte
		last bool
	}{
		{name: "one short part", data: [][]byte{randomBytes(31, 3<<20)}},
		{name: "one byte under", data: [][]byte{randomBytes(32, MinPartSize-1)}},
		{name: "no part", data: nil},
		{name: "short last segment", data: [][]byte{randomBytes(33, 3<<20)}, last: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := b.prefix + "too-small-" + strings.ReplaceAll(tc.name, " ", "-")
			pool := NewBufferPool(64 << 20)
			h := &partHooks{}
			sk := b.hookedSink(h, 0, S3Options{Concurrency: 2, Buffers: pool})
			t.Cleanup(func() { _, _ = sk.AbortIncomplete(context.Background(), key, "") })
			id, err := sk.CreateUpload(ctx, jobs.Object{Key: key})
			if err != nil {
				t.Fatal(err)
			}
			cps := &cpLog{}
			src := &sliceParts{pool: pool, data: tc.data, first: 1}
			w, err := sk.PutSegment(ctx, jobs.Object{Key: key}, Segment{UploadID: id, FirstPart: 101, MaxParts: 100, Last: tc.last}, src, nil, cps.checkpoint)
			checkBudget(t, pool, src)
			if tc.last {
				if err != nil || len(w.Parts) != 1 || w.Parts[0].Number != 101 || w.Checksum != crc32c(tc.data[0]) {
					t.Fatalf("last segment: %+v, %v; want its one part 101", w, err)
				}
				return
			}
			if !errors.Is(err, ErrSegmentTooSmall) {
				t.Fatalf("err = %v, want ErrSegmentTooSmall", err)
			}
			if _, permanent := jobs.IsPermanent(err); !permanent {
				t.Errorf("%v is not permanent", err)
			}
			t.Logf("err = %v", err)
			if want := fmt.Sprintf("has %d bytes", len(concat(tc.data))); !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want it to say %q", err, want)
			}
			if len(h.stored()) != 0 || cps.calls != 0 {
				t.Errorf("parts uploaded %v, %d checkpoints; want none", h.stored(), cps.calls)
			}
			if have := b.serverParts(t, bucket, key, id); len(have) != 0 {
				t.Errorf("the server holds parts %v", partNumbers(have))
			}
			if ids := b.uploadIDs(t, bucket, key); !slices.Equal(ids, []string{id}) {
				t.Errorf("uploads %v, want %s kept", ids, id)
			}
		})
	}
}

// A middle segment (17 MiB: parts of 5, 5 and 5+2 MiB) fails after two parts were stored and
// checkpointed (the held-back third is neither stored nor checkpointed); the upload stays,
// and another attempt continues the segment from the checkpoint: it stores the third part
// only, the segment's checksum covers all its bytes, and the object completes to the
// concatenation of the segments. A continuation whose new tail is short cannot merge it into
// the stored parts: ErrUploadGone (start the segment over), retryable.
func TestSegmentResume(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	ctx := context.Background()
	key := b.prefix + "segment-resume"
	pool := NewBufferPool(128 << 20)
	h := &partHooks{}
	sk := b.hookedSink(h, 0, S3Options{Concurrency: 3, Buffers: pool})
	t.Cleanup(func() { _, _ = sk.AbortIncomplete(context.Background(), key, "") })
	id, err := sk.CreateUpload(ctx, jobs.Object{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	cs := segments(3, id, 6<<20, 17<<20, 1<<20)
	mid := cs[1]
	midParts := cut(mid.data)

	// The other segments succeed.
	var ws [3]SegmentWritten
	for _, i := range []int{0, 2} {
		src := &sliceParts{pool: pool, data: cut(cs[i].data), first: 1}
		if ws[i], err = sk.PutSegment(ctx, jobs.Object{Key: key}, cs[i].seg, src, nil, nil); err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
	}

	// The first attempt of the middle segment: the stream fails once two parts are
	// checkpointed, before its last part.
	boom := errors.New("cursor lost")
	cps1 := &cpLog{check: storedCheck(t, b, key)}
	src1 := &sliceParts{pool: pool, data: midParts, first: 1, before: func(ctx context.Context, i int) error {
		if i < 3 {
			return nil
		}
		if err := cps1.wait(ctx, 2); err != nil {
			return err
		}
		return boom
	}}
	_, err = sk.PutSegment(ctx, jobs.Object{Key: key}, mid.seg, src1, nil, cps1.checkpoint)
	if !errors.Is(err, boom) {
		t.Fatalf("first attempt: %v, want %v", err, boom)
	}
	if _, permanent := jobs.IsPermanent(err); permanent {
		t.Fatalf("first attempt: %v is permanent", err)
	}
	checkBudget(t, pool, src1)
	states, _ := cps1.snapshot()
	if len(states) != 2 {
		t.Fatalf("first attempt: %d checkpoints, want 2", len(states))
	}
	for k, st := range states {
		checkSegState(t, st, id, ChecksumCRC32C, 101, []int{5 << 20, 5 << 20}[:k+1], mid.data)
	}
	if ids := b.uploadIDs(t, bucket, key); !slices.Equal(ids, []string{id}) {
		t.Fatalf("uploads after the failed segment: %v, want %s kept", ids, id)
	}
	if got := partNumbers(b.serverParts(t, bucket, key, id)); !slices.Equal(got, []int{1, 101, 102, 201}) {
		t.Fatalf("the server holds parts %v after the failed attempt, want [1 101 102 201]: the held-back part is not stored", got)
	}
	cp := states[1]

	// A continuation whose tail after the checkpoint is short cannot be merged.
	short := &sliceParts{pool: pool, data: [][]byte{randomBytes(77, 1<<20)}, first: 3}
	again := cp
	again.Parts = slices.Clone(cp.Parts)
	if _, err := sk.PutSegment(ctx, jobs.Object{Key: key}, mid.seg, short, &again, nil); !errors.Is(err, jobs.ErrUploadGone) {
		t.Fatalf("continuation with a short tail: %v, want ErrUploadGone", err)
	} else if _, permanent := jobs.IsPermanent(err); permanent {
		t.Fatalf("continuation with a short tail: %v is permanent", err)
	}
	checkBudget(t, pool, short)

	// The second attempt continues from the checkpoint.
	before := len(h.stored())
	cps2 := &cpLog{check: storedCheck(t, b, key)}
	src2 := &sliceParts{pool: pool, data: midParts[2:], first: 3}
	resume := cp
	resume.Parts = slices.Clone(cp.Parts)
	resume.ChecksumState = bytes.Clone(cp.ChecksumState)
	ws[1], err = sk.PutSegment(ctx, jobs.Object{Key: key}, mid.seg, src2, &resume, cps2.checkpoint)
	if err != nil {
		t.Fatalf("resumed segment: %v", err)
	}
	checkBudget(t, pool, src2)
	if got := h.stored()[before:]; !slices.Equal(got, []int{103}) {
		t.Errorf("the resumed attempt stored parts %v, want [103]", got)
	}
	if cps2.calls != 0 {
		t.Errorf("the resumed attempt checkpointed %d times, want 0 (its only part is the last)", cps2.calls)
	}
	var numbers []int
	for _, p := range ws[1].Parts {
		numbers = append(numbers, p.Number)
	}
	if !slices.Equal(numbers, []int{101, 102, 103}) || ws[1].Size != int64(len(mid.data)) || ws[1].Checksum != crc32c(mid.data) {
		t.Errorf("resumed segment: parts %v, %d bytes, checksum %s; want 101..103, %d bytes, %s", numbers, ws[1].Size, ws[1].Checksum, len(mid.data), crc32c(mid.data))
	}

	w, combined, err := completeSegments(ctx, sk, jobs.Object{Key: key}, id, ChecksumCRC32C, ws[:])
	if err != nil {
		t.Fatalf("CompleteUpload: %v", err)
	}
	full := concat([][]byte{cs[0].data, mid.data, cs[2].data})
	got, stored := b.getChecked(t, bucket, key, ChecksumCRC32C)
	if !bytes.Equal(got, full) || w.Checksum != crc32c(full) || combined != crc32c(full) || !sameChecksum(stored, crc32c(full)) {
		t.Fatalf("object of %d bytes (checksum %s, server %s), want the %d bytes of the segments (%s)", len(got), w.Checksum, stored, len(full), crc32c(full))
	}
	if ids := b.uploadIDs(t, bucket, key); len(ids) != 0 {
		t.Errorf("uploads left: %v", ids)
	}
	checkBudget(t, pool, src1, short, src2)
}

// A failing segment never aborts the shared upload, whatever the failure: a part upload that
// fails before any checkpoint, a failed checkpoint, a stream past the segment's range
// (permanent, too_large), a panic, a cancellation. The other segment's parts stay, and the
// budget gets every buffer back.
func TestSegmentFailureKeepsUpload(t *testing.T) {
	t.Parallel()
	b := setup(t)
	bucket := b.env["EXPORT_BUCKET"]
	boom := errors.New("cursor lost")
	for _, tc := range []struct {
		name       string
		sizes      []int
		maxParts   int
		failPart   int
		checkpoint func(call int, st jobs.UploadState) error
		stream     func(ctx context.Context, i int) error
		cancel     bool
		wantErr    error
		wantReason jobs.Reason
	}{
		{name: "part upload fails", sizes: []int{5 << 20, 5 << 20, 1 << 20}, failPart: 101},
		{name: "checkpoint fails", sizes: []int{5 << 20, 5 << 20, 1 << 20}, checkpoint: func(int, jobs.UploadState) error { return boom }, wantErr: boom},
		{name: "past the range", sizes: []int{5 << 20, 5 << 20, 5 << 20, 1 << 20}, maxParts: 2, wantReason: jobs.ReasonTooLarge},
		{name: "stream panics", sizes: []int{5 << 20, 5 << 20, 1 << 20}, stream: func(_ context.Context, i int) error {
			if i == 2 {
				panic("stream exploded")
			}
			return nil
		}, wantReason: jobs.ReasonPanic},
		{name: "canceled", sizes: []int{5 << 20, 5 << 20, 1 << 20}, cancel: true, wantErr: context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			key := b.prefix + "keep-" + strings.ReplaceAll(tc.name, " ", "-")
			pool := NewBufferPool(64 << 20)
			h, attempts := failingPart(tc.failPart)
			sk := b.hookedSink(h, attempts, S3Options{Concurrency: 2, Buffers: pool})
			t.Cleanup(func() { _, _ = sk.AbortIncomplete(context.Background(), key, "") })
			id, err := sk.CreateUpload(ctx, jobs.Object{Key: key})
			if err != nil {
				t.Fatal(err)
			}
			other := &sliceParts{pool: pool, data: [][]byte{randomBytes(41, 5<<20)}, first: 1}
			if _, err := sk.PutSegment(ctx, jobs.Object{Key: key}, Segment{UploadID: id, FirstPart: 1, MaxParts: 100}, other, nil, nil); err != nil {
				t.Fatalf("the other segment: %v", err)
			}
			cps := &cpLog{fail: tc.checkpoint}
			src := &sliceParts{pool: pool, data: makeParts(42, tc.sizes...), first: 1, before: tc.stream}
			if tc.cancel {
				src.before = func(ctx context.Context, i int) error {
					if i < 2 {
						return nil
					}
					if err := cps.wait(ctx, 1); err != nil {
						return err
					}
					cancel()
					return ctx.Err()
				}
			}
			maxParts := 100
			if tc.maxParts != 0 {
				maxParts = tc.maxParts
			}
			_, err = sk.PutSegment(ctx, jobs.Object{Key: key}, Segment{UploadID: id, FirstPart: 101, MaxParts: maxParts}, src, nil, cps.checkpoint)
			if err == nil {
				t.Fatal("PutSegment succeeded")
			}
			t.Logf("err = %v", err)
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if reason, _ := jobs.IsPermanent(err); reason != tc.wantReason {
				t.Errorf("permanent reason %q, want %q", reason, tc.wantReason)
			}
			if ids := b.uploadIDs(t, bucket, key); !slices.Equal(ids, []string{id}) {
				t.Errorf("uploads %v, want %s kept", ids, id)
			}
			if have := b.serverParts(t, bucket, key, id); have[1].PartNumber == nil {
				t.Errorf("the other segment's part 1 is gone (server: %v)", partNumbers(have))
			}
			checkBudget(t, pool, other, src)
		})
	}
}

// PutSegment refuses a segment outside S3's part numbers and a checkpoint of another
// segment; CompleteUpload refuses parts out of order or of another total size. Nothing is
// uploaded.
func TestSegmentArguments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := NewBufferPool(16 << 20)
	sk := NewS3(nil, "bucket", S3Options{Buffers: pool})
	src := &sliceParts{pool: pool, data: [][]byte{[]byte("x")}, first: 1}
	for _, seg := range []Segment{
		{FirstPart: 1, MaxParts: 10},
		{UploadID: "u", FirstPart: 0, MaxParts: 10},
		{UploadID: "u", FirstPart: 1, MaxParts: 0},
		{UploadID: "u", FirstPart: 9_999, MaxParts: 3},
	} {
		if _, err := sk.PutSegment(ctx, jobs.Object{Key: "k"}, seg, src, nil, nil); err == nil {
			t.Errorf("segment %+v accepted", seg)
		}
	}
	seg := Segment{UploadID: "u", FirstPart: 101, MaxParts: 100}
	for _, st := range []jobs.UploadState{
		{UploadID: "v", Parts: []jobs.StoredPart{{Number: 101}}},
		{UploadID: "u", Parts: []jobs.StoredPart{{Number: 1}}},
		{UploadID: "u", Parts: []jobs.StoredPart{{Number: 101}, {Number: 103}}},
	} {
		if _, err := sk.PutSegment(ctx, jobs.Object{Key: "k"}, seg, src, &st, nil); !errors.Is(err, jobs.ErrUploadGone) {
			t.Errorf("checkpoint %+v: %v, want ErrUploadGone", st, err)
		}
	}
	if src.given.Load() != 0 {
		t.Errorf("%d parts read", src.given.Load())
	}
	parts := []jobs.StoredPart{{Number: 1, Size: 5}, {Number: 101, Size: 3}}
	if _, err := sk.CompleteUpload(ctx, jobs.Object{Key: "k"}, "u", []jobs.StoredPart{parts[1], parts[0]}, "AAAAAA==", 8); err == nil {
		t.Error("parts out of order accepted")
	}
	if _, err := sk.CompleteUpload(ctx, jobs.Object{Key: "k"}, "u", parts, "AAAAAA==", 9); err == nil {
		t.Error("a wrong size accepted")
	}
}

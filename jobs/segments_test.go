package jobs_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"io"
	"math/rand/v2"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/jobs"
)

// PlanSegments makes no segment that would compress to less than twice S3's least part (from
// a sample), whatever SegmentOptions.Rows allows; the segments of a plan, run in any order and
// completed, make one object whose content is the unsegmented export's, with the header once.
func TestSegmentsRunInAnyOrderMakeTheUnsegmentedExport(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	db := e.st.NewDatabase(t)
	// 12,000 venues of 3 KB of random bytes in base64: about 36 MB compressed.
	r := rand.New(rand.NewPCG(9, 9))
	docs := make([]any, 12000)
	for i := range docs {
		b := make([]byte, 3000)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		docs[i] = bson.D{{Key: "_id", Value: int32(i)}, {Key: "name", Value: base64.StdEncoding.EncodeToString(b)}, {Key: "city", Value: "x"}}
	}
	ctx := context.Background()
	for i := 0; i < len(docs); i += 4000 {
		if _, err := db.Collection("venues").InsertMany(ctx, docs[i:i+4000]); err != nil {
			t.Fatal(err)
		}
	}
	ex := e.exporter(db)
	prepare := func(id string) *jobs.Job { return prepareVenues(t, ex, id) }
	get := func(key string) []byte {
		zr, err := gzip.NewReader(bytes.NewReader(e.get(t, key)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// Rows allow 12 segments, MAX 8; the bytes (about 36 MB compressed) 3 or 4.
	job := prepare("seg")
	plan, err := ex.PlanSegments(ctx, job, jobs.SegmentOptions{Rows: 1000, Max: 8})
	if err != nil {
		t.Fatal(err)
	}
	if plan == nil || plan.Segments() < 2 || plan.Segments() >= 8 || plan.Rows != 12000 || plan.PartsPerSegment != jobs.MaxUploadParts/plan.Segments() {
		t.Fatalf("plan %+v, want 2 to 7 segments of the 12,000 rows, bound by their bytes", plan)
	}
	k := plan.Segments()
	// Too small to split at all: a query of 3,000 of them (about 9 MB).
	small, err := ex.PlanSegments(ctx, prepareFiltered(t, ex, "small"), jobs.SegmentOptions{Rows: 1000, Max: 8})
	if err != nil || small != nil {
		t.Fatalf("a 9 MB export was planned as %+v (%v), want not split", small, err)
	}

	done := make([]jobs.SegmentDone, k)
	for _, i := range append([]int{k - 1}, rand.Perm(k-1)...) {
		res, err := ex.RunSegment(ctx, job, plan, i, jobs.RunOptions{})
		if err != nil {
			t.Fatalf("segment %d: %v", i, err)
		}
		done[i] = *res.Segment
		if res.Manifest != nil {
			t.Errorf("segment %d wrote a manifest", i)
		}
		if size := res.Segment.Written.Size; size < 2*jobs.MinPartSize*9/10 {
			t.Errorf("segment %d is %d bytes: the plan made a segment under twice the least part", i, size)
		}
	}
	res, err := ex.CompleteSegments(ctx, job, plan, done, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	if m.Rows != 12000 || m.SHA256 != "" || len(m.Segments) != k || m.S3Checksum == nil || m.Parts < k {
		t.Errorf("manifest: rows %d, sha256 %q, %d segments, checksum %+v, %d parts", m.Rows, m.SHA256, len(m.Segments), m.S3Checksum, m.Parts)
	}
	whole, err := ex.Run(ctx, prepare("whole"), jobs.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seg, ref := get(job.Key), get(whole.Manifest.Key)
	if !bytes.Equal(seg, ref) {
		t.Errorf("the segmented export's content (%d bytes) is not the unsegmented one's (%d bytes)", len(seg), len(ref))
	}
	header := ref[:bytes.IndexByte(ref, '\n')+1]
	if n := bytes.Count(seg, header); n != 1 || !bytes.HasPrefix(seg, header) {
		t.Errorf("the header %q is %d times in the segmented export", header, n)
	}
}

// prepareFiltered is a job of the venues with _id < 3000.
func prepareFiltered(t *testing.T, ex *jobs.Exporter, id string) *jobs.Job {
	t.Helper()
	job := prepareVenues(t, ex, id)
	job.Plan.Filter = bson.D{{Key: "_id", Value: bson.D{{Key: "$lt", Value: int32(3000)}}}}
	return job
}

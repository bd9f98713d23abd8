package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"math/rand/v2"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/gzipcheck"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

// The tests of exports split into segments over the fleet. They export registrations whose
// source field is 2,000 characters of random base64 (rows of about 1.6 KB compressed), so that
// 36,000 rows make four segments of about 14 MB: two 5 MiB parts each and a tail (not a
// multiple of 5 MiB) that must be merged into the segment's last part for S3 (and SeaweedFS)
// to complete the upload. Few, large rows keep FerretDB's scans short: it reads the whole
// collection for every query, so each segment costs it as much as the whole export.

// segmentRows is the rows of the segment tests' campaign.
const segmentRows = 36_000

// segmentEnv is the environment of the segmenting workers: split into 4 segments of rows/4,
// concurrency jobs at once.
func segmentEnv(rows, concurrency int) map[string]string {
	return map[string]string{
		"WORKER_CONCURRENCY": strconv.Itoa(concurrency),
		"VISIBILITY_TIMEOUT": "20s",
		"PROGRESS_EVERY":     "1s",
		"RETRY_BASE":         "1s",
		"S3_PART_SIZE_MB":    "5",
		"SEGMENT_ROWS":       strconv.Itoa(rows / 4),
		"MAX_SEGMENTS":       "4",
	}
}

// newSegmentBundle is a fresh database, queues, and a campaign of segmentRows seeded rows.
func newSegmentBundle(t *testing.T, prefix string) (*bundle, string) {
	return newNoisyBundle(t, prefix, segmentRows, 20*time.Second)
}

// newNoisyBundle is a fresh database, queues of the given visibility timeout, and a campaign
// (prefix and a random id) of n seeded rows of 2,000-character sources (seedNoisy).
func newNoisyBundle(t *testing.T, prefix string, n int, visibility time.Duration) (*bundle, string) {
	t.Helper()
	st := stacktest.New(t)
	b := &bundle{st: st, db: st.NewDatabase(t), queues: st.NewQueues(t, visibility, 5)}
	campaign := prefix + stacktest.RandomID()
	seedNoisy(t, b, campaign, n, rand.Uint64())
	return b, campaign
}

// splitOnOneWorker starts a worker that runs one job at a time, sends it the campaign's export
// and waits until it has split it; the worker then takes a segment of its own.
func (b *bundle) splitOnOneWorker(t *testing.T, campaign, prefix string) (w1 *stacktest.Proc, id, key string) {
	t.Helper()
	w1 = stacktest.Start(t, b.workerEnv(t, segmentEnv(segmentRows, 1)), "worker")
	id = prefix + stacktest.RandomID()
	b.send(t, resumeJob(t, id, campaign))
	eventually(t, 10*time.Minute, "the export split", func() bool { return len(procLines(w1, "export split into segments")) == 1 })
	return w1, id, resumeKey(id, campaign)
}

// seedNoisy inserts n registrations of campaign with 2,000-character sources and ascending
// ObjectIds.
func seedNoisy(t *testing.T, b *bundle, campaign string, n int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 3))
	base := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	docs := make([]any, n)
	for i := range docs {
		docs[i] = noisyRegistrationOf(r, campaign, bson.NewObjectIDFromTimestamp(base.Add(time.Duration(i)*time.Second)), i, 1500)
	}
	seedResume(t, b.db, docs)
}

// unsegmentedReference runs the same query as one export, on its own queue and worker.
func unsegmentedReference(t *testing.T, b *bundle, campaign string) (ref *bundle, refID, refKey string) {
	t.Helper()
	ref = &bundle{st: b.st, db: b.db, queues: b.st.NewQueues(t, 20*time.Second, 10)}
	env := map[string]string{"SEGMENT_ROWS": "0"}
	for k, v := range resumeEnv {
		env[k] = v
	}
	env["VISIBILITY_TIMEOUT"] = "20s"
	stacktest.Start(t, ref.workerEnv(t, env), "worker")
	refID = "ref-" + stacktest.RandomID()
	ref.send(t, resumeJob(t, refID, campaign))
	return ref, refID, resumeKey(refID, campaign)
}

// checkSegmentedObject checks a completed split export: one object and manifest, no upload
// left, every part but the last at least 5 MiB, the manifest's and S3's checksums those of
// the downloaded bytes, the segments' figures adding up; it returns the bytes and manifest.
func (b *bundle) checkSegmentedObject(t *testing.T, key string, segs []ledger.Entry) ([]byte, jobs.Manifest) {
	t.Helper()
	b.checkOneObject(t, key)
	data, m, head := b.download(t, key)
	crc := base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))))
	if m.S3Checksum == nil || m.S3Checksum.Value != crc || aws.ToString(head.ChecksumCRC32C) != crc {
		t.Errorf("manifest s3_checksum %+v, S3's %q; the downloaded bytes' CRC32C is %s", m.S3Checksum, aws.ToString(head.ChecksumCRC32C), crc)
	}
	if m.BytesCompressed != int64(len(data)) {
		t.Errorf("manifest bytes %d, the object has %d", m.BytesCompressed, len(data))
	}
	if len(m.Segments) != len(segs) {
		t.Fatalf("manifest lists %d segments, want %d", len(m.Segments), len(segs))
	}
	var rows, size int64
	var off int64
	for i, s := range m.Segments {
		rows += s.Rows
		size += s.Written.Size
		sum := sha256.Sum256(data[off : off+s.Written.Size])
		if s.Segment != i || s.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("manifest segment %d: index %d, sha256 %s; the object's bytes %d..%d hash to %x", i, s.Segment, s.SHA256, off, off+s.Written.Size, sum)
		}
		off += s.Written.Size
	}
	if rows != m.Rows || size != m.BytesCompressed {
		t.Errorf("the segments hold %d rows and %d bytes, the manifest says %d and %d", rows, size, m.Rows, m.BytesCompressed)
	}
	// Every part as stored (numbered within each segment's range: HEAD by the numbers the
	// segments recorded), all but the last at least 5 MiB, and together the whole object.
	bucket := b.st.Env["EXPORT_BUCKET"]
	var sizes []int64
	var numbers []int
	for _, s := range segs {
		if s.SegmentDone == nil {
			t.Fatalf("segment %s recorded no parts", s.ExportID)
		}
		for _, p := range s.SegmentDone.Written.Parts {
			numbers = append(numbers, p.Number)
		}
	}
	var total int64
	for i, n := range numbers {
		h, err := b.st.S3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), PartNumber: aws.Int32(int32(n))})
		if err != nil {
			t.Fatalf("head part %d of %s: %v", n, key, err)
		}
		size := aws.ToInt64(h.ContentLength)
		sizes, total = append(sizes, size), total+size
		if i < len(numbers)-1 && size < jobs.MinPartSize {
			t.Errorf("part %d (%d of %d) is %d bytes, under 5 MiB", n, i+1, len(numbers), size)
		}
	}
	if total != int64(len(data)) || len(numbers) != m.Parts {
		t.Errorf("the %d parts %v hold %d bytes; the object has %d bytes, the manifest says %d parts", len(numbers), numbers, total, len(data), m.Parts)
	}
	t.Logf("object %s: %d bytes in %d parts %v, %d rows in %d segments", key, len(data), m.Parts, sizes, m.Rows, len(m.Segments))
	return data, m
}

// An export planned as 4 segments and run by 2 worker processes: one object, one manifest, no
// unfinished upload, every part but the last at least 5 MiB (the segments' short tails merged),
// the gunzipped object byte for byte the same export run unsegmented, and the rows those of a
// direct query; four decoders read it.
func TestSegmentedExportIsTheUnsegmentedOne(t *testing.T) {
	t.Parallel()
	const n = segmentRows
	b, campaign := newSegmentBundle(t, "cmp-seg-")
	want := resumeWant(t, b.db, campaign)

	ref, refID, refKey := unsegmentedReference(t, b, campaign)
	began := time.Now()
	w1 := stacktest.Start(t, b.workerEnv(t, segmentEnv(n, 2)), "worker")
	w2 := stacktest.Start(t, b.workerEnv(t, segmentEnv(n, 2)), "worker")
	id := "seg-" + stacktest.RandomID()
	key := resumeKey(id, campaign)
	b.send(t, resumeJob(t, id, campaign))

	e := b.waitLedger(t, id, 20*time.Minute, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded || e.Status == ledger.Failed })
	took := time.Since(began)
	if e.Status != ledger.Succeeded {
		t.Fatalf("export %s: %s (%s)", id, e.Status, e.Error)
	}
	refEntry := ref.waitLedger(t, refID, 20*time.Minute, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	t.Logf("segmented export took %s; the unsegmented one %s", took.Round(time.Second), refEntry.FinishedAt.Sub(refEntry.StartedAt).Round(time.Second))
	if e.Segments == nil || e.Segments.Segments() != 4 || e.Rows != int64(n) {
		t.Fatalf("ledger: segments %+v, rows %d; want 4 segments of %d rows", e.Segments, e.Rows, n)
	}
	segs, err := ledger.New(b.db).Segments(context.Background(), id, 4)
	if err != nil {
		t.Fatal(err)
	}
	ran := map[string]bool{}
	for i, s := range segs {
		if s.Status != ledger.Succeeded || s.SegmentDone == nil {
			t.Errorf("segment %d: %s", i, s.Status)
			continue
		}
		ran[s.WorkerID] = true
		t.Logf("segment %d: %d rows, %d bytes in %d parts, by %s", i, s.SegmentDone.Rows, s.SegmentDone.Written.Size, len(s.SegmentDone.Written.Parts), s.WorkerID)
	}
	if len(ran) != 2 {
		t.Errorf("the segments ran on %d workers, want both", len(ran))
	}
	if c := countLines(w1.Output()+w2.Output(), `"message":"export succeeded"`); c != 1 {
		t.Errorf("%d export succeeded lines, want 1 (one completion)", c)
	}

	data, _ := b.checkSegmentedObject(t, key, segs)
	refData, _, _ := ref.download(t, refKey)
	plain, refPlain := gunzip(t, data), gunzip(t, refData)
	if !bytes.Equal(plain, refPlain) {
		i := firstDiff(plain, refPlain)
		t.Errorf("gunzipped: the segmented export (%d bytes) and the unsegmented one (%d bytes) differ from byte %d:\n seg %.120q\n ref %.120q",
			len(plain), len(refPlain), i, plain[max(0, i-40):], refPlain[max(0, i-40):])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if all, err := gzipcheck.CheckAll(ctx, data); err != nil {
		t.Errorf("gzipcheck: %v", err)
	} else if !bytes.Equal(all, plain) {
		t.Errorf("the four decoders agree on %d bytes, Go's gunzip read %d", len(all), len(plain))
	}
	checkRows(t, plain, want())
	eventually(t, 30*time.Second, "the jobs queue empty", func() bool { v, f := b.st.QueueCounts(t, b.queues.JobsURL); return v+f == 0 })
	if got := b.drainDLQ(t, 1, time.Second); len(got) != 0 {
		t.Errorf("dead-letter queue has %v", got)
	}
}

// One segment's worker SIGKILLed in the middle of its segment: the export still completes,
// with exactly the query's rows; the killed segment's next attempt continues from its own
// checkpoint, and no other segment ran twice (only that segment's rows after its checkpoint
// are read again). status shows the segments while they run.
func TestKilledSegmentResumesAlone(t *testing.T) {
	t.Parallel()
	b, campaign := newSegmentBundle(t, "cmp-segkill-")
	want := resumeWant(t, b.db, campaign)

	// w1 runs one job at a time: it splits the export, then takes one segment; w2 the rest.
	w1, id, key := b.splitOnOneWorker(t, campaign, "segkill-")
	w2 := stacktest.Start(t, b.workerEnv(t, segmentEnv(segmentRows, 3)), "worker")

	// The segment w1 runs, once it has a checkpoint.
	l := ledger.New(b.db)
	var killed ledger.Entry
	eventually(t, 5*time.Minute, "a checkpoint of w1's segment", func() bool {
		segs, err := l.Segments(context.Background(), id, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range segs {
			if s.Status == ledger.Running && strings.Contains(w1.Output(), s.WorkerID) && s.Checkpoint != nil && s.Checkpoint.Mark.Rows > 0 {
				killed = s
				return true
			}
		}
		return false
	})
	code, out, errOut := runCLI(t, b.workerEnv(t, nil), "status", id)
	if code != 0 || !strings.Contains(out, "running as 4 segments over the fleet") || !strings.Contains(out, "segments ") {
		t.Errorf("status while the segments run: exit %d\n%s%s", code, out, errOut)
	}
	kill(t, w1)
	t.Logf("killed %s at its checkpoint of %d rows", killed.ExportID, killed.Checkpoint.Mark.Rows)
	// Another worker takes the killed segment over once its lease has expired.
	w3 := stacktest.Start(t, b.workerEnv(t, segmentEnv(segmentRows, 1)), "worker")

	e := b.waitLedger(t, id, 10*time.Minute, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded || e.Status == ledger.Failed })
	if e.Status != ledger.Succeeded {
		t.Fatalf("export %s: %s (%s)", id, e.Status, e.Error)
	}
	segs, err := l.Segments(context.Background(), id, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		switch {
		case s.ExportID == killed.ExportID:
			if s.Attempts != 2 || s.Resumes != 1 || s.RowsResumed < killed.Checkpoint.Mark.Rows {
				t.Errorf("the killed segment: attempts %d, resumes %d, rows resumed %d; want 2, 1 and at least its checkpoint's %d", s.Attempts, s.Resumes, s.RowsResumed, killed.Checkpoint.Mark.Rows)
			}
			t.Logf("the killed segment: %d rows, resumed from %d, at least %d read again", s.Rows, s.RowsResumed, s.RowsReread)
		case s.Attempts != 1 || s.RowsReread != 0:
			t.Errorf("segment %s: attempts %d, rows read again %d; only the killed segment may run twice", s.ExportID, s.Attempts, s.RowsReread)
		}
	}
	data, _ := b.checkSegmentedObject(t, key, segs)
	checkRows(t, gunzip(t, data), want())
	if c := countLines(w1.Output()+w2.Output()+w3.Output(), `"message":"export succeeded"`); c != 1 {
		t.Errorf("%d export succeeded lines, want 1 (one completion)", c)
	}
	if got := b.drainDLQ(t, 1, time.Second); len(got) != 0 {
		t.Errorf("dead-letter queue has %v", got)
	}
}

// A segment that fails for good (the rows of its range were deleted after the plan: what is
// left is under S3's least part size, and it is not the object's last): the export fails
// once, its upload is aborted, the segment's message is the one message in the dead-letter
// queue and names it, the other segments stop, and no object appears.
func TestSegmentFailingForGoodFailsTheExport(t *testing.T) {
	t.Parallel()
	b, campaign := newSegmentBundle(t, "cmp-segfail-")

	// Stop the planner as soon as it split the export, before it takes a segment.
	w1, id, key := b.splitOnOneWorker(t, campaign, "segfail-")
	w1.Signal(syscall.SIGSTOP)
	e, _ := b.ledger(t, id)
	if e.Segments == nil || e.Segments.Segments() != 4 {
		t.Fatalf("plan %+v, want 4 segments", e.Segments)
	}
	// Delete all but 100 rows of segment 1.
	coll := b.db.Collection("registrations")
	filter := e.Segments.Filter(bson.D{{Key: "campaign_id", Value: campaign}}, 1)
	cur, err := coll.Find(context.Background(), filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetSkip(100).SetLimit(1).SetProjection(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatal(err)
	}
	var first []bson.Raw
	if err := cur.All(context.Background(), &first); err != nil || len(first) != 1 {
		t.Fatalf("segment 1's 101st row: %v %v", err, first)
	}
	// In ranges of 20,000 rows: FerretDB's SQLite backend refuses one delete of more rows than
	// SQLite takes variables (32,766).
	var deleted int64
	from := first[0].Lookup("_id")
	for {
		rest := bson.D{{Key: "$and", Value: bson.A{filter, bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: from}}}}}}}
		var next []bson.Raw
		cur, err := coll.Find(context.Background(), rest, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetSkip(20_000).SetLimit(1).SetProjection(bson.D{{Key: "_id", Value: 1}}))
		if err == nil {
			err = cur.All(context.Background(), &next)
		}
		if err != nil {
			t.Fatal(err)
		}
		chunk := rest
		if len(next) == 1 {
			chunk = bson.D{{Key: "$and", Value: bson.A{rest, bson.D{{Key: "_id", Value: bson.D{{Key: "$lt", Value: next[0].Lookup("_id")}}}}}}}
		}
		del, err := coll.DeleteMany(context.Background(), chunk)
		if err != nil {
			t.Fatal(err)
		}
		deleted += del.DeletedCount
		if len(next) == 0 {
			break
		}
		from = next[0].Lookup("_id")
	}
	t.Logf("deleted %d rows of segment 1", deleted)
	w1.Signal(syscall.SIGKILL)
	w1.Wait(10 * time.Second)

	w2 := stacktest.Start(t, b.workerEnv(t, segmentEnv(segmentRows, 4)), "worker")
	e = b.waitLedger(t, id, 10*time.Minute, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded || e.Status == ledger.Failed })
	if e.Status != ledger.Failed || !e.Permanent || !strings.Contains(e.Error, "segment 1 of 4") {
		t.Errorf("ledger: %s (permanent %v): %s; want failed for good, naming segment 1 of 4", e.Status, e.Permanent, e.Error)
	}
	dl := b.drainDLQ(t, 1, 30*time.Second)
	if len(dl) != 1 || !strings.Contains(dl[0].Body, `"segment":1`) || !strings.Contains(dl[0].Attrs["error"], "segment 1 of 4") {
		t.Errorf("dead-letter queue: %+v; want segment 1's message, saying so", dl)
	}
	eventually(t, 2*time.Minute, "the other segments stopped and the queue empty", func() bool {
		v, f := b.st.QueueCounts(t, b.queues.JobsURL)
		return v+f == 0
	})
	if got := b.drainDLQ(t, 1, 2*time.Second); len(got) != 0 {
		t.Errorf("more in the dead-letter queue: %+v", got)
	}
	if n := b.unfinishedUploads(t, key); n != 0 {
		t.Errorf("%d unfinished uploads of %s", n, key)
	}
	if data, manifests := b.dataObjects(t, key); len(data)+len(manifests) != 0 {
		t.Errorf("objects %v %v written", data, manifests)
	}
	if c := countLines(w2.Output(), "export failed: a segment failed for good"); c != 1 {
		t.Errorf("%d lines say the export failed, want 1", c)
	}
}

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/gzipcheck"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

// The tests of exports continued from a checkpoint: after SIGKILLs, after a drain that stopped
// the export at a stored part, and across _id types. Each export is the collection_fields
// kind over registrations whose source field holds 300 characters of random base64, so that
// rows compress poorly (to about 2/3) and a few hundred thousand of them make an object of
// many 5 MiB parts.
//
// On the local stack each query of an export is a full scan of the collection (FerretDB's
// SQLite backend pushes down neither the filter nor the _id sort): an attempt costs two such
// scans before its first row (the end guard's highest _id, then the sorted query) and the
// last one a third (the end check). Most of these tests' time goes there.

// resumeFields are the exported columns.
var resumeFields = []string{"_id", "campaign_id", "status", "score", "source", "created_at"}

// resumeEnv is the worker environment of these tests: one job at a time, a short lease (it is
// both the SQS visibility timeout and the ledger lease: a killed attempt's export can be taken
// over 6s after its last renewal), progress every second, 5 MiB parts.
var resumeEnv = map[string]string{
	"WORKER_CONCURRENCY": "1",
	"VISIBILITY_TIMEOUT": "6s",
	"PROGRESS_EVERY":     "1s",
	"RETRY_BASE":         "1s",
	"S3_PART_SIZE_MB":    "5",
}

func resumeJob(t *testing.T, exportID, campaign string) string {
	t.Helper()
	params, err := json.Marshal(map[string]any{"collection": "registrations", "campaign_id": campaign, "fields": resumeFields})
	if err != nil {
		t.Fatal(err)
	}
	return jobBody(t, jobs.Message{ExportID: exportID, Kind: "collection_fields", Params: params})
}

func resumeKey(exportID, campaign string) string {
	return fmt.Sprintf("exports/collection_fields/%s/%s.csv.gz", campaign, exportID)
}

var resumeStatuses = []string{"registered", "verified", "selected", "waitlisted"}

// noisyRegistration is a registration of campaign with the given _id whose source is 300
// characters of random base64 (222 random bytes; the "src-" prefix keeps the cell clear of
// the CSV encoder's formula escaping, which a leading + would trigger).
func noisyRegistration(r *rand.Rand, campaign string, id any, i int) bson.D {
	return noisyRegistrationOf(r, campaign, id, i, 222)
}

// noisyRegistrationOf is noisyRegistration with a source of size random bytes in base64.
func noisyRegistrationOf(r *rand.Rand, campaign string, id any, i, size int) bson.D {
	noise := make([]byte, size+8)
	for j := 0; j+8 <= len(noise); j += 8 {
		binary.LittleEndian.PutUint64(noise[j:], r.Uint64())
	}
	created := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 997 * time.Millisecond)
	return bson.D{
		{Key: "_id", Value: id},
		{Key: "campaign_id", Value: campaign},
		{Key: "status", Value: resumeStatuses[r.IntN(len(resumeStatuses))]},
		{Key: "score", Value: int32(r.IntN(1000))},
		{Key: "source", Value: "src-" + base64.StdEncoding.EncodeToString(noise[:size])},
		{Key: "created_at", Value: created},
	}
}

// seedResume inserts docs in unordered batches of 10,000.
func seedResume(t *testing.T, db *mongo.Database, docs []any) {
	t.Helper()
	start := time.Now()
	coll := db.Collection("registrations")
	for i := 0; i < len(docs); i += 10_000 {
		if _, err := coll.InsertMany(context.Background(), docs[i:min(len(docs), i+10_000)], options.InsertMany().SetOrdered(false)); err != nil {
			t.Fatalf("seed registrations: %v", err)
		}
	}
	t.Logf("seeded %d registrations in %s", len(docs), time.Since(start).Round(time.Millisecond))
}

// resumeWant queries the campaign's registrations sorted by _id, as the export must hold
// them, and renders each as its CSV row, independently of the encoder. It runs in the
// background (a query of a few hundred thousand rows takes a while on the local stack);
// the returned function waits for it.
func resumeWant(t *testing.T, db *mongo.Database, campaign string) func() [][]string {
	t.Helper()
	type result struct {
		rows [][]string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var res result
		defer func() { done <- res }()
		ctx := context.Background()
		cur, err := db.Collection("registrations").Find(ctx, bson.D{{Key: "campaign_id", Value: campaign}},
			options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			res.err = err
			return
		}
		defer cur.Close(ctx)
		for cur.Next(ctx) {
			var d bson.M
			if err := cur.Decode(&d); err != nil {
				res.err = err
				return
			}
			created, _ := d["created_at"].(bson.DateTime)
			res.rows = append(res.rows, []string{hexID(d, "_id"), fmt.Sprint(d["campaign_id"]), fmt.Sprint(d["status"]),
				fmt.Sprint(d["score"]), fmt.Sprint(d["source"]), created.Time().UTC().Format("2006-01-02T15:04:05.000Z")})
		}
		res.err = cur.Err()
	}()
	return func() [][]string {
		t.Helper()
		select {
		case res := <-done:
			if res.err != nil {
				t.Fatalf("query the campaign's registrations: %v", res.err)
			}
			return res.rows
		case <-time.After(5 * time.Minute):
			t.Fatal("the direct MongoDB query did not finish within 5 minutes")
			return nil
		}
	}
}

// checkRows compares the CSV in plain with the rows MongoDB gave, in order.
func checkRows(t *testing.T, plain []byte, want [][]string) {
	t.Helper()
	recs := gunzipCSVPlain(t, plain)
	if len(recs) == 0 || !slices.Equal(recs[0], resumeFields) {
		t.Fatalf("header %v, want %v", recs[:min(1, len(recs))], resumeFields)
	}
	got := recs[1:]
	if len(want) == 0 {
		t.Fatal("the query selects nothing: a test that proves nothing")
	}
	if len(got) != len(want) {
		t.Errorf("the object holds %d rows, the query %d", len(got), len(want))
	}
	bad := 0
	for i := range min(len(got), len(want)) {
		if !slices.Equal(got[i], want[i]) {
			if bad++; bad <= 5 {
				t.Errorf("row %d:\n got %q\nwant %q", i+1, got[i], want[i])
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d rows differ in all", bad)
	}
}

func gunzipCSVPlain(t *testing.T, plain []byte) [][]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(plain)).ReadAll()
	if err != nil {
		t.Fatalf("parse csv: %v", err)
	}
	return recs
}

// procLines returns the process's log lines with the given message. A line that is not JSON
// (the last one of a killed process may be cut short) is skipped.
func procLines(p *stacktest.Proc, message string) []logLine {
	var out []logLine
	for _, l := range strings.Split(p.Output(), "\n") {
		if !strings.Contains(l, `"message":"`+message+`"`) {
			continue
		}
		var v logLine
		if json.Unmarshal([]byte(l), &v) == nil {
			out = append(out, v)
		}
	}
	return out
}

func (l logLine) int(k string) int64 { f, _ := l[k].(float64); return int64(f) }

// waitStarted waits for the process's "export started" line and returns its checkpoint_rows
// (0 for an attempt that started from the beginning).
func waitStarted(t *testing.T, p *stacktest.Proc, within time.Duration) int64 {
	t.Helper()
	var started []logLine
	eventually(t, within, "export started", func() bool {
		started = procLines(p, "export started")
		return len(started) > 0
	})
	if len(started) != 1 {
		t.Fatalf("%d export started lines, want 1", len(started))
	}
	return started[0].int("checkpoint_rows")
}

// waitCheckpoint polls the ledger until the export's checkpoint satisfies cond and returns it.
// The export succeeding or failing first ends the test: the kill it waited for can no longer
// happen.
func (b *bundle) waitCheckpoint(t *testing.T, exportID string, within time.Duration, what string, cond func(*jobs.Checkpoint) bool) *jobs.Checkpoint {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		e, ok := b.ledger(t, exportID)
		if ok && e.Status == ledger.Running && e.Checkpoint != nil && cond(e.Checkpoint) {
			return e.Checkpoint
		}
		if ok && e.Status != ledger.Running && e.Status != ledger.Released {
			t.Fatalf("waiting for a checkpoint (%s): the export is %s (rows %d, error %q)", what, e.Status, e.Rows, e.Error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint (%s) within %s; last: status %s, checkpoint %+v", what, within, e.Status, e.Checkpoint)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killAtNextProgress SIGKILLs the process the moment it prints its next progress line (so
// that the rows it read after its last progress line are a few milliseconds' worth), waits
// for it to die, and returns the rows of its last progress line.
func killAtNextProgress(t *testing.T, p *stacktest.Proc) int64 {
	t.Helper()
	n := countLines(p.Output(), `"message":"export progress"`)
	deadline := time.Now().Add(30 * time.Second)
	for countLines(p.Output(), `"message":"export progress"`) <= n {
		if time.Now().After(deadline) {
			t.Fatal("no progress line within 30s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	kill(t, p)
	progress := procLines(p, "export progress")
	return progress[len(progress)-1].int("rows")
}

// kill SIGKILLs the process and waits for it to die.
func kill(t *testing.T, p *stacktest.Proc) {
	t.Helper()
	p.Signal(syscall.SIGKILL)
	// Wait says -1 both for a process still running and for one a signal ended.
	if start := time.Now(); p.Wait(15*time.Second) == -1 && time.Since(start) >= 15*time.Second {
		t.Fatal("the worker did not die within 15s of SIGKILL")
	}
}

// download returns an object's bytes, its manifest and what HeadObject says with checksums.
func (b *bundle) download(t *testing.T, key string) ([]byte, jobs.Manifest, *s3.HeadObjectOutput) {
	t.Helper()
	bucket := b.st.Env["EXPORT_BUCKET"]
	var m jobs.Manifest
	if err := json.Unmarshal(b.waitObject(t, bucket, jobs.ManifestKey(key), 10*time.Second), &m); err != nil {
		t.Fatalf("manifest of %s: %v", key, err)
	}
	data := b.waitObject(t, bucket, key, 10*time.Second)
	head, err := b.st.S3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), ChecksumMode: s3types.ChecksumModeEnabled})
	if err != nil {
		t.Fatalf("head %s: %v", key, err)
	}
	return data, m, head
}

// checkOneObject checks that the export left exactly its object and manifest, and no
// unfinished multipart upload, at its key.
func (b *bundle) checkOneObject(t *testing.T, key string) {
	t.Helper()
	if data, manifests := b.dataObjects(t, key); len(data) != 1 || len(manifests) != 1 {
		t.Errorf("objects %v and manifests %v at %s, want exactly one of each", data, manifests, key)
	}
	if n := b.unfinishedUploads(t, key); n != 0 {
		t.Errorf("%d unfinished multipart uploads of %s", n, key)
	}
}

// sameExport checks that a resumed export's object is byte for byte the uninterrupted one's,
// compressed and decompressed, and returns the decompressed bytes.
func sameExport(t *testing.T, resumed, uninterrupted []byte) []byte {
	t.Helper()
	plain, refPlain := gunzip(t, resumed), gunzip(t, uninterrupted)
	if !bytes.Equal(plain, refPlain) {
		i := firstDiff(plain, refPlain)
		t.Errorf("decompressed: the resumed export (%d bytes) and the uninterrupted one (%d bytes) differ from byte %d:\n resumed %.120q\n    ref %.120q",
			len(plain), len(refPlain), i, plain[max(0, i-40):], refPlain[max(0, i-40):])
	}
	if !bytes.Equal(resumed, uninterrupted) {
		t.Errorf("compressed: the resumed object (%d bytes) and the uninterrupted one (%d bytes) differ from byte %d", len(resumed), len(uninterrupted), firstDiff(resumed, uninterrupted))
	}
	return plain
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// attemptFigures is what one attempt of an interrupted export did.
type attemptFigures struct {
	from int64 // checkpoint rows it started from
	last int64 // rows of its last progress line (the final attempt: the export's rows)
	cp   int64 // checkpoint rows in the ledger after it died
}

func (a attemptFigures) read() int64 { return a.last - a.from }

func (a attemptFigures) String() string {
	if a.cp == 0 {
		return fmt.Sprintf("%d..%d", a.from, a.last)
	}
	return fmt.Sprintf("%d..%d (checkpoint %d)", a.from, a.last, a.cp)
}

// Three workers SIGKILLed at random moments of a 300,000-row export (each after the ledger's
// checkpoint passed a random number of rows, plus a random 0-1.5s): each next attempt continues
// the same multipart upload from exactly the checkpoint the one before left, and the fourth
// completes it. The object is byte for byte the object of an uninterrupted run of the same
// query (compressed too: every member and part cut depends on the bytes only), every decoder
// reads it, its manifest and S3 checksum describe it, it holds exactly the query's rows, no
// upload is left over, and all attempts together read at most 1.3 times the rows.
func TestResumeAfterThreeSIGKILLs(t *testing.T) {
	t.Parallel()
	const n = 300_000
	st := stacktest.New(t)
	b := &bundle{st: st, db: st.NewDatabase(t), queues: st.NewQueues(t, 6*time.Second, 10)}
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 1))
	t.Logf("random seed %d", seed)
	campaign := "cmp-kill-" + stacktest.RandomID()
	docs := make([]any, n)
	base := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		docs[i] = noisyRegistration(r, campaign, bson.NewObjectIDFromTimestamp(base.Add(time.Duration(i)*time.Second)), i)
	}
	seedResume(t, b.db, docs)
	docs = nil
	want := resumeWant(t, b.db, campaign)

	// The same query uninterrupted, on its own queue and worker, at the same time.
	ref, refID, refKey := startReference(t, st, b, campaign)
	id := "kill-" + stacktest.RandomID()
	key := resumeKey(id, campaign)
	began := time.Now()
	b.send(t, resumeJob(t, id, campaign))

	var attempts []attemptFigures
	var from int64
	for k := 1; k <= 3; k++ {
		p := stacktest.Start(t, b.workerEnv(t, resumeEnv), "worker")
		a := attemptFigures{from: waitStarted(t, p, 3*time.Minute)}
		if a.from != from {
			t.Errorf("attempt %d started from checkpoint rows %d; the ledger's checkpoint had %d", k, a.from, from)
		}
		// Each attempt stores a random 10-20% of the rows before its kill: the three kills
		// end below the export's last checkpoint whatever the draw.
		threshold := a.from + int64(float64(n)*(0.10+0.10*r.Float64()))
		b.waitCheckpoint(t, id, 8*time.Minute, fmt.Sprintf("rows >= %d", threshold), func(cp *jobs.Checkpoint) bool { return cp.Mark.Rows >= threshold })
		delay := time.Duration(r.Int64N(int64(1500 * time.Millisecond)))
		time.Sleep(delay)
		a.last = killAtNextProgress(t, p)
		e, _ := b.ledger(t, id)
		if e.Checkpoint == nil {
			t.Fatalf("attempt %d died with no checkpoint in the ledger: %+v", k, e)
		}
		a.cp = e.Checkpoint.Mark.Rows
		t.Logf("attempt %d: from checkpoint rows %d, killed %s after the checkpoint passed %d rows, at %d rows read; the ledger's checkpoint: %d rows, %d parts, %d bytes",
			k, a.from, delay.Round(time.Millisecond), threshold, a.last, a.cp, len(e.Checkpoint.Upload.Parts), e.Checkpoint.Upload.Size)
		if a.cp <= a.from || a.last < a.cp {
			t.Errorf("attempt %d: checkpoint rows %d after starting from %d and reading up to %d", k, a.cp, a.from, a.last)
		}
		attempts = append(attempts, a)
		from = a.cp
	}

	p := stacktest.Start(t, b.workerEnv(t, resumeEnv), "worker")
	final := attemptFigures{from: waitStarted(t, p, 3*time.Minute)}
	if final.from != from {
		t.Errorf("the final attempt started from checkpoint rows %d; the ledger's checkpoint had %d", final.from, from)
	}
	e := b.waitLedger(t, id, 8*time.Minute, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	took := time.Since(began)
	final.last = e.Rows
	attempts = append(attempts, final)
	refEntry := ref.waitLedger(t, refID, 5*time.Minute, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })

	// Rows read from MongoDB over all attempts.
	var read, reread int64
	resumedAttempts := 0
	for _, a := range attempts {
		read += a.read()
		if a.cp > 0 {
			reread += a.last - a.cp
		}
		if a.from > 0 {
			resumedAttempts++
		}
	}
	ratio := float64(read) / n
	t.Logf("rows read over %d attempts: %d for %d rows, ratio %.3f (per attempt: %v); export took %s, the uninterrupted one %s",
		len(attempts), read, n, ratio, attempts, took.Round(time.Second), refEntry.FinishedAt.Sub(refEntry.StartedAt).Round(time.Second))
	if ratio > 1.3 {
		t.Errorf("the attempts read %d rows, %.3f times the export's %d (want at most 1.3)", read, ratio, n)
	}

	// The ledger.
	if e.Rows != n || e.Attempts != 4 || e.Checkpoint != nil {
		t.Errorf("ledger: rows %d, attempts %d, checkpoint %+v; want %d rows, 4 attempts, the checkpoint removed", e.Rows, e.Attempts, e.Checkpoint, n)
	}
	t.Logf("ledger: resumes %d, rows_resumed %d, rows_reread %d, failures %d; measured: %d attempts continued from a checkpoint, %d rows read past the checkpoints the killed attempts left",
		e.Resumes, e.RowsResumed, e.RowsReread, e.Failures, resumedAttempts, reread)
	if e.Resumes < resumedAttempts {
		t.Errorf("ledger resumes = %d; %d attempts continued from a checkpoint", e.Resumes, resumedAttempts)
	}
	if e.RowsResumed <= 0 {
		t.Errorf("ledger rows_resumed = %d, want > 0", e.RowsResumed)
	}
	mfs := p.Metrics(t)
	if got := stacktest.Sum(mfs, "export_resumes_total", map[string]string{"cause": "crash", "result": "continued"}); got != 1 {
		t.Errorf("the final worker's export_resumes_total{cause=crash,result=continued} = %v, want 1", got)
	}
	if got := stacktest.Sum(mfs, "export_rows_resumed_total", nil); got != float64(final.from) {
		t.Errorf("the final worker's export_rows_resumed_total = %v, want its checkpoint's %d", got, final.from)
	}

	// The objects.
	b.checkOneObject(t, key)
	ref.checkOneObject(t, refKey)
	data, m, head := b.download(t, key)
	refData, refManifest, _ := ref.download(t, refKey)
	t.Logf("object: %d bytes (%d uncompressed) in %d parts, etag %s; uninterrupted: %d bytes in %d parts, etag %s",
		len(data), m.BytesUncompressed, m.Parts, m.ETag, len(refData), refManifest.Parts, refManifest.ETag)
	plain := sameExport(t, data, refData)
	if m.Parts != refManifest.Parts {
		t.Errorf("the resumed object has %d parts, the uninterrupted one %d", m.Parts, refManifest.Parts)
	}
	if m.Parts < 10 {
		t.Errorf("the object has %d parts: the test wants many", m.Parts)
	}

	// Every decoder reads the resumed object, and reads what Go does.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	all, err := gzipcheck.CheckAll(ctx, data)
	if err != nil {
		t.Errorf("gzipcheck: %v", err)
	} else if !bytes.Equal(all, plain) {
		t.Errorf("the four decoders agree on %d bytes, Go's gunzip read %d", len(all), len(plain))
	}
	all = nil

	// The manifest and S3's full-object checksum describe the downloaded bytes.
	sum := sha256.Sum256(data)
	crc := base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))))
	if m.SHA256 != hex.EncodeToString(sum[:]) || m.SHA256 != e.SHA256 {
		t.Errorf("manifest sha256 %s, ledger %s; the object's is %x", m.SHA256, e.SHA256, sum)
	}
	if m.BytesCompressed != int64(len(data)) || m.BytesUncompressed != int64(len(plain)) || m.Rows != n {
		t.Errorf("manifest: %d bytes, %d uncompressed, %d rows; the object: %d, %d, %d", m.BytesCompressed, m.BytesUncompressed, m.Rows, len(data), len(plain), n)
	}
	if m.S3Checksum == nil || m.S3Checksum.Algorithm != "CRC32C" || m.S3Checksum.Value != crc {
		t.Errorf("manifest s3_checksum %+v, the object's CRC32C is %s", m.S3Checksum, crc)
	}
	if got := aws.ToString(head.ChecksumCRC32C); got != crc {
		t.Errorf("S3's CRC32C is %q (type %s), the object's %s", got, head.ChecksumType, crc)
	}
	t.Logf("S3 checksum %s %s %s; sha256 %s", head.ChecksumType, aws.ToString(head.ChecksumCRC32C), crc, m.SHA256)

	checkRows(t, plain, want())
}

// SIGTERM in the middle of a long export, with a 5s drain deadline: the export stops at its
// stored parts, the process exits 0 within the deadline and a part's time, the ledger says
// released and keeps the checkpoint, and the next worker continues the export from it.
func TestDrainStopsAtAPartAndTheNextWorkerContinues(t *testing.T) {
	t.Parallel()
	const n = 150_000
	st := stacktest.New(t)
	b := &bundle{st: st, db: st.NewDatabase(t), queues: st.NewQueues(t, 30*time.Second, 10)}
	r := rand.New(rand.NewPCG(rand.Uint64(), 2))
	campaign := "cmp-drain-" + stacktest.RandomID()
	docs := make([]any, n)
	base := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		docs[i] = noisyRegistration(r, campaign, bson.NewObjectIDFromTimestamp(base.Add(time.Duration(i)*time.Second)), i)
	}
	seedResume(t, b.db, docs)
	docs = nil
	want := resumeWant(t, b.db, campaign)

	env := map[string]string{"DRAIN_TIMEOUT": "5s", "VISIBILITY_TIMEOUT": "30s", "GORACE": "atexit_sleep_ms=0"}
	for k, v := range resumeEnv {
		if env[k] == "" {
			env[k] = v
		}
	}
	slow := map[string]string{"EXPORT_FAULT_ROW_DELAY": "300us"} // 150,000 rows: 45s at least
	for k, v := range env {
		slow[k] = v
	}
	p := stacktest.Start(t, b.workerEnv(t, slow), "worker")
	id := "drain-" + stacktest.RandomID()
	key := resumeKey(id, campaign)
	b.send(t, resumeJob(t, id, campaign))
	first := b.waitCheckpoint(t, id, 8*time.Minute, "the first", func(*jobs.Checkpoint) bool { return true })

	signaled := time.Now()
	p.Signal(syscall.SIGTERM)
	code := p.Wait(5*time.Second + 20*time.Second)
	exited := time.Since(signaled)
	if code != 0 {
		t.Fatalf("exit code %d %s after SIGTERM, want 0 within 25s", code, exited.Round(time.Millisecond))
	}
	t.Logf("exited %s after SIGTERM (drain deadline 5s)", exited.Round(time.Millisecond))
	if countLines(p.Output(), "drain deadline passed") != 1 {
		t.Errorf("no line says the drain deadline passed")
	}
	e, _ := b.ledger(t, id)
	if e.Status != ledger.Released || e.Reason != jobs.ReasonShutdown || e.Checkpoint == nil {
		t.Fatalf("ledger after the drain: status %s, reason %s, checkpoint %+v; want released by shutdown, with its checkpoint", e.Status, e.Reason, e.Checkpoint)
	}
	cp := e.Checkpoint
	t.Logf("released: checkpoint of %d rows, %d parts, %d bytes (the first: %d rows); %d rows read; error %q",
		cp.Mark.Rows, len(cp.Upload.Parts), cp.Upload.Size, first.Mark.Rows, e.Rows, e.Error)
	if cp.Mark.Rows < first.Mark.Rows || cp.Mark.Rows >= n {
		t.Errorf("checkpoint rows %d; the first was %d, the export has %d", cp.Mark.Rows, first.Mark.Rows, n)
	}
	if n := b.unfinishedUploads(t, key); n != 1 {
		t.Errorf("%d unfinished uploads of %s after the drain, want the checkpoint's one", n, key)
	}

	p2 := stacktest.Start(t, b.workerEnv(t, env), "worker")
	if from := waitStarted(t, p2, 3*time.Minute); from != cp.Mark.Rows || from <= 0 {
		t.Errorf("the next attempt started from checkpoint rows %d, want the released checkpoint's %d", from, cp.Mark.Rows)
	}
	e = b.waitLedger(t, id, 5*time.Minute, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	if e.Rows != n || e.Attempts != 2 || e.Failures != 0 || e.Resumes != 1 || e.RowsResumed != cp.Mark.Rows || e.Checkpoint != nil {
		t.Errorf("ledger: rows %d, attempts %d, failures %d, resumes %d, rows_resumed %d, checkpoint %+v; want %d rows, 2 attempts, no failure, 1 resume of %d rows, the checkpoint removed",
			e.Rows, e.Attempts, e.Failures, e.Resumes, e.RowsResumed, e.Checkpoint, n, cp.Mark.Rows)
	}
	if got := stacktest.Sum(p2.Metrics(t), "export_resumes_total", map[string]string{"cause": "release", "result": "continued"}); got != 1 {
		t.Errorf("export_resumes_total{cause=release,result=continued} = %v, want 1", got)
	}
	b.checkOneObject(t, key)
	data, m, _ := b.download(t, key)
	t.Logf("object: %d bytes in %d parts", len(data), m.Parts)
	checkRows(t, gunzip(t, data), want())
}

// An export whose _ids are int32s, strings and ObjectIds (sorted in that order: numbers,
// strings, ObjectIds), each type over several parts, is killed once while the ledger's
// checkpoint ends at an _id of each type, and completed by a fourth worker: the object holds
// exactly the rows of the sorted query, and is byte for byte the uninterrupted export's.
func TestResumeAcrossMixedIDTypes(t *testing.T) {
	t.Parallel()
	const per = 40_000
	st := stacktest.New(t)
	b := &bundle{st: st, db: st.NewDatabase(t), queues: st.NewQueues(t, 6*time.Second, 10)}
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 3))
	t.Logf("random seed %d", seed)
	campaign := "cmp-mixed-" + stacktest.RandomID()
	ids := make([]any, 0, 3*per)
	ints, strs := map[int32]bool{}, map[string]bool{}
	for len(ints) < per {
		if v := r.Int32() - 1<<30; !ints[v] {
			ints[v] = true
			ids = append(ids, v)
		}
	}
	for len(strs) < per {
		if v := fmt.Sprintf("id-%x", r.Uint64()); !strs[v] {
			strs[v] = true
			ids = append(ids, v)
		}
	}
	for range per {
		ids = append(ids, bson.NewObjectID())
	}
	r.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] }) // not in _id order on disk
	docs := make([]any, len(ids))
	for i, id := range ids {
		docs[i] = noisyRegistration(r, campaign, id, i)
	}
	seedResume(t, b.db, docs)
	docs = nil
	want := resumeWant(t, b.db, campaign)

	ref, refID, refKey := startReference(t, st, b, campaign)
	id := "mixed-" + stacktest.RandomID()
	key := resumeKey(id, campaign)
	b.send(t, resumeJob(t, id, campaign))

	var from int64
	for k, typ := range []bson.Type{bson.TypeInt32, bson.TypeString, bson.TypeObjectID} {
		p := stacktest.Start(t, b.workerEnv(t, resumeEnv), "worker")
		a := attemptFigures{from: waitStarted(t, p, 3*time.Minute)}
		if a.from != from {
			t.Errorf("attempt %d started from checkpoint rows %d; the ledger's checkpoint had %d", k+1, a.from, from)
		}
		b.waitCheckpoint(t, id, 8*time.Minute, "last _id of type "+typ.String(), func(cp *jobs.Checkpoint) bool {
			return cp.Mark.Rows > a.from && cp.Mark.LastID.Type == typ
		})
		// At once (but for a random moment): the next checkpoint may be of the next type.
		time.Sleep(time.Duration(r.Int64N(int64(300 * time.Millisecond))))
		kill(t, p)
		progress := procLines(p, "export progress")
		a.last = progress[len(progress)-1].int("rows")
		e, _ := b.ledger(t, id)
		if e.Checkpoint == nil || e.Checkpoint.Mark.LastID.Type != typ {
			t.Fatalf("attempt %d was killed with the checkpoint %+v in the ledger; the test meant to kill it while the checkpoint's last _id is of type %s", k+1, e.Checkpoint, typ)
		}
		t.Logf("attempt %d: from checkpoint rows %d, killed (last progress line: %d rows); the ledger's checkpoint: %d rows, last _id %s",
			k+1, a.from, a.last, e.Checkpoint.Mark.Rows, e.Checkpoint.Mark.LastID)
		from = e.Checkpoint.Mark.Rows
	}
	p := stacktest.Start(t, b.workerEnv(t, resumeEnv), "worker")
	if got := waitStarted(t, p, 3*time.Minute); got != from {
		t.Errorf("the final attempt started from checkpoint rows %d; the ledger's checkpoint had %d", got, from)
	}
	e := b.waitLedger(t, id, 5*time.Minute, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	ref.waitLedger(t, refID, 5*time.Minute, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	if e.Rows != 3*per || e.Attempts != 4 || e.Checkpoint != nil {
		t.Errorf("ledger: rows %d, attempts %d, checkpoint %+v; want %d rows, 4 attempts, the checkpoint removed", e.Rows, e.Attempts, e.Checkpoint, 3*per)
	}
	t.Logf("ledger: resumes %d, rows_resumed %d, rows_reread %d", e.Resumes, e.RowsResumed, e.RowsReread)
	b.checkOneObject(t, key)
	ref.checkOneObject(t, refKey)
	data, m, _ := b.download(t, key)
	refData, refManifest, _ := ref.download(t, refKey)
	t.Logf("object: %d bytes in %d parts; uninterrupted: %d bytes in %d parts", len(data), m.Parts, len(refData), refManifest.Parts)
	plain := sameExport(t, data, refData)
	checkRows(t, plain, want())
}

// startReference runs the campaign's export uninterrupted, on a worker and queues of its own
// over b's database, at the same time as the test's: the object an interrupted one must equal.
func startReference(t *testing.T, st *stacktest.Stack, b *bundle, campaign string) (ref *bundle, refID, refKey string) {
	t.Helper()
	ref = &bundle{st: st, db: b.db, queues: st.NewQueues(t, 6*time.Second, 10)}
	stacktest.Start(t, ref.workerEnv(t, resumeEnv), "worker")
	refID = "ref-" + stacktest.RandomID()
	ref.send(t, resumeJob(t, refID, campaign))
	return ref, refID, resumeKey(refID, campaign)
}

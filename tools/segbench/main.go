// Command segbench measures the wall time of one large export on the local stack, run whole
// by one worker process, against the same export split into segments (SEGMENT_ROWS) and run
// by W worker processes: it prints its figures, it is not a test.
//
// It seeds (once; -db reuses a seeded database) one campaign of -rows registrations with
// ascending ObjectIds and 300 characters of random base64 each (e2e/resume_test.go's
// noisyRegistration), then for each run of -workers: creates a fresh jobs queue and DLQ,
// starts the worker processes (the real binary, each with its own HTTP_ADDR and WORKER_ID,
// RECEIVE_WAIT=1s, VISIBILITY_TIMEOUT=60s, S3_PART_SIZE_MB=5), sends one collection_fields
// job and polls the export's ledger entry until it succeeded or failed. It records:
//
//	wall      send .. the ledger's finished_at of the export
//	planning  send .. segments.planned_at (a split export only)
//	segments  each segment's worker, start (after the send), duration, rows and attempts
//	CPU       utime+stime (/proc/PID/stat) of the workers, summed, and of FerretDB and
//	          SeaweedFS (pid files under .stack/run), from just before the send to the end
//
// then stops the workers (SIGTERM, wait), deletes the run's ledger entries and objects, and
// prints a line for the run; a table and the wall time ratios against the "1u" run come last.
//
//	go run ./tools/segbench -rows 200000 -workers 1u,2
//	go run ./tools/segbench -rows 1000000 -segments 4 -workers 1u,2,3 -timeout 2h
//	go run ./tools/segbench -db segbench_1a2b3c4d -rows 1000000 -workers 3   (reuse the seeded database)
//
// -workers is a comma list of runs: "1u" is one worker with SEGMENT_ROWS=0 (never split), a
// number N is N worker processes with SEGMENT_ROWS=rows/segments and MAX_SEGMENTS=segments.
package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/stackenv"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
	"github.com/verifiedfan/export-service/tools/internal/benchkit"
)

const (
	campaign   = "segbench"
	seedBatch  = 10_000 // FerretDB refuses very large batches
	visibility = 60     // seconds: the queue's VisibilityTimeout and the workers' VISIBILITY_TIMEOUT
)

var fields = []string{"_id", "campaign_id", "status", "score", "source", "created_at"}

type config struct {
	rows, segments, concurrency int
	workers                     string
	db, bin                     string
	timeout                     time.Duration
	keep, drop, verbose         bool
	seed                        uint64
}

// runSpec is one run of -workers.
type runSpec struct {
	label string
	procs int
	split bool // SEGMENT_ROWS=rows/segments; else 0
}

func main() {
	var cfg config
	flag.IntVar(&cfg.rows, "rows", 1_000_000, "registrations of the exported campaign")
	flag.IntVar(&cfg.segments, "segments", 4, "segments of a split run: SEGMENT_ROWS=rows/segments, MAX_SEGMENTS=segments")
	flag.StringVar(&cfg.workers, "workers", "1u,2,3", "comma list of runs: 1u = 1 worker, SEGMENT_ROWS=0; N = N worker processes, split")
	flag.IntVar(&cfg.concurrency, "concurrency", 2, "WORKER_CONCURRENCY of each worker process")
	flag.StringVar(&cfg.db, "db", "", "reuse this already seeded database (default: seed a new one, kept and named for reuse)")
	flag.StringVar(&cfg.bin, "bin", "", "worker binary (default: go build ./cmd/export-service into a temp dir)")
	flag.DurationVar(&cfg.timeout, "timeout", 2*time.Hour, "longest a run may take")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the exported objects and the worker logs")
	flag.BoolVar(&cfg.drop, "drop", false, "drop the database at the end (even one given with -db)")
	flag.BoolVar(&cfg.verbose, "v", false, "print the workers' warnings and errors as they come")
	flag.Uint64Var(&cfg.seed, "seed", 2027, "seed of the generated registrations")
	flag.Parse()
	if cfg.rows < 1 || cfg.segments < 2 || cfg.concurrency < 1 {
		fatalf(2, "-rows and -concurrency must be positive, -segments at least 2")
	}
	runs, err := parseRuns(cfg.workers)
	if err != nil {
		fatalf(2, "-workers: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, runs); err != nil {
		fatalf(1, "%v", err)
	}
}

func parseRuns(s string) ([]runSpec, error) {
	var out []runSpec
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
			continue
		case f == "1u":
			out = append(out, runSpec{label: "1u", procs: 1})
		default:
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 || n > 64 {
				return nil, fmt.Errorf("%q: want 1u or a number of worker processes (1..64)", f)
			}
			out = append(out, runSpec{label: f, procs: n, split: true})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no run")
	}
	return out, nil
}

func fatalf(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "segbench: "+format+"\n", args...)
	os.Exit(code)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "segbench: "+format+"\n", args...)
}

// result is one run.
type result struct {
	spec      runSpec
	exportID  string
	status    ledger.Status
	err       string
	wall      time.Duration // send .. the export's finished_at
	planning  time.Duration // send .. segments.planned_at; -1 unsplit
	method    string
	segs      []segResult
	lastSeg   time.Duration // send .. the last segment's finished_at
	rows      int64
	bytes     int64
	attempts  int
	workerCPU time.Duration
	perWorker []time.Duration
	ferretCPU time.Duration // -1: unknown
	s3CPU     time.Duration // -1: unknown
}

type segResult struct {
	index    int
	status   ledger.Status
	worker   string
	start    time.Duration // send .. started_at
	dur      time.Duration // started_at .. finished_at (of the last attempt)
	rows     int64
	attempts int
}

func run(ctx context.Context, cfg config, runs []runSpec) error {
	repo, err := stackenv.Root()
	if err != nil {
		return err
	}
	envPath := benchkit.EnvPath(repo)
	st, err := benchkit.Connect(envPath)
	if err != nil {
		return err
	}
	defer st.Mongo.Disconnect(context.Background())

	tmp, err := os.MkdirTemp("", "segbench-")
	if err != nil {
		return err
	}
	failed := false
	defer func() {
		if cfg.keep || failed {
			logf("worker logs kept in %s", tmp)
			return
		}
		_ = os.RemoveAll(tmp)
	}()
	if cfg.bin == "" {
		bin, version, err := benchkit.Build(ctx, repo, "", tmp, "segbench")
		if err != nil {
			return err
		}
		logf("built %s (%s)", bin, version)
		cfg.bin = bin
	}
	if cfg.bin, err = filepath.Abs(cfg.bin); err != nil {
		return err
	}
	version, err := benchkit.BinaryVersion(ctx, cfg.bin)
	if err != nil {
		return err
	}

	dbName := cfg.db
	if dbName == "" {
		dbName = "segbench_" + benchkit.RandomID()
	}
	db := st.Mongo.Database(dbName)
	if cfg.drop {
		defer func() {
			if err := db.Drop(context.Background()); err != nil {
				logf("drop %s: %v", dbName, err)
			} else {
				logf("dropped database %s", dbName)
			}
		}()
	}
	if err := seed(ctx, db, cfg.rows, cfg.seed); err != nil {
		return err
	}

	runDir := filepath.Join(filepath.Dir(envPath), "run")
	ferretPID := stackPID(runDir, "ferretdb", "ferretdb")
	s3PID := stackPID(runDir, "seaweedfs", "weed")

	segRows := cfg.rows / cfg.segments
	fmt.Printf("segbench: %d rows (campaign %s of database %s; reuse it with -db %s), collection_fields %s\n",
		cfg.rows, campaign, dbName, dbName, strings.Join(fields, ","))
	fmt.Printf("segbench: worker %s (%s), WORKER_CONCURRENCY=%d per process, S3_PART_SIZE_MB=5\n", cfg.bin, version, cfg.concurrency)
	fmt.Printf("segbench: split runs SEGMENT_ROWS=%d MAX_SEGMENTS=%d; 1u SEGMENT_ROWS=0\n", segRows, cfg.segments)
	fmt.Printf("segbench: host %d CPUs, %s; FerretDB pid %s, SeaweedFS pid %s\n", runtime.NumCPU(), benchkit.HostLoad(), pidString(ferretPID), pidString(s3PID))
	fmt.Println("segbench: wall = send .. ledger finished_at; planning = send .. segments.planned_at; CPU = utime+stime from just before the send to the end")

	var results []result
	for _, spec := range runs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		logf("run %s: %d worker process(es), %s", spec.label, spec.procs, map[bool]string{true: "split", false: "SEGMENT_ROWS=0"}[spec.split])
		r, err := runOnce(ctx, cfg, st, db, spec, tmp, ferretPID, s3PID)
		if err != nil {
			failed = true
			if ctx.Err() != nil {
				return err
			}
			r.err = err.Error()
			if r.status == "" {
				r.status = "error"
			}
		}
		if r.status != ledger.Succeeded {
			failed = true
		}
		printRun(r)
		results = append(results, r)
	}
	summarize(results)
	if failed {
		return errors.New("a run did not succeed")
	}
	return nil
}

// --- the stack --------------------------------------------------------------

// stackPID is the pid of the stack's server name (scripts/stack.sh writes .stack/run/NAME.pid)
// if it runs and its command line holds marker; else 0.
func stackPID(runDir, name, marker string) int {
	b, err := os.ReadFile(filepath.Join(runDir, name+".pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), marker) {
		return 0
	}
	return pid
}

func pidString(pid int) string {
	if pid == 0 {
		return "not found"
	}
	return strconv.Itoa(pid)
}

// abortUploads aborts the multipart uploads left under prefix (a failed split export's).
func abortUploads(ctx context.Context, st *benchkit.Stack, bucket, prefix string) {
	out, err := st.S3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		return
	}
	for _, u := range out.Uploads {
		_, _ = st.S3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId})
	}
}

// --- seeding ----------------------------------------------------------------

var resumeStatuses = []string{"registered", "verified", "selected", "waitlisted"}

// noisyRegistration is a registration of campaign with the given _id whose source is 300
// characters of random base64 (222 random bytes; the "src-" prefix keeps the cell clear of
// the CSV encoder's formula escaping, which a leading + would trigger). Copied from
// e2e/resume_test.go.
func noisyRegistration(r *mrand.Rand, campaign string, id any, i int) bson.D {
	var noise [224]byte
	for j := 0; j < len(noise); j += 8 {
		binary.LittleEndian.PutUint64(noise[j:], r.Uint64())
	}
	created := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 997 * time.Millisecond)
	return bson.D{
		{Key: "_id", Value: id},
		{Key: "campaign_id", Value: campaign},
		{Key: "status", Value: resumeStatuses[r.IntN(len(resumeStatuses))]},
		{Key: "score", Value: int32(r.IntN(1000))},
		{Key: "source", Value: "src-" + base64.StdEncoding.EncodeToString(noise[:222])},
		{Key: "created_at", Value: created},
	}
}

// seed makes sure the database's registrations are exactly rows registrations of the
// campaign (it inserts them into an empty collection, and refuses any other content: the
// planner and FerretDB's scans see the whole collection), and creates the indexes.
func seed(ctx context.Context, db *mongo.Database, rows int, seedValue uint64) error {
	coll := db.Collection("registrations")
	all, err := coll.CountDocuments(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("count registrations of %s: %w", db.Name(), err)
	}
	if all != 0 {
		n, err := coll.CountDocuments(ctx, bson.D{{Key: "campaign_id", Value: campaign}})
		if err != nil {
			return fmt.Errorf("count registrations of %s: %w", db.Name(), err)
		}
		if all != int64(rows) || n != int64(rows) {
			return fmt.Errorf("database %s holds %d registrations (%d of campaign %s), want exactly %d of it: use another -db, or none", db.Name(), all, n, campaign, rows)
		}
		logf("database %s already holds the %d registrations", db.Name(), rows)
	} else {
		r := mrand.New(mrand.NewPCG(seedValue, 3))
		base := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
		start := time.Now()
		for i := 0; i < rows; i += seedBatch {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			docs := make([]any, 0, min(seedBatch, rows-i))
			for k := i; k < min(rows, i+seedBatch); k++ {
				docs = append(docs, noisyRegistration(r, campaign, bson.NewObjectIDFromTimestamp(base.Add(time.Duration(k)*time.Second)), k))
			}
			if _, err := coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false)); err != nil {
				return fmt.Errorf("seed registrations into %s: %w", db.Name(), err)
			}
			if done := i + len(docs); done%100_000 == 0 || done == rows {
				logf("seeded %d/%d registrations into %s (%.0f/s)", done, rows, db.Name(), float64(done)/time.Since(start).Seconds())
			}
		}
		logf("seeded database %s in %s (reuse it with -db %s)", db.Name(), time.Since(start).Round(time.Millisecond), db.Name())
	}
	if _, err := jobs.CreateIndexes(ctx, db, jobs.DefaultRegistry()); err != nil {
		return fmt.Errorf("indexes: %w", err)
	}
	return nil
}

// --- workers ----------------------------------------------------------------

// stopAll stops the workers at once: SIGTERM, and SIGKILL after 60s.
func stopAll(ws []*benchkit.Worker) {
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.Stop(60 * time.Second) }()
	}
	wg.Wait()
}

// --- one run ----------------------------------------------------------------

func runOnce(ctx context.Context, cfg config, st *benchkit.Stack, db *mongo.Database, spec runSpec, tmp string, ferretPID, s3PID int) (res result, err error) {
	res = result{spec: spec, planning: -1, ferretCPU: -1, s3CPU: -1}
	runID := fmt.Sprintf("sb-%s-%s", benchkit.RandomID(), spec.label)
	res.exportID = runID
	jobsURL, dlqURL, err := st.NewQueues(ctx, runID, visibility)
	defer st.DeleteQueues(jobsURL, dlqURL)
	if err != nil {
		return res, err
	}
	prefix := "segbench/" + runID + "/"
	bucket := st.Env["EXPORT_BUCKET"]
	exports := db.Collection(ledger.Collection)
	defer func() {
		// Every run starts with an empty ledger (FerretDB scans it for each ledger operation).
		ids := bson.A{runID}
		for i := range 100 {
			ids = append(ids, ledger.SegmentID(runID, i))
		}
		bg := context.Background()
		_, _ = exports.DeleteMany(bg, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		_, _ = db.Collection(ledger.CompletionsCollection).DeleteOne(bg, bson.D{{Key: "_id", Value: runID}})
		abortUploads(bg, st, bucket, prefix)
		if !cfg.keep {
			if _, err := st.DeletePrefix(bg, bucket, prefix); err != nil {
				logf("deleting s3://%s/%s: %v", bucket, prefix, err)
			}
		}
	}()

	base := st.WorkerEnv(db.Name(), jobsURL, dlqURL, prefix, cfg.concurrency)
	base["VISIBILITY_TIMEOUT"] = fmt.Sprintf("%ds", visibility)
	base["S3_PART_SIZE_MB"] = "5"
	base["SEGMENT_ROWS"] = "0"
	if spec.split {
		base["SEGMENT_ROWS"] = strconv.Itoa(cfg.rows / cfg.segments)
		base["MAX_SEGMENTS"] = strconv.Itoa(cfg.segments)
	}

	var ws []*benchkit.Worker
	defer func() { stopAll(ws) }()
	fail := func(err error) (result, error) {
		var b strings.Builder
		for _, w := range ws {
			for _, l := range w.BadLines() {
				fmt.Fprintf(&b, "\n  %s: %s", w.Name, l)
			}
		}
		if b.Len() > 0 {
			err = fmt.Errorf("%w (worker logs in %s; warnings and errors:%s)", err, tmp, b.String())
		} else {
			err = fmt.Errorf("%w (worker logs in %s)", err, tmp)
		}
		return res, err
	}
	for i := range spec.procs {
		addr, err := benchkit.FreeAddr()
		if err != nil {
			return res, err
		}
		env := make(map[string]string, len(base)+2)
		for k, v := range base {
			env[k] = v
		}
		id := fmt.Sprintf("%s-w%d", runID, i)
		env["HTTP_ADDR"], env["WORKER_ID"] = addr, id
		w, err := benchkit.StartWorker(benchkit.WorkerSpec{Bin: cfg.bin, Name: id, Env: env, LogPath: filepath.Join(tmp, id+".log"), Verbose: cfg.verbose})
		if err != nil {
			return fail(err)
		}
		ws = append(ws, w)
	}
	for _, w := range ws {
		if err := w.Ready(ctx); err != nil {
			return fail(fmt.Errorf("worker %s: %w", w.Name, err))
		}
	}
	time.Sleep(time.Second) // let start-up work (first receive, index checks) settle

	body, err := json.Marshal(map[string]any{
		"version": 1, "export_id": runID, "kind": "collection_fields",
		"params": map[string]any{"collection": "registrations", "campaign_id": campaign, "fields": fields},
	})
	if err != nil {
		return res, err
	}
	cpu0 := make([]time.Duration, len(ws))
	for i, w := range ws {
		if cpu0[i], err = benchkit.ProcCPU(w.Pid()); err != nil {
			return fail(err)
		}
	}
	f0, ferr := benchkit.ProcCPU(ferretPID)
	s0, serr := benchkit.ProcCPU(s3PID)
	sent := time.Now()
	if _, err := st.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(jobsURL), MessageBody: aws.String(string(body))}); err != nil {
		return fail(fmt.Errorf("send the job: %w", err))
	}

	// Poll the export's entry once a second (a lookup by _id of a ledger of a few entries:
	// next to nothing for FerretDB).
	var e ledger.Entry
	deadline := sent.Add(cfg.timeout)
	lastStatus := ledger.Status("")
	for {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Second):
		}
		e = ledger.Entry{}
		err := exports.FindOne(ctx, bson.D{{Key: "_id", Value: runID}}).Decode(&e)
		if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
			return fail(fmt.Errorf("ledger: %w", err))
		}
		if e.Status != lastStatus {
			logf("run %s: export %s %s after %s", spec.label, runID, orNone(string(e.Status)), time.Since(sent).Round(100*time.Millisecond))
			lastStatus = e.Status
		}
		if e.Status == ledger.Succeeded || e.Status == ledger.Failed && (e.Permanent || e.DeadLettered) {
			break
		}
		for _, w := range ws {
			if w.Exited() {
				return fail(fmt.Errorf("worker %s exited during the run (ledger status %q)", w.Name, e.Status))
			}
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("the export did not end within %s (ledger status %q)", cfg.timeout, e.Status))
		}
	}

	// The figures.
	for i, w := range ws {
		c, err := benchkit.ProcCPU(w.Pid())
		if err != nil {
			return fail(err)
		}
		res.perWorker = append(res.perWorker, c-cpu0[i])
		res.workerCPU += c - cpu0[i]
	}
	if f1, err := benchkit.ProcCPU(ferretPID); err == nil && ferr == nil {
		res.ferretCPU = f1 - f0
	}
	if s1, err := benchkit.ProcCPU(s3PID); err == nil && serr == nil {
		res.s3CPU = s1 - s0
	}
	res.status, res.rows, res.bytes, res.attempts = e.Status, e.Rows, e.Bytes, e.Attempts
	res.wall = e.FinishedAt.Sub(sent)
	if e.Error != "" {
		res.err = e.Error
	}
	if p := e.Segments; p != nil {
		res.planning = p.PlannedAt.Sub(sent)
		res.method = p.Method
		ids := bson.A{}
		for i := range p.Segments() {
			ids = append(ids, ledger.SegmentID(runID, i))
		}
		cur, err := exports.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		if err != nil {
			return fail(fmt.Errorf("ledger: the segments: %w", err))
		}
		var segs []ledger.Entry
		if err := cur.All(ctx, &segs); err != nil {
			return fail(fmt.Errorf("ledger: the segments: %w", err))
		}
		for i := range p.Segments() {
			s := segResult{index: i, status: "missing"}
			for _, se := range segs {
				if se.ExportID != ledger.SegmentID(runID, i) {
					continue
				}
				s.status, s.rows, s.attempts = se.Status, se.Rows, se.Attempts
				s.worker = strings.TrimPrefix(se.WorkerID, runID+"-")
				s.start = se.StartedAt.Sub(sent)
				if !se.FinishedAt.IsZero() {
					s.dur = se.FinishedAt.Sub(se.StartedAt)
					res.lastSeg = max(res.lastSeg, se.FinishedAt.Sub(sent))
				}
			}
			res.segs = append(res.segs, s)
		}
	}
	if res.status != ledger.Succeeded {
		return fail(fmt.Errorf("the export %s: %s", res.status, e.Error))
	}
	if res.rows != int64(cfg.rows) {
		return fail(fmt.Errorf("the export has %d rows, want %d", res.rows, cfg.rows))
	}
	return res, nil
}

func orNone(s string) string {
	if s == "" {
		return "(no entry yet)"
	}
	return s
}

// --- output -----------------------------------------------------------------

func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

func cpuString(d time.Duration) string {
	if d < 0 {
		return "?"
	}
	return secs(d)
}

func printRun(r result) {
	segs := "unsplit"
	if len(r.segs) > 0 {
		segs = fmt.Sprintf("%d segments (%s), planning %s", len(r.segs), r.method, secs(r.planning))
	} else if r.spec.split {
		segs = "NOT split"
	}
	var per []string
	for i, c := range r.perWorker {
		per = append(per, fmt.Sprintf("w%d %.1f", i, c.Seconds()))
	}
	rate := 0.0
	if r.wall > 0 {
		rate = float64(r.rows) / r.wall.Seconds()
	}
	fmt.Printf("run %-3s %d worker(s): %s, %d rows, %.1f MiB, wall %s, %s, worker CPU %s [%s], FerretDB CPU %s, SeaweedFS CPU %s, %.0f rows/s, %d attempt(s)\n",
		r.spec.label, r.spec.procs, r.status, r.rows, float64(r.bytes)/(1<<20), secs(r.wall), segs,
		secs(r.workerCPU), strings.Join(per, ", "), cpuString(r.ferretCPU), cpuString(r.s3CPU), rate, r.attempts)
	for _, s := range r.segs {
		fmt.Printf("    segment %d: %s by %s, started +%s, ran %s, %d rows, %d attempt(s)\n",
			s.index, s.status, orNone(s.worker), secs(s.start), secs(s.dur), s.rows, s.attempts)
	}
	if len(r.segs) > 0 && r.status == ledger.Succeeded {
		fmt.Printf("    completion: export finished %s after its last segment\n", secs(r.wall-r.lastSeg))
	}
	if r.err != "" {
		fmt.Printf("    error: %s\n", r.err)
	}
}

func summarize(results []result) {
	fmt.Println()
	fmt.Printf("%-4s %7s %8s %9s %10s %12s %14s %9s %8s %8s\n",
		"run", "workers", "segments", "wall_s", "planning_s", "worker_cpu_s", "ferretdb_cpu_s", "rows/s", "wall/1u", "speedup")
	var ref time.Duration
	for _, r := range results {
		if r.spec.label == "1u" && r.status == ledger.Succeeded {
			ref = r.wall
			break
		}
	}
	for _, r := range results {
		segs, planning := "-", "-"
		if len(r.segs) > 0 {
			segs, planning = strconv.Itoa(len(r.segs)), fmt.Sprintf("%.1f", r.planning.Seconds())
		}
		ferret := "?"
		if r.ferretCPU >= 0 {
			ferret = fmt.Sprintf("%.1f", r.ferretCPU.Seconds())
		}
		rate, ratio, speedup := "-", "-", "-"
		if r.status == ledger.Succeeded && r.wall > 0 {
			rate = fmt.Sprintf("%.0f", float64(r.rows)/r.wall.Seconds())
			if ref > 0 {
				ratio = fmt.Sprintf("%.2f", r.wall.Seconds()/ref.Seconds())
				speedup = fmt.Sprintf("%.2fx", ref.Seconds()/r.wall.Seconds())
			}
		}
		wall := "-"
		if r.status == ledger.Succeeded {
			wall = fmt.Sprintf("%.1f", r.wall.Seconds())
		} else {
			wall = string(r.status)
		}
		fmt.Printf("%-4s %7d %8s %9s %10s %12.1f %14s %9s %8s %8s\n",
			r.spec.label, r.spec.procs, segs, wall, planning, r.workerCPU.Seconds(), ferret, rate, ratio, speedup)
	}
	if ref == 0 {
		fmt.Println("(no succeeded 1u run: no ratios)")
	} else {
		fmt.Println("wall/1u = the run's wall time / the 1u run's; speedup = its inverse")
	}
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/stackenv"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/jobs/encode"
	"github.com/verifiedfan/export-service/ledger"
	"github.com/verifiedfan/export-service/tools/internal/benchkit"
)

// result is one run of one binary.
type result struct {
	label     string
	run       int
	wall      time.Duration // enqueue .. all N succeeded in the ledger
	cpu       time.Duration // worker CPU from before the enqueue until the last message was deleted
	span      time.Duration // wall time of that CPU window
	idleCPU   time.Duration // worker CPU over the idle period
	idle      time.Duration // the idle period
	peakRSS   int64         // VmHWM during the run (reset before the enqueue)
	idleRSS   int64         // VmRSS before the enqueue
	alloc     float64       // go_memstats_alloc_bytes_total during the run
	mallocs   float64       // go_memstats_mallocs_total during the run
	idleAlloc float64       // ... over the idle period
	idleMall  float64
	gcCycles  float64 // go_gc_duration_seconds_count during the run
	retries   int     // attempts beyond the first over all jobs
}

func (r result) idleRate() float64 { return float64(r.idleCPU) / float64(r.idle) }

// netCPU is the run's CPU minus the idle CPU of an equal period.
func (r result) netCPU() time.Duration {
	return r.cpu - time.Duration(r.idleRate()*float64(r.span))
}

func (r result) netAlloc() float64 {
	return r.alloc - r.idleAlloc*float64(r.span)/float64(r.idle)
}

func (r result) netMallocs() float64 {
	return r.mallocs - r.idleMall*float64(r.span)/float64(r.idle)
}

type binary struct {
	label, path, version string
}

func run(ctx context.Context, cfg config) error {
	repo, err := stackenv.Root()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "loadbench-")
	if err != nil {
		return err
	}
	if !cfg.keep {
		defer os.RemoveAll(tmp)
	}
	commit := "(not built here)"
	if cfg.bin == "" {
		commit = treeState(repo)
		if cfg.rev != "" {
			b, err := exec.CommandContext(ctx, "git", "-C", repo, "rev-parse", "--short", cfg.rev).Output()
			if err != nil {
				return fmt.Errorf("-rev %s: %v", cfg.rev, err)
			}
			commit = strings.TrimSpace(string(b)) + " (committed files only)"
		}
		bin, version, err := benchkit.Build(ctx, repo, cfg.rev, tmp, "loadbench")
		if err != nil {
			return err
		}
		logf("built %s (%s)", bin, version)
		cfg.bin = bin
	}
	bins := []binary{{label: "A", path: cfg.bin}}
	if cfg.compare != "" {
		bins = append(bins, binary{label: "B", path: cfg.compare})
	}
	for i := range bins {
		p, err := filepath.Abs(bins[i].path)
		if err != nil {
			return err
		}
		bins[i].path = p
		if bins[i].version, err = benchkit.BinaryVersion(ctx, p); err != nil {
			return err
		}
	}

	st, err := benchkit.Connect(benchkit.EnvPath(repo))
	if err != nil {
		return err
	}
	defer st.Mongo.Disconnect(context.Background())
	dbName := cfg.db
	if dbName == "" {
		dbName = "loadbench_" + benchkit.RandomID()
	}
	db := st.Mongo.Database(dbName)
	if cfg.db == "" && !cfg.keep {
		defer func() { _ = db.Drop(context.Background()) }()
	}
	campaigns := campaignIDs(cfg)
	if err := seed(ctx, db, campaigns, cfg.rows, cfg.seed); err != nil {
		return err
	}

	fmt.Printf("loadbench: %d jobs x %d rows (%s, campaigns %s), WORKER_CONCURRENCY=%d, GOMEMLIMIT=%s, database %s\n",
		cfg.jobs, cfg.rows, cfg.format, cfg.campaigns, cfg.concurrency, orUnset(cfg.gomemlimit), dbName)
	fmt.Printf("loadbench: A = %s (%s; tree %s)\n", bins[0].path, bins[0].version, commit)
	if len(bins) > 1 {
		fmt.Printf("loadbench: B = %s (%s)\n", bins[1].path, bins[1].version)
	}
	fmt.Printf("loadbench: host %s, %d runs of each binary, interleaved\n", benchkit.HostLoad(), cfg.repeat)
	fmt.Println("loadbench: cpu/job = worker utime+stime from just before the enqueue until the last message was deleted, / jobs;")
	fmt.Println("loadbench:   net = minus the worker's idle CPU rate (measured over an idle period just before the enqueue) x that window")
	fmt.Printf("%-3s %3s %8s %9s %9s %9s %8s %8s %10s %9s %5s %4s\n", "bin", "run", "wall_s", "cpu/job", "net/job", "idle_ms/s", "rss_MiB", "idleRSS", "alloc/job", "mallocs/j", "gcs", "retr")

	var results []result
	var walls []time.Duration
	for k := range cfg.repeat {
		order := bins
		if k%2 == 1 {
			order = []binary{bins[len(bins)-1], bins[0]}
			if len(bins) == 1 {
				order = bins
			}
		}
		for _, b := range order {
			idle := cfg.idle
			if idle == 0 {
				idle = 10 * time.Second
				if len(walls) > 0 {
					idle = min(max(median(walls), 5*time.Second), 120*time.Second)
				}
			}
			perfFile := ""
			if cfg.perf != "" && b.label == "A" {
				perfFile = fmt.Sprintf("%s.%d", cfg.perf, k+1)
			}
			r, err := runOnce(ctx, cfg, st, db, campaigns, b, k+1, idle, tmp, perfFile)
			if err != nil {
				return fmt.Errorf("run %d of %s: %w", k+1, b.label, err)
			}
			walls = append(walls, r.wall)
			results = append(results, r)
			fmt.Printf("%-3s %3d %8.2f %9s %9s %9.1f %8.1f %8.1f %10s %9.0f %5.0f %4d\n", r.label, r.run, r.wall.Seconds(),
				ms(r.cpu/time.Duration(cfg.jobs)), ms(r.netCPU()/time.Duration(cfg.jobs)), 1000*r.idleRate(),
				mib(r.peakRSS), mib(r.idleRSS), kib(r.netAlloc()/float64(cfg.jobs)), r.netMallocs()/float64(cfg.jobs), r.gcCycles, r.retries)
		}
	}
	summarize(cfg, bins, results)
	return nil
}

func orUnset(s string) string {
	if s == "" {
		return "(unset)"
	}
	return s
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
func mib(b int64) float64       { return float64(b) / (1 << 20) }
func kib(b float64) string {
	if b >= 10<<20 {
		return fmt.Sprintf("%.1fMiB", b/(1<<20))
	}
	return fmt.Sprintf("%.0fKiB", b/1024)
}

func treeState(repo string) string {
	head, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	s := strings.TrimSpace(string(head))
	dirty, _ := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output()
	var files []string
	for _, l := range strings.Split(strings.TrimSpace(string(dirty)), "\n") {
		if f := strings.TrimSpace(l); f != "" && strings.HasSuffix(f, ".go") {
			files = append(files, strings.Fields(f)[len(strings.Fields(f))-1])
		}
	}
	if len(files) > 0 {
		s += fmt.Sprintf(" + uncommitted %s", strings.Join(files, " "))
	}
	return s
}

func runOnce(ctx context.Context, cfg config, st *benchkit.Stack, db *mongo.Database, campaigns []string, b binary, k int, idle time.Duration, tmp, perfFile string) (result, error) {
	res := result{label: b.label, run: k, idle: idle}
	runID := fmt.Sprintf("lb-%s-%s%d", benchkit.RandomID(), strings.ToLower(b.label), k)
	jobsURL, dlqURL, err := st.NewQueues(ctx, runID, 120)
	defer st.DeleteQueues(jobsURL, dlqURL)
	if err != nil {
		return res, err
	}
	addr, err := benchkit.FreeAddr()
	if err != nil {
		return res, err
	}
	prefix := "loadbench/" + runID + "/"
	env := st.WorkerEnv(db.Name(), jobsURL, dlqURL, prefix, cfg.concurrency)
	env["HTTP_ADDR"], env["WORKER_ID"] = addr, runID
	if cfg.gomemlimit != "" {
		env["GOMEMLIMIT"] = cfg.gomemlimit
	}
	for _, kv := range cfg.extraEnv {
		if key, v, ok := strings.Cut(kv, "="); ok {
			env[key] = v
		}
	}
	logPath := filepath.Join(tmp, runID+".log")
	// The worker's "export succeeded" lines: their count, and a signal on each.
	var succeededLines atomic.Int64
	progress := make(chan struct{}, 1)
	w, err := benchkit.StartWorker(benchkit.WorkerSpec{
		Bin: b.path, Name: "worker", Env: env, LogPath: logPath, Verbose: cfg.logs,
		OnMessage: func(message string) {
			if message == "export succeeded" {
				succeededLines.Add(1)
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		},
	})
	if err != nil {
		return res, err
	}
	defer func() {
		if !cfg.keep {
			if _, err := st.DeletePrefix(context.Background(), st.Env["EXPORT_BUCKET"], prefix); err != nil {
				logf("deleting s3://%s/%s: %v", st.Env["EXPORT_BUCKET"], prefix, err)
			}
		}
	}()
	defer w.Stop(30 * time.Second)
	pid := w.Pid()
	fail := func(err error) (result, error) {
		bad := strings.Join(w.BadLines(), "\n")
		return res, fmt.Errorf("%w (worker log %s; warnings and errors:\n%s)", err, logPath, bad)
	}

	// Ready: the started line, then /heartbeat.
	if err := w.Ready(ctx); err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return fail(fmt.Errorf("the worker: %w", err))
	}
	time.Sleep(time.Second) // let start-up work (first receive, index checks) settle

	// Idle period.
	names := []string{"go_memstats_alloc_bytes_total", "go_memstats_mallocs_total", "go_gc_duration_seconds_count"}
	m0, err := scrape(ctx, w.Base, names...)
	if err != nil {
		return fail(err)
	}
	c0, err := benchkit.ProcCPU(pid)
	if err != nil {
		return fail(err)
	}
	select {
	case <-time.After(idle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	c1, err := benchkit.ProcCPU(pid)
	if err != nil {
		return fail(err)
	}
	m1, err := scrape(ctx, w.Base, names...)
	if err != nil {
		return fail(err)
	}
	res.idleCPU = c1 - c0
	res.idleAlloc = m1["go_memstats_alloc_bytes_total"] - m0["go_memstats_alloc_bytes_total"]
	res.idleMall = m1["go_memstats_mallocs_total"] - m0["go_memstats_mallocs_total"]

	// The jobs.
	ids := make([]string, cfg.jobs)
	bodies := make([]string, cfg.jobs)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%04d", runID, i)
		c := campaigns[0]
		if len(campaigns) > 1 {
			c = campaigns[i]
		}
		msg := jobs.Message{Version: jobs.CurrentVersion, ExportID: ids[i], Kind: "registrations", Format: encode.Format(cfg.format),
			Params: json.RawMessage(fmt.Sprintf(`{"campaign_id":%q}`, c)), RequestedBy: "loadbench"}
		body, err := msg.Encode()
		if err != nil {
			return res, err
		}
		bodies[i] = string(body)
	}
	exports := db.Collection(ledger.Collection)
	succeeded := bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}, {Key: "status", Value: ledger.Succeeded}}

	var perf *exec.Cmd
	if perfFile != "" {
		perf = exec.Command("perf", "record", "-q", "-F", fmt.Sprint(cfg.perfFreq), "-g", "-p", fmt.Sprint(pid), "-o", perfFile)
		perf.Stdout, perf.Stderr = os.Stderr, os.Stderr
		if err := perf.Start(); err != nil {
			return fail(fmt.Errorf("perf: %w", err))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := resetPeakRSS(pid); err != nil {
		return fail(err)
	}
	if s, err := procStatus(pid, "VmRSS"); err == nil {
		res.idleRSS = s["VmRSS"]
	}
	c2, err := benchkit.ProcCPU(pid)
	if err != nil {
		return fail(err)
	}
	start := time.Now()
	if err := enqueue(ctx, st, jobsURL, bodies); err != nil {
		return fail(fmt.Errorf("enqueue: %w", err))
	}
	// Completion: the worker's "export succeeded" lines (reading them costs the worker and
	// FerretDB nothing; polling the ledger would make FerretDB, on the same cores, scan the
	// ledger several times a second), then the ledger must agree. A slow ledger poll is the
	// fallback should lines be missed.
	deadline := start.Add(cfg.timeout)
	lastPoll := time.Now()
	for {
		n := int(succeededLines.Load())
		if n >= cfg.jobs || time.Since(lastPoll) > 10*time.Second {
			lastPoll = time.Now()
			c, err := exports.CountDocuments(ctx, succeeded)
			if err != nil {
				return fail(fmt.Errorf("ledger: %w", err))
			}
			if int(c) == cfg.jobs {
				break
			}
			if n >= cfg.jobs {
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		select {
		case <-w.Done():
			return fail(fmt.Errorf("the worker exited with %d of %d jobs succeeded", n, cfg.jobs))
		case <-ctx.Done():
			return res, ctx.Err()
		case <-progress:
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("%d of %d jobs succeeded within %s", n, cfg.jobs, cfg.timeout))
		}
	}
	res.wall = time.Since(start)
	// The last messages are deleted after their ledger entry says succeeded.
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if n, err := queueCount(ctx, st, jobsURL); err == nil && n == 0 {
			break
		}
	}
	c3, err := benchkit.ProcCPU(pid)
	if err != nil {
		return fail(err)
	}
	res.span = time.Since(start)
	if perf != nil {
		_ = perf.Process.Signal(os.Interrupt)
		_ = perf.Wait()
	}
	s, err := procStatus(pid, "VmHWM")
	if err != nil {
		return fail(err)
	}
	res.peakRSS = s["VmHWM"]
	m3, err := scrape(ctx, w.Base, names...)
	if err != nil {
		return fail(err)
	}
	res.cpu = c3 - c2
	res.alloc = m3["go_memstats_alloc_bytes_total"] - m1["go_memstats_alloc_bytes_total"]
	res.mallocs = m3["go_memstats_mallocs_total"] - m1["go_memstats_mallocs_total"]
	res.gcCycles = m3["go_gc_duration_seconds_count"] - m1["go_gc_duration_seconds_count"]

	// Every export has its rows; count the attempts beyond the first.
	cur, err := exports.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}},
		options.Find().SetProjection(bson.D{{Key: "rows", Value: 1}, {Key: "attempts", Value: 1}}))
	if err != nil {
		return fail(err)
	}
	var entries []struct {
		ID       string `bson:"_id"`
		Rows     int64  `bson:"rows"`
		Attempts int    `bson:"attempts"`
	}
	if err := cur.All(ctx, &entries); err != nil {
		return fail(err)
	}
	if len(entries) != cfg.jobs {
		return fail(fmt.Errorf("%d ledger entries, want %d", len(entries), cfg.jobs))
	}
	// Every run starts with an empty ledger: FerretDB scans it for each of the worker's
	// ledger operations, so entries left over would slow every later run.
	if _, err := exports.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}); err != nil {
		return fail(fmt.Errorf("clearing the ledger: %w", err))
	}
	for _, e := range entries {
		if e.Rows != int64(cfg.rows) {
			return fail(fmt.Errorf("export %s has %d rows, want %d", e.ID, e.Rows, cfg.rows))
		}
		if e.Attempts > 1 {
			res.retries += e.Attempts - 1
		}
	}
	return res, nil
}

func median[T int64 | float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func summarize(cfg config, bins []binary, results []result) {
	fmt.Println()
	fmt.Println("summary: median [min .. max] over the runs of each binary")
	type series struct {
		name string
		get  func(r result) float64
		unit string
	}
	n := float64(cfg.jobs)
	all := []series{
		{"wall", func(r result) float64 { return r.wall.Seconds() }, "s"},
		{"cpu/job (raw)", func(r result) float64 { return float64(r.cpu) / 1e6 / n }, "ms"},
		{"cpu/job (net of idle)", func(r result) float64 { return float64(r.netCPU()) / 1e6 / n }, "ms"},
		{"idle cpu", func(r result) float64 { return 1000 * r.idleRate() }, "ms/s"},
		{"peak RSS (run)", func(r result) float64 { return mib(r.peakRSS) }, "MiB"},
		{"alloc/job (net)", func(r result) float64 { return r.netAlloc() / n / 1024 }, "KiB"},
		{"mallocs/job (net)", func(r result) float64 { return r.netMallocs() / n }, ""},
		{"jobs/s", func(r result) float64 { return n / r.wall.Seconds() }, ""},
	}
	meds := map[string][]float64{}
	for _, s := range all {
		line := fmt.Sprintf("  %-22s", s.name)
		for _, b := range bins {
			var xs []float64
			for _, r := range results {
				if r.label == b.label {
					xs = append(xs, s.get(r))
				}
			}
			m := median(xs)
			meds[s.name] = append(meds[s.name], m)
			line += fmt.Sprintf("  %s: %9.2f%-4s [%.2f .. %.2f]", b.label, m, s.unit, slices.Min(xs), slices.Max(xs))
		}
		if len(bins) == 2 && meds[s.name][1] != 0 {
			line += fmt.Sprintf("  A/B %.2f", meds[s.name][0]/meds[s.name][1])
		}
		fmt.Println(line)
	}
}

// Command loadbench measures the real worker binary from outside, on the local stack: CPU per
// job, peak RSS and Go allocations per job for N export jobs enqueued at once.
//
// For every run it creates a jobs queue and its DLQ, starts the worker (fresh HTTP_ADDR,
// RECEIVE_WAIT=1s, the given WORKER_CONCURRENCY and GOMEMLIMIT), waits for its "worker started"
// line and /heartbeat, measures the worker's idle CPU over an idle period, resets its peak RSS,
// enqueues N jobs at once, waits until the ledger (collection "exports") shows all N succeeded
// and the jobs queue is empty (messages deleted), then reads /proc/PID/stat (utime+stime),
// /proc/PID/status (VmHWM) and /metrics (go_memstats_*), stops the worker and prints the run.
// CPU per job is given raw and net of the idle CPU (idle rate x wall time of the run).
//
// With -compare OTHER, runs of the two binaries are interleaved (A B, B A, A B, ...) so that
// the noise of a shared machine falls on both; the summary gives medians and min..max.
//
//	go run ./tools/loadbench -jobs 200 -rows 50 -concurrency 16 -repeat 5 -compare /tmp/lb-old/bin/export-service
//	go run ./tools/loadbench -jobs 64 -rows 50 -concurrency 64 -gomemlimit 256MiB -repeat 3
//	go run ./tools/loadbench -jobs 4 -rows 200000 -concurrency 4 -repeat 2
//	go run ./tools/loadbench -jobs 200 -rows 50 -concurrency 16 -perf /tmp/lb.perf   (perf record -g of the worker during the run)
//
// Every export of a run reads one shared campaign of exactly -rows registrations (its own
// database, seeded once per invocation; -db reuses a seeded one across invocations), unless
// -campaigns per-job gives each export a campaign of its own. See docs/BENCHMARKS.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type config struct {
	bin, compare string
	rev          string
	jobs, rows   int
	concurrency  int
	gomemlimit   string
	format       string
	repeat       int
	campaigns    string
	idle         time.Duration
	timeout      time.Duration
	db           string
	keep         bool
	perf         string
	perfFreq     int
	extraEnv     multiFlag
	logs         bool
	seed         uint64
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "", "worker binary A (default: go build -trimpath ./cmd/export-service of this tree, CGO_ENABLED=0, symbols kept, into a temp dir)")
	flag.StringVar(&cfg.compare, "compare", "", "worker binary B: runs of A and B are interleaved")
	flag.StringVar(&cfg.rev, "rev", "", "build binary A from this commit (git archive, nothing of the working tree) instead of the working tree")
	flag.IntVar(&cfg.jobs, "jobs", 200, "export jobs enqueued at once per run")
	flag.IntVar(&cfg.rows, "rows", 50, "rows of each export")
	flag.IntVar(&cfg.concurrency, "concurrency", 16, "WORKER_CONCURRENCY")
	flag.StringVar(&cfg.gomemlimit, "gomemlimit", "", "GOMEMLIMIT of the worker (e.g. 256MiB); empty: unset")
	flag.StringVar(&cfg.format, "format", "csv", "csv or ndjson")
	flag.IntVar(&cfg.repeat, "repeat", 3, "runs of each binary")
	flag.StringVar(&cfg.campaigns, "campaigns", "shared", "shared: every export reads one campaign of -rows registrations; per-job: a campaign per export (jobs x rows documents; FerretDB scans the whole collection per query, so keep it small)")
	flag.DurationVar(&cfg.idle, "idle", 0, "idle period measured before each enqueue (0: 10s for the first run, then the median wall time of the runs so far, 5s..120s)")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Minute, "longest a run may take")
	flag.StringVar(&cfg.db, "db", "", "database to use and keep (seeded only if it lacks the campaign(s)); default: a fresh one, dropped at the end")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the database, the objects and the worker logs")
	flag.StringVar(&cfg.perf, "perf", "", "record `perf record -g` of binary A's worker during each run into FILE.<run> (perf must be installed)")
	flag.IntVar(&cfg.perfFreq, "perf-freq", 997, "perf sampling frequency (Hz)")
	flag.Var(&cfg.extraEnv, "env", "extra worker environment KEY=VALUE (repeatable), e.g. -env GZIP_LEVEL=1")
	flag.BoolVar(&cfg.logs, "v", false, "print the worker's warnings and errors as they come")
	flag.Uint64Var(&cfg.seed, "seed", 2027, "seed of the generated registrations")
	flag.Parse()
	if cfg.format != "csv" && cfg.format != "ndjson" {
		fatalf(2, "-format must be csv or ndjson")
	}
	if cfg.campaigns != "shared" && cfg.campaigns != "per-job" {
		fatalf(2, "-campaigns must be shared or per-job")
	}
	if cfg.jobs < 1 || cfg.rows < 0 || cfg.concurrency < 1 || cfg.repeat < 1 {
		fatalf(2, "-jobs, -concurrency and -repeat must be positive, -rows not negative")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fatalf(1, "%v", err)
	}
}

func fatalf(code int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadbench: "+format+"\n", args...)
	os.Exit(code)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadbench: "+format+"\n", args...)
}

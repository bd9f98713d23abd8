package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/verifiedfan/export-service/internal/awsx"
	"github.com/verifiedfan/export-service/internal/buildinfo"
	"github.com/verifiedfan/export-service/internal/logging"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
	"github.com/verifiedfan/export-service/worker"
)

func runWorker(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlagSet("worker", "Receive export jobs from EXPORT_QUEUE_URL and run them. Configuration: see the README.", stdout)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	logs, err := logging.New(stdout, cfg.LogLevel, cfg.Debug)
	if err != nil {
		return err
	}
	log := logs.For("titan:main")
	if limit, ok := setMemoryLimitFromCgroup(getenv); ok {
		log.Info().Int64("bytes", limit).Msg("GOMEMLIMIT set from the container's memory limit")
	}

	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("aws: load config: %w", err)
	}
	// Every attempt of every AWS call has a deadline (a stalled connection must not hang a job
	// forever); the SDK's retryer retries an attempt that reached it.
	awsCfg.APIOptions = append(awsCfg.APIOptions, awsx.AttemptTimeouts(awsx.Timeouts{}))
	sqsClient := sqs.NewFromConfig(awsCfg)

	mongoClient, err := connectMongo(ctx, cfg.MongoURI)
	if err != nil {
		if ctx.Err() != nil {
			// SIGTERM while still starting (MongoDB slow or away): nothing runs yet, so this is
			// a clean stop like any other, not a failure for systemd to restart.
			log.Info().Err(err).Msg("export-service stopped before it started: shutdown requested during start-up")
			return nil
		}
		return err
	}
	disconnectMongo := sync.OnceValue(func() error { return disconnectBounded(ctx, mongoClient) })
	defer disconnectMongo() //nolint:errcheck // early returns; the normal path reports it

	reg := prometheus.NewRegistry()
	metrics := worker.NewMetrics(reg)

	destinations, buffers := buildDestinations(awsCfg, cfg, metrics, log)
	exporter := &jobs.Exporter{
		DB:           exportDatabase(mongoClient, cfg),
		Kinds:        jobs.DefaultRegistry(),
		Destinations: destinations,
		GzipLevel:    cfg.GzipLevel,
		Compressors:  cfg.GzipConcurrency,
		Buffers:      buffers,
	}
	if cfg.FaultRowDelay > 0 {
		log.Warn().Dur("delay", cfg.FaultRowDelay).Msg("EXPORT_FAULT_ROW_DELAY is set: every row is slowed down (fault-injection tests only)")
		exporter.WrapSource = func(src jobs.Source) jobs.Source { return jobs.SlowSource(src, cfg.FaultRowDelay) }
	}
	ledger := ledger.New(ledgerDatabase(mongoClient, cfg))
	var outbox *worker.Outbox
	if n := resultsNotifier(cfg, sqsClient, metrics); n != nil {
		outbox = &worker.Outbox{Ledger: ledger, Notifier: n, Metrics: metrics, Log: logs.For("titan:outbox"),
			RetryBase: cfg.RetryBase, RetryMax: cfg.RetryMax, Every: min(max(cfg.RetryBase, time.Second), 30*time.Second)}
	}
	handler := &worker.ExportHandler{
		Exporter:      exporter,
		Ledger:        ledger,
		Outbox:        outbox,
		Metrics:       metrics,
		Log:           logs.For("titan:export"),
		WorkerID:      cfg.WorkerID,
		MaxAttempts:   cfg.MaxAttempts,
		MaxDuration:   cfg.MaxExportDuration,
		Lease:         cfg.VisibilityTimeout,
		ProgressEvery: cfg.ProgressEvery,
		Segments:      jobs.SegmentOptions{Rows: int64(cfg.SegmentRows), Max: cfg.MaxSegments},
	}
	w, err := worker.New(workerConfig(cfg), sqsClient, handler, metrics, logs.For("titan:worker"))
	if err != nil {
		return err
	}
	handler.Enqueue = w.Enqueue

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: listen on %s: %w", cfg.HTTPAddr, err)
	}
	srv := &http.Server{
		Handler:           worker.NewHTTPHandler(w, metrics, reg, cfg.StallAfter),
		ReadHeaderTimeout: 5 * time.Second,
	}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	// The background loops run through the drain too (/metrics keeps telling the truth, notices
	// keep going out) and are stopped, and waited for, after it.
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	var background sync.WaitGroup
	if cfg.PollQueueDepthEvery > 0 {
		depth := &worker.QueueDepth{SQS: sqsClient, Metrics: metrics, Log: logs.For("titan:queues"), Every: cfg.PollQueueDepthEvery,
			Queues: map[string]string{"jobs": cfg.QueueURL, "dlq": cfg.DLQURL, "control": cfg.ControlQueueURL}}
		background.Go(func() { depth.Run(bgCtx) })
	}
	if outbox != nil {
		background.Go(func() { outbox.Run(bgCtx) })
	}
	log.Info().Str("http_addr", ln.Addr().String()).Str("version", buildinfo.String()).Str("worker_id", cfg.WorkerID).Msg("export-service started")

	// The worker drains when ctx is canceled (SIGTERM, SIGINT); the HTTP server keeps
	// answering /heartbeat (503 while draining) and /metrics until the drain is over.
	runErr := w.Run(ctx)

	// Every step from here on is bounded, and "export-service stopped" is the last line: an
	// operator (and a scale-in) takes it for the exit.
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownStepTimeout)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		log.Warn().Err(err).Msg("http server shutdown")
	}
	serveErr := <-srvErr
	stopBackground()
	bgDone := make(chan struct{})
	go func() { background.Wait(); close(bgDone) }()
	select {
	case <-bgDone: // their last lines come before ours
	case <-time.After(shutdownStepTimeout):
		// A notice being sent is abandoned: it is sent again later (at least once).
		log.Warn().Dur("waited", shutdownStepTimeout).Msg("queue depth poller or completion-notice outbox did not stop in time; exiting anyway")
	}
	if err := disconnectMongo(); err != nil {
		log.Warn().Err(err).Msg("mongo: disconnect (exiting anyway)")
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		runErr = errors.Join(runErr, fmt.Errorf("http: serve: %w", serveErr))
	}
	log.Info().Msg("export-service stopped")
	return runErr
}

// workerConfig is the worker's configuration from the service's. WaitTime, DrainTimeout and
// HandOverDelay are always set here, from the environment or the documented default, and an
// explicit 0 stays 0 (RECEIVE_WAIT short polls, DRAIN_TIMEOUT no drain, HANDOVER_DELAY an
// undelayed copy): worker.Config.SetDefaults fills only fields where 0 means nothing.
func workerConfig(cfg config) worker.Config {
	w := worker.Config{
		QueueURL:          cfg.QueueURL,
		ControlQueueURL:   cfg.ControlQueueURL,
		DLQURL:            cfg.DLQURL,
		Concurrency:       cfg.Concurrency,
		WaitTime:          cfg.ReceiveWait,
		VisibilityTimeout: cfg.VisibilityTimeout,
		DrainTimeout:      cfg.DrainTimeout,
		StopGrace:         cfg.StopGrace,
		RetryBase:         cfg.RetryBase,
		RetryMax:          cfg.RetryMax,
		MaxMessageLease:   cfg.MaxMessageLease,
		HandOverDelay:     cfg.HandOverDelay,
	}
	return w
}

// setMemoryLimitFromCgroup sets the Go memory limit to 90% of the container's memory limit
// when GOMEMLIMIT is not set: Go does not read cgroup limits itself, and without a limit the
// garbage collector lets the heap grow into the OOM killer.
func setMemoryLimitFromCgroup(getenv func(string) string) (int64, bool) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	b, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return 0, false // "max": no limit
	}
	limit := n / 10 * 9
	debug.SetMemoryLimit(limit)
	return limit, true
}

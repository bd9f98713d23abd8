package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"github.com/verifiedfan/export-service/internal/logging"
	"github.com/verifiedfan/export-service/sink"
	"github.com/verifiedfan/export-service/worker"
)

// defaultDatabase is MONGO_DATABASE's default, for the worker and the commands alike.
const defaultDatabase = "titan"

// config is the service's configuration, read from environment variables. Every variable,
// its default and its meaning are listed in the README; loadConfig below is the source of truth.
type config struct {
	QueueURL      string
	DLQURL        string
	MongoURI      string
	MongoDatabase string
	// ReadPreference is where the export queries read (MONGO_READ_PREFERENCE); the ledger
	// always reads and writes the primary.
	ReadPreference    *readpref.ReadPref
	Bucket            string
	KeyPrefix         string
	HTTPAddr          string
	Concurrency       int
	VisibilityTimeout time.Duration
	// DrainTimeout is how long jobs in flight may run after SIGTERM; then they are asked to stop
	// at their next stored part (checkpointed, released, continued by another worker) and get
	// StopGrace to get there before they are canceled.
	DrainTimeout    time.Duration
	ReceiveWait     time.Duration
	StallAfter      time.Duration
	RetryBase       time.Duration
	RetryMax        time.Duration
	ProgressEvery   time.Duration
	GzipLevel       int
	GzipConcurrency int
	// SegmentRows and MaxSegments choose the exports split over the fleet (jobs.SegmentOptions).
	SegmentRows       int
	MaxSegments       int
	StopGrace         time.Duration
	S3PathStyle       bool
	PartSizeMB        int
	BufferBudgetMB    int
	LogLevel          string
	Debug             string
	WorkerID          string
	MaxMessageLease   time.Duration
	MaxAttempts       int
	MaxExportDuration time.Duration
	HandOverDelay     time.Duration
	// PollQueueDepthEvery is the interval of the queue depth poller (export_queue_messages);
	// 0 turns it off.
	PollQueueDepthEvery time.Duration
	// DestinationsFile and DestinationsJSON hold the destinations besides "internal" (see
	// sink.DestinationConfig): a file, or the same JSON in the variable itself. One at most.
	DestinationsFile string
	DestinationsJSON string
	// ResultsQueueURL, if set, receives each export's result notice.
	ResultsQueueURL string
	// ControlQueueURL, if set, is the control queue: cancel messages, handled at once.
	ControlQueueURL string
	// Destinations are every destination, "internal" included, parsed and validated.
	Destinations map[string]sink.DestinationConfig
	// FaultRowDelay slows every row by this much. Only for fault-injection tests (slow exports,
	// SIGKILL in the middle of an upload, lease handovers); never set in production.
	FaultRowDelay time.Duration
}

// envReader reads typed variables and collects every problem, so that a misconfigured
// instance reports all of them at once.
type envReader struct {
	getenv func(string) string
	errs   []error
}

func (r *envReader) str(name, def string) string {
	if v := strings.TrimSpace(r.getenv(name)); v != "" {
		return v
	}
	return def
}

func (r *envReader) required(name string) string {
	v := r.str(name, "")
	if v == "" {
		r.errs = append(r.errs, fmt.Errorf("%s is required", name))
	}
	return v
}

func (r *envReader) int(name string, def, lo, hi int) int {
	s := r.str(name, "")
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < lo || v > hi {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want a whole number from %d to %d", name, s, lo, hi))
		return def
	}
	return v
}

func (r *envReader) dur(name string, def, lo, hi time.Duration) time.Duration {
	s := r.str(name, "")
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		// A bare number is seconds, as in most ops tooling.
		if n, nerr := strconv.Atoi(s); nerr == nil {
			v, err = time.Duration(n)*time.Second, nil
		}
	}
	if err != nil || v < lo || v > hi {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want a duration (like 90s or 10m) from %s to %s", name, s, lo, hi))
		return def
	}
	return v
}

func (r *envReader) bool(name string, def bool) bool {
	s := r.str(name, "")
	if s == "" {
		return def
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want true or false", name, s))
		return def
	}
	return v
}

// readPreferences are the values of MONGO_READ_PREFERENCE, by the names MongoDB gives them.
var readPreferences = []*readpref.ReadPref{readpref.Primary(), readpref.PrimaryPreferred(),
	readpref.Secondary(), readpref.SecondaryPreferred(), readpref.Nearest()}

// readPref reads a read preference by its mode's MongoDB name (exact spelling).
func (r *envReader) readPref(name string, def *readpref.ReadPref) *readpref.ReadPref {
	s := r.str(name, def.Mode().String())
	var names []string
	for _, rp := range readPreferences {
		if s == rp.Mode().String() {
			return rp
		}
		names = append(names, rp.Mode().String())
	}
	r.errs = append(r.errs, fmt.Errorf("%s=%q: want one of %s", name, s, strings.Join(names, ", ")))
	return def
}

// exportDatabase is the database the export queries read (the Exporter's: the export's
// cursor, its end guard, the segment planning's counts and samples), with
// MONGO_READ_PREFERENCE: long full reads that must not load the primary.
func exportDatabase(client *mongo.Client, c config) *mongo.Database {
	return client.Database(c.MongoDatabase, exportDatabaseOptions(c))
}

func exportDatabaseOptions(c config) *options.DatabaseOptionsBuilder {
	return options.Database().SetReadPreference(c.ReadPreference)
}

// ledgerDatabase is the ledger's database: reads and writes on the primary whatever the
// connection string's or the exports' read preference, since the ledger fences attempts (a
// claim must read the entry's latest version).
func ledgerDatabase(client *mongo.Client, c config) *mongo.Database {
	return client.Database(c.MongoDatabase, ledgerDatabaseOptions())
}

func ledgerDatabaseOptions() *options.DatabaseOptionsBuilder {
	return options.Database().SetReadPreference(readpref.Primary())
}

// defaultWorkerID names this process in the export ledger: host, pid and a random suffix,
// so that a restarted process never mistakes an older attempt's lease for its own.
func defaultWorkerID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%x", host, os.Getpid(), b)
}

// loadConfig reads the worker's configuration; its error lists every problem found.
func loadConfig(getenv func(string) string) (config, error) {
	r := &envReader{getenv: getenv}
	c := config{
		QueueURL:          r.required("EXPORT_QUEUE_URL"),
		DLQURL:            r.str("EXPORT_DLQ_URL", ""),
		MongoURI:          r.required("MONGO_URI"),
		MongoDatabase:     r.str("MONGO_DATABASE", defaultDatabase),
		ReadPreference:    r.readPref("MONGO_READ_PREFERENCE", readpref.SecondaryPreferred()),
		Bucket:            r.required("EXPORT_BUCKET"),
		KeyPrefix:         r.str("EXPORT_KEY_PREFIX", "exports/"),
		HTTPAddr:          r.str("HTTP_ADDR", ":8080"),
		Concurrency:       r.int("WORKER_CONCURRENCY", 4, 1, 256),
		VisibilityTimeout: r.dur("VISIBILITY_TIMEOUT", 2*time.Minute, 3*time.Second, 12*time.Hour),
		DrainTimeout:      r.dur("DRAIN_TIMEOUT", 120*time.Second, 0, 12*time.Hour),
		ReceiveWait:       r.dur("RECEIVE_WAIT", 20*time.Second, 0, 20*time.Second),
		StallAfter:        r.dur("STALL_AFTER", 5*time.Minute, time.Second, 24*time.Hour),
		RetryBase:         r.dur("RETRY_BASE", 30*time.Second, time.Second, 12*time.Hour),
		RetryMax:          r.dur("RETRY_MAX", 15*time.Minute, time.Second, 12*time.Hour),
		ProgressEvery:     r.dur("PROGRESS_EVERY", 30*time.Second, time.Second, 24*time.Hour),
		GzipLevel:         r.int("GZIP_LEVEL", 6, 1, 9),
		GzipConcurrency:   r.int("GZIP_CONCURRENCY", min(runtime.NumCPU(), 256), 1, 256),
		StopGrace:         r.dur("DRAIN_STOP_GRACE", time.Minute, time.Second, time.Hour),
		S3PathStyle:       r.bool("S3_FORCE_PATH_STYLE", false),
		PartSizeMB:        r.int("S3_PART_SIZE_MB", 8, 5, 5120),
		BufferBudgetMB:    r.int("S3_BUFFER_BUDGET_MB", 0, 0, 1<<20),
		LogLevel:          r.str("LOG_LEVEL", "info"),
		Debug:             r.str("DEBUG", ""),
		WorkerID:          r.str("WORKER_ID", defaultWorkerID()),
		MaxMessageLease:   r.dur("MAX_MESSAGE_LEASE", 11*time.Hour, 3*time.Second, 12*time.Hour),
		MaxAttempts:       r.int("MAX_ATTEMPTS", 5, 1, 100),
		MaxExportDuration: r.dur("MAX_EXPORT_DURATION", worker.DefaultMaxExportDuration, time.Second, 30*24*time.Hour),
		HandOverDelay:     r.dur("HANDOVER_DELAY", 15*time.Minute, 0, 15*time.Minute),
		FaultRowDelay:     r.dur("EXPORT_FAULT_ROW_DELAY", 0, 0, time.Minute),
		DestinationsFile:  r.str("EXPORT_DESTINATIONS_FILE", ""),
		DestinationsJSON:  r.str("EXPORT_DESTINATIONS", ""),
		ResultsQueueURL:   r.str("EXPORT_RESULTS_QUEUE_URL", ""),
		ControlQueueURL:   r.str("EXPORT_CONTROL_QUEUE_URL", ""),
		SegmentRows:       r.int("SEGMENT_ROWS", 1_000_000, 0, 1<<40),
		MaxSegments:       r.int("MAX_SEGMENTS", 8, 2, 100),
	}
	c.PollQueueDepthEvery = r.dur("POLL_QUEUE_DEPTH_EVERY", 30*time.Second, 0, time.Hour)
	if c.StallAfter <= c.ReceiveWait {
		r.errs = append(r.errs, fmt.Errorf("STALL_AFTER (%s) must be longer than RECEIVE_WAIT (%s)", c.StallAfter, c.ReceiveWait))
	}
	if c.RetryMax < c.RetryBase {
		r.errs = append(r.errs, fmt.Errorf("RETRY_MAX (%s) must not be less than RETRY_BASE (%s)", c.RetryMax, c.RetryBase))
	}
	if strings.HasPrefix(c.KeyPrefix, "/") || strings.Contains(c.KeyPrefix, "..") {
		r.errs = append(r.errs, fmt.Errorf("EXPORT_KEY_PREFIX=%q must not start with / or contain ..", c.KeyPrefix))
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		r.errs = append(r.errs, err)
	}
	var derr error
	if c.Destinations, derr = loadDestinations(c); derr != nil {
		r.errs = append(r.errs, derr)
	}
	if err := errors.Join(r.errs...); err != nil {
		return c, fmt.Errorf("configuration:\n%w", err)
	}
	return c, nil
}

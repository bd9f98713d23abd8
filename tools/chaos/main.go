// Command chaos runs a chaos campaign against the local stack: N exports through a fleet of
// real worker processes while a driver injects random faults (Toxiproxy toxics in front of
// MongoDB, S3, STS and SQS, proxies cut, workers killed with SIGKILL and SIGTERM, the campaign's
// FerretDB restarted), then checks the delivery guarantees with independent clients. It prints
// the faults and the invariant counts and exits 1 on any violation. Seeded: the same -seed
// gives the same data, jobs and sequence of faults.
//
//	go tool task chaos              (N=50)
//	go tool task chaos N=8 SEED=42
//	go run ./tools/chaos -n 8 -seed 42 -bin bin/export-service
//
// See docs/CHAOS.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/jsontest"
	"github.com/verifiedfan/export-service/internal/stackenv"
	"github.com/verifiedfan/export-service/internal/stacktest"
)

type config struct {
	n           int
	seed        uint64
	workers     int
	concurrency int
	xlRows      int
	bigRows     int
	duration    time.Duration
	settle      time.Duration
	gap         time.Duration
	sendOver    time.Duration
	mongo       string
	bin         string
	race        bool
	keep        bool
	sabotage    bool
	verbose     bool
	noFaults    bool
	serialize   bool
	reference   bool
	interrupt   float64
	cancel      float64
}

func main() {
	var cfg config
	var seedStr string
	flag.IntVar(&cfg.n, "n", 50, "number of exports")
	flag.StringVar(&seedStr, "seed", "", "seed of the data, the jobs and the faults (default: random; printed at start)")
	flag.IntVar(&cfg.workers, "workers", 3, "worker processes")
	flag.IntVar(&cfg.concurrency, "concurrency", 3, "WORKER_CONCURRENCY of each worker")
	flag.IntVar(&cfg.xlRows, "xl-rows", 50000, "registrations of the big campaign (the largest export in rows)")
	flag.IntVar(&cfg.bigRows, "big-rows", 12000, "documents of the campaigns collection, about 3.5 KB of random text each: the multi-part exports (3-6 parts of 5 MiB)")
	flag.DurationVar(&cfg.duration, "duration", 0, "longest time faults are injected (default -send-over + 60s + 8s per export); they stop earlier when every export has ended")
	flag.DurationVar(&cfg.settle, "settle", 4*time.Minute, "after the faults, how long the exports in flight may take to end")
	flag.DurationVar(&cfg.gap, "gap", 5*time.Second, "mean time between two faults while jobs are being sent (twice that afterwards)")
	flag.DurationVar(&cfg.sendOver, "send-over", 0, "the jobs are sent at random times over this long (default 2s per export, at least 60s)")
	flag.StringVar(&cfg.mongo, "mongo", "private", "private: a FerretDB of the campaign's own, which it restarts; stack: the stack's FerretDB (a restart is then a cut of the proxy)")
	flag.StringVar(&cfg.bin, "bin", "", "export-service binary (default: go build ./cmd/export-service into the campaign's directory)")
	flag.BoolVar(&cfg.race, "race", false, "build the binary with the race detector")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the campaign's queues, objects, database and proxies")
	flag.BoolVar(&cfg.sabotage, "sabotage", false, "after the campaign, corrupt an object, delete a manifest and leave a multipart upload, to show that the checker catches them")
	flag.BoolVar(&cfg.verbose, "v", false, "print each fault as it is injected")
	flag.BoolVar(&cfg.noFaults, "no-faults", false, "inject no faults (a baseline)")
	flag.Float64Var(&cfg.interrupt, "interrupt", 0.75, "probability that the worker of a checkpointed export gets SIGKILL after 1 or 2 stored parts, or SIGTERM after 1 (faults.go: Interrupter)")
	flag.Float64Var(&cfg.cancel, "cancel", 0.15, "fraction of the exports the campaign cancels with cancel messages: half right after their job message, half later (running, or uploading parts); cancel.go")
	flag.BoolVar(&cfg.reference, "reference", true, "after the checks, run each multipart export again without faults and check that the campaign's object is byte for byte that run's (reference.go)")
	flag.BoolVar(&cfg.serialize, "serialize-writes", true, "let the workers' write commands reach FerretDB one at a time, as MongoDB's per-document atomicity would (see mongoserial.go); false shows FerretDB's lost updates")
	flag.Parse()
	if seedStr == "" {
		cfg.seed = rand.Uint64() % 1_000_000_000
	} else {
		s, err := strconv.ParseUint(seedStr, 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "chaos: -seed %q is not a number\n", seedStr)
			os.Exit(2)
		}
		cfg.seed = s
	}
	if cfg.sendOver == 0 {
		cfg.sendOver = max(60*time.Second, time.Duration(cfg.n)*2*time.Second)
	}
	if cfg.duration == 0 {
		cfg.duration = cfg.sendOver + 60*time.Second + time.Duration(cfg.n)*8*time.Second
	}
	if cfg.mongo != "private" && cfg.mongo != "stack" {
		fmt.Fprintln(os.Stderr, "chaos: -mongo must be private or stack")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos: error: %v\n", err)
		os.Exit(2)
	}
	os.Exit(code)
}

func logf(format string, args ...any) {
	fmt.Printf("chaos: "+format+"\n", args...)
}

// cleanup runs its functions in reverse order.
type cleanup []func()

func (c *cleanup) add(f func()) { *c = append(*c, f) }
func (c cleanup) run() {
	for i := len(c) - 1; i >= 0; i-- {
		c[i]()
	}
}

func run(ctx context.Context, cfg config) (int, error) {
	t0 := time.Now()
	repo, err := stackenv.Root()
	if err != nil {
		return 0, err
	}
	env, err := stackenv.Read(filepath.Join(repo, ".stack", "env"))
	if err != nil {
		return 0, err
	}
	if env["TOXIPROXY_URL"] == "" {
		return 0, errors.New("TOXIPROXY_URL is not in .stack/env: restart the stack (scripts/stack.sh stop && scripts/stack.sh start)")
	}
	run := fmt.Sprintf("chaos-%d-%s", cfg.seed, stacktest.RandomID()[:4])
	dir := filepath.Join(repo, ".stack", "chaos", run)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	logf("seed %d (replay: go tool task chaos N=%d SEED=%d)", cfg.seed, cfg.n, cfg.seed)
	logf("run %s: %d exports, %d workers x %d, logs in %s", run, cfg.n, cfg.workers, cfg.concurrency, dir)
	var clean cleanup
	defer func() {
		if cfg.keep {
			logf("-keep: left the queues, objects, database and proxies of %s", run)
			return
		}
		clean.run()
	}()

	// The binary.
	bin := cfg.bin
	if bin == "" {
		bin = filepath.Join(dir, "export-service")
		args := []string{"build", "-o", bin}
		if cfg.race {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "./cmd/export-service")...)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("go build ./cmd/export-service: %v\n%s", err, out)
		}
	} else if !filepath.IsAbs(bin) {
		bin = filepath.Join(repo, bin)
	}

	// MongoDB: the campaign's own FerretDB, or the stack's.
	var mongoSrv *MongoServer
	mongoURI := env["MONGO_URI"]
	if cfg.mongo == "private" {
		addr, err := freePort()
		if err != nil {
			return 0, err
		}
		mongoSrv = &MongoServer{bin: filepath.Join(repo, ".cache", "bin", "ferretdb-local"), dir: filepath.Join(dir, "ferretdb"), addr: addr, logPath: filepath.Join(dir, "ferretdb.log")}
		if err := os.MkdirAll(mongoSrv.dir, 0o755); err != nil {
			return 0, err
		}
		if err := mongoSrv.Start(); err != nil {
			return 0, err
		}
		clean.add(func() { mongoSrv.Stop(syscall.SIGTERM); _ = os.RemoveAll(mongoSrv.dir) })
		mongoURI = mongoSrv.URI()
	}
	upEnv := map[string]string{}
	for k, v := range env {
		upEnv[k] = v
	}
	upEnv["MONGO_URI"] = mongoURI
	if cfg.serialize {
		// The workers' MongoDB traffic: proxy -> write serializer -> FerretDB.
		up, err := stacktest.UpstreamAddr(map[string]string{"MONGO_URI": mongoURI}, stacktest.Mongo)
		if err != nil {
			return 0, err
		}
		ser, err := NewWriteSerializer(up)
		if err != nil {
			return 0, err
		}
		clean.add(ser.Close)
		upEnv["MONGO_URI"] = "mongodb://" + ser.Addr() + "/"
	}

	mc, err := mongo.Connect(options.Client().ApplyURI(mongoURI).SetServerSelectionTimeout(20 * time.Second))
	if err != nil {
		return 0, err
	}
	defer mc.Disconnect(context.Background())
	dbName := strings.ReplaceAll(run, "-", "_")
	db := mc.Database(dbName)
	clean.add(func() { _ = db.Drop(context.Background()) })
	ts := time.Now()
	counts, err := seed(ctx, db, cfg.seed, cfg.xlRows, cfg.bigRows)
	if err != nil {
		return 0, err
	}
	logf("seeded database %s in %.1fs: %v", dbName, time.Since(ts).Seconds(), counts)

	// AWS clients of the checker and driver: straight to the servers, never through proxies.
	awsCfg := aws.Config{Region: env["AWS_REGION"], Credentials: credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")}
	sqsc := sqs.NewFromConfig(awsCfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(env["AWS_ENDPOINT_URL_SQS"]) })
	admin := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(env["AWS_ENDPOINT_URL_S3"])
		o.UsePathStyle = true
		o.Credentials = credentials.NewStaticCredentialsProvider(env["STACK_ADMIN_ACCESS_KEY_ID"], env["STACK_ADMIN_SECRET_ACCESS_KEY"], "")
	})

	// Queues: jobs, its DLQ (redrive after 5 receives, as in production), results.
	const visibility = 20 * time.Second
	mkQueue := func(name string, attrs map[string]string) (string, error) {
		out, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
		if err != nil {
			return "", fmt.Errorf("create queue %s: %w", name, err)
		}
		url := aws.ToString(out.QueueUrl)
		clean.add(func() {
			_, _ = sqsc.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
		})
		return url, nil
	}
	dlqURL, err := mkQueue(run+"-dlq", nil)
	if err != nil {
		return 0, err
	}
	qa, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(dlqURL), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		return 0, err
	}
	redrive, _ := json.Marshal(map[string]any{"deadLetterTargetArn": qa.Attributes["QueueArn"], "maxReceiveCount": "5"})
	jobsURL, err := mkQueue(run, map[string]string{"VisibilityTimeout": strconv.Itoa(int(visibility / time.Second)), "RedrivePolicy": string(redrive)})
	if err != nil {
		return 0, err
	}
	resultsURL, err := mkQueue(run+"-results", nil)
	if err != nil {
		return 0, err
	}

	// Destinations: internal, and two partner buckets written with AssumeRole credentials.
	prefix := run + "/"
	buckets := map[string]string{"internal": env["EXPORT_BUCKET"], "sfmc": env["SFMC_BUCKET"], "tmol": env["TMOL_BUCKET"]}
	dests := map[string]map[string]any{
		"sfmc": {"bucket": env["SFMC_BUCKET"], "prefix": prefix, "role_arn": env["SFMC_ROLE_ARN"], "external_id": "vf-export-chaos-sfmc", "session_name": "chaos-sfmc"},
		"tmol": {"bucket": env["TMOL_BUCKET"], "prefix": prefix, "role_arn": env["TMOL_ROLE_ARN"], "external_id": "vf-export-chaos-tmol", "session_name": "chaos-tmol",
			"key_template": "dt={date}/{kind}/{export_id}.{format}.gz", "checksum": "CRC64NVME"},
	}
	destJSON, _ := json.Marshal(dests)
	schemaJSON, err := os.ReadFile(filepath.Join(repo, "docs", "result-notice.schema.json"))
	if err != nil {
		return 0, err
	}
	noticeSchema, err := jsontest.Decode(schemaJSON)
	if err != nil {
		return 0, fmt.Errorf("docs/result-notice.schema.json: %w", err)
	}
	checker := &Checker{S3: admin, SQS: sqsc, DB: db, Buckets: buckets, Prefix: prefix, DLQURL: dlqURL, Results: resultsURL, Logs: &Logs{}, NoticeSchema: noticeSchema}
	clean.add(func() { cleanBuckets(admin, checker) })

	// Proxies in front of every server the workers talk to.
	toxi := toxiproxy.NewClient(env["TOXIPROXY_URL"])
	proxies := map[stacktest.Upstream]*stacktest.ToxiProxy{}
	for _, u := range stacktest.Upstreams {
		p, err := stacktest.NewToxiProxy(toxi, upEnv, run+"-"+string(u), u)
		if err != nil {
			return 0, err
		}
		proxies[u] = p
		clean.add(func() { _ = p.Delete() })
	}

	// Indexes, as an operator creates them (straight to MongoDB).
	workerEnv := map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": os.Getenv("HOME"),
		"AWS_REGION": env["AWS_REGION"], "AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
		"AWS_EC2_METADATA_DISABLED": "true", "S3_FORCE_PATH_STYLE": "true",
		"MONGO_URI": mongoURI, "MONGO_DATABASE": dbName,
		"EXPORT_QUEUE_URL": jobsURL, "EXPORT_DLQ_URL": dlqURL, "EXPORT_RESULTS_QUEUE_URL": resultsURL,
		"EXPORT_BUCKET": env["EXPORT_BUCKET"], "EXPORT_KEY_PREFIX": prefix, "EXPORT_DESTINATIONS": string(destJSON),
	}
	idx := exec.CommandContext(ctx, bin, "indexes")
	idx.Env = envList(workerEnv)
	if out, err := idx.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("export-service indexes: %v\n%s", err, out)
	}

	// The fleet: everything through the proxies, short timings so that faults resolve within
	// the campaign (see docs/CHAOS.md).
	for k, v := range stacktest.ProxyEnv(nil, proxies[stacktest.Mongo], proxies[stacktest.S3], proxies[stacktest.STS], proxies[stacktest.SQS]) {
		workerEnv[k] = v
	}
	// A drain lets jobs run DRAIN_TIMEOUT, then asks them to stop at their next stored part
	// and cancels what has not within DRAIN_STOP_GRACE: a worker exits within their sum.
	const drain, stopGrace = 5 * time.Second, 10 * time.Second
	for k, v := range map[string]string{
		"WORKER_CONCURRENCY": strconv.Itoa(cfg.concurrency), "VISIBILITY_TIMEOUT": visibility.String(),
		"DRAIN_TIMEOUT": drain.String(), "DRAIN_STOP_GRACE": stopGrace.String(), "RECEIVE_WAIT": "2s", "STALL_AFTER": "1m",
		"RETRY_BASE": "2s", "RETRY_MAX": "20s", "PROGRESS_EVERY": "5s", "POLL_QUEUE_DEPTH_EVERY": "0",
		"GZIP_LEVEL": "1", "S3_PART_SIZE_MB": "5", "MAX_MESSAGE_LEASE": "45s", "HANDOVER_DELAY": "2s",
	} {
		workerEnv[k] = v
	}
	var fleet []*Worker
	for i := range cfg.workers {
		w := &Worker{Name: fmt.Sprintf("w%d", i+1), bin: bin, env: envList(workerEnv), dir: dir, logs: checker.Logs}
		if err := w.Start(); err != nil {
			return 0, err
		}
		fleet = append(fleet, w)
		clean.add(func() { w.Stop(drain + stopGrace + 20*time.Second) })
	}

	// The jobs, sent over the first part of the campaign.
	jobs := makeJobs(rand.New(rand.NewPCG(cfg.seed, 0x10b5)), cfg.n, run, cfg.sendOver)
	planCancels(rand.New(rand.NewPCG(cfg.seed, 0xca9ce1)), jobs, cfg.cancel)
	checker.Jobs = jobs
	writeJobs := func() {
		jf, _ := os.Create(filepath.Join(dir, "jobs.txt"))
		for _, j := range jobs {
			fmt.Fprintln(jf, j.Describe())
		}
		jf.Close()
	}
	writeJobs()
	start := time.Now()
	sent := make(chan error, 1)
	canceller := &Canceller{SQS: sqsc, URL: jobsURL, DB: db, Start: start}
	go func() {
		cctx, ccancel := context.WithCancel(ctx)
		defer ccancel()
		cancels := make(chan error, 1)
		go func() { cancels <- canceller.Run(cctx, jobs) }()
		err := sendJobs(ctx, sqsc, jobsURL, jobs, start, canceller.JobSent)
		if err != nil {
			ccancel() // the cancels of jobs not sent would wait for ever
		}
		if cerr := <-cancels; err == nil {
			err = cerr
		}
		sent <- err
	}()

	driver := &Driver{r: rand.New(rand.NewPCG(cfg.seed, 0xfa017)), start: start, proxies: proxies, workers: fleet, mongo: mongoSrv,
		drain: drain + stopGrace, gap: cfg.gap, calmAfter: cfg.sendOver, verbose: cfg.verbose, busy: map[string]bool{}}
	faultLog, err := os.Create(filepath.Join(dir, "faults.txt"))
	if err != nil {
		return 0, err
	}
	defer faultLog.Close()
	driver.log = faultLog
	fctx, fcancel := context.WithTimeout(ctx, cfg.duration)
	faultsDone := make(chan struct{})
	if cfg.noFaults {
		close(faultsDone)
	} else {
		go func() {
			in := &Interrupter{D: driver, DB: db, R: rand.New(rand.NewPCG(cfg.seed, 0x1e7e)), Prob: cfg.interrupt}
			inDone := make(chan struct{})
			go func() { in.Run(fctx); close(inDone) }()
			driver.Run(fctx)
			<-inDone
			driver.Wait()
			close(faultsDone)
		}()
	}

	// Faults until every export has ended (or the fault window closes), then heal and settle.
	allSent := false
	settledDuringFaults := false
	lastProgress := time.Now()
	endedStreak := 0
	for !settledDuringFaults {
		select {
		case err := <-sent:
			if err != nil {
				fcancel()
				return 0, fmt.Errorf("send jobs: %w", err)
			}
			allSent = true
		case <-fctx.Done():
		case <-time.After(3 * time.Second):
		}
		if fctx.Err() != nil {
			break
		}
		// Twice in a row, some seconds apart: SQS's counts are approximate, and lag a send.
		if allSent && ended(ctx, sqsc, db, jobsURL, len(jobs)) {
			endedStreak++
		} else {
			endedStreak = 0
		}
		settledDuringFaults = endedStreak >= 2
		if time.Since(lastProgress) >= 30*time.Second {
			lastProgress = time.Now()
			logf("t+%.0fs: %s; %d faults so far", time.Since(start).Seconds(), ledgerCounts(ctx, db), len(driver.Faults()))
		}
	}
	fcancel()
	<-faultsDone
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if !allSent {
		if err := <-sent; err != nil {
			return 0, fmt.Errorf("send jobs: %w", err)
		}
	}
	faultTime := time.Since(start)
	if err := driver.Heal(); err != nil {
		logf("warning: %v", err)
	}
	logf("faults stopped after %.0fs (%s); healed; waiting up to %s for the exports in flight", faultTime.Seconds(),
		map[bool]string{true: "every export had ended", false: "fault window over"}[settledDuringFaults], cfg.settle)
	settled := false
	deadline := time.Now().Add(cfg.settle)
	endedStreak = 0
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if ended(ctx, sqsc, db, jobsURL, len(jobs)) {
			endedStreak++
		} else {
			endedStreak = 0
		}
		if endedStreak >= 2 {
			settled = true
			break
		}
		time.Sleep(3 * time.Second)
		if time.Since(lastProgress) >= 30*time.Second {
			lastProgress = time.Now()
			logf("t+%.0fs: %s", time.Since(start).Seconds(), ledgerCounts(ctx, db))
		}
	}
	campaign := time.Since(start)
	writeJobs() // with what each cancel found
	if !settled {
		logf("not every export ended within -settle %s", cfg.settle)
	}

	// The fleet stops as a deploy stops it: SIGTERM, and it must exit within the drain.
	for _, w := range fleet {
		if !w.Stop(drain + stopGrace + 20*time.Second) {
			w.note(fmt.Sprintf("%s did not exit within DRAIN_TIMEOUT+DRAIN_STOP_GRACE+20s of the final SIGTERM; killed", w.Name))
		}
	}

	if cfg.sabotage {
		if err := sabotage(ctx, admin, checker); err != nil {
			return 0, err
		}
	}

	// The invariants.
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer ccancel()
	if err := checker.Check(cctx); err != nil {
		return 0, fmt.Errorf("check: %w", err)
	}
	if cfg.reference {
		// Each multipart export once more, without faults, on a worker of its own that writes
		// under a prefix of its own (after Check, so that nothing of it is taken for the
		// campaign's).
		refPrefix := run + "-ref/"
		refEnv := map[string]string{}
		for k, v := range workerEnv {
			refEnv[k] = v
		}
		refEnv["EXPORT_KEY_PREFIX"] = refPrefix
		refLogs := &Logs{}
		ref := &Worker{Name: "ref", bin: bin, env: envList(refEnv), dir: dir, logs: refLogs}
		clean.add(func() {
			cleanBuckets(admin, &Checker{S3: admin, Buckets: map[string]string{"internal": buckets["internal"]}, Prefix: refPrefix})
		})
		rctx, rcancel := context.WithTimeout(ctx, 6*time.Minute)
		err := checker.Reference(rctx, ref, jobsURL, 4*time.Minute)
		rcancel()
		if err != nil {
			return 0, fmt.Errorf("reference runs: %w", err)
		}
		for _, s := range append(ref.Unexpected, refLogs.Odd()...) {
			checker.violate("process", "", "reference worker: %.300s", s)
		}
	}
	for _, w := range fleet {
		for _, s := range w.Unexpected {
			checker.violate("process", "", "%s", s)
		}
	}
	for _, s := range checker.Logs.Odd() {
		checker.violate("process", "", "panic or fatal output: %.300s", s)
	}
	var notes []string
	for _, w := range fleet {
		notes = append(notes, w.StartFailures...)
	}
	checker.Counts["worker start-up failures"] = len(notes)
	checker.Counts["plain output lines"] = len(checker.Logs.Notes())
	notes = append(notes, checker.Logs.Notes()...)
	for _, n := range notes {
		logf("note: %.300s", n)
	}

	report(cfg, run, dir, jobs, driver.Faults(), checker, faultTime, campaign, time.Since(t0))
	if len(checker.Violations) > 0 {
		if !cfg.keep {
			logf("the campaign's objects, queues and database are deleted; rerun with -keep to inspect them")
		}
		return 1, nil
	}
	return 0, nil
}

func envList(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// sendJobs sends each job at its time (straight to SQS), and calls sent after each.
func sendJobs(ctx context.Context, c *sqs.Client, url string, jobs []*Job, start time.Time, sent func(exportID string)) error {
	order := append([]*Job(nil), jobs...)
	sort.SliceStable(order, func(i, k int) bool { return order[i].SendAt < order[k].SendAt })
	for _, j := range order {
		sleep(ctx, time.Until(start.Add(j.SendAt)))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var err error
		for attempt := 0; attempt < 5; attempt++ {
			if _, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(j.Body())}); err == nil {
				break
			}
			time.Sleep(time.Second)
		}
		if err != nil {
			return fmt.Errorf("send %s: %w", j.ExportID, err)
		}
		sent(j.ExportID)
	}
	return nil
}

// ended says whether every export has ended: the jobs queue holds no message (visible, in
// flight or delayed), the ledger has no running export and the outbox no pending notice. It
// also says ended when the queue is empty and every export still running in the ledger has had
// its lease expired for a minute: no message carries it any more, nothing will ever end it
// (the checker reports it).
func ended(ctx context.Context, c *sqs.Client, db *mongo.Database, url string, n int) bool {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := c.GetQueueAttributes(qctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
	if err != nil {
		return false
	}
	for _, k := range []string{"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"} {
		if v := out.Attributes[k]; v != "0" && v != "" {
			return false
		}
	}
	live, err := db.Collection("exports").CountDocuments(qctx, bson.D{{Key: "status", Value: "running"},
		{Key: "lease_expires", Value: bson.D{{Key: "$gt", Value: time.Now().Add(-time.Minute)}}}})
	if err != nil || live > 0 {
		return false
	}
	// Notices the outbox has yet to send (it retries within RETRY_MAX).
	pending, err := db.Collection("export_notices").CountDocuments(qctx, bson.D{{Key: "pending", Value: true}})
	return err == nil && pending == 0
}

// ledgerCounts summarizes the ledger's statuses.
func ledgerCounts(ctx context.Context, db *mongo.Database) string {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var parts []string
	for _, st := range []string{"succeeded", "running", "failed", "released", "cancelled"} {
		n, err := db.Collection("exports").CountDocuments(qctx, bson.D{{Key: "status", Value: st}})
		if err != nil {
			return "ledger: " + err.Error()
		}
		parts = append(parts, fmt.Sprintf("%s %d", st, n))
	}
	return "ledger: " + strings.Join(parts, ", ")
}

// sabotage breaks what the checker must catch: a truncated object, a missing manifest, an
// unfinished upload.
func sabotage(ctx context.Context, c *s3.Client, ch *Checker) error {
	objs, err := ch.listObjects(ctx)
	if err != nil {
		return err
	}
	var data, mans []Object
	for _, o := range objs {
		if strings.HasSuffix(o.Key, ".manifest.json") {
			mans = append(mans, o)
		} else if o.Size > 64 {
			data = append(data, o)
		}
	}
	if len(data) < 1 || len(mans) < 2 {
		return errors.New("-sabotage: too few objects to sabotage")
	}
	o := data[0]
	body, err := ch.get(ctx, o)
	if err != nil {
		return err
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(o.Key), Body: strings.NewReader(string(body[:len(body)/2]))}); err != nil {
		return err
	}
	logf("sabotage: truncated %s/%s to %d of %d bytes", o.Bucket, o.Key, len(body)/2, len(body))
	for _, m := range mans {
		if !strings.HasPrefix(m.Key, o.Key) {
			if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(m.Bucket), Key: aws.String(m.Key)}); err != nil {
				return err
			}
			logf("sabotage: deleted manifest %s/%s", m.Bucket, m.Key)
			break
		}
	}
	key := ch.Prefix + "sabotage/left-open.csv.gz"
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(ch.Buckets["internal"]), Key: aws.String(key)})
	if err != nil {
		return err
	}
	logf("sabotage: left multipart upload %s open on %s", aws.ToString(up.UploadId), key)
	return nil
}

// cleanBuckets deletes the campaign's objects and aborts its uploads.
func cleanBuckets(c *s3.Client, ch *Checker) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	objs, _ := ch.listObjects(ctx)
	for _, o := range objs {
		_, _ = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(o.Key)})
	}
	seen := map[string]bool{}
	for _, b := range ch.Buckets {
		if seen[b] {
			continue
		}
		seen[b] = true
		out, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(b), Prefix: aws.String(ch.Prefix)})
		if err != nil {
			continue
		}
		for _, u := range out.Uploads {
			_, _ = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(b), Key: u.Key, UploadId: u.UploadId})
		}
	}
}

func report(cfg config, run, dir string, jobs []*Job, faults []Fault, c *Checker, faultTime, campaign, total time.Duration) {
	fmt.Println()
	logf("=== campaign %s, seed %d", run, cfg.seed)
	// Jobs.
	formats, dests, kinds := map[string]int{}, map[string]int{}, map[string]int{}
	for _, j := range jobs {
		formats[j.Format]++
		dests[j.Destination]++
		kinds[j.Kind]++
	}
	var rows []int64
	var total64 int64
	for _, n := range c.Rows {
		rows = append(rows, n)
		total64 += n
	}
	sort.Slice(rows, func(i, k int) bool { return rows[i] < rows[k] })
	logf("exports: %d (kinds %v; formats %v; destinations %v)", len(jobs), kinds, formats, dests)
	if len(rows) > 0 {
		logf("rows of the verified objects: min %d, median %d, max %d, total %d", rows[0], rows[len(rows)/2], rows[len(rows)-1], total64)
	}
	// Faults.
	byKind, byTarget := map[string]int{}, map[string]int{}
	failed, targeted := 0, 0
	for _, f := range faults {
		if f.Err != "" {
			failed++
			continue
		}
		byKind[f.Kind]++
		byTarget[f.Target]++
		if strings.Contains(f.Detail, "targeted:") {
			targeted++
		}
	}
	logf("faults injected: %d over %.0fs (%s); by kind %v; by target %v; %d could not be injected or undone; %d signals targeted at checkpointed exports",
		len(faults)-failed, faultTime.Seconds(), filepath.Join(dir, "faults.txt"), sortedMap(byKind), sortedMap(byTarget), failed, targeted)
	// Checkpoints and resumes: the ledger's counters, by collection and in all.
	all := &ResumeStats{}
	var colls []string
	for coll, rs := range c.Resume {
		all.add(rs)
		colls = append(colls, coll)
	}
	sort.Strings(colls)
	logf("resumes: %s", all)
	for _, coll := range colls {
		logf("  %-15s %s", coll+":", c.Resume[coll])
	}
	// Notices and cancels.
	if ns := c.Notices; ns != nil {
		logf("notices: %d messages on the results queue, %d of them copies of a notice id (identical); distinct notices by outcome: %s",
			ns.Messages, ns.Copies, sortedMap(ns.Outcomes))
	}
	logf("cancels: %s; carried out %d (%s), finished first %d (succeeded %d, failed for good %d)", cancelSummary(jobs),
		c.Counts["cancels: carried out"], sortedMap(prefixed(c.Counts, "cancels carried out: ")),
		c.Counts["cancels: finished first"]+c.Counts["cancels: failed for good first"], c.Counts["cancels: finished first"], c.Counts["cancels: failed for good first"])
	// Invariants.
	logf("invariant counts: %v", sortedMap(c.Counts))
	if len(c.Violations) == 0 {
		logf("violations: none")
	} else {
		logf("violations: %d (%s)", len(c.Violations), strings.Join(c.Summary(), " "))
		for _, v := range c.Violations {
			fmt.Println("  " + v.String())
		}
		// The faults close to each violating export's life, to help reading the logs.
		logf("worker logs: %s/w*.log; faults: %s/faults.txt; jobs: %s/jobs.txt", dir, dir, dir)
	}
	logf("campaign %.0fs (faults %.0fs), total with setup and checks %.0fs", campaign.Seconds(), faultTime.Seconds(), total.Seconds())
}

// prefixed returns the entries of m whose key has prefix, without it.
func prefixed(m map[string]int, prefix string) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		if s, ok := strings.CutPrefix(k, prefix); ok {
			out[s] = v
		}
	}
	return out
}

func sortedMap(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

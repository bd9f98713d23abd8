package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/jobs/encode"
	"github.com/verifiedfan/export-service/ledger"
)

const enqueueHelp = `Usage: export-service enqueue --kind KIND --param key=value ... [flags]

Builds an export job message from the flags, validates it exactly as the worker will (message
fields, the kind's parameters), sends it to the jobs queue and prints its export id and SQS
message id. Nothing is sent when the message is invalid.

Parameters: --param key=value gives a string; --param 'key:=JSON' gives any JSON value
(--param 'fields:=["_id","status"]'); --params '{"campaign_id":"c1"}' gives several at once
(--param entries win over --params).

  export-service enqueue --kind registrations --param campaign_id=cmp-coldplay --param status=verified
  export-service enqueue --kind access_codes --param campaign_id=cmp-1 --format ndjson --wait

--wait follows the export in the ledger until it ends: a progress bar on a terminal, plain
lines otherwise. The exit code is 0 when it succeeded, 1 when it failed (a permanent failure,
a retryable one that used up the queue's receives, or the message landed in the dead-letter
queue) and 3 when --timeout passed first.

Environment: EXPORT_QUEUE_URL (or --queue-url), AWS credentials allowed to send to the jobs
queue (the operator policy; the instance role cannot). With --wait also MONGO_URI,
MONGO_DATABASE (default titan) and EXPORT_DLQ_URL (or --dlq-url; by default the DLQ named by
the jobs queue's redrive policy). With EXPORT_DESTINATIONS_FILE or EXPORT_DESTINATIONS set,
--destination is checked against the destinations it configures.

Flags:
`

// paramFlags collects repeated --param flags.
type paramFlags []string

func (p *paramFlags) String() string     { return strings.Join(*p, " ") }
func (p *paramFlags) Set(v string) error { *p = append(*p, v); return nil }

type enqueueOptions struct {
	exportID, kind, format, destination, requestedBy string
	params                                           paramFlags
	paramsJSON                                       string
	csvDelimiter, ndjsonMode                         string
	csvBOM                                           bool
	queueURL, dlqURL                                 string
	dryRun, wait, plain                              bool
	timeout, poll                                    time.Duration
}

func runEnqueue(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var o enqueueOptions
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&o.exportID, "export-id", "", "the export's id (default: KIND-YYYYMMDDTHHMMSSZ-RANDOM); the same id always writes the same object")
	fs.StringVar(&o.kind, "kind", "", "what to export: "+kindNames()+" (required)")
	fs.StringVar(&o.format, "format", "csv", "csv or ndjson")
	fs.StringVar(&o.destination, "destination", jobs.DefaultDestination, "a configured destination")
	fs.Var(&o.params, "param", "a parameter of the kind, key=value (a string) or key:=JSON (repeatable)")
	fs.StringVar(&o.paramsJSON, "params", "", "the kind's parameters as one JSON object")
	fs.StringVar(&o.csvDelimiter, "csv-delimiter", "", `CSV delimiter: "," ";" "\t" (tab) "|"`)
	fs.BoolVar(&o.csvBOM, "csv-bom", false, "write a UTF-8 byte order mark first (CSV)")
	fs.StringVar(&o.ndjsonMode, "ndjson-mode", "", "NDJSON mode: plain or relaxed_extjson")
	fs.StringVar(&o.requestedBy, "requested-by", "export-service-cli", "who asks, for logs and the manifest")
	fs.StringVar(&o.queueURL, "queue-url", getenv("EXPORT_QUEUE_URL"), "the jobs queue (env EXPORT_QUEUE_URL)")
	fs.StringVar(&o.dlqURL, "dlq-url", getenv("EXPORT_DLQ_URL"), "the dead-letter queue --wait watches (env EXPORT_DLQ_URL; default from the jobs queue's redrive policy)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "validate and print the message; send nothing")
	fs.BoolVar(&o.wait, "wait", false, "follow the export until it succeeds or fails")
	fs.DurationVar(&o.timeout, "timeout", time.Hour, "with --wait: give up (exit 3) after this long; the export goes on")
	fs.DurationVar(&o.poll, "poll", time.Second, "with --wait: how often to read the ledger")
	fs.BoolVar(&o.plain, "plain", false, "with --wait: plain lines even on a terminal")
	fs.Usage = func() { fmt.Fprint(fs.Output(), enqueueHelp); fs.PrintDefaults() }
	if err := parseFlags(fs, args); err != nil {
		return err
	}

	msg, plan, err := buildMessage(o, getenv)
	if err != nil {
		return err
	}
	body, err := msg.Encode()
	if err != nil {
		return fmt.Errorf("encode the message: %w", err)
	}
	if o.dryRun {
		fmt.Fprintf(stdout, "%s\n", body)
		fmt.Fprintf(stderr, "valid job message (not sent: --dry-run)\n")
		return nil
	}
	if o.queueURL == "" {
		return errors.New("EXPORT_QUEUE_URL is not set: pass --queue-url or set it (output jobs_queue_url of the environment)")
	}

	// With --wait, everything it needs is checked before anything is sent.
	var f *follower
	if o.wait {
		if o.poll <= 0 || o.timeout <= 0 {
			return errors.New("--poll and --timeout must be positive")
		}
		db, closeDB, err := openDatabase(ctx, getenv)
		if err != nil {
			return fmt.Errorf("--wait reads the export ledger: %w", err)
		}
		defer closeDB()
		f = &follower{ledger: ledger.New(db), exportID: msg.ExportID, stdout: stdout, stderr: stderr,
			bar: !o.plain && isTerminal(stdout) && getenv("TERM") != "dumb"}
		if f.before, err = f.ledger.Get(ctx, msg.ExportID); err == nil {
			f.existed = true
		} else if !errors.Is(err, ledger.ErrNotFound) {
			return fmt.Errorf("--wait reads the export ledger: %w", err)
		}
		f.countRows(ctx, db, plan)
	}

	client, err := newSQSClient(ctx)
	if err != nil {
		return err
	}
	out, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(o.queueURL), MessageBody: aws.String(string(body))})
	if err != nil {
		return fmt.Errorf("send the message to %s: %w%s", o.queueURL, err, awsHint(err, "send to the jobs queue"))
	}
	msgID := aws.ToString(out.MessageId)
	fmt.Fprintf(stdout, "export_id: %s\nmessage_id: %s\n", msg.ExportID, msgID)
	if !o.wait {
		return nil
	}

	f.messageID, f.sentAt = msgID, time.Now()
	f.dlq = resolveDLQ(ctx, client, o.queueURL, o.dlqURL)
	if f.dlq.err != nil {
		fmt.Fprintf(stderr, "note: not watching the dead-letter queue (%v); a message that dies before a worker records it is noticed only at --timeout\n", f.dlq.err)
	}
	return f.follow(ctx, client, o.poll, o.timeout)
}

// buildMessage assembles the job message from the flags and validates it as the worker will.
func buildMessage(o enqueueOptions, getenv func(string) string) (jobs.Message, *jobs.Plan, error) {
	var m jobs.Message
	if o.kind == "" {
		return m, nil, fmt.Errorf("--kind is required: one of %s", kindNames())
	}
	params, err := buildParams(o.paramsJSON, o.params)
	if err != nil {
		return m, nil, err
	}
	m = jobs.Message{Version: jobs.CurrentVersion, ExportID: o.exportID, Kind: o.kind, Format: encode.Format(o.format),
		Destination: o.destination, Params: params, RequestedBy: o.requestedBy}
	if m.ExportID == "" {
		m.ExportID = newExportID(o.kind, time.Now())
	}
	if o.csvDelimiter != "" || o.csvBOM {
		m.CSV = &jobs.CSVOptions{Delimiter: o.csvDelimiter, BOM: o.csvBOM}
	}
	if o.ndjsonMode != "" {
		m.NDJSON = &jobs.NDJSONOptions{Mode: encode.NDJSONMode(o.ndjsonMode)}
	}
	body, err := m.Encode()
	if err != nil {
		return m, nil, fmt.Errorf("encode the message: %w", err)
	}
	decoded, err := jobs.Decode(body)
	if err != nil {
		return m, nil, fmt.Errorf("the job message is not valid, nothing was sent:\n%w", err)
	}
	plan, err := jobs.DefaultRegistry().Plan(decoded)
	if err != nil {
		return m, nil, fmt.Errorf("the job message is not valid, nothing was sent:\n%w", err)
	}
	if err := checkDestination(decoded.Destination, getenv); err != nil {
		return m, nil, err
	}
	return decoded, plan, nil
}

// buildParams merges --params and the --param flags into one JSON object.
func buildParams(paramsJSON string, params []string) (json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	if strings.TrimSpace(paramsJSON) != "" {
		if err := json.Unmarshal([]byte(paramsJSON), &obj); err != nil || obj == nil {
			return nil, fmt.Errorf(`--params %q: want a JSON object, like '{"campaign_id":"cmp-1"}'`, paramsJSON)
		}
		// The map keeps the last of a repeated key; the worker would refuse the message, so
		// say which one is repeated rather than pick one.
		if err := jobs.CheckUniqueKeys([]byte(paramsJSON), "params"); err != nil {
			return nil, fmt.Errorf("--params: %w", err)
		}
	}
	given := map[string]bool{}
	for _, p := range params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" || k == ":" {
			return nil, fmt.Errorf(`--param %q: want key=value, or key:=JSON for a value that is not a string`, p)
		}
		key := strings.TrimSuffix(k, ":")
		if given[key] {
			return nil, fmt.Errorf("--param %s is given twice: give it once", key)
		}
		given[key] = true
		if raw, isJSON := strings.CutSuffix(k, ":"); isJSON {
			if !json.Valid([]byte(v)) {
				return nil, fmt.Errorf(`--param %q: %q is not JSON (for a string, write %s=%s)`, p, v, raw, v)
			}
			obj[raw] = json.RawMessage(v)
			continue
		}
		b, _ := json.Marshal(v)
		obj[k] = b
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	return b, nil
}

// checkDestination refuses a destination the configured destinations do not name, when the
// destinations are configured here (EXPORT_DESTINATIONS_FILE or EXPORT_DESTINATIONS).
func checkDestination(name string, getenv func(string) string) error {
	c := config{DestinationsFile: strings.TrimSpace(getenv("EXPORT_DESTINATIONS_FILE")), DestinationsJSON: strings.TrimSpace(getenv("EXPORT_DESTINATIONS"))}
	if name == jobs.DefaultDestination || c.DestinationsFile == "" && c.DestinationsJSON == "" {
		return nil
	}
	dests, err := loadDestinations(c)
	if err != nil {
		return fmt.Errorf("checking --destination: %w", err)
	}
	if _, ok := dests[name]; ok {
		return nil
	}
	names := []string{jobs.DefaultDestination}
	for n := range dests {
		if n != jobs.DefaultDestination {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return fmt.Errorf("destination %q is not configured (configured: %s), nothing was sent", name, strings.Join(names, ", "))
}

func kindNames() string {
	var names []string
	for _, k := range jobs.DefaultRegistry().Kinds() {
		names = append(names, k.Name)
	}
	return strings.Join(names, ", ")
}

// newExportID names an export by its kind, the time and a random suffix.
func newExportID(kind string, now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s-%s", strings.ReplaceAll(kind, "_", "-"), now.UTC().Format("20060102T150405Z"), hex.EncodeToString(b))
}

// isTerminal reports whether w is a terminal: a character device that is not /dev/null.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return false
	}
	return true
}

// --- following an export --------------------------------------------------------------------

// follower watches one export in the ledger (and its message in the DLQ) until it ends.
type follower struct {
	ledger    *ledger.Ledger
	exportID  string
	messageID string
	sentAt    time.Time
	// before is the ledger entry as it was before the message was sent (existed: there was one).
	before  ledger.Entry
	existed bool
	dlq     dlqTarget
	total   atomic.Int64 // rows the export's query selects; 0 while unknown
	stdout  io.Writer
	stderr  io.Writer
	bar     bool

	lastLine  string
	lastPrint time.Time
	lastNote  string
	drawn     bool
}

// countRows counts, in the background, the rows the export will write, for the progress bar.
func (f *follower) countRows(ctx context.Context, db *mongo.Database, plan *jobs.Plan) {
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if n, err := db.Collection(plan.Collection).CountDocuments(cctx, plan.Filter); err == nil {
			f.total.Store(n)
		}
	}()
}

// verdict is what one look at the ledger says.
type verdict struct {
	done   bool
	failed bool
	state  string // one word: queued, running, retrying, released, succeeded, failed, cancelled
	detail string
}

// judge reads a ledger entry (found: there is one) for an export whose message was sent when
// the ledger held before (existed: it held one). maxReceives is the jobs queue's
// maxReceiveCount (0: unknown).
func judge(before ledger.Entry, existed bool, e ledger.Entry, found bool, maxReceives int, now time.Time) verdict {
	if !found {
		return verdict{state: "queued", detail: "waiting for a worker"}
	}
	if e.Status == "" && e.CancelRequest != nil {
		return verdict{state: "queued", detail: ledger.Describe(e, now)}
	}
	switch {
	case existed && before.Status == ledger.Succeeded:
		return verdict{done: true, state: "succeeded", detail: fmt.Sprintf("already exported at %s: the worker acknowledges this message as a duplicate", e.FinishedAt.UTC().Format(time.RFC3339))}
	case existed && before.Status == ledger.Cancelled:
		return verdict{done: true, failed: true, state: "cancelled", detail: "cancelled earlier (" + before.Error + "): the worker acknowledges this message without running it; enqueue the export under a new id"}
	case existed && before.Status != ledger.Running && e.Attempts == before.Attempts:
		return verdict{state: "queued", detail: fmt.Sprintf("waiting for a worker (the ledger still shows the earlier attempt: %s)", before.Status)}
	}
	attempts := e.Attempts
	if existed && before.Status != ledger.Running {
		attempts -= before.Attempts
	}
	switch e.Status {
	case ledger.Succeeded:
		return verdict{done: true, state: "succeeded"}
	case ledger.Running:
		// Not Describe here: its lease countdown would make every poll a new line.
		detail := fmt.Sprintf("attempt %d on %s", e.Attempts, e.WorkerID)
		if e.CancelRequest != nil {
			detail += "; cancel requested: it stops at its next lease renewal"
		}
		return verdict{state: "running", detail: detail}
	case ledger.Released:
		return verdict{state: "released", detail: ledger.Describe(e, now)}
	case ledger.Segmented:
		return verdict{state: "running", detail: ledger.Describe(e, now)}
	case ledger.Cancelled:
		return verdict{done: true, failed: true, state: "cancelled", detail: ledger.Describe(e, now)}
	case ledger.Failed:
		if e.Reason != jobs.ReasonRetryable {
			return verdict{done: true, failed: true, state: "failed", detail: fmt.Sprintf("failed permanently (%s), the message went to the dead-letter queue: %s", e.Reason, e.Error)}
		}
		if maxReceives > 0 && attempts >= maxReceives {
			return verdict{done: true, failed: true, state: "failed", detail: fmt.Sprintf("failed %d times, the queue's limit: SQS moves the message to the dead-letter queue. Last error: %s", attempts, e.Error)}
		}
		return verdict{state: "retrying", detail: fmt.Sprintf("attempt %d failed, the message comes back after a backoff: %s", e.Attempts, e.Error)}
	}
	return verdict{state: string(e.Status)}
}

func (f *follower) follow(ctx context.Context, client sqsAPI, poll, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(poll)
	defer t.Stop()
	var lastDLQ time.Time
	for {
		e, err := f.ledger.Status(ctx, f.exportID)
		found := err == nil
		if err != nil && !errors.Is(err, ledger.ErrNotFound) {
			if ctx.Err() != nil {
				return f.interrupted()
			}
			f.note(fmt.Sprintf("reading the ledger failed (will retry): %v", err))
		} else {
			v := judge(f.before, f.existed, e, found, f.dlq.maxReceives, time.Now())
			f.show(v, e, found)
			if v.done {
				f.finish(v, e)
				if v.failed {
					return fmt.Errorf("export %s failed: %s", f.exportID, v.detail)
				}
				return nil
			}
			// The DLQ is looked at less often: a look hides its messages for a moment.
			if f.dlq.url != "" && time.Since(lastDLQ) >= 5*poll {
				lastDLQ = time.Now()
				if m, ok, err := findInDLQ(ctx, client, f.dlq.url, f.messageID); err != nil {
					f.note(fmt.Sprintf("looking in the dead-letter queue failed (will retry): %v%s", err, awsHint(err, "receive from the dead-letter queue")))
				} else if ok {
					v := verdict{done: true, failed: true, state: "failed", detail: fmt.Sprintf("the message is in the dead-letter queue (reason %s): %s", m.Reason, m.Error)}
					f.show(v, e, found)
					f.finish(v, e)
					return fmt.Errorf("export %s failed: %s", f.exportID, v.detail)
				}
			}
		}
		if time.Now().After(deadline) {
			f.endLine()
			return &exitError{code: 3, err: fmt.Errorf("gave up waiting after %s; the export goes on: follow it with `export-service status %s`", timeout, f.exportID)}
		}
		select {
		case <-ctx.Done():
			return f.interrupted()
		case <-t.C:
		}
	}
}

func (f *follower) interrupted() error {
	f.endLine()
	return fmt.Errorf("interrupted; the export goes on: follow it with `export-service status %s`", f.exportID)
}

// show draws the progress bar (terminal) or prints a line when something changed, and at
// least every 10 seconds while the export runs (plain).
func (f *follower) show(v verdict, e ledger.Entry, found bool) {
	elapsed := time.Since(f.sentAt).Round(time.Second)
	if f.bar {
		line := progressBar(v.state, e.Rows, f.total.Load(), e.Bytes, elapsed, 24)
		if v.state != "running" && v.state != "succeeded" {
			line = fmt.Sprintf("%-9s %s  %s", v.state, oneLine(v.detail, 80), elapsed)
		}
		fmt.Fprintf(f.stdout, "\r%s\x1b[K", line)
		f.drawn = true
		return
	}
	line := v.state
	if v.detail != "" {
		line += ": " + v.detail
	}
	if found && (v.state == "running" || v.state == "succeeded") {
		line += ": " + rowsText(e.Rows, f.total.Load()) + ", " + humanBytes(e.Bytes)
	}
	if line == f.lastLine && (v.state != "running" || time.Since(f.lastPrint) < 10*time.Second) {
		return
	}
	f.lastLine, f.lastPrint = line, time.Now()
	fmt.Fprintf(f.stdout, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line)
}

// note reports a passing problem once (until another one comes).
func (f *follower) note(s string) {
	if s == f.lastNote {
		return
	}
	f.lastNote = s
	f.endLine()
	fmt.Fprintln(f.stderr, s)
}

// endLine ends the progress bar's line so that what follows starts on its own.
func (f *follower) endLine() {
	if f.drawn {
		fmt.Fprintln(f.stdout)
		f.drawn = false
	}
}

// finish prints the outcome: the ledger entry when there is one.
func (f *follower) finish(v verdict, e ledger.Entry) {
	f.endLine()
	if f.bar && v.detail != "" {
		fmt.Fprintf(f.stdout, "%s: %s\n", v.state, v.detail)
	}
	if e.ExportID != "" {
		fmt.Fprintln(f.stdout)
		printStatus(f.stdout, e, time.Now())
	}
}

func rowsText(rows, total int64) string {
	if total > 0 {
		return fmt.Sprintf("%d/%d rows (%d%%)", rows, total, min(100, rows*100/total))
	}
	return fmt.Sprintf("%d rows", rows)
}

// progressBar renders one line: state, bar (when the total is known), rows, bytes, time.
func progressBar(state string, rows, total, bytes int64, elapsed time.Duration, width int) string {
	bar := ""
	if total > 0 {
		filled := int(min(rows, total) * int64(width) / total)
		if state == "succeeded" {
			filled = width
		}
		bar = "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "] "
	}
	return fmt.Sprintf("%-9s %s%s  %s  %s", state, bar, rowsText(rows, total), humanBytes(bytes), elapsed)
}

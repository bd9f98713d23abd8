package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

// --- helpers -------------------------------------------------------------------------------

// cliEnv is the environment of an operator running the binary's commands against the test's
// queues and database (no EXPORT_DLQ_URL: the commands find it through the redrive policy).
func (b *bundle) cliEnv() map[string]string {
	return b.st.WorkerEnv(map[string]string{"EXPORT_QUEUE_URL": b.queues.JobsURL, "MONGO_DATABASE": b.db.Name()})
}

// runCLI runs the binary to its end and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, stacktest.Binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run export-service %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

// logLine is one JSON log line of the worker.
type logLine map[string]any

func logLines(t *testing.T, out string) []logLine {
	t.Helper()
	var lines []logLine
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var v logLine
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Errorf("not a JSON log line: %q", l)
			continue
		}
		lines = append(lines, v)
	}
	return lines
}

func (l logLine) str(k string) string { s, _ := l[k].(string); return s }

// series returns the series of a family whose labels include match.
func series(mfs map[string]*dto.MetricFamily, name string, match map[string]string) []*dto.Metric {
	var out []*dto.Metric
	mf := mfs[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		for k, v := range match {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == k && lp.GetValue() == v)
			}
			if !found {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// --- metrics -------------------------------------------------------------------------------

// Each metric moves when its event happens, on a real worker against the real stack: build
// info, jobs in flight, queue depth by state, jobs by outcome, rows and bytes (equal to what the
// ledger recorded), durations, message age, SQS calls, dead letters by reason, HTTP requests by
// code. The scrape parses with the Prometheus text parser and passes the client library's
// linter.
func TestMetricsMoveWithTheirEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, 40)
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{
		"WORKER_CONCURRENCY": "1", "EXPORT_FAULT_ROW_DELAY": "100ms", // ~4s per export
		"VISIBILITY_TIMEOUT": "3s", "POLL_QUEUE_DEPTH_EVERY": "300ms",
	}), "worker")
	sum := func(name string, match map[string]string) float64 { return stacktest.Sum(p.Metrics(t), name, match) }
	waitMetric := func(what, name string, match map[string]string, cond func(float64) bool) {
		t.Helper()
		var last float64
		eventually(t, 30*time.Second, what, func() bool { last = sum(name, match); return cond(last) })
	}
	eq := func(want float64) func(float64) bool { return func(v float64) bool { return v == want } }

	// At start: build info, nothing run yet, the queues polled.
	mfs := p.Metrics(t)
	bi := series(mfs, "export_build_info", nil)
	if len(bi) != 1 || bi[0].GetGauge().GetValue() != 1 {
		t.Fatalf("export_build_info = %v, want one series = 1", bi)
	}
	labels := map[string]string{}
	for _, lp := range bi[0].GetLabel() {
		labels[lp.GetName()] = lp.GetValue()
	}
	if labels["version"] == "" || !strings.HasPrefix(labels["goversion"], "go1.") {
		t.Errorf("export_build_info labels = %v", labels)
	}
	if n := stacktest.Sum(mfs, "export_jobs_total", nil); n != 0 {
		t.Errorf("export_jobs_total = %v before any job", n)
	}
	eventually(t, 10*time.Second, "queue depth of both queues reported", func() bool {
		mfs := p.Metrics(t)
		return len(series(mfs, "export_queue_messages", map[string]string{"queue": "jobs"})) == 3 &&
			len(series(mfs, "export_queue_messages", map[string]string{"queue": "dlq"})) == 3
	})

	// One export running, one waiting for the only slot, one delayed.
	c1, c2 := fixtures.Campaigns[0], fixtures.Campaigns[1]
	id1, id2 := "m1-"+stacktest.RandomID(), "m2-"+stacktest.RandomID()
	b.send(t, regJob(t, id1, c1))
	waitMetric("export_jobs_in_flight = 1", "export_jobs_in_flight", nil, eq(1))
	b.send(t, regJob(t, id2, c2))
	if _, err := b.st.SQS.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(b.queues.JobsURL),
		MessageBody: aws.String(regJob(t, "m3-"+stacktest.RandomID(), c1)), DelaySeconds: 600}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "queue depth: 1 in flight, 1 visible, 1 delayed", func() bool {
		mfs := p.Metrics(t)
		q := func(state string) float64 {
			return stacktest.Sum(mfs, "export_queue_messages", map[string]string{"queue": "jobs", "state": state})
		}
		return q("in_flight") == 1 && q("visible") == 1 && q("delayed") == 1
	})

	e1 := b.waitLedger(t, id1, 60*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	e2 := b.waitLedger(t, id2, 60*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	succeeded := map[string]string{"kind": "registrations", "destination": "internal", "outcome": "succeeded"}
	waitMetric("two jobs succeeded", "export_jobs_total", succeeded, eq(2))
	waitMetric("export_jobs_in_flight back to 0", "export_jobs_in_flight", nil, eq(0))
	mfs = p.Metrics(t)
	for _, c := range []struct {
		name  string
		match map[string]string
		want  float64
	}{
		{"export_rows_total", map[string]string{"kind": "registrations"}, float64(e1.Rows + e2.Rows)},
		{"export_bytes_uncompressed_total", map[string]string{"kind": "registrations"}, float64(e1.BytesUncompressed + e2.BytesUncompressed)},
		{"export_bytes_written_total", map[string]string{"destination": "internal"}, float64(e1.Bytes + e2.Bytes)},
		{"export_job_duration_seconds", map[string]string{"kind": "registrations", "outcome": "succeeded"}, 2}, // observations
		{"export_sqs_requests_total", map[string]string{"op": "delete", "result": "ok"}, 2},
	} {
		if got := stacktest.Sum(mfs, c.name, c.match); got != c.want || got == 0 {
			t.Errorf("%s%v = %v, want %v", c.name, c.match, got, c.want)
		}
	}
	if e1.Rows == 0 || e1.Bytes == 0 {
		t.Errorf("ledger of %s: %+v", id1, e1)
	}
	if n := stacktest.Sum(mfs, "export_message_age_seconds", nil); n < 2 {
		t.Errorf("export_message_age_seconds observed %v messages, want 2", n)
	}
	if n := stacktest.Sum(mfs, "export_sqs_requests_total", map[string]string{"op": "receive", "result": "ok"}); n < 2 {
		t.Errorf("receive calls = %v", n)
	}
	if n := stacktest.Sum(mfs, "export_sqs_requests_total", map[string]string{"op": "change_visibility", "result": "ok"}); n < 2 {
		t.Errorf("change_visibility calls = %v; the 4s jobs with a 3s lease must have extended it", n)
	}
	for _, name := range []string{"export_last_success_timestamp_seconds", "export_receive_loop_last_progress_timestamp_seconds"} {
		if v := stacktest.Sum(mfs, name, nil); time.Since(time.Unix(int64(v), 0)) > time.Minute {
			t.Errorf("%s = %v, want a moment ago", name, v)
		}
	}

	// A duplicate delivery, then a poison message.
	b.send(t, regJob(t, id1, c1))
	waitMetric("duplicate counted", "export_jobs_total", map[string]string{"outcome": "duplicate"}, eq(1))
	b.send(t, "this is not JSON")
	waitMetric("permanent failure counted", "export_jobs_total", map[string]string{"kind": "unknown", "destination": "unknown", "outcome": "failed_permanent"}, eq(1))
	mfs = p.Metrics(t)
	if n := stacktest.Sum(mfs, "export_dlq_messages_total", map[string]string{"reason": "malformed_message"}); n != 1 {
		t.Errorf("export_dlq_messages_total{reason=malformed_message} = %v", n)
	}
	if n := stacktest.Sum(mfs, "export_sqs_requests_total", map[string]string{"op": "send_dlq", "result": "ok"}); n != 1 {
		t.Errorf("send_dlq calls = %v", n)
	}
	waitMetric("the DLQ's depth", "export_queue_messages", map[string]string{"queue": "dlq", "state": "visible"}, eq(1))

	// The side server counts its requests by handler and code.
	hb := map[string]string{"handler": "heartbeat", "code": "200"}
	before := sum("export_http_requests_total", hb)
	if code, _ := p.Get("/heartbeat"); code != http.StatusOK {
		t.Errorf("GET /heartbeat = %d", code)
	}
	if code, _ := p.Get("/nope"); code != http.StatusNotFound {
		t.Errorf("GET /nope = %d", code)
	}
	mfs = p.Metrics(t)
	if n := stacktest.Sum(mfs, "export_http_requests_total", hb); n != before+1 {
		t.Errorf("heartbeat 200 requests = %v, want %v", n, before+1)
	}
	if n := stacktest.Sum(mfs, "export_http_requests_total", map[string]string{"handler": "other", "code": "404"}); n != 1 {
		t.Errorf("404 requests = %v, want 1", n)
	}
	if n := stacktest.Sum(mfs, "export_http_request_duration_seconds", map[string]string{"handler": "metrics", "code": "200"}); n < 5 {
		t.Errorf("/metrics duration observations = %v", n)
	}

	// The healthcheck command agrees with the healthy worker.
	if code, out, errOut := runCLI(t, map[string]string{"HEALTHCHECK_URL": p.HTTP + "/heartbeat"}, "healthcheck"); code != 0 || !strings.Contains(out, `"status":"ok"`) {
		t.Errorf("healthcheck against a healthy worker: exit %d, %s %s", code, out, errOut)
	}

	// The scrape, with every family populated, passes the linter.
	code, body := p.Get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, pr := range problems {
		t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
	}
}

// SQS errors are counted by operation, and an SQS outage does not fail the heartbeat
// (replacing the instance cannot fix SQS).
func TestSQSErrorsAreCountedAndHeartbeatStaysUp(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{
		"EXPORT_QUEUE_URL": b.queues.JobsURL + "-missing", "EXPORT_DLQ_URL": b.queues.DLQURL + "-missing",
		"POLL_QUEUE_DEPTH_EVERY": "300ms", "STALL_AFTER": "5s",
	}), "worker")
	eventually(t, 20*time.Second, "receive and get_queue_attributes errors", func() bool {
		mfs := p.Metrics(t)
		return stacktest.Sum(mfs, "export_sqs_requests_total", map[string]string{"op": "receive", "result": "error"}) >= 2 &&
			stacktest.Sum(mfs, "export_sqs_requests_total", map[string]string{"op": "get_queue_attributes", "result": "error"}) >= 4
	})
	time.Sleep(6 * time.Second) // longer than STALL_AFTER
	if code, body := p.Get("/heartbeat"); code != http.StatusOK || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("heartbeat during an SQS outage = %d %s, want 200", code, body)
	}
	if n := countLines(p.Output(), `"message":"receive failed"`); n == 0 {
		t.Errorf("no receive failure logged:\n%s", p.Output())
	}
}

// A retryable failure is counted as such, and the retry that works as a success.
func TestRetryableOutcomeCounted(t *testing.T) {
	t.Parallel()
	b := setup(t, 20)
	s3p := newProxy(t, hostOf(b.st.Env["AWS_ENDPOINT_URL_S3"]))
	s3p.up.Store(false)
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{
		"AWS_ENDPOINT_URL_S3": s3p.URL(), "RETRY_BASE": "1s", "RETRY_MAX": "2s", "AWS_MAX_ATTEMPTS": "1",
	}), "worker")
	id := "rm-" + stacktest.RandomID()
	b.send(t, regJob(t, id, fixtures.Campaigns[2]))
	eventually(t, 60*time.Second, "failed_retryable counted", func() bool {
		return stacktest.Sum(p.Metrics(t), "export_jobs_total", map[string]string{"outcome": "failed_retryable"}) >= 1
	})
	s3p.up.Store(true)
	b.waitLedger(t, id, 60*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	eventually(t, 10*time.Second, "then succeeded", func() bool {
		mfs := p.Metrics(t)
		return stacktest.Sum(mfs, "export_jobs_total", map[string]string{"outcome": "succeeded"}) == 1 &&
			stacktest.Sum(mfs, "export_dlq_messages_total", nil) == 0
	})
}

// --- heartbeat -----------------------------------------------------------------------------

// A receive loop that makes no progress (SQS accepts the connection and never answers) turns
// /heartbeat to 503 "stalled" after STALL_AFTER, answered at once from the worker's state; the
// healthcheck command fails on it, and on a worker that is gone.
func TestHeartbeatFailsWhenReceiveLoopStalls(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	p := stacktest.Start(t, b.workerEnv(t, map[string]string{
		"AWS_ENDPOINT_URL_SQS": "http://" + ln.Addr().String(), "RECEIVE_WAIT": "1s", "STALL_AFTER": "2s", "POLL_QUEUE_DEPTH_EVERY": "1s",
	}), "worker")
	var body string
	eventually(t, 15*time.Second, "heartbeat 503 stalled", func() bool {
		var code int
		code, body = p.Get("/heartbeat")
		return code == http.StatusServiceUnavailable
	})
	var hb struct {
		Status, Reason string
		Draining       bool
	}
	if err := json.Unmarshal([]byte(body), &hb); err != nil || hb.Status != "stalled" || hb.Draining || !strings.Contains(hb.Reason, "no progress for 2s") {
		t.Errorf("heartbeat body %s", body)
	}
	start := time.Now()
	if code, _ := p.Get("/heartbeat"); code != http.StatusServiceUnavailable || time.Since(start) > time.Second {
		t.Errorf("heartbeat = %d in %s; want 503 at once", code, time.Since(start))
	}
	if n := stacktest.Sum(p.Metrics(t), "export_http_requests_total", map[string]string{"handler": "heartbeat", "code": "503"}); n < 1 {
		t.Errorf("503 answers counted %v", n)
	}
	env := map[string]string{"HEALTHCHECK_URL": p.HTTP + "/heartbeat"}
	if code, _, errOut := runCLI(t, env, "healthcheck"); code != 1 || !strings.Contains(errOut, "503") || !strings.Contains(errOut, "stalled") {
		t.Errorf("healthcheck against a stalled worker: exit %d, stderr %q", code, errOut)
	}
	p.Stop(15 * time.Second)
	if code, _, errOut := runCLI(t, env, "healthcheck"); code != 1 || !strings.Contains(errOut, "refused") {
		t.Errorf("healthcheck with nothing listening: exit %d, stderr %q", code, errOut)
	}
}

// --- logs ----------------------------------------------------------------------------------

// DEBUG turns on the debug lines of the components it matches, LOG_LEVEL=warn hides info lines
// (but not the debug lines DEBUG asks for); every line is JSON with time, level, message and
// component. The jobs queue is missing so that there are error lines; the DLQ exists so that
// the queue poller (titan:queues) writes its debug lines.
func TestDebugAndLogLevel(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	for _, c := range []struct {
		level, debug           string
		debugLines, infoLines  bool
		debugFrom, noDebugFrom string
	}{
		{"", "", false, true, "", "titan:queues"},
		{"", "titan*", true, true, "titan:queues", ""},
		{"", "titan:queues", true, true, "titan:queues", ""},
		{"", "titan*,-titan:queues", false, true, "", "titan:queues"},
		{"warn", "", false, false, "", "titan:queues"},
		{"warn", "titan*", true, false, "titan:queues", ""},
	} {
		t.Run(fmt.Sprintf("LOG_LEVEL=%s,DEBUG=%s", c.level, c.debug), func(t *testing.T) {
			t.Parallel()
			env := b.workerEnv(t, map[string]string{"EXPORT_QUEUE_URL": b.queues.JobsURL + "-missing", "POLL_QUEUE_DEPTH_EVERY": "200ms"})
			if c.level != "" {
				env["LOG_LEVEL"] = c.level
			}
			if c.debug != "" {
				env["DEBUG"] = c.debug
			}
			p := stacktest.Start(t, env, "worker")
			eventually(t, 20*time.Second, "receive errors and queue polls", func() bool {
				mfs := p.Metrics(t)
				return stacktest.Sum(mfs, "export_sqs_requests_total", map[string]string{"op": "receive", "result": "error"}) >= 1 &&
					stacktest.Sum(mfs, "export_sqs_requests_total", map[string]string{"op": "get_queue_attributes", "result": "ok"}) >= 3
			})
			p.Stop(15 * time.Second)
			levels := map[string]int{}
			debugFrom := map[string]bool{}
			for _, l := range logLines(t, p.Output()) {
				levels[l.str("level")]++
				if l.str("level") == "debug" {
					debugFrom[l.str("component")] = true
				}
				if _, err := time.Parse(time.RFC3339Nano, l.str("time")); err != nil || l.str("message") == "" || !strings.HasPrefix(l.str("component"), "titan:") {
					t.Errorf("line without time, message or component: %v", l)
				}
			}
			if (levels["debug"] > 0) != c.debugLines || (levels["info"] > 0) != c.infoLines || levels["error"] == 0 {
				t.Errorf("lines by level %v; want debug %v, info %v, and errors", levels, c.debugLines, c.infoLines)
			}
			if c.debugFrom != "" && !debugFrom[c.debugFrom] {
				t.Errorf("no debug line from %s: %v", c.debugFrom, debugFrom)
			}
			if c.noDebugFrom != "" && debugFrom[c.noDebugFrom] {
				t.Errorf("debug lines from %s, which DEBUG=%q does not match", c.noDebugFrom, c.debug)
			}
		})
	}
}

// No message body, e-mail address or credential reaches the logs, whatever a producer puts in
// a message; job lines carry export_id, kind, destination, duration (ms), rows and bytes.
func TestLogsCarryNoBodiesOrEmails(t *testing.T) {
	t.Parallel()
	b := setup(t, 10)
	p := stacktest.Start(t, b.workerEnv(t, nil), "worker")
	poison := []string{
		`{"version":1,"export_id":"jane.doe@example.com","kind":"registrations","params":{"campaign_id":"c1"}}`,
		`{"version":1,"export_id":"pii-2","kind":"registrations","params":{"campaign_id":"c1","email":"john.smith@example.org"}}`,
		`{"version":1,"export_id":"pii-3","kind":"registrations","params":{"campaign_id":"mary.major@example.net"}}`,
		`{"version":1,"export_id":"pii-4","kind":"registrations","params":{"campaign_id":"c1"},"ann.lee@example.com":true}`,
		`secret-body-marker, not JSON: bob@example.com`,
	}
	for _, body := range poison {
		b.send(t, body)
	}
	good := "pii-ok-" + stacktest.RandomID()
	b.send(t, jobBody(t, jobs.Message{ExportID: good, Kind: "registrations", RequestedBy: "campaign-manager@example.com",
		Params: []byte(fmt.Sprintf(`{"campaign_id":%q}`, fixtures.Campaigns[0]))}))
	if got := b.drainDLQ(t, len(poison), 60*time.Second); len(got) != len(poison) {
		t.Fatalf("%d dead letters, want %d", len(got), len(poison))
	}
	e := b.waitLedger(t, good, 60*time.Second, func(e ledger.Entry) bool { return e.Status == ledger.Succeeded })
	eventually(t, 10*time.Second, "every message handled", func() bool {
		return stacktest.Sum(p.Metrics(t), "export_jobs_total", nil) == float64(len(poison)+1)
	})
	out := p.Output()
	for _, secret := range []string{"@example.", "jane.doe", "john.smith", "mary.major", "ann.lee", "secret-body-marker", "campaign-manager"} {
		if strings.Contains(out, secret) {
			t.Errorf("the logs contain %q:\n%s", secret, out)
		}
	}
	var failures, success int
	for _, l := range logLines(t, out) {
		switch l.str("message") {
		case "permanent failure: message sent to the dead-letter queue":
			failures++
			if l.str("level") != "error" || l.str("reason") == "" {
				t.Errorf("failure line %v", l)
			}
		case "export succeeded":
			success++
			d, _ := l["duration"].(float64)
			rows, _ := l["rows"].(float64)
			bytes, _ := l["bytes"].(float64)
			if l.str("export_id") != good || l.str("kind") != "registrations" || l.str("destination") != "internal" ||
				d <= 0 || int64(rows) != e.Rows || int64(bytes) != e.Bytes {
				t.Errorf("success line %v; ledger %+v", l, e)
			}
		}
	}
	if failures != len(poison) || success != 1 {
		t.Errorf("%d failure lines, %d success lines; want %d, 1", failures, success, len(poison))
	}
	if !strings.Contains(out, "[redacted-email]") {
		t.Errorf("no redaction seen; did the e-mails reach the errors at all?\n%s", out)
	}
}

// --- operator commands ---------------------------------------------------------------------

var sentIDs = regexp.MustCompile(`(?m)^export_id: (\S+)\nmessage_id: (\S+)$`)

// enqueue --wait follows a real export to its end and status reports it; a job that dies in
// the dead-letter queue makes enqueue --wait fail, and dlq list shows why.
func TestEnqueueWaitAndStatusReportARealExport(t *testing.T) {
	t.Parallel()
	b := setup(t, 60)
	stacktest.Start(t, b.workerEnv(t, map[string]string{"EXPORT_FAULT_ROW_DELAY": "30ms"}), "worker") // ~2s per export
	env := b.cliEnv()
	campaign := fixtures.Campaigns[3]
	id := "cli-" + stacktest.RandomID()

	code, out, errOut := runCLI(t, env, "enqueue", "--kind", "registrations", "--param", "campaign_id="+campaign, "--export-id", id,
		"--wait", "--poll", "200ms", "--timeout", "90s")
	if code != 0 {
		t.Fatalf("enqueue --wait: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	e, ok := b.ledger(t, id)
	if !ok || e.Status != ledger.Succeeded || e.Rows == 0 {
		t.Fatalf("ledger %+v", e)
	}
	m := sentIDs.FindStringSubmatch(out)
	if m == nil || m[1] != id {
		t.Errorf("stdout lacks the ids:\n%s", out)
	}
	for _, want := range []string{
		" running: attempt 1 on ",
		fmt.Sprintf(" succeeded: %d/%d rows (100%%)", e.Rows, e.Rows),
		"status       succeeded",
		fmt.Sprintf("rows         %d\n", e.Rows),
		"object       s3://" + b.st.Env["EXPORT_BUCKET"] + "/" + regKey(id, campaign) + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("enqueue --wait output lacks %q:\n%s", want, out)
		}
	}
	b.waitObject(t, b.st.Env["EXPORT_BUCKET"], regKey(id, campaign), time.Second)

	code, out, errOut = runCLI(t, env, "status", id)
	for _, want := range []string{"status       succeeded", fmt.Sprintf("rows         %d\n", e.Rows), "attempts     1", regKey(id, campaign)} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("status: exit %d, lacks %q:\n%s%s", code, want, out, errOut)
		}
	}
	code, out, _ = runCLI(t, env, "status", "--json", id)
	var st struct {
		ExportID    string `json:"export_id"`
		Status, Key string
		Rows, Bytes int64
		Attempts    int
	}
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.ExportID != id || st.Status != "succeeded" ||
		st.Rows != e.Rows || st.Bytes != e.Bytes || st.Key != e.Key || st.Attempts != 1 {
		t.Errorf("status --json: exit %d, %v: %s; ledger %+v", code, err, out, e)
	}

	// A destination the worker does not have: the worker dead-letters the message before any
	// attempt; enqueue --wait finds it in the DLQ and fails.
	dead := "cli-dead-" + stacktest.RandomID()
	code, out, errOut = runCLI(t, env, "enqueue", "--kind", "registrations", "--param", "campaign_id="+campaign, "--export-id", dead,
		"--destination", "nowhere", "--wait", "--poll", "200ms", "--timeout", "60s")
	if code != 1 || !strings.Contains(errOut, "the message is in the dead-letter queue (reason unknown_destination)") {
		t.Errorf("enqueue --wait of a dead job: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, env, "dlq", "list")
	if code != 0 || !strings.Contains(out, "unknown_destination") || !strings.Contains(out, dead) {
		t.Errorf("dlq list: exit %d:\n%s", code, out)
	}
	code, out, _ = runCLI(t, env, "dlq", "redrive", "--dry-run")
	if code != 0 || !strings.Contains(out, "would move 1 message(s)") {
		t.Errorf("dlq redrive --dry-run: exit %d:\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, env, "status", dead); code != 1 || !strings.Contains(errOut, "is not in the ledger") {
		t.Errorf("status of a job that never started: exit %d, %s", code, errOut)
	}
}

// On a terminal, enqueue --wait draws a live progress bar on one line.
func TestEnqueueWaitDrawsAProgressBarOnATerminal(t *testing.T) {
	t.Parallel()
	b := setup(t, 60)
	stacktest.Start(t, b.workerEnv(t, map[string]string{"EXPORT_FAULT_ROW_DELAY": "40ms"}), "worker")
	master, slave, err := openPTY()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer master.Close()
	id := "tty-" + stacktest.RandomID()
	cmd := exec.Command(stacktest.Binary(t), "enqueue", "--kind", "registrations", "--param", "campaign_id="+fixtures.Campaigns[1],
		"--export-id", id, "--wait", "--poll", "200ms", "--timeout", "90s")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "TERM=xterm"}
	for k, v := range b.cliEnv() {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var screen bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&screen, master); close(copied) }() // ends with EIO when the child exits
	if err := cmd.Wait(); err != nil {
		t.Fatalf("enqueue --wait on a terminal: %v\n%s\n%s", err, screen.String(), stderr.String())
	}
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	out := screen.String()
	if !strings.Contains(out, "\r") || !strings.Contains(out, "\x1b[K") || !regexp.MustCompile(`running\s+\[#*\.+\] \d+/\d+ rows`).MatchString(out) ||
		!regexp.MustCompile(`succeeded \[#{24}\] (\d+)/(\d+) rows \(100%\)`).MatchString(out) {
		t.Errorf("no progress bar on the terminal:\n%q", out)
	}
}

// openPTY opens a pseudo-terminal pair (Linux).
func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		master.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", e)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

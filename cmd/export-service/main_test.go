package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func runCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, envOf(env), &out, &errOut)
	return code, out.String(), errOut.String()
}

// Every command answers --help (and -h) with its usage, exit 0, and does not run: a worker
// asked for help must not start, a healthcheck must not call the heartbeat.
func TestEveryCommandHasHelp(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	env := map[string]string{"HEALTHCHECK_URL": srv.URL}
	for _, cmd := range [][]string{{"worker"}, {"indexes"}, {"enqueue"}, {"status"}, {"cancel"}, {"dlq"}, {"dlq", "list"}, {"dlq", "redrive"}, {"healthcheck"}, {"version"}} {
		for _, h := range []string{"--help", "-h"} {
			code, out, errOut := runCmd(t, env, append(cmd, h)...)
			name := strings.Join(cmd, " ")
			if code != 0 || !strings.Contains(out, "Usage: export-service "+name) {
				t.Errorf("%s %s: exit %d, stdout %q, stderr %q; want 0 and its usage", name, h, code, out, errOut)
			}
			if strings.Contains(out, "export-service dev (") || strings.Contains(out, "export_id:") {
				t.Errorf("%s %s ran the command:\n%s", name, h, out)
			}
		}
	}
	if hits.Load() != 0 {
		t.Errorf("healthcheck --help called the heartbeat %d times", hits.Load())
	}
	for _, h := range []string{"help", "--help", "-h"} {
		if code, out, _ := runCmd(t, nil, h); code != 0 || !strings.Contains(out, "dlq redrive") || !strings.Contains(out, "enqueue") || !strings.Contains(out, "status") {
			t.Errorf("%s: exit %d, want 0 and the command list:\n%s", h, code, out)
		}
	}
}

// cancel checks what it is given as a cancel message is checked, before it connects anywhere.
func TestCancelRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"cancel", "a/b"}, "export_id"},
		{[]string{"cancel", "e-1", "--requested-by", "-x"}, "requested_by"},
		{[]string{"cancel", "e-1", "--reason", strings.Repeat("x", 501)}, "reason"},
		{[]string{"cancel", "e-1", "--timeout", "0s"}, "--timeout"},
		{[]string{"cancel", "e-1"}, "MONGO_URI"},
	} {
		code, _, errOut := runCmd(t, nil, c.args...)
		if code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 naming %s", c.args[1:], code, errOut, c.want)
		}
	}
}

func TestBadUsageExits2(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"version", "--nope"}, {"status"}, {"status", "a", "b"}, {"dlq"}, {"dlq", "purge"}, {"enqueue", "--wait=maybe"}, {"cancel"}, {"cancel", "a", "b"}, {"cancel", "a", "--wait=maybe"}} {
		if code, _, _ := runCmd(t, nil, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// healthcheck exits 0 on 200, and non-zero on 503 (draining, stalled) or when nothing
// listens, saying why.
func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	defer ok.Close()
	draining := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"draining"}`))
	}))
	defer draining.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/heartbeat"
	ln.Close()

	if code, out, errOut := runCmd(t, map[string]string{"HEALTHCHECK_URL": ok.URL + "/heartbeat"}, "healthcheck"); code != 0 || !strings.Contains(out, `"ok"`) {
		t.Errorf("healthy: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "healthcheck", "--url", draining.URL+"/heartbeat"); code != 1 || !strings.Contains(errOut, "503") || !strings.Contains(errOut, "draining") {
		t.Errorf("503: exit %d, stderr %q; want 1 naming 503 and the body", code, errOut)
	}
	if code, _, errOut := runCmd(t, map[string]string{"HEALTHCHECK_URL": closed}, "healthcheck"); code != 1 || !strings.Contains(errOut, "refused") {
		t.Errorf("nothing listening: exit %d, stderr %q", code, errOut)
	}
	// From HTTP_ADDR when HEALTHCHECK_URL is unset.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(ok.URL, "http://"))
	if code, _, errOut := runCmd(t, map[string]string{"HTTP_ADDR": ":" + port}, "healthcheck"); code != 0 {
		t.Errorf("HTTP_ADDR=:%s: exit %d, stderr %q", port, code, errOut)
	}
}

func TestPollQueueDepthEveryConfig(t *testing.T) {
	base := map[string]string{"EXPORT_QUEUE_URL": "q", "MONGO_URI": "mongodb://x", "EXPORT_BUCKET": "b"}
	with := func(v string) map[string]string {
		m := map[string]string{"POLL_QUEUE_DEPTH_EVERY": v}
		for k, x := range base {
			m[k] = x
		}
		return m
	}
	for v, want := range map[string]time.Duration{"": 30 * time.Second, "0": 0, "5s": 5 * time.Second, "90": 90 * time.Second} {
		c, err := loadConfig(envOf(with(v)))
		if err != nil || c.PollQueueDepthEvery != want {
			t.Errorf("POLL_QUEUE_DEPTH_EVERY=%q: %s, %v; want %s", v, c.PollQueueDepthEvery, err, want)
		}
	}
	if _, err := loadConfig(envOf(with("2h"))); err == nil || !strings.Contains(err.Error(), "POLL_QUEUE_DEPTH_EVERY") {
		t.Errorf("POLL_QUEUE_DEPTH_EVERY=2h: %v, want an error naming it", err)
	}
}

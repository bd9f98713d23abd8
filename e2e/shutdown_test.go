package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/stacktest"
)

// With MongoDB gone, SIGTERM still ends the process within seconds, and "export-service
// stopped" is the last thing it says: every step after the signal is bounded (the MongoDB
// disconnect would otherwise wait out the driver's 30 s server selection to end its sessions),
// so the line tells the truth and a scale-in does not wait for nothing.
func TestSIGTERMWithMongoDownExitsPromptlyAfterTheStoppedLine(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	queues := st.NewQueues(t, 30*time.Second, 5)
	proxy := st.Proxy(t, stacktest.Mongo)

	env := st.WorkerEnv(stacktest.ProxyEnv(map[string]string{
		"EXPORT_QUEUE_URL":       queues.JobsURL,
		"EXPORT_DLQ_URL":         queues.DLQURL,
		"MONGO_DATABASE":         "t_" + stacktest.RandomID(),
		"HTTP_ADDR":              stacktest.FreeAddr(t),
		"RECEIVE_WAIT":           "1s",
		"STALL_AFTER":            "30s",
		"POLL_QUEUE_DEPTH_EVERY": "1s",
		// The race detector sleeps 1 s at exit by default: not the service's time.
		"GORACE": "atexit_sleep_ms=0",
	}, proxy))
	p := stacktest.Start(t, env, "worker")
	// The worker reached MongoDB through the proxy (its start pings it); now MongoDB goes away.
	checkReachable(t, proxy.MongoURI())
	proxy.Cut(t)

	start := time.Now()
	p.Signal(syscall.SIGTERM)
	// RECEIVE_WAIT (1s) for the poll in flight, the bounded disconnect (2s), and room for a
	// loaded machine; the unbounded disconnect took 30 s more.
	code := p.Wait(15 * time.Second)
	took := time.Since(start)
	if code == -1 {
		t.Fatalf("still running %s after SIGTERM with MongoDB down", took.Round(time.Millisecond))
	}
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	lines := logLines(t, p.Output())
	if len(lines) == 0 {
		t.Fatal("no log lines")
	}
	last := lines[len(lines)-1]
	if last.str("message") != "export-service stopped" {
		t.Errorf("last log line is %v, want the stopped line", last)
	}
	// The stopped line came at most a moment before the exit: nothing slow runs after it.
	stoppedAt, err := time.Parse(time.RFC3339Nano, last.str("time"))
	if err != nil {
		t.Fatalf("stopped line has no time: %v", last)
	}
	if gap := time.Since(stoppedAt) - time.Since(start.Add(took)); gap > 2*time.Second {
		t.Errorf("the process exited %s after logging that it stopped", gap.Round(time.Millisecond))
	}
	if strings.Contains(p.Output(), `"level":"panic"`) {
		t.Errorf("panic in the output")
	}
	t.Logf("exited %s after SIGTERM", took.Round(time.Millisecond))
}

// checkReachable pings MongoDB at uri, failing the test if it does not answer.
func checkReachable(t *testing.T, uri string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(ctx) }()
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Err(); err != nil {
		t.Fatalf("ping MongoDB through the proxy: %v", err)
	}
}

// SIGTERM while the worker is still starting (MongoDB unreachable, its start-up ping waiting)
// is a clean stop: exit 0, like a SIGTERM at any other time.
func TestSIGTERMDuringStartUpExitsZero(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	queues := st.NewQueues(t, 30*time.Second, 5)
	proxy := st.Proxy(t, stacktest.Mongo)
	proxy.Cut(t)
	env := st.WorkerEnv(stacktest.ProxyEnv(map[string]string{
		"EXPORT_QUEUE_URL": queues.JobsURL,
		"EXPORT_DLQ_URL":   queues.DLQURL,
		"GORACE":           "atexit_sleep_ms=0",
	}, proxy))
	// No HTTP_ADDR: Start would wait for a /heartbeat that start-up never reaches. (The side
	// server's default :8080 is never bound: it starts after MongoDB answered.)
	delete(env, "HTTP_ADDR")
	p := stacktest.Start(t, env, "worker")
	time.Sleep(2 * time.Second) // well inside the 15 s start-up ping
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM during start-up, want 0\n%s", code, p.Output())
	}
	if !strings.Contains(p.Output(), "stopped before it started") {
		t.Errorf("no line says why it stopped:\n%s", p.Output())
	}
}

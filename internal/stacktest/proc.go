package stacktest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the export-service binary once per test process and returns its path.
// EXPORT_SERVICE_TEST_BINARY names a binary to use instead: running today's tests against an
// older build shows which of them fail without a fix.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("EXPORT_SERVICE_TEST_BINARY"); p != "" {
		return p
	}
	root := Root(t)
	buildOnce.Do(func() {
		binPath = filepath.Join(root, ".cache", "test-bin", "export-service")
		cmd := exec.Command("go", "build", "-race", "-o", binPath, "./cmd/export-service")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Proc is a running export-service process.
type Proc struct {
	t       testing.TB
	cmd     *exec.Cmd
	HTTP    string // base URL of its side server
	mu      sync.Mutex
	out     bytes.Buffer
	done    chan struct{}
	exitErr error
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WorkerEnv is the environment of a worker on the stack: the stack's endpoints and worker
// credentials, plus the given overrides.
func (st *Stack) WorkerEnv(overrides map[string]string) map[string]string {
	env := map[string]string{}
	for _, k := range []string{"AWS_REGION", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_SQS",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MONGO_URI", "EXPORT_BUCKET", "S3_FORCE_PATH_STYLE"} {
		env[k] = st.Env[k]
	}
	env["AWS_EC2_METADATA_DISABLED"] = "true"
	for k, v := range overrides {
		env[k] = v
	}
	return env
}

// Start runs the binary with args and env (and nothing of the test's own environment but
// PATH and HOME), capturing its output. With an HTTP_ADDR in env it waits for /heartbeat.
// The process gets SIGTERM, then SIGKILL, when the test ends.
func Start(t testing.TB, env map[string]string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &Proc{t: t, cmd: cmd, done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("stacktest: start export-service: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.Write(sc.Bytes())
			p.out.WriteByte('\n')
			p.mu.Unlock()
		}
	}()
	go func() {
		p.exitErr = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(15 * time.Second)
		if t.Failed() {
			t.Logf("export-service output:\n%s", p.Output())
		}
	})
	if addr := env["HTTP_ADDR"]; addr != "" {
		p.HTTP = "http://" + addr
		deadline := time.Now().Add(30 * time.Second)
		for {
			if code, _ := p.Get("/heartbeat"); code == http.StatusOK {
				break
			}
			select {
			case <-p.done:
				t.Fatalf("stacktest: export-service exited at start (%v):\n%s", p.exitErr, p.Output())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("stacktest: export-service did not answer /heartbeat within 30s:\n%s", p.Output())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return p
}

// Output is everything the process printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) {
	_ = p.cmd.Process.Signal(sig)
}

// Wait waits up to d for the process to exit and returns its exit code (-1 if it did not).
func (p *Proc) Wait(d time.Duration) int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		return -1
	}
}

// Stop sends SIGTERM and, after grace, SIGKILL.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.Signal(syscall.SIGTERM)
	if p.Wait(grace) == -1 {
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Get fetches a path of the process's side server.
func (p *Proc) Get(path string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.HTTP+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Metrics scrapes /metrics and parses it with the Prometheus text parser.
func (p *Proc) Metrics(t testing.TB) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := p.Get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("stacktest: GET /metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("stacktest: parse /metrics: %v", err)
	}
	return mfs
}

// Sum adds the values of a counter or gauge family's series whose labels include match.
func Sum(mfs map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	mf := mfs[name]
	if mf == nil {
		return 0
	}
	var total float64
next:
	for _, m := range mf.GetMetric() {
		for k, v := range match {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

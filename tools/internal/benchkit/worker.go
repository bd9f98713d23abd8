package benchkit

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// FreeAddr is a free 127.0.0.1 address, for a worker's HTTP_ADDR.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WorkerSpec says how to start a worker process.
type WorkerSpec struct {
	Bin     string            // the export-service binary
	Name    string            // the worker's name before the lines Verbose prints
	Env     map[string]string // its environment besides PATH and HOME; HTTP_ADDR must be set
	LogPath string            // the file its stdout and stderr are written to
	Verbose bool              // print its warnings, errors and non-JSON lines as they come
	// OnMessage, if set, is called with the message of each of its JSON log lines, from the
	// goroutine that reads them.
	OnMessage func(message string)
}

// Worker is a running `export-service worker` process.
type Worker struct {
	Name    string
	Base    string // http://HTTP_ADDR
	cmd     *exec.Cmd
	started chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	bad     []string // warn/error lines and non-JSON lines
}

// StartWorker starts `spec.Bin worker`; Ready waits until it serves.
func StartWorker(spec WorkerSpec) (*Worker, error) {
	cmd := exec.Command(spec.Bin, "worker")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range spec.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	f, err := os.Create(spec.LogPath)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	w := &Worker{Name: spec.Name, Base: "http://" + spec.Env["HTTP_ADDR"], cmd: cmd, started: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer f.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Bytes()
			f.Write(line)
			f.Write([]byte{'\n'})
			var m struct{ Level, Message string }
			if json.Unmarshal(line, &m) != nil {
				w.note(string(line), spec.Verbose)
				continue
			}
			if m.Message == "worker started" {
				once.Do(func() { close(w.started) })
			}
			if spec.OnMessage != nil {
				spec.OnMessage(m.Message)
			}
			if m.Level == "warn" || m.Level == "error" || m.Level == "fatal" || m.Level == "panic" {
				w.note(string(line), spec.Verbose)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(w.done)
	}()
	return w, nil
}

func (w *Worker) note(line string, print bool) {
	w.mu.Lock()
	if len(w.bad) < 50 {
		w.bad = append(w.bad, line)
	}
	w.mu.Unlock()
	if print {
		fmt.Fprintf(os.Stderr, "%s: %s\n", w.Name, line)
	}
}

// Pid is the process id of the worker.
func (w *Worker) Pid() int { return w.cmd.Process.Pid }

// Done is closed when the process has exited.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Exited tells whether the process has exited.
func (w *Worker) Exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// BadLines are the first 50 warning, error and non-JSON lines of the worker's output.
func (w *Worker) BadLines() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.bad...)
}

// Ready waits for the worker's "worker started" line (60s at most) and then a 200 from its
// /heartbeat (30s at most).
func (w *Worker) Ready(ctx context.Context) error {
	select {
	case <-w.started:
	case <-w.done:
		return errors.New("exited at start")
	case <-time.After(60 * time.Second):
		return errors.New(`no "worker started" line within 60s`)
	case <-ctx.Done():
		return ctx.Err()
	}
	for deadline := time.Now().Add(30 * time.Second); heartbeat(w.Base) != http.StatusOK; {
		if time.Now().After(deadline) {
			return errors.New("/heartbeat did not answer 200 within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// heartbeat is the status code of GET /heartbeat, 0 without an answer within 2s.
func heartbeat(base string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/heartbeat", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Stop sends SIGTERM and waits for the exit, then sends SIGKILL if it has not come within
// grace.
func (w *Worker) Stop(grace time.Duration) {
	if w.Exited() {
		return
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
	case <-time.After(grace):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

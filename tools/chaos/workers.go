package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// LogEvent is one JSON log line of a worker that names an export.
type LogEvent struct {
	Worker   string
	Time     time.Time
	Level    string
	Message  string
	ExportID string
	Line     string
}

// Logs gathers the workers' log lines.
type Logs struct {
	mu     sync.Mutex
	events []LogEvent
	// Odd lines: a panic, a runtime fatal error, or a log line of level fatal or panic.
	odd []string
	// Notes: other lines that are not JSON.
	notes []string
}

// Notes returns the plain lines that were not panics.
func (l *Logs) Notes() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.notes...)
}

func (l *Logs) add(worker string, line []byte) {
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		l.mu.Lock()
		// A panic or a runtime fatal error; other plain lines (a start-up error printed
		// before exiting 1) are kept as notes.
		if bytes.HasPrefix(line, []byte("panic:")) || bytes.HasPrefix(line, []byte("fatal error:")) || bytes.HasPrefix(line, []byte("goroutine ")) {
			if len(l.odd) < 200 {
				l.odd = append(l.odd, worker+": "+string(line))
			}
		} else if len(l.notes) < 200 {
			l.notes = append(l.notes, worker+": "+string(line))
		}
		l.mu.Unlock()
		return
	}
	ev := LogEvent{Worker: worker, Line: string(line)}
	ev.Level, _ = m["level"].(string)
	ev.Message, _ = m["message"].(string)
	ev.ExportID, _ = m["export_id"].(string)
	if ts, ok := m["time"].(string); ok {
		ev.Time, _ = time.Parse(time.RFC3339Nano, ts)
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if ev.Level == "fatal" || ev.Level == "panic" {
		l.odd = append(l.odd, worker+": "+string(line))
	}
	if ev.ExportID != "" {
		l.events = append(l.events, ev)
	}
}

// Events returns the events sorted by time.
func (l *Logs) Events() []LogEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]LogEvent(nil), l.events...)
	sort.SliceStable(out, func(i, k int) bool { return out[i].Time.Before(out[k].Time) })
	return out
}

// Odd returns the lines that were not JSON or were fatal.
func (l *Logs) Odd() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.odd...)
}

// Worker is one slot of the fleet: a worker process, restarted after a kill.
type Worker struct {
	Name string
	bin  string
	env  []string
	dir  string
	logs *Logs

	mu       sync.Mutex
	gen      int
	cmd      *exec.Cmd
	done     chan struct{}
	exit     *os.ProcessState
	signal   string // the signal the driver sent, if any
	ready    bool   // the current process logged "worker started"
	stopping bool   // the campaign is over: no more restarts
	// Unexpected exits of a running worker: it ended without a signal from the driver, or
	// with a code other than 0 after SIGTERM.
	Unexpected []string
	// StartFailures: a process that ended before it logged "worker started" (MongoDB
	// unreachable for its start-up ping, or SIGTERM during it). Like an orchestrator, the
	// campaign starts a new one; they are reported, not counted as violations.
	StartFailures []string
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Start starts a new process in the slot.
func (w *Worker) Start() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gen++
	addr, err := freePort()
	if err != nil {
		return err
	}
	id := fmt.Sprintf("%s.%d", w.Name, w.gen)
	cmd := exec.Command(w.bin, "worker")
	cmd.Env = append(append([]string{}, w.env...), "HTTP_ADDR="+addr, "WORKER_ID="+id)
	f, err := os.OpenFile(filepath.Join(w.dir, w.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", w.bin, err)
	}
	fmt.Fprintf(f, "=== %s: %s started (pid %d)\n", time.Now().UTC().Format(time.RFC3339Nano), id, cmd.Process.Pid)
	done := make(chan struct{})
	w.cmd, w.done, w.exit, w.signal, w.ready = cmd, done, nil, "", false
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		for sc.Scan() {
			f.Write(sc.Bytes())
			f.Write([]byte{'\n'})
			if bytes.Contains(sc.Bytes(), []byte(`"message":"worker started"`)) {
				w.mu.Lock()
				w.ready = true
				w.mu.Unlock()
			}
			w.logs.add(id, sc.Bytes())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-scanned
		w.mu.Lock()
		w.exit = cmd.ProcessState
		sig, ready, stopping := w.signal, w.ready, w.stopping
		w.mu.Unlock()
		fmt.Fprintf(f, "=== %s: %s exited: %v (signal sent: %q)\n", time.Now().UTC().Format(time.RFC3339Nano), id, err, sig)
		f.Close()
		switch {
		case !ready && (sig == "" || sig == "SIGTERM" && cmd.ProcessState.ExitCode() != 0):
			w.mu.Lock()
			w.StartFailures = append(w.StartFailures, fmt.Sprintf("%s ended during start-up: %v (signal sent: %q)", id, err, sig))
			w.mu.Unlock()
		case sig == "":
			w.note(fmt.Sprintf("%s exited on its own: %v", id, err))
		case sig == "SIGTERM" && cmd.ProcessState.ExitCode() != 0:
			w.note(fmt.Sprintf("%s exited with %v after SIGTERM (README: the process exits 0)", id, err))
		}
		close(done)
		if sig == "" && !stopping {
			// Nobody asked it to stop: start a new one, as an orchestrator would.
			time.Sleep(time.Second)
			w.mu.Lock()
			again := !w.stopping && w.cmd == cmd
			w.mu.Unlock()
			if again {
				if err := w.Start(); err != nil {
					w.note(fmt.Sprintf("%s: restart after it ended: %v", w.Name, err))
				}
			}
		}
	}()
	return nil
}

func (w *Worker) note(s string) {
	w.mu.Lock()
	w.Unexpected = append(w.Unexpected, s)
	w.mu.Unlock()
}

// Running says whether the slot's process runs.
func (w *Worker) Running() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done == nil {
		return false
	}
	select {
	case <-w.done:
		return false
	default:
		return true
	}
}

// Kill sends sig and waits up to wait for the process to exit; it reports whether it did.
func (w *Worker) Kill(sig syscall.Signal, wait time.Duration) bool {
	w.mu.Lock()
	cmd, done := w.cmd, w.done
	if cmd == nil {
		w.mu.Unlock()
		return true
	}
	w.signal = sig.String()
	if sig == syscall.SIGKILL {
		w.signal = "SIGKILL"
	} else if sig == syscall.SIGTERM {
		w.signal = "SIGTERM"
	}
	w.mu.Unlock()
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(wait):
		return false
	}
}

// Stop ends the process: SIGTERM, and SIGKILL after grace. It reports whether SIGTERM was
// enough.
func (w *Worker) Stop(grace time.Duration) bool {
	w.mu.Lock()
	w.stopping = true
	w.mu.Unlock()
	if !w.Running() {
		return true
	}
	if w.Kill(syscall.SIGTERM, grace) {
		return true
	}
	w.Kill(syscall.SIGKILL, 10*time.Second)
	return false
}

// ID is the current process's WORKER_ID.
func (w *Worker) ID() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("%s.%d", w.Name, w.gen)
}

// PID is the current process's pid, or 0.
func (w *Worker) PID() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd == nil || w.cmd.Process == nil {
		return 0
	}
	return w.cmd.Process.Pid
}

package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/stacktest"
)

// Fault is one fault the driver injected.
type Fault struct {
	At       time.Duration // since the campaign's start
	Kind     string        // toxic type, "cut", "sigkill", "sigterm", "restart"
	Target   string        // mongo, s3, sts, sqs, worker name, ferretdb
	Detail   string
	Duration time.Duration
	Err      string // the fault could not be injected or undone
}

func (f Fault) String() string {
	s := fmt.Sprintf("t+%5.1fs %-10s %-8s %s", f.At.Seconds(), f.Kind, f.Target, f.Detail)
	if f.Duration > 0 {
		s += fmt.Sprintf(" for %.1fs", f.Duration.Seconds())
	}
	if f.Err != "" {
		s += " ERROR: " + f.Err
	}
	return s
}

// MongoServer is a campaign-private FerretDB (the stack's ferretdb-local binary on a port and
// data directory of its own), so that the campaign can restart a real server without
// disturbing the tests that share the stack's.
type MongoServer struct {
	bin, dir, addr, logPath string
	mu                      sync.Mutex
	cmd                     *exec.Cmd
	done                    chan struct{}
}

func (m *MongoServer) URI() string { return "mongodb://" + m.addr + "/" }

func (m *MongoServer) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	lf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(m.bin, "-listen", m.addr, "-dir", m.dir, "-log-level", "error")
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); lf.Close(); close(done) }()
	m.cmd, m.done = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("ferretdb exited at start; see %s", m.logPath)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ferretdb did not listen on %s within 30s", m.addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends the server with sig (SIGTERM waits for it up to 15s, then SIGKILL).
func (m *MongoServer) Stop(sig syscall.Signal) {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Driver injects random faults.
type Driver struct {
	r       *rand.Rand
	start   time.Time
	proxies map[stacktest.Upstream]*stacktest.ToxiProxy
	workers []*Worker
	mongo   *MongoServer  // nil when the campaign uses the stack's FerretDB
	drain   time.Duration // DRAIN_TIMEOUT + DRAIN_STOP_GRACE: the longest a drain may take
	gap     time.Duration // mean time between faults
	// calmAfter: after this long (the send window), the mean time between faults doubles.
	calmAfter time.Duration
	verbose   bool
	log       io.Writer // faults.txt, written as they happen

	mu     sync.Mutex
	faults []Fault
	busy   map[string]bool // targets with a fault in progress
	wg     sync.WaitGroup
}

func (d *Driver) record(f Fault) {
	d.mu.Lock()
	d.faults = append(d.faults, f)
	if d.log != nil {
		fmt.Fprintln(d.log, f)
	}
	d.mu.Unlock()
	if d.verbose {
		fmt.Println("chaos: fault", f)
	}
}

// Faults returns the faults injected so far, in order.
func (d *Driver) Faults() []Fault {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := append([]Fault(nil), d.faults...)
	sort.SliceStable(out, func(i, k int) bool { return out[i].At < out[k].At })
	return out
}

func (d *Driver) claim(target string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.busy[target] {
		return false
	}
	d.busy[target] = true
	return true
}

func (d *Driver) release(target string) {
	d.mu.Lock()
	delete(d.busy, target)
	d.mu.Unlock()
}

// dur draws a duration in [lo, hi).
func (d *Driver) dur(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(d.r.Int64N(int64(hi-lo)))
}

// Wait waits for the faults in progress to be undone (after Run and the Interrupter ended).
func (d *Driver) Wait() { d.wg.Wait() }

// Run injects faults until ctx ends. Every random choice is drawn here, on one goroutine, so
// a seed gives one sequence of faults.
func (d *Driver) Run(ctx context.Context) {
	for {
		mean := d.gap
		if time.Since(d.start) > d.calmAfter {
			// Every job has been sent: faults come half as often, so that the exports still
			// running can drain between them instead of being restarted for ever.
			mean = 2 * d.gap
		}
		gap := d.dur(mean/2, mean*3/2)
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
		d.inject(ctx)
	}
}

func (d *Driver) inject(ctx context.Context) {
	upstreams := []stacktest.Upstream{stacktest.Mongo, stacktest.S3, stacktest.STS, stacktest.SQS}
	x := d.r.IntN(100)
	switch {
	case x < 55:
		u := upstreams[d.r.IntN(len(upstreams))]
		d.toxic(ctx, u)
	case x < 63:
		u := upstreams[d.r.IntN(len(upstreams))]
		d.cut(ctx, u)
	case x < 78:
		d.signal(syscall.SIGKILL)
	case x < 90:
		d.signal(syscall.SIGTERM)
	default:
		d.restart()
	}
}

// toxic adds a random toxic to the proxy in front of u for a while.
func (d *Driver) toxic(ctx context.Context, u stacktest.Upstream) {
	p := d.proxies[u]
	typ := []string{"timeout", "reset_peer", "limit_data", "latency", "slicer", "bandwidth"}[d.r.IntN(6)]
	stream := []string{"upstream", "downstream"}[d.r.IntN(2)]
	var attrs toxiproxy.Attributes
	var hold time.Duration
	switch typ {
	case "timeout":
		// 0: data is dropped and the connection held open until the toxic goes (a stalled
		// peer); otherwise the connection is closed after that many ms.
		t := []int{0, 0, 500 + d.r.IntN(4500)}[d.r.IntN(3)]
		attrs = toxiproxy.Attributes{"timeout": t}
		hold = d.dur(3*time.Second, 15*time.Second)
	case "reset_peer":
		attrs = toxiproxy.Attributes{"timeout": d.r.IntN(2000)}
		hold = d.dur(2*time.Second, 10*time.Second)
	case "limit_data":
		attrs = toxiproxy.Attributes{"bytes": 1024 + d.r.IntN(4<<20)}
		hold = d.dur(3*time.Second, 15*time.Second)
	case "latency":
		attrs = toxiproxy.Attributes{"latency": 100 + d.r.IntN(2900), "jitter": d.r.IntN(500)}
		hold = d.dur(3*time.Second, 20*time.Second)
	case "slicer":
		avg := 16 + d.r.IntN(2048)
		attrs = toxiproxy.Attributes{"average_size": avg, "size_variation": avg / 2, "delay": d.r.IntN(3000)}
		hold = d.dur(3*time.Second, 20*time.Second)
	case "bandwidth":
		attrs = toxiproxy.Attributes{"rate": 16 + d.r.IntN(1024)} // KB/s
		hold = d.dur(3*time.Second, 20*time.Second)
	}
	toxicity := float32(1)
	if d.r.IntN(4) == 0 {
		toxicity = 0.3 + 0.6*d.r.Float32() // only some connections
	}
	f := Fault{At: time.Since(d.start), Kind: typ, Target: string(u), Duration: hold,
		Detail: fmt.Sprintf("%s %v toxicity=%.2f", stream, attrs, toxicity)}
	name := fmt.Sprintf("%s_%s_%d", typ, stream, len(d.Faults()))
	if _, err := p.AddToxic(name, typ, stream, toxicity, attrs); err != nil {
		f.Err = err.Error()
		d.record(f)
		return
	}
	d.record(f)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		sleep(ctx, hold)
		if err := p.RemoveToxic(name); err != nil {
			d.record(Fault{At: time.Since(d.start), Kind: "undo", Target: string(u), Detail: "remove " + name, Err: err.Error()})
		}
	}()
}

// cut disables the proxy in front of u for a while: the server went away.
func (d *Driver) cut(ctx context.Context, u stacktest.Upstream) {
	hold := d.dur(2*time.Second, 12*time.Second)
	target := "cut-" + string(u)
	if !d.claim(target) {
		return
	}
	p := d.proxies[u]
	f := Fault{At: time.Since(d.start), Kind: "cut", Target: string(u), Duration: hold, Detail: "proxy disabled (connections closed, new ones refused)"}
	if err := p.Disable(); err != nil {
		f.Err = err.Error()
		d.record(f)
		d.release(target)
		return
	}
	d.record(f)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.release(target)
		sleep(ctx, hold)
		if err := p.Enable(); err != nil {
			d.record(Fault{At: time.Since(d.start), Kind: "undo", Target: string(u), Detail: "enable", Err: err.Error()})
		}
	}()
}

// signal sends sig to a random running worker and starts a new one in its slot once it is gone.
func (d *Driver) signal(sig syscall.Signal) {
	w := d.workers[d.r.IntN(len(d.workers))]
	after := d.dur(500*time.Millisecond, 4*time.Second)
	d.kill(w, sig, after, "")
}

// kill sends sig to the worker in slot w, unless a kill of it is in progress or it is not
// running, and starts a new one after it exits. It reports whether it sent it.
func (d *Driver) kill(w *Worker, sig syscall.Signal, after time.Duration, why string) bool {
	if !d.claim(w.Name) {
		return false // a kill of this worker is in progress
	}
	if !w.Running() {
		d.release(w.Name)
		return false
	}
	kind := "sigkill"
	if sig == syscall.SIGTERM {
		kind = "sigterm"
	}
	f := Fault{At: time.Since(d.start), Kind: kind, Target: w.Name, Detail: fmt.Sprintf("pid %d, restarted %.1fs after it exits%s", w.PID(), after.Seconds(), why)}
	d.record(f)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.release(w.Name)
		// SIGTERM: jobs in flight get DRAIN_TIMEOUT, then DRAIN_STOP_GRACE to reach their next
		// stored part, and the process must exit soon after.
		if !w.Kill(sig, d.drain+30*time.Second) {
			w.note(fmt.Sprintf("%s did not exit within DRAIN_TIMEOUT+DRAIN_STOP_GRACE+30s of %s; killed", w.Name, kind))
			w.Kill(syscall.SIGKILL, 10*time.Second)
		}
		time.Sleep(after)
		if err := w.Start(); err != nil {
			d.record(Fault{At: time.Since(d.start), Kind: "undo", Target: w.Name, Detail: "restart", Err: err.Error()})
		}
	}()
	return true
}

// Interrupter kills the workers of checkpointed exports. A multipart export lasts some
// seconds, a part every second or two, so the random faults seldom fall between two of its
// parts. Every second, Interrupter reads the running exports that have a checkpoint from the
// ledger (straight to MongoDB); the first time it sees one, it draws whether to interrupt it
// (with probability Prob), how and after how many stored parts: 3 in 4 SIGKILL after 1 or 2
// parts (the next attempt continues after the checkpoint), 1 in 4 SIGTERM after the first (a
// drain: the export finishes within DRAIN_TIMEOUT, or stops at a stored part and is released);
// once its checkpoint has that many parts, it signals the worker running it. A third of the
// exports it interrupted get SIGKILL once more, one part later (a resumed attempt's own
// checkpoint continued). Its draws come from a generator of its own, in the order it sees the
// exports.
type Interrupter struct {
	D    *Driver
	DB   *mongo.Database
	R    *rand.Rand
	Prob float64

	plan  map[string]interruption // by export id; wait 0: left alone
	kills map[string]int          // export id -> interruptions sent
}

type interruption struct {
	wait int // stored parts to wait for
	sig  syscall.Signal
}

// Run interrupts until ctx ends.
func (in *Interrupter) Run(ctx context.Context) {
	in.plan, in.kills = map[string]interruption{}, map[string]int{}
	for ctx.Err() == nil {
		sleep(ctx, time.Second)
		in.once(ctx)
	}
}

func (in *Interrupter) once(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cur, err := in.DB.Collection("exports").Find(qctx,
		bson.D{{Key: "status", Value: "running"}, {Key: "checkpoint", Value: bson.D{{Key: "$exists", Value: true}}}},
		options.Find().SetProjection(bson.D{{Key: "worker_id", Value: 1}, {Key: "checkpoint.upload.parts.n", Value: 1}}).SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return // MongoDB restarting: next time
	}
	var running []struct {
		ID         string `bson:"_id"`
		WorkerID   string `bson:"worker_id"`
		Checkpoint struct {
			Upload struct {
				Parts []struct{} `bson:"parts"`
			} `bson:"upload"`
		} `bson:"checkpoint"`
	}
	if err := cur.All(qctx, &running); err != nil {
		return
	}
	for _, e := range running {
		plan, seen := in.plan[e.ID]
		if !seen {
			if in.R.Float64() < in.Prob {
				plan = interruption{wait: 1 + in.R.IntN(2), sig: syscall.SIGKILL}
				if in.R.IntN(4) == 0 {
					// A drain at the first part: the export has more than DRAIN_TIMEOUT to go.
					plan = interruption{wait: 1, sig: syscall.SIGTERM}
				}
			}
			in.plan[e.ID] = plan
		}
		parts := len(e.Checkpoint.Upload.Parts)
		if plan.wait == 0 || parts < plan.wait {
			continue
		}
		// The worker that runs it now (not a dead one whose lease has not expired yet).
		i := slices.IndexFunc(in.D.workers, func(w *Worker) bool { return w.ID() == e.WorkerID })
		if i < 0 {
			continue
		}
		after := time.Duration(500+in.R.IntN(2500)) * time.Millisecond
		why := fmt.Sprintf("; targeted: %s (%s) at its checkpoint of %d part(s)", e.ID, e.WorkerID, parts)
		if !in.D.kill(in.D.workers[i], plan.sig, after, why) {
			continue // that worker is being killed already: next time
		}
		in.kills[e.ID]++
		in.plan[e.ID] = interruption{}
		if in.kills[e.ID] == 1 && in.R.IntN(3) == 0 {
			in.plan[e.ID] = interruption{wait: parts + 1, sig: syscall.SIGKILL}
		}
	}
}

// restart restarts the campaign's FerretDB (SIGTERM or SIGKILL, down for a moment); with the
// stack's FerretDB, whose restart would disturb other users, the Mongo proxy is cut instead.
func (d *Driver) restart() {
	if d.mongo == nil {
		d.cut(context.Background(), stacktest.Mongo)
		return
	}
	if !d.claim("ferretdb") {
		return
	}
	sig := []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}[d.r.IntN(2)]
	down := d.dur(500*time.Millisecond, 6*time.Second)
	f := Fault{At: time.Since(d.start), Kind: "restart", Target: "ferretdb", Duration: down, Detail: fmt.Sprintf("%s, then started again", strings.ToUpper(sigName(sig)))}
	d.record(f)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer d.release("ferretdb")
		d.mongo.Stop(sig)
		time.Sleep(down)
		if err := d.mongo.Start(); err != nil {
			d.record(Fault{At: time.Since(d.start), Kind: "undo", Target: "ferretdb", Detail: "start", Err: err.Error()})
		}
	}()
}

func sigName(s syscall.Signal) string {
	if s == syscall.SIGKILL {
		return "sigkill"
	}
	return "sigterm"
}

// Heal removes every toxic, enables every proxy and starts every worker that is not running.
func (d *Driver) Heal() error {
	var errs []string
	for _, p := range d.proxies {
		if err := p.Heal(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, w := range d.workers {
		if !w.Running() {
			if err := w.Start(); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("heal: %s", strings.Join(errs, "; "))
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

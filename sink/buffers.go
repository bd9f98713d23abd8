package sink

import (
	"context"
	"math"
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// BufferPool is the process's budget of part buffers, shared by every S3 sink (every job and
// destination): an upload takes a buffer for each part it fills or uploads and gives it back
// when the part is stored, and a job that would take the pool past its limit waits (until a
// buffer comes back or its context ends) instead of allocating. Buffers are reused across parts
// and jobs; buffers that stayed unused for a minute are dropped for the GC to reclaim.
//
// The limit holds whatever the number of concurrent jobs; one job can always progress: a
// request for size bytes is granted once the pool holds at most max(limit, 2 x size) - size, so
// a limit under two part sizes (or a part size grown past half the limit) still lets one job
// fill a part while another part uploads. Waiters are served in order, so a job asking for a
// grown part is not starved by jobs asking for smaller ones.
type BufferPool struct {
	mu      sync.Mutex
	limit   int64
	held    int64 // bytes of buffers handed out and kept free
	peak    int64
	free    []freeBuf
	waiters []*bufWaiter
	stats   BufferStats
}

type freeBuf struct {
	b     []byte
	since time.Time
}

type bufWaiter struct {
	size  int64
	ready chan []byte // a free buffer, or nil: size bytes were reserved for the waiter to allocate
}

// BufferStats are a pool's figures.
type BufferStats struct {
	Limit int64
	// Held is the bytes of buffers handed out or kept free; Peak its highest value.
	Held, Peak int64
	// InUse is the bytes of buffers handed out.
	InUse int64
	// Waiting is the number of requests waiting for room.
	Waiting int
	// Allocated and Reused count the buffers handed out, new and reused.
	Allocated, Reused int64
}

// idleBufferTTL is how long a free buffer is kept for reuse.
const idleBufferTTL = time.Minute

// NewBufferPool returns a pool holding at most limit bytes of part buffers; limit <= 0 means
// DefaultBufferLimit(). The process needs one, given to every sink in S3Options.Buffers.
func NewBufferPool(limit int64) *BufferPool {
	if limit <= 0 {
		limit = DefaultBufferLimit()
	}
	return &BufferPool{limit: limit}
}

// DefaultBufferLimit is half of the Go memory limit (debug.SetMemoryLimit, which is GOMEMLIMIT,
// set by the binary from the cgroup's memory.max when unset), or 512 MiB when there is none.
// The other half is for the rest of the process: a job's gzip writer, encoder blocks and
// MongoDB batches (a few MiB per job), the runtime and the GC's headroom. The pool raises the
// limit to 2 x the part size asked for when it is lower, so that one job can always progress.
func DefaultBufferLimit() int64 {
	lim := debug.SetMemoryLimit(-1)
	if lim <= 0 || lim == math.MaxInt64 {
		return 512 << 20
	}
	return lim / 2
}

var defaultPool = sync.OnceValue(func() *BufferPool { return NewBufferPool(0) })

// DefaultBufferPool is the pool of sinks whose S3Options.Buffers is nil: one per process, sized
// by DefaultBufferLimit when first used.
func DefaultBufferPool() *BufferPool { return defaultPool() }

// Limit is the pool's limit in bytes.
func (p *BufferPool) Limit() int64 { return p.limit }

// Stats returns the pool's figures.
func (p *BufferPool) Stats() BufferStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Limit, s.Held, s.Peak, s.Waiting = p.limit, p.held, p.peak, len(p.waiters)
	s.InUse = p.held
	for _, f := range p.free {
		s.InUse -= int64(cap(f.b))
	}
	return s
}

// Get returns a buffer of size bytes (its capacity may be larger), waiting for room while the
// pool is full. Give it back with Put.
func (p *BufferPool) Get(ctx context.Context, size int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	if len(p.waiters) == 0 {
		if b, ok := p.take(size); ok {
			p.mu.Unlock()
			return p.fill(b, size), nil
		}
	}
	w := &bufWaiter{size: size, ready: make(chan []byte, 1)}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	select {
	case b := <-w.ready:
		if ctx.Err() == nil {
			return p.fill(b, size), nil
		}
		p.giveBack(b, size)
		return nil, ctx.Err()
	case <-ctx.Done():
	}
	p.mu.Lock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.waiters = slices.Delete(p.waiters, i, i+1)
		p.serve() // the next in line may fit where this one did not
		p.mu.Unlock()
		return nil, ctx.Err()
	}
	p.mu.Unlock()
	// Served while the context ended: hand it back.
	p.giveBack(<-w.ready, size)
	return nil, ctx.Err()
}

// giveBack returns what serve granted a waiter that no longer wants it.
func (p *BufferPool) giveBack(b []byte, size int64) {
	if b != nil {
		p.Put(b)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held -= size
	p.serve()
}

// fill returns b resliced to size, or a new buffer of size bytes for which room was reserved.
func (p *BufferPool) fill(b []byte, size int64) []byte {
	if b != nil {
		return b[:size]
	}
	return make([]byte, size)
}

// Put gives a buffer of Get back.
func (p *BufferPool) Put(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, freeBuf{b: b[:cap(b)], since: time.Now()})
	p.serve()
}

// serve grants the waiters in order, as long as the first one fits.
func (p *BufferPool) serve() {
	for len(p.waiters) > 0 {
		w := p.waiters[0]
		b, ok := p.take(w.size)
		if !ok {
			return
		}
		p.waiters = p.waiters[1:]
		w.ready <- b
	}
}

// take grants size bytes if the pool has room: the smallest free buffer that is large enough,
// or nil and the bytes reserved for a new one. Free buffers too small for it are dropped when
// their room is needed (part sizes only grow within an upload).
func (p *BufferPool) take(size int64) ([]byte, bool) {
	now := time.Now()
	best := -1
	for i := 0; i < len(p.free); i++ {
		f := p.free[i]
		if now.Sub(f.since) > idleBufferTTL {
			p.held -= int64(cap(f.b))
			p.free = slices.Delete(p.free, i, i+1)
			i--
			continue
		}
		if int64(cap(f.b)) >= size && (best < 0 || cap(f.b) < cap(p.free[best].b)) {
			best = i
		}
	}
	if best >= 0 {
		b := p.free[best].b
		p.free = slices.Delete(p.free, best, best+1)
		p.stats.Reused++
		return b, true
	}
	room := max(p.limit, 2*size)
	for len(p.free) > 0 && p.held+size > room {
		p.held -= int64(cap(p.free[0].b))
		p.free = p.free[1:]
	}
	if p.held+size > room {
		return nil, false
	}
	p.held += size
	p.peak = max(p.peak, p.held)
	p.stats.Allocated++
	return nil, true
}

// smallBufSize is the first read of every Put: a body that ends within it (a manifest, a tiny
// export) is written from it and never takes a part buffer of the pool. These buffers are
// outside the pool's budget (at most one per running Put: 16 MiB at 256 jobs), so that a job
// never holds a counted buffer while it waits for the pool.
const smallBufSize = 64 << 10

// One byte more than smallBufSize: a body of exactly smallBufSize bytes is seen to end in it.
var smallBufs = sync.Pool{New: func() any { b := make([]byte, smallBufSize+1); return &b }}

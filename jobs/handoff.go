package jobs

import (
	"errors"
	"io"
	"sync"
)

// Handoff is a buffered writer whose blocks are written to the underlying writer by a goroutine
// of its own, so that what fills the blocks (the encoder) and what consumes them (gzip) run on
// two cores at once instead of taking turns. Memory is bounded: blocks × size bytes; Write
// waits for a free block when the consumer is behind.
//
// A write error of the underlying writer is returned by the next Write and by Close; blocks
// handed over after it are dropped. Close must always be called (it stops the goroutine); it
// writes what is buffered and waits until everything is written. A Handoff is for one
// producer goroutine.
type Handoff struct {
	w    io.Writer
	size int
	cur  []byte
	full chan []byte
	free chan []byte
	done chan struct{}

	mu     sync.Mutex
	err    error
	closed bool
}

// ErrHandoffClosed is returned by Write after Close.
var ErrHandoffClosed = errors.New("jobs: write to a closed handoff")

// NewHandoff returns a Handoff writing to w in blocks of size bytes, with blocks buffers (at
// least 2: one filling, one being written).
func NewHandoff(w io.Writer, size, blocks int) *Handoff {
	size = max(size, 512)
	blocks = max(blocks, 2)
	h := &Handoff{
		w:    w,
		size: size,
		cur:  getBlock(size),
		full: make(chan []byte, blocks),
		free: make(chan []byte, blocks),
		done: make(chan struct{}),
	}
	for range blocks - 1 {
		h.free <- getBlock(size)
	}
	go h.run()
	return h
}

func (h *Handoff) run() {
	defer close(h.done)
	for b := range h.full {
		if h.error() == nil {
			if err := h.write(b); err != nil {
				h.setError(err)
			}
		}
		h.free <- b[:0]
	}
}

// write writes b, turning a panic of the underlying writer (gzip, say) into an error of the
// job: a panic on this goroutine would crash the process. The loop goes on, dropping blocks,
// so that the producer is not left waiting for a free block.
func (h *Handoff) write(b []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Recovered("jobs: handoff writer", r)
		}
	}()
	_, err = h.w.Write(b)
	return err
}

func (h *Handoff) error() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func (h *Handoff) setError(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.err = err
	}
}

// Write implements io.Writer.
func (h *Handoff) Write(p []byte) (int, error) {
	if h.closed {
		return 0, ErrHandoffClosed
	}
	n := 0
	for len(p) > 0 {
		if len(h.cur) == h.size {
			if err := h.error(); err != nil {
				return n, err
			}
			h.full <- h.cur
			h.cur = <-h.free
		}
		c := copy(h.cur[len(h.cur):h.size], p)
		h.cur = h.cur[:len(h.cur)+c]
		p = p[c:]
		n += c
	}
	return n, nil
}

// Close writes what is buffered, waits until every block is written and returns the first
// write error. Calling it again returns the same.
func (h *Handoff) Close() error {
	if !h.closed {
		h.closed = true
		if len(h.cur) > 0 {
			h.full <- h.cur
			h.cur = nil
		}
		close(h.full)
		<-h.done
		// Every block is back in free now: keep them for the next Handoff.
		for len(h.free) > 0 {
			b := <-h.free
			blockPool.Put(&b)
		}
	}
	<-h.done
	return h.error()
}

// blockPool keeps blocks of finished Handoffs for the next ones: one per job, so that a small
// export does not allocate its blocks anew.
var blockPool sync.Pool

func getBlock(size int) []byte {
	if p, ok := blockPool.Get().(*[]byte); ok && cap(*p) == size {
		return (*p)[:0]
	}
	return make([]byte, 0, size)
}

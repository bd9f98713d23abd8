package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The compressed stream of an export is a sequence of gzip members cut at row boundaries,
// grouped into parts:
//
//   - the encoder's bytes are cut into chunks of about chunkSize bytes at row boundaries;
//   - a member is the chunks of about memberSize uncompressed bytes; its chunks are compressed
//     in parallel, each chunk but a member's first with the previous chunk's last 32 KiB as
//     its preset dictionary and ended by a sync flush (the last one by the final block), so a
//     member is one ordinary deflate stream that compresses almost as well as one compressor
//     would (the technique of pigz and pgzip);
//   - a part is whole members, closed once it reaches the sink's part size (at least
//     MinPartSize); only the stream's last part may be smaller.
//
// Every cut depends on the bytes only, never on timing or on the number of compressors, so a
// stream continued from a part's Mark is byte for byte the stream an uninterrupted run writes.
const (
	defaultChunkSize  = 1 << 20
	defaultMemberSize = 4 << 20
	dictSize          = 32 << 10
	// defaultPartTarget is the part size for sinks that do not say (jobs.Sink).
	defaultPartTarget = 8 << 20
)

// gzipHeader is the 10-byte header of every member: no name, no time, unknown OS.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}

// partsOptions configure a gzipParts.
type partsOptions struct {
	level       int
	workers     int
	chunkSize   int
	memberSize  int64
	target      func(n int) int64
	buffers     Buffers
	firstPart   int
	resume      *Mark
	progress    *Progress
	maxInFlight int
}

// chunk is a piece of a member on its way through a compressor.
type chunk struct {
	data        []byte // uncompressed, whole rows
	dict        []byte // preset dictionary; nil for a member's first chunk
	first, last bool   // of its member
	final       bool   // the stream's last chunk
	rows        int64
	lastID      bson.RawValue
	out         *bytes.Buffer // raw deflate
	err         error
	done        chan struct{}
}

// gzipParts turns an encoder's output into Parts. The producer (one goroutine) writes rows
// and calls EndRow after each, then one of Close, Stop or Fail (these five methods are the
// producer's alone); compressors and the assembler run on their own goroutines; the consumer
// calls Next, and drain once the producer returned.
type gzipParts struct {
	o      partsOptions
	ctx    context.Context
	cancel context.CancelCauseFunc

	// producer
	cur         *chunk
	memberBytes int64
	tail        []byte
	closed      bool

	work  chan *chunk
	order chan *chunk
	parts chan *Part
	wg    sync.WaitGroup

	// assembler
	errOnce sync.Once
	err     error
	done    chan struct{} // closed when the assembler returned
	// final is the stream's state after its last part, once delivered.
	final Mark
}

// Buffers of finished chunks, kept for the next ones.
var (
	dataBufs, dictBufs sync.Pool
	chunkBufs          = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	flaters            [flate.BestCompression + 1]sync.Pool
)

func getBuf(p *sync.Pool, size int) []byte {
	if b, ok := p.Get().(*[]byte); ok && cap(*b) >= size {
		return (*b)[:0]
	}
	return make([]byte, 0, size)
}

func putBuf(p *sync.Pool, b []byte) { p.Put(&b) }

func newGzipParts(ctx context.Context, o partsOptions) *gzipParts {
	if o.level == 0 {
		o.level = 6
	}
	o.workers = max(o.workers, 1)
	if o.chunkSize <= 0 {
		o.chunkSize = defaultChunkSize
	}
	if o.memberSize <= 0 {
		o.memberSize = defaultMemberSize
	}
	if o.target == nil {
		o.target = func(int) int64 { return defaultPartTarget }
	}
	if o.buffers == nil {
		o.buffers = heapBuffers{}
	}
	if o.firstPart <= 0 {
		o.firstPart = 1
	}
	if o.progress == nil {
		o.progress = new(Progress)
	}
	if o.maxInFlight <= 0 {
		o.maxInFlight = o.workers + 2
	}
	ctx, cancel := context.WithCancelCause(ctx)
	g := &gzipParts{
		o: o, ctx: ctx, cancel: cancel,
		work:  make(chan *chunk, o.workers),
		order: make(chan *chunk, o.maxInFlight),
		parts: make(chan *Part, 1),
		done:  make(chan struct{}),
	}
	g.cur = g.newChunk()
	for range o.workers {
		g.wg.Add(1)
		go g.compress()
	}
	go g.assemble()
	return g
}

func (g *gzipParts) newChunk() *chunk {
	// A pooled buffer when there is one; else a small one that grows: a small export takes
	// little memory, however many run at once.
	return &chunk{data: getBuf(&dataBufs, min(g.o.chunkSize, 64<<10)), done: make(chan struct{})}
}

// Write implements io.Writer for the encoder: the bytes of the current row.
func (g *gzipParts) Write(p []byte) (int, error) {
	g.cur.data = append(g.cur.data, p...)
	return len(p), nil
}

// EndRow ends a row whose _id is id; the chunk is sent on once it is large enough.
func (g *gzipParts) EndRow(id bson.RawValue) error {
	c := g.cur
	c.rows++
	c.lastID = bson.RawValue{Type: id.Type, Value: append(c.lastID.Value[:0], id.Value...)}
	if len(c.data) < g.o.chunkSize {
		return nil
	}
	return g.dispatch(false)
}

// Close ends the stream: the last chunk is sent and the last part follows.
func (g *gzipParts) Close() error {
	if g.closed {
		return nil
	}
	g.closed = true
	err := g.dispatch(true)
	close(g.order)
	close(g.work)
	return err
}

// Stop ends the stream without its last chunk: the parts already complete are delivered,
// then Next returns ErrStopped.
func (g *gzipParts) Stop() {
	if !g.closed {
		g.closed = true
		close(g.order)
		close(g.work)
	}
}

// Fail stops the stream with err: Next returns it.
func (g *gzipParts) Fail(err error) {
	g.setErr(err)
	if !g.closed {
		g.closed = true
		close(g.order)
		close(g.work)
	}
}

func (g *gzipParts) setErr(err error) {
	g.errOnce.Do(func() { g.err = err; g.cancel(err) })
}

// dispatch sends the current chunk to the compressors and the assembler.
func (g *gzipParts) dispatch(final bool) error {
	c := g.cur
	c.final = final
	c.first = g.memberBytes == 0
	g.o.progress.BytesUncompressed.Add(int64(len(c.data)))
	g.memberBytes += int64(len(c.data))
	c.last = final || g.memberBytes >= g.o.memberSize
	if !c.first {
		c.dict = g.tail
	}
	if c.last {
		g.memberBytes, g.tail = 0, nil
	} else {
		// The next chunk's dictionary: the last 32 KiB of the member so far.
		next := getBuf(&dictBufs, dictSize)
		if len(c.data) < dictSize {
			next = append(next, g.tail[max(0, len(g.tail)-(dictSize-len(c.data))):]...)
		}
		g.tail = append(next, c.data[max(0, len(c.data)-dictSize):]...)
	}
	if !final {
		g.cur = g.newChunk()
	}
	select {
	case g.order <- c:
	case <-g.ctx.Done():
		return context.Cause(g.ctx)
	}
	select {
	case g.work <- c:
	case <-g.ctx.Done():
		return context.Cause(g.ctx)
	}
	return nil
}

// compress is a compressor goroutine.
func (g *gzipParts) compress() {
	defer g.wg.Done()
	var fw *flate.Writer
	defer func() {
		if fw != nil {
			flaters[g.o.level].Put(fw)
		}
	}()
	for c := range g.work {
		func() {
			defer close(c.done)
			defer func() {
				if r := recover(); r != nil {
					c.err = Recovered("jobs: gzip compressor", r)
					fw = nil
				}
			}()
			if g.ctx.Err() != nil {
				c.err = context.Cause(g.ctx)
				return
			}
			c.out = chunkBufs.Get().(*bytes.Buffer)
			c.out.Reset()
			if fw == nil {
				if w, ok := flaters[g.o.level].Get().(*flate.Writer); ok {
					fw = w
				} else if fw, c.err = flate.NewWriter(nil, g.o.level); c.err != nil {
					return
				}
			}
			fw.ResetDict(c.out, c.dict)
			if _, c.err = fw.Write(c.data); c.err != nil {
				return
			}
			if c.last {
				c.err = fw.Close()
			} else {
				c.err = fw.Flush()
			}
		}()
	}
}

// assemble puts the compressed chunks in order into members and parts.
func (g *gzipParts) assemble() {
	defer close(g.done)
	defer close(g.parts)
	a := &assembler{g: g, partNo: g.o.firstPart, sha: sha256.New()}
	if m := g.o.resume; m != nil {
		a.mark = Mark{Rows: m.Rows, BytesUncompressed: m.BytesUncompressed, BytesCompressed: m.BytesCompressed, LastID: m.LastID}
		if err := a.sha.(encoding.BinaryUnmarshaler).UnmarshalBinary(m.SHA256); err != nil {
			g.setErr(fmt.Errorf("jobs: restore the SHA-256 of the checkpoint: %w", err))
		}
	}
	defer a.release()
	defer func() {
		if r := recover(); r != nil {
			g.setErr(Recovered("jobs: gzip assembler", r))
		}
	}()
	for c := range g.order {
		if g.ctx.Err() == nil {
			select {
			case <-c.done:
			case <-g.ctx.Done():
			}
		}
		if err := g.ctx.Err(); err != nil {
			g.recycle(c)
			continue // drain: the producer may be waiting to send
		}
		if c.err != nil {
			g.setErr(c.err)
			g.recycle(c)
			continue
		}
		err := a.add(c)
		g.recycle(c)
		if err != nil {
			g.setErr(err)
		}
	}
	if g.final.SHA256 == nil {
		g.setErr(ErrStopped) // the producer stopped before the last chunk
	}
}

func (g *gzipParts) recycle(c *chunk) {
	select {
	case <-c.done:
		putBuf(&dataBufs, c.data)
		if c.dict != nil {
			putBuf(&dictBufs, c.dict)
		}
		if c.out != nil {
			chunkBufs.Put(c.out)
		}
	default:
		// Still being compressed (the job failed): left to the GC.
	}
}

// Next implements Parts.
func (g *gzipParts) Next(ctx context.Context) (*Part, error) {
	select {
	case p, ok := <-g.parts:
		if ok {
			return p, nil
		}
		<-g.done
		if g.err != nil {
			return nil, g.err
		}
		return nil, io.EOF
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// drain gives back the parts nobody will read, once the producer returned (it closes the
// channels the goroutines wait on).
func (g *gzipParts) drain() {
	for p := range g.parts {
		p.Release()
	}
	<-g.done
	g.wg.Wait()
}

// assembler is the assembling goroutine's state.
type assembler struct {
	g          *gzipParts
	partNo     int
	sha        hash.Hash
	mark       Mark
	buf        []byte // the part being filled (from the budget)
	fromBudget bool
	crc        uint32
	isize      uint32
}

func (a *assembler) release() {
	if a.buf != nil && a.fromBudget {
		a.g.o.buffers.Put(a.buf)
	}
	a.buf = nil
}

// bound is the most bytes a member can take compressed (deflate's stored blocks, flush
// markers, header and trailer).
func (a *assembler) bound() int64 {
	m := a.g.o.memberSize + int64(a.g.o.chunkSize)
	return m + m/64 + 4096
}

// smallPart is where a stream's first part starts: an export that ends within it (most do)
// never takes a part buffer from the budget.
const smallPart = 64 << 10

func (a *assembler) write(b []byte) error {
	if len(a.buf)+len(b) > cap(a.buf) {
		var grown []byte
		if !a.fromBudget {
			// Past the small start of the first part: a whole part's buffer from the budget.
			size := a.g.o.target(a.partNo) + a.bound()
			nb, err := a.g.o.buffers.Get(a.g.ctx, max(size, int64(len(a.buf)+len(b))))
			if err != nil {
				return err
			}
			grown = nb[:len(a.buf)]
		} else {
			// A member past the bound (a row larger than the chunk size): grow outside the
			// budget rather than fail.
			grown = make([]byte, len(a.buf), 2*cap(a.buf)+len(b))
		}
		copy(grown, a.buf)
		a.release()
		a.buf, a.fromBudget = grown, !a.fromBudget
	}
	a.buf = append(a.buf, b...)
	a.sha.Write(b)
	a.mark.BytesCompressed += int64(len(b))
	a.g.o.progress.BytesCompressed.Add(int64(len(b)))
	return nil
}

func (a *assembler) add(c *chunk) error {
	if a.buf == nil {
		if a.partNo == a.g.o.firstPart {
			a.buf, a.fromBudget = make([]byte, 0, smallPart), false
		} else {
			size := a.g.o.target(a.partNo) + a.bound()
			b, err := a.g.o.buffers.Get(a.g.ctx, size)
			if err != nil {
				return err
			}
			a.buf, a.fromBudget = b[:0], true
		}
	}
	if c.first {
		if err := a.write(gzipHeader); err != nil {
			return err
		}
		a.crc, a.isize = 0, 0
	}
	if err := a.write(c.out.Bytes()); err != nil {
		return err
	}
	a.crc = crc32.Update(a.crc, crc32.IEEETable, c.data)
	a.isize += uint32(len(c.data))
	a.mark.BytesUncompressed += int64(len(c.data))
	a.mark.Rows += c.rows
	if c.rows > 0 {
		a.mark.LastID = bson.RawValue{Type: c.lastID.Type, Value: append([]byte(nil), c.lastID.Value...)}
	}
	if !c.last {
		return nil
	}
	var trailer [8]byte
	binary.LittleEndian.PutUint32(trailer[:4], a.crc)
	binary.LittleEndian.PutUint32(trailer[4:], a.isize)
	if err := a.write(trailer[:]); err != nil {
		return err
	}
	if int64(len(a.buf)) < a.g.o.target(a.partNo) && !c.final {
		return nil // the part takes the next member too
	}
	state, err := a.sha.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return fmt.Errorf("jobs: save the SHA-256 state: %w", err)
	}
	mark := a.mark
	mark.SHA256 = state
	p := &Part{Data: a.buf, Last: c.final, Mark: mark}
	if c.final {
		a.g.final = mark
	}
	if buf := a.buf; a.fromBudget {
		p.release = func() { a.g.o.buffers.Put(buf) }
	}
	a.buf = nil
	a.partNo++
	select {
	case a.g.parts <- p:
		return nil
	case <-a.g.ctx.Done():
		p.Release()
		return context.Cause(a.g.ctx)
	}
}

// sumOf is the hex SHA-256 in a marshalled state.
func sumOf(state []byte) (string, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// partsReader reads parts as one stream, for sinks that take a reader.
type partsReader struct {
	ctx   context.Context
	parts Parts
	cur   *Part
	off   int
	eof   bool
}

func (r *partsReader) Read(p []byte) (int, error) {
	for {
		if r.cur != nil && r.off < len(r.cur.Data) {
			n := copy(p, r.cur.Data[r.off:])
			r.off += n
			return n, nil
		}
		if r.cur != nil {
			r.cur.Release()
			r.cur = nil
		}
		if r.eof {
			return 0, io.EOF
		}
		part, err := r.parts.Next(r.ctx)
		if err == io.EOF { //nolint:errorlint // only io.EOF itself ends it
			return 0, io.EOF
		}
		if err != nil {
			return 0, &StreamError{cause: err}
		}
		r.cur, r.off, r.eof = part, 0, part.Last
	}
}

func (r *partsReader) close() {
	if r.cur != nil {
		r.cur.Release()
		r.cur = nil
	}
}

package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"testing"
	"time"

	"github.com/verifiedfan/export-service/jobs"
)

// putMany runs n Puts of size bytes at once through sinks sharing pool, and checks every object.
func putMany(t *testing.T, b *bundle, pool *BufferPool, n, size int, perTier int) {
	t.Helper()
	bucket := b.env["EXPORT_BUCKET"]
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sk := NewS3(b.s3Client(b.base.Credentials, nil), bucket, S3Options{PartSize: 5 << 20, Concurrency: 4, Buffers: pool})
			if perTier > 0 {
				sk.perTier = perTier
			}
			data := randomBytes(uint64(100+i), size)
			key := fmt.Sprintf("%spool-%d-%d", b.prefix, size, i)
			if _, err := sk.Put(context.Background(), jobs.Object{Key: key}, onlyReader{bytes.NewReader(data)}); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(b.get(t, bucket, key), data) {
				errs <- fmt.Errorf("%s differs", key)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Many concurrent Puts share one budget: the part buffers of the whole process never exceed it,
// however many jobs run (each would hold up to 5 x 5 MiB on its own here), and every object is
// written whole.
func TestBufferPoolBoundsConcurrentPuts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pool := NewBufferPool(4 * 5 << 20)
	putMany(t, b, pool, 8, 17<<20, 0)
	st := pool.Stats()
	t.Logf("pool: %+v", st)
	if st.Peak > pool.Limit() {
		t.Errorf("part buffers peaked at %d bytes, limit %d", st.Peak, pool.Limit())
	}
	if st.InUse != 0 || st.Waiting != 0 {
		t.Errorf("after the Puts: %d bytes in use, %d waiting", st.InUse, st.Waiting)
	}
	if st.Reused == 0 {
		t.Error("no buffer was reused")
	}
}

// A manifest-sized body (or anything up to 64 KiB) is written from a small buffer and never
// takes a part buffer of the pool; one byte more does.
func TestSmallPutTakesNoPartBuffer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pool := NewBufferPool(64 << 20)
	sk := NewS3(b.s3Client(b.base.Credentials, nil), b.env["EXPORT_BUCKET"], S3Options{PartSize: 5 << 20, Buffers: pool})
	for _, size := range []int{0, 1200, smallBufSize} {
		w, err := sk.Put(context.Background(), jobs.Object{Key: fmt.Sprintf("%smanifest-%d.json", b.prefix, size)}, onlyReader{bytes.NewReader(randomBytes(1, size))})
		if err != nil || w.Parts != 1 {
			t.Fatalf("size %d: %v, %d parts", size, err, w.Parts)
		}
	}
	if st := pool.Stats(); st.Peak != 0 || st.Allocated != 0 || st.Reused != 0 {
		t.Errorf("small Puts took part buffers: %+v", st)
	}
	if _, err := sk.Put(context.Background(), jobs.Object{Key: b.prefix + "just-over"}, onlyReader{bytes.NewReader(randomBytes(1, smallBufSize+1))}); err != nil {
		t.Fatal(err)
	}
	if st := pool.Stats(); st.Allocated != 1 {
		t.Errorf("a body over %d bytes: %+v, want one part buffer", smallBufSize, st)
	}
}

// The smallest budget, two part sizes, still lets every job finish: 8 concurrent multipart Puts,
// and (with parts growing every part) Puts whose parts grow past the limit.
func TestBufferPoolNoDeadlock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	pool := NewBufferPool(2 * 5 << 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); putMany(t, b, pool, 8, 17<<20, 0) }()
		// 5, 10, 20 MiB parts then 5 of 40: a part larger than the whole budget.
		go func() { defer wg.Done(); putMany(t, b, pool, 2, 40<<20, 1) }()
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("Puts still waiting after 3 minutes: %+v", pool.Stats())
	}
	if st := pool.Stats(); st.Peak > 2*40<<20 {
		t.Errorf("peak %d, bound max(limit, 2 x largest part)", st.Peak)
	}
}

// Waiters are served in order: a request for a large buffer is not overtaken by later small
// ones, which would otherwise starve it.
func TestBufferPoolServesInOrder(t *testing.T) {
	t.Parallel()
	p := NewBufferPool(100)
	ctx := context.Background()
	a, _ := p.Get(ctx, 30)
	c, _ := p.Get(ctx, 30)
	d, _ := p.Get(ctx, 30)
	big := make(chan []byte)
	go func() { buf, _ := p.Get(ctx, 50); big <- buf }() // fits once at most 50 bytes are held
	waitFor(t, func() bool { return p.Stats().Waiting == 1 })
	small := make(chan []byte)
	go func() { buf, _ := p.Get(ctx, 10); small <- buf }()
	waitFor(t, func() bool { return p.Stats().Waiting == 2 })
	p.Put(a) // 60 bytes held: room for the small one, not for the large one, which came first
	select {
	case <-small:
		t.Fatal("a later small request overtook the waiting large one")
	case <-time.After(50 * time.Millisecond):
	}
	p.Put(c)
	bb := <-big
	if len(bb) != 50 {
		t.Fatalf("got %d bytes", len(bb))
	}
	p.Put(bb)
	p.Put(<-small)
	p.Put(d)
	// A waiter whose context ends leaves the line.
	hold, _ := p.Get(ctx, 100)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := p.Get(cctx, 60); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get = %v, want the context's end", err)
	}
	p.Put(hold)
	if st := p.Stats(); st.Waiting != 0 || st.InUse != 0 || st.Held > 100 {
		t.Errorf("%+v", st)
	}
}

// The default budget is half of the Go memory limit.
func TestDefaultBufferLimit(t *testing.T) {
	// Not parallel: it changes the process's memory limit.
	old := setMemoryLimit(1 << 30)
	defer setMemoryLimit(old)
	if got := DefaultBufferLimit(); got != 512<<20 {
		t.Errorf("DefaultBufferLimit() = %d with a 1 GiB memory limit, want 512 MiB", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func setMemoryLimit(n int64) int64 { return debug.SetMemoryLimit(n) }

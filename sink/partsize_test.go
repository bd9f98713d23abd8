package sink

import (
	"context"
	"sync"
	"testing"
	"time"
)

const tib = int64(1) << 40

// The policy's promises, for every base part size the configuration allows (S3_PART_SIZE_MB
// 5..5120): 10,000 parts hold at least 1 TiB; every part is within S3's limits; sizes never
// shrink; and exports up to 1,000 parts use the base size only.
func TestPartSizePolicy(t *testing.T) {
	t.Parallel()
	for _, mb := range []int64{5, 6, 8, 16, 64, 100, 512, 1024, 5120} {
		base := mb << 20
		var total, prev int64
		for n := 1; n <= MaxParts; n++ {
			p := PartSize(base, n)
			if p < MinPartSize || p > MaxPartSize {
				t.Fatalf("base %d MiB: part %d is %d bytes, outside [5 MiB, 5 GiB]", mb, n, p)
			}
			if p < prev {
				t.Fatalf("base %d MiB: part %d (%d) is smaller than part %d (%d)", mb, n, p, n-1, prev)
			}
			if n <= 1000 && p != base {
				t.Fatalf("base %d MiB: part %d is %d, want the base size", mb, n, p)
			}
			prev = p
			total += p
		}
		if total < tib {
			t.Errorf("base %d MiB: 10,000 parts hold %d bytes, less than 1 TiB", mb, total)
		}
		if c := Capacity(base); c != total {
			t.Errorf("base %d MiB: Capacity = %d, sum of parts = %d", mb, c, total)
		}
	}
	// The default's figures, as the doc comment states them.
	if got := PartSize(8<<20, 1000); got != 8<<20 {
		t.Errorf("part 1000 at 8 MiB = %d", got)
	}
	if got := PartSize(8<<20, 1001); got != 16<<20 {
		t.Errorf("part 1001 at 8 MiB = %d", got)
	}
	if got := PartSize(8<<20, 10000); got != 4096<<20 {
		t.Errorf("part 10000 at 8 MiB = %d", got)
	}
	// Where 1 GiB parts start: only past 992 GiB.
	var before int64
	for n := 1; PartSize(8<<20, n) < 1<<30; n++ {
		before += PartSize(8<<20, n)
	}
	if before < 992<<30 {
		t.Errorf("1 GiB parts start after %d bytes", before)
	}
	// Out-of-range bases are clamped to S3's limits.
	if got := PartSize(1, 1); got != MinPartSize {
		t.Errorf("PartSize(1, 1) = %d", got)
	}
	if got := PartSize(10<<30, 1); got != MaxPartSize {
		t.Errorf("PartSize(10 GiB, 1) = %d", got)
	}
}

// The buffer pool never holds more than max(limit, 2 x size), whatever the interleaving, and
// always lets at least one part through.
func TestBufPoolBound(t *testing.T) {
	t.Parallel()
	const limit = 5 * 8
	p := NewBufferPool(limit)
	var wg sync.WaitGroup
	sizes := []int64{8, 8, 8, 8, 8, 8, 8, 8, 16, 16, 16, 32, 32, 64, 64, 128}
	for i, size := range sizes {
		b, err := p.Get(context.Background(), size)
		if err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if bound := max(int64(limit), 2*size); held > bound {
			t.Fatalf("get %d (size %d): %d bytes held, bound %d", i, size, held, bound)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Millisecond)
			p.Put(b)
		}()
	}
	wg.Wait()
	if peak := p.Stats().Peak; peak > 2*128 {
		t.Errorf("peak %d", peak)
	}
	// A canceled context ends a wait.
	ctx, cancel := context.WithCancel(context.Background())
	hold, _ := p.Get(context.Background(), 128)
	hold2, _ := p.Get(context.Background(), 128)
	done := make(chan error, 1)
	go func() { _, err := p.Get(ctx, 128); done <- err }()
	cancel()
	p.Put(hold) // wakes the waiter, which sees the cancellation first
	if err := <-done; err != context.Canceled {
		t.Errorf("get after cancel: %v, want context.Canceled", err)
	}
	p.Put(hold2)
}

package jobs

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// Everything written comes out in order, in whatever pieces it was written.
func TestHandoffWritesEverythingInOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	want := make([]byte, 1<<20)
	for i := range want {
		want[i] = byte(r.IntN(256))
	}
	for _, size := range []int{512, 4096, 64 << 10} {
		var out bytes.Buffer
		h := NewHandoff(&out, size, 3)
		for p := want; len(p) > 0; {
			n := min(len(p), r.IntN(3*size))
			if w, err := h.Write(p[:n]); err != nil || w != n {
				t.Fatalf("Write = %d, %v", w, err)
			}
			p = p[n:]
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("size %d: output differs (%d bytes, want %d)", size, out.Len(), len(want))
		}
		if err := h.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := h.Write([]byte("x")); !errors.Is(err, ErrHandoffClosed) {
			t.Fatalf("Write after Close: %v", err)
		}
	}
}

type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	f.n--
	return len(p), nil
}

// A write error of the consumer reaches the producer, which then stops.
func TestHandoffReportsWriteErrors(t *testing.T) {
	boom := errors.New("boom")
	h := NewHandoff(&failAfter{n: 2, err: boom}, 512, 2)
	var err error
	for range 10000 {
		if _, err = h.Write(make([]byte, 100)); err != nil {
			break
		}
	}
	if !errors.Is(err, boom) {
		t.Fatalf("Write kept succeeding after the consumer failed: %v", err)
	}
	if err := h.Close(); !errors.Is(err, boom) {
		t.Fatalf("Close = %v", err)
	}
}

type panicWriter struct{}

func (panicWriter) Write([]byte) (int, error) { panic("gzip exploded") }

// A panic of the consumer (on the handoff's own goroutine) does not crash the process: the
// producer's next Write and Close return a permanent error of reason "panic", and Close does not
// hang however many blocks were in flight.
func TestHandoffRecoversPanics(t *testing.T) {
	h := NewHandoff(panicWriter{}, 512, 2)
	var err error
	for range 100 {
		if _, err = h.Write(make([]byte, 300)); err != nil {
			break
		}
	}
	var pe *PanicError
	if reason, _ := IsPermanent(err); reason != "panic" || !errors.As(err, &pe) {
		t.Fatalf("Write = %v, want a permanent panic error", err)
	}
	if err := h.Close(); !errors.As(err, &pe) {
		t.Fatalf("Close = %v", err)
	}
}

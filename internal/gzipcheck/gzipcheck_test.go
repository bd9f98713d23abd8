package gzipcheck

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"os/exec"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	kflate "github.com/klauspost/compress/flate"
)

// TestToolsOnPath: the external decoders' tools are on PATH (CI has all three); their
// versions go to the test log.
func TestToolsOnPath(t *testing.T) {
	for _, argv := range [][]string{{"gunzip", "--version"}, {"python3", "--version"}, {"node", "--version"}} {
		path, err := exec.LookPath(argv[0])
		if err != nil {
			t.Errorf("%s is not on PATH: %v", argv[0], err)
			continue
		}
		out, err := exec.Command(path, argv[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
			continue
		}
		first, _, _ := strings.Cut(string(out), "\n")
		t.Logf("%s (%s): %s", argv[0], path, first)
	}
}

func TestDecoders(t *testing.T) {
	want := []string{"go", "gunzip", "python", "node"}
	got := Decoders()
	if !slices.Equal(got, want) {
		t.Fatalf("Decoders() = %q, want %q", got, want)
	}
	got[0] = "changed"
	if Decoders()[0] != "go" {
		t.Error("Decoders returns a shared slice")
	}
	if _, err := Decode(t.Context(), "zcat", member(t, gzip.DefaultCompression, gzip.Header{}, []byte("x"))); err == nil || !strings.Contains(err.Error(), `unknown decoder "zcat"`) {
		t.Errorf("Decode with an unknown name: err = %v", err)
	}
}

// TestMultiMember: several compress/gzip members, one after the other (RFC 1952 section
// 2.2), read as one stream by all four decoders: the concatenation of their payloads.
func TestMultiMember(t *testing.T) {
	payloads := []struct {
		level int
		hdr   gzip.Header
		data  []byte
	}{
		{gzip.DefaultCompression, gzip.Header{}, []byte("id,email\n1,a@example.com\n")},
		{gzip.BestSpeed, gzip.Header{}, text(1, 300<<10)},
		{gzip.DefaultCompression, gzip.Header{}, nil}, // an empty member
		{gzip.BestCompression, gzip.Header{Name: "part-3.csv", Comment: "third", Extra: []byte("ab\x02\x00hi"), ModTime: time.Unix(1700000000, 0)}, text(2, 70<<10)},
		{gzip.NoCompression, gzip.Header{}, random(3, 100<<10)}, // stored blocks
		{gzip.HuffmanOnly, gzip.Header{}, text(4, 50<<10)},
		{gzip.DefaultCompression, gzip.Header{}, []byte("last line, no newline")},
	}
	var gz, want []byte
	for _, p := range payloads {
		gz = append(gz, member(t, p.level, p.hdr, p.data)...)
		want = append(want, p.data...)
	}
	got, err := CheckAll(t.Context(), gz)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("CheckAll read %d bytes, want the %d of the concatenated payloads (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	// Each decoder on its own, too: Node's gunzipSync in particular must not stop after the
	// first member.
	for _, name := range Decoders() {
		got, err := Decode(t.Context(), name, gz)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if !bytes.Equal(got, want) {
			t.Errorf("%s read %d bytes, want %d", name, len(got), len(want))
		}
	}
}

// TestDictionaryChunks: a member whose deflate stream is two chunks, the first sync-flushed
// (not closed) by one writer and the second compressed by a new writer preset with the last
// 32 KiB of the first chunk, behind a hand-written header and trailer, then an ordinary
// member. All four decoders read the three payloads.
func TestDictionaryChunks(t *testing.T) {
	for _, tc := range []struct {
		name           string
		level          int
		chunk1, chunk2 int
	}{
		{"level1", 1, 100 << 10, 80 << 10},
		{"level6", 6, 100 << 10, 80 << 10},
		{"level9", 9, 100 << 10, 80 << 10},
		{"short first chunk", 5, 5 << 10, 40 << 10}, // the whole first chunk is the dictionary
	} {
		t.Run(tc.name, func(t *testing.T) {
			chunk1 := text(10, tc.chunk1)
			chunk2 := chunkReusing(chunk1, text(11, tc.chunk2))
			dict := chunk1[max(0, len(chunk1)-32<<10):]

			// The dictionary is really used: chunk2 is smaller with it than without.
			if with, without := len(deflate(t, tc.level, dict, chunk2)), len(deflate(t, tc.level, nil, chunk2)); with >= without {
				t.Fatalf("chunk2 compresses to %d bytes with the dictionary, %d without: the test would not exercise it", with, without)
			}

			body := dictMember(t, tc.level, chunk1, chunk2, dict)
			second := text(12, 20<<10)
			gz := append(body, member(t, gzip.DefaultCompression, gzip.Header{}, second)...)
			want := slices.Concat(chunk1, chunk2, second)

			got, err := CheckAll(t.Context(), gz)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("CheckAll read %d bytes, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
			}

			// Negative control: chunk2 compressed against a dictionary one byte off from what
			// precedes it decodes to other bytes, which every decoder's CRC-32 check catches.
			off := chunk1[max(0, len(chunk1)-32<<10-1) : len(chunk1)-1]
			bad := append(dictMember(t, tc.level, chunk1, chunk2, off), member(t, gzip.DefaultCompression, gzip.Header{}, second)...)
			allFail(t, bad)
		})
	}
}

// TestCorruptAndTruncated: a flipped byte or a cut file fails every decoder, so CheckAll.
func TestCorruptAndTruncated(t *testing.T) {
	first, second, third := member(t, 6, gzip.Header{}, text(20, 200<<10)), member(t, 6, gzip.Header{}, text(21, 200<<10)), member(t, 6, gzip.Header{}, text(22, 1000))
	gz := slices.Concat(first, second, third)
	mid := len(first) + len(second)/2 // inside the second member's deflate data

	flipped := bytes.Clone(gz)
	flipped[mid] ^= 0xff
	t.Run("flipped byte", func(t *testing.T) { allFail(t, flipped) })
	crc := bytes.Clone(gz)
	crc[len(first)+len(second)-8] ^= 0x01 // the second member's stored CRC-32
	t.Run("wrong crc", func(t *testing.T) { allFail(t, crc) })
	size := bytes.Clone(gz)
	size[len(gz)-1] ^= 0x01 // the last member's ISIZE
	t.Run("wrong isize", func(t *testing.T) { allFail(t, size) })
	t.Run("cut in the middle", func(t *testing.T) { allFail(t, gz[:mid]) })
	t.Run("cut in the trailer", func(t *testing.T) { allFail(t, gz[:len(gz)-1]) })
	t.Run("cut in a header", func(t *testing.T) { allFail(t, gz[:len(first)+5]) })

	// Trailing bytes split the decoders, and CheckAll says which failed: gunzip warns (exit
	// status 2) and Go, Python and Node reject trailing garbage; zero padding only Go
	// rejects (gunzip, Python and Node skip it).
	t.Run("trailing garbage", func(t *testing.T) {
		_, err := CheckAll(t.Context(), slices.Concat(gz, []byte("garbage")))
		if err == nil || !strings.Contains(err.Error(), "4 of 4 decoders failed") {
			t.Fatalf("err = %v, want all four to fail", err)
		}
		t.Log(err)
	})
	t.Run("zero padding", func(t *testing.T) {
		_, err := CheckAll(t.Context(), slices.Concat(gz, make([]byte, 16)))
		if err == nil || !strings.Contains(err.Error(), "decoder go:") {
			t.Fatalf("err = %v, want the go decoder to fail", err)
		}
		t.Log(err)
	})
	// An empty file is no gzip file for Go, gunzip and Node, but Python's GzipFile reads
	// it as no members: CheckAll fails on the three.
	t.Run("empty input", func(t *testing.T) {
		_, err := CheckAll(t.Context(), nil)
		if err == nil || !strings.Contains(err.Error(), "3 of 4 decoders failed") || strings.Contains(err.Error(), "decoder python") {
			t.Fatalf("err = %v, want go, gunzip and node to fail", err)
		}
		t.Log(err)
	})
}

// allFail checks that every decoder, and so CheckAll, rejects gz.
func allFail(t *testing.T, gz []byte) {
	t.Helper()
	if out, err := CheckAll(t.Context(), gz); err == nil {
		t.Fatalf("CheckAll read %d bytes and no error", len(out))
	} else {
		t.Log(err)
	}
	for _, name := range Decoders() {
		if out, err := Decode(t.Context(), name, gz); err == nil {
			t.Errorf("%s read %d bytes and no error", name, len(out))
		}
	}
}

// TestLarge: 64 MiB of text in four members go through every decoder's pipes. Under the
// race detector, which makes compress/flate and every big copy about ten times slower (some
// 20 s for 64 MiB on two cores), it is 16 MiB: still hundreds of pipe buffers and far past
// any argv limit. A plain go test decodes the 64 MiB in about two seconds.
func TestLarge(t *testing.T) {
	size, members := 64<<20, 4
	if raceEnabled() {
		size = 16 << 20
		t.Logf("race detector on: %d MiB instead of 64", size>>20)
	}
	start := time.Now()
	want := text(30, size)
	parts := make([][]byte, members)
	var wg sync.WaitGroup
	for i := range parts {
		wg.Go(func() {
			parts[i] = member(t, gzip.BestSpeed, gzip.Header{}, want[i*size/members:(i+1)*size/members])
		})
	}
	wg.Wait()
	gz := slices.Concat(parts...)
	t.Logf("built %d MiB of text, %d MiB gzipped, in %v", size>>20, len(gz)>>20, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	got, err := CheckAll(t.Context(), gz)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("CheckAll read %d bytes, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	t.Logf("CheckAll: %v", time.Since(start).Round(time.Millisecond))
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestMissingTool: with none of the tools on PATH, CheckAll fails and names each; the Go
// decoder still works.
func TestMissingTool(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	gz := member(t, gzip.DefaultCompression, gzip.Header{}, []byte("hello"))
	_, err := CheckAll(t.Context(), gz)
	if err == nil {
		t.Fatal("CheckAll succeeded with an empty PATH")
	}
	for _, want := range []string{"3 of 4 decoders failed", "decoder gunzip: gunzip not found on PATH", "decoder python: python3 not found on PATH", "decoder node: node not found on PATH"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v\nwant it to contain %q", err, want)
		}
	}
	if out, err := Decode(t.Context(), "go", gz); err != nil || string(out) != "hello" {
		t.Errorf("go decoder: %q, %v", out, err)
	}
}

func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := CheckAll(ctx, member(t, gzip.DefaultCompression, gzip.Header{}, text(40, 1<<20))); err == nil || !strings.Contains(err.Error(), "4 of 4 decoders failed") {
		t.Errorf("err = %v, want all four to fail", err)
	}
}

// TestAgree: the disagreement report, which real decoders give no easy way to provoke.
func TestAgree(t *testing.T) {
	names := []string{"go", "gunzip", "python", "node"}
	same := []byte("abcdef")
	if got, err := agree(names, [][]byte{same, bytes.Clone(same), bytes.Clone(same), bytes.Clone(same)}); err != nil || !bytes.Equal(got, same) {
		t.Errorf("agree on equal outputs = %q, %v", got, err)
	}
	_, err := agree(names, [][]byte{[]byte("abcdef"), []byte("abcdef"), []byte("abcXef"), []byte("abc")})
	want := "gzipcheck: decoders disagree: go+gunzip read 6 bytes; python read 6 bytes, first difference at offset 3; node read 3 bytes, first difference at offset 3"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	long := text(50, 100000)
	other := bytes.Clone(long)
	other[77777] ^= 1
	if got := firstDiff(long, other); got != 77777 {
		t.Errorf("firstDiff = %d, want 77777", got)
	}
	if got := firstDiff(long, long[:12345]); got != 12345 {
		t.Errorf("firstDiff with a prefix = %d, want 12345", got)
	}
}

// member is one ordinary gzip member of data, written by compress/gzip.
func member(t testing.TB, level int, hdr gzip.Header, data []byte) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Error(err)
		return nil
	}
	zw.Header = hdr
	if _, err := zw.Write(data); err != nil {
		t.Error(err)
	}
	if err := zw.Close(); err != nil {
		t.Error(err)
	}
	return buf.Bytes()
}

// dictMember is a gzip member written by hand: a 10-byte header, then chunk1 compressed by
// a klauspost flate writer and sync-flushed, then chunk2 compressed by a second writer
// preset with dict and closed, then the trailer (CRC-32 of chunk1+chunk2, ISIZE).
func dictMember(t *testing.T, level int, chunk1, chunk2, dict []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}) // ID1 ID2 CM=deflate FLG MTIME XFL OS=unknown
	w1, err := kflate.NewWriter(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w1.Write(chunk1); err != nil {
		t.Fatal(err)
	}
	if err := w1.Flush(); err != nil { // sync flush: ends on a byte boundary, no final block
		t.Fatal(err)
	}
	if !bytes.HasSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff}) {
		t.Fatal("the sync flush did not end with an empty stored block")
	}
	w2, err := kflate.NewWriterDict(&buf, level, dict)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Write(chunk2); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	crc := crc32.Update(crc32.ChecksumIEEE(chunk1), crc32.IEEETable, chunk2)
	buf.Write(binary.LittleEndian.AppendUint32(nil, crc))
	buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(chunk1)+len(chunk2))))
	return buf.Bytes()
}

// deflate is data compressed by one klauspost flate writer, preset with dict when it is
// not nil.
func deflate(t *testing.T, level int, dict, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w *kflate.Writer
	var err error
	if dict == nil {
		w, err = kflate.NewWriter(&buf, level)
	} else {
		w, err = kflate.NewWriterDict(&buf, level, dict)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// chunkReusing is fresh with runs copied from the last 32 KiB of prev spliced in, so that a
// compressor preset with that tail finds matches in it.
func chunkReusing(prev, fresh []byte) []byte {
	tail := prev[max(0, len(prev)-32<<10):]
	out := make([]byte, 0, len(fresh)+len(tail))
	step := max(1, len(fresh)/4)
	for i := 0; i < len(fresh); i += step {
		run := tail[(i/step)*len(tail)/5:][:len(tail)/5] // a different fifth of the tail each time
		out = append(out, run...)
		out = append(out, fresh[i:min(i+step, len(fresh))]...)
	}
	return out
}

// text is n bytes of pseudo-random lines of made-up words, the same for the same seed.
func text(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	words := make([][]byte, 2048)
	for i := range words {
		w := make([]byte, 1+r.IntN(10))
		for j := range w {
			w[j] = 'a' + byte(r.IntN(26))
		}
		words[i] = w
	}
	lines := make([][]byte, 1<<14)
	for i := range lines {
		var b []byte
		for j := range 3 + r.IntN(12) {
			if j > 0 {
				b = append(b, ' ')
			}
			b = append(b, words[r.IntN(len(words))]...)
		}
		lines[i] = append(b, '\n')
	}
	out := make([]byte, 0, n+256)
	for len(out) < n {
		out = append(out, lines[r.IntN(len(lines))]...)
	}
	return out[:n]
}

// random is n pseudo-random bytes, the same for the same seed.
func random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

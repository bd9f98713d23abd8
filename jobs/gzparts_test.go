package jobs

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// testRows are n encoded rows ("id,text\n") with _ids 0..n-1, text of entropy enough that the
// stream compresses about 2:1, and each row's _id.
func testRows(n int, seed uint64) ([][]byte, []bson.RawValue) {
	rnd := rand.New(rand.NewPCG(seed, seed))
	rows := make([][]byte, n)
	ids := make([]bson.RawValue, n)
	const letters = "abcdefghijklmnopqrstuvwxyz      ,.0123456789"
	for i := range rows {
		text := make([]byte, 40+rnd.IntN(200))
		for j := range text {
			text[j] = letters[rnd.IntN(len(letters))]
		}
		rows[i] = fmt.Appendf(nil, "%d,%s\n", i, text)
		ids[i] = rawID(int64(i))
	}
	return rows, ids
}

// makeParts runs rows[from:] through a gzipParts and returns its parts' bytes and marks.
func makeParts(t *testing.T, o partsOptions, rows [][]byte, ids []bson.RawValue, from int) ([][]byte, []Mark) {
	t.Helper()
	g := newGzipParts(context.Background(), o)
	done := make(chan error, 1)
	go func() {
		for i := from; i < len(rows); i++ {
			if _, err := g.Write(rows[i]); err != nil {
				g.Fail(err)
				done <- err
				return
			}
			if err := g.EndRow(ids[i]); err != nil {
				g.Fail(err)
				done <- err
				return
			}
		}
		done <- g.Close()
	}()
	var data [][]byte
	var marks []Mark
	for {
		p, err := g.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		data = append(data, bytes.Clone(p.Data))
		marks = append(marks, p.Mark)
		last := p.Last
		p.Release()
		if last {
			if _, err := g.Next(context.Background()); !errors.Is(err, io.EOF) {
				t.Fatalf("Next after the last part: %v, want io.EOF", err)
			}
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	g.drain()
	return data, marks
}

func rawID(v any) bson.RawValue {
	t, b, err := bson.MarshalValue(v)
	if err != nil {
		panic(err)
	}
	return bson.RawValue{Type: t, Value: b}
}

func gunzipAll(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip header: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

// Every part is whole gzip members holding whole rows: each decodes alone, to exactly the rows
// its mark says, and the parts together are one gzip file of every row. Every part but the
// last reaches the target.
func TestPartsAreWholeMembersOfWholeRows(t *testing.T) {
	t.Parallel()
	rows, ids := testRows(60000, 1)
	target := int64(1 << 20)
	parts, marks := makeParts(t, partsOptions{workers: 3, chunkSize: 64 << 10, memberSize: 256 << 10, target: func(int) int64 { return target }}, rows, ids, 0)
	if len(parts) < 4 {
		t.Fatalf("%d parts; the test wants several", len(parts))
	}
	all := bytes.Join(rows, nil)
	var whole []byte
	var rowsSoFar int64
	for i, p := range parts {
		if i < len(parts)-1 && int64(len(p)) < target {
			t.Errorf("part %d is %d bytes, under the target %d", i+1, len(p), target)
		}
		got := gunzipAll(t, p)
		m := marks[i]
		want := bytes.Join(rows[rowsSoFar:m.Rows], nil)
		if !bytes.Equal(got, want) {
			t.Fatalf("part %d decodes to %d bytes, not its rows %d..%d (%d bytes)", i+1, len(got), rowsSoFar, m.Rows, len(want))
		}
		if !m.LastID.Equal(ids[m.Rows-1]) {
			t.Errorf("part %d: last id %v, want %v", i+1, m.LastID, ids[m.Rows-1])
		}
		rowsSoFar = m.Rows
		whole = append(whole, p...)
		if m.BytesCompressed != int64(len(whole)) {
			t.Errorf("part %d: mark says %d compressed bytes, the parts so far have %d", i+1, m.BytesCompressed, len(whole))
		}
		sum, err := sumOf(m.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if h := sha256.Sum256(whole); sum != hex.EncodeToString(h[:]) {
			t.Errorf("part %d: the mark's SHA-256 state is not the parts' so far", i+1)
		}
	}
	if !bytes.Equal(gunzipAll(t, whole), all) {
		t.Fatal("the parts together do not decode to every row")
	}
	if rowsSoFar != int64(len(rows)) {
		t.Errorf("last mark %d rows, want %d", rowsSoFar, len(rows))
	}
}

// The cuts depend on the bytes alone: any number of compressors writes the same bytes, and a
// stream continued from any part's mark writes exactly the rest of the uninterrupted one.
func TestPartsAreDeterministicAndResumeExactly(t *testing.T) {
	t.Parallel()
	rows, ids := testRows(25000, 2)
	o := partsOptions{workers: 1, chunkSize: 48 << 10, memberSize: 200 << 10, target: func(n int) int64 { return int64(600<<10) + int64(n)<<10 }}
	one, marks := makeParts(t, o, rows, ids, 0)
	o.workers = 4
	four, _ := makeParts(t, o, rows, ids, 0)
	if !bytes.Equal(bytes.Join(one, nil), bytes.Join(four, nil)) {
		t.Fatal("4 compressors wrote other bytes than 1")
	}
	for k := range len(one) - 1 {
		m := marks[k]
		ro := o
		ro.resume, ro.firstPart = &m, k+2
		rest, _ := makeParts(t, ro, rows, ids, int(m.Rows))
		if got, want := bytes.Join(rest, nil), bytes.Join(one[k+1:], nil); !bytes.Equal(got, want) {
			t.Fatalf("continued after part %d: %d bytes, differ from the uninterrupted stream's %d", k+1, len(got), len(want))
		}
	}
}

// An empty export is one valid gzip member; a row larger than a member still fits its part.
func TestPartsEdgeSizes(t *testing.T) {
	t.Parallel()
	parts, marks := makeParts(t, partsOptions{}, nil, nil, 0)
	if len(parts) != 1 || len(gunzipAll(t, parts[0])) != 0 || marks[0].Rows != 0 {
		t.Fatalf("empty stream: %d parts, marks %+v", len(parts), marks)
	}
	big := bytes.Repeat([]byte("x"), 3<<20)
	big = append(big, '\n')
	rows := [][]byte{[]byte("a\n"), big, []byte("b\n")}
	ids := []bson.RawValue{rawID(int32(1)), rawID("two"), rawID(bson.NewObjectID())}
	parts, _ = makeParts(t, partsOptions{chunkSize: 1 << 10, memberSize: 4 << 10, buffers: heapBuffers{}}, rows, ids, 0)
	if got := gunzipAll(t, bytes.Join(parts, nil)); !bytes.Equal(got, bytes.Join(rows, nil)) {
		t.Fatal("a row larger than a member did not come through")
	}
}

// A stream stopped by its producer delivers the parts already complete, then ErrStopped.
func TestPartsStop(t *testing.T) {
	t.Parallel()
	rows, ids := testRows(30000, 3)
	g := newGzipParts(context.Background(), partsOptions{workers: 2, chunkSize: 32 << 10, memberSize: 128 << 10, target: func(int) int64 { return 256 << 10 }})
	go func() {
		for i := range rows {
			_, _ = g.Write(rows[i])
			_ = g.EndRow(ids[i])
		}
		g.Stop()
	}()
	var n int
	var last Mark
	for {
		p, err := g.Next(context.Background())
		if errors.Is(err, ErrStopped) {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if p.Last {
			t.Fatal("a stopped stream delivered a last part")
		}
		n, last = n+1, p.Mark
		p.Release()
	}
	g.drain()
	if n == 0 || last.Rows == 0 || last.Rows >= int64(len(rows)) {
		t.Fatalf("%d parts, %d rows before the stop", n, last.Rows)
	}
}

// Package gzipcheck decompresses a gzip file with four independent decoders (Go's
// compress/gzip, GNU gunzip, Python's gzip module and Node's zlib) and checks that they all
// read the same bytes. Exports are multi-member gzip files (RFC 1952 section 2.2), some
// members made of sync-flushed deflate chunks compressed with preset dictionaries; every
// consumer must read them as one stream, and CheckAll is the independent check of that.
//
// The external decoders run as child processes with the file on stdin and the output on
// stdout, so big files never go through argv. A decoder whose tool is not on PATH (gunzip,
// python3, node) is an error, never a skip.
//
// Edges where the decoders part, so CheckAll fails: zero bytes after the last member are
// skipped by gunzip, Python and Node but rejected by Go; an empty file is no members to
// Python and an error to the others; other trailing bytes are an error to Go, Python and
// Node and a warning to gunzip (exit status 2), which Decode counts as a failure.
package gzipcheck

import (
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/verifiedfan/export-service/internal/clip"
)

// The decoder names, in the order Decoders returns them. "go" is the reference CheckAll
// compares the others with.
const (
	Go     = "go"     // compress/gzip, multistream (the default)
	Gunzip = "gunzip" // GNU gzip: gunzip -c
	Python = "python" // python3: gzip.GzipFile, every member
	Node   = "node"   // node: zlib.gunzipSync, every member
)

var (
	//go:embed readers.py
	pythonReader string
	//go:embed readers.mjs
	nodeReader string
)

// external is the command line of each decoder that runs as a child process.
var external = map[string][]string{
	Gunzip: {"gunzip", "-c"},
	Python: {"python3", "-I", "-c", pythonReader},
	Node:   {"node", "--input-type=module", "-e", nodeReader},
}

// Decoders returns the names of the four decoders: "go", "gunzip", "python", "node".
func Decoders() []string { return []string{Go, Gunzip, Python, Node} }

// Decode decompresses the whole gzip file gz, every member, with the named decoder. A
// corrupt or truncated file, trailing data the decoder rejects, a tool missing from PATH
// and an unknown name are errors.
func Decode(ctx context.Context, name string, gz []byte) ([]byte, error) {
	if name == Go {
		out, err := decodeGo(ctx, gz)
		if err != nil {
			return nil, fmt.Errorf("gzipcheck: decoder %s: %w", name, err)
		}
		return out, nil
	}
	argv, ok := external[name]
	if !ok {
		return nil, fmt.Errorf("gzipcheck: unknown decoder %q (have %s)", name, strings.Join(Decoders(), ", "))
	}
	out, err := run(ctx, argv, gz)
	if err != nil {
		return nil, fmt.Errorf("gzipcheck: decoder %s: %w", name, err)
	}
	return out, nil
}

func decodeGo(ctx context.Context, gz []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	zr.Multistream(true)
	var out bytes.Buffer
	if _, err := io.Copy(&out, ctxReader{ctx, zr}); err != nil {
		return nil, err
	}
	if err := zr.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// ctxReader stops a long in-process decode once ctx is done, like the child processes.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// run starts argv with gz on stdin and returns its stdout; a non-zero exit (gunzip's
// warning status 2 included) is an error that quotes the start of stderr.
func run(ctx context.Context, argv []string, gz []byte) ([]byte, error) {
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("%s not found on PATH: %w", argv[0], err)
	}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Env = environ()
	cmd.Stdin = bytes.NewReader(gz)
	var stdout bytes.Buffer
	stderr := &limitedBuffer{max: 4 << 10}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w (%v)", argv[0], ctx.Err(), err)
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = "no stderr"
		}
		return nil, fmt.Errorf("%s: %w: %s", argv[0], err, clip.String(msg, 1000))
	}
	return stdout.Bytes(), nil
}

// environ is the process environment without GZIP, whose options gzip would honour.
func environ() []string {
	env := os.Environ()
	kept := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GZIP=") {
			kept = append(kept, kv)
		}
	}
	return kept
}

// limitedBuffer keeps the first max bytes written to it and drops the rest.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return b.buf.String() }

// CheckAll decodes gz with all four decoders at once and returns the decoded bytes when all
// four read it byte for byte the same. Otherwise the error names every decoder that failed
// or, when all succeeded, the groups of decoders that agree, each group's length and its
// first offset that differs from the group "go" is in.
func CheckAll(ctx context.Context, gz []byte) ([]byte, error) {
	names := Decoders()
	outs := make([][]byte, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { outs[i], errs[i] = Decode(ctx, name, gz) })
	}
	wg.Wait()

	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("gzipcheck: %d of %d decoders failed:\n%w", len(failed), len(names), errors.Join(failed...))
	}

	return agree(names, outs)
}

// agree returns outs[0] when every output is the same, or else an error that sorts the
// decoders into groups that read the same bytes and gives each later group's length and
// first offset that differs from the first group's (the one names[0] is in).
func agree(names []string, outs [][]byte) ([]byte, error) {
	type group struct {
		names []string
		out   []byte
	}
	var groups []*group
next:
	for i, out := range outs {
		for _, g := range groups {
			if bytes.Equal(g.out, out) {
				g.names = append(g.names, names[i])
				continue next
			}
		}
		groups = append(groups, &group{names: []string{names[i]}, out: out})
	}
	if len(groups) == 1 {
		return groups[0].out, nil
	}
	ref := groups[0]
	var b strings.Builder
	fmt.Fprintf(&b, "gzipcheck: decoders disagree: %s read %d bytes", strings.Join(ref.names, "+"), len(ref.out))
	for _, g := range groups[1:] {
		fmt.Fprintf(&b, "; %s read %d bytes, first difference at offset %d", strings.Join(g.names, "+"), len(g.out), firstDiff(ref.out, g.out))
	}
	return nil, errors.New(b.String())
}

// firstDiff is the first offset where a and b differ; when one is a prefix of the other it
// is the shorter length.
func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	const block = 4096
	i := 0
	for i+block <= n && bytes.Equal(a[i:i+block], b[i:i+block]) {
		i += block
	}
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

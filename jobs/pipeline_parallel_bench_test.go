package jobs_test

import (
	"bytes"
	"context"
	"io"
	"runtime"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// parallelDocs is the documents of one run of BenchmarkPipelineParallel: about 45 MB of CSV,
// a dozen gzip members.
const parallelDocs = 200000

// BenchmarkPipelineParallel is the pipeline of registrations CSV with as many compressors as
// GOMAXPROCS, into a sink that discards: run it with -cpu 1,2 to see what the second core
// gives. Metrics: MB/s of CSV (b.SetBytes), docs/s, and size-cost-% (how much larger the
// stream of whole members is than one gzip stream of the same bytes at the same level).
func BenchmarkPipelineParallel(b *testing.B) {
	k := benchKinds[0]
	docs := k.docs(b)
	plan := k.plan(b, encode.FormatCSV)
	newEnc := func(w io.Writer) (encode.Encoder, error) {
		return encode.New(encode.FormatCSV, w, plan.Columns, encode.Options{})
	}
	var csv bytes.Buffer
	enc, err := newEnc(&csv)
	if err != nil {
		b.Fatal(err)
	}
	_ = enc.Begin()
	for src := (&memSource{docs: docs, n: parallelDocs}); src.Next(context.Background()); {
		_ = enc.Encode(src.Current())
	}
	one := oneStreamSize(b, csv.Bytes())
	var compressed int64
	b.SetBytes(int64(csv.Len()))
	b.ResetTimer()
	for b.Loop() {
		src := &memSource{docs: docs, n: parallelDocs}
		stats, _, err := jobs.Stream(context.Background(), src, newEnc, &discardSink{}, jobs.Object{Key: "k"}, jobs.PipelineOptions{Compressors: runtime.GOMAXPROCS(0)})
		if err != nil {
			b.Fatal(err)
		}
		if stats.BytesUncompressed != int64(csv.Len()) {
			b.Fatalf("pipeline wrote %d bytes of CSV, the encoder alone %d", stats.BytesUncompressed, csv.Len())
		}
		compressed = stats.BytesCompressed
	}
	b.ReportMetric(float64(b.N)*parallelDocs/b.Elapsed().Seconds(), "docs/s")
	b.ReportMetric(100*float64(compressed-one)/float64(one), "size-cost-%")
}

// oneStreamSize is the size of data as one gzip stream, level 6.
func oneStreamSize(tb testing.TB, data []byte) int64 {
	var out countWriter
	zw, err := gzip.NewWriterLevel(&out, 6)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := zw.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.n
}

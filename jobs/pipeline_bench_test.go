package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// memSource replays raw BSON documents from memory, n times over.
type memSource struct {
	docs []bson.Raw
	n, i int
}

func (s *memSource) Next(ctx context.Context) bool {
	if s.i >= s.n {
		return false
	}
	s.i++
	return true
}
func (s *memSource) Current() bson.Raw           { return s.docs[(s.i-1)%len(s.docs)] }
func (s *memSource) Err() error                  { return nil }
func (s *memSource) Close(context.Context) error { return nil }

// discardSink reads the stream to the end, like an uploader that never fails.
type discardSink struct{ n int64 }

func (d *discardSink) Put(_ context.Context, obj jobs.Object, body io.Reader) (jobs.Written, error) {
	n, err := io.Copy(io.Discard, body)
	d.n += n
	return jobs.Written{Key: obj.Key}, err
}

func marshalAll(tb testing.TB, docs []any) []bson.Raw {
	tb.Helper()
	out := make([]bson.Raw, len(docs))
	for i, d := range docs {
		b, err := bson.Marshal(d)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = b
	}
	return out
}

func rawRegistrations(tb testing.TB, n int) []bson.Raw {
	tb.Helper()
	return marshalAll(tb, fixtures.Generate(1, fixtures.Campaigns[:1], n).Registrations)
}

// sortByID orders documents as an export reads them: by _id.
func sortByID(docs []bson.Raw) []bson.Raw {
	slices.SortFunc(docs, func(a, b bson.Raw) int {
		return bytes.Compare(a.Lookup("_id").Value, b.Lookup("_id").Value)
	})
	return docs
}

// benchKind is one kind's benchmark: its documents (as the fixtures generate them, with every
// field the kind's columns read, in _id order as a query returns them) and its parameters.
type benchKind struct {
	name, params string
	docs         func(testing.TB) []bson.Raw
}

var benchKinds = []benchKind{
	{"registrations", `{"campaign_id":"c"}`, func(tb testing.TB) []bson.Raw { return sortByID(rawRegistrations(tb, 2000)) }},
	{"access_codes", `{"campaign_id":"c"}`, func(tb testing.TB) []bson.Raw {
		return sortByID(marshalAll(tb, fixtures.Generate(1, fixtures.Campaigns[:1], 14000).AccessCodes))
	}},
	{"collection_fields", `{"collection":"registrations"}`, func(tb testing.TB) []bson.Raw { return sortByID(rawRegistrations(tb, 2000)) }},
}

// docsPerRun is the number of documents of one pipeline run (one benchmark op).
const docsPerRun = 20000

func (k benchKind) plan(tb testing.TB, f encode.Format) *jobs.Plan {
	tb.Helper()
	plan, err := jobs.DefaultRegistry().Plan(jobs.Message{Kind: k.name, Format: f, Params: json.RawMessage(k.params)})
	if err != nil {
		tb.Fatal(err)
	}
	return plan
}

// encodeAll returns what the encoder writes for one run: the bytes gzip gets in the pipeline.
func encodeAll(tb testing.TB, f encode.Format, plan *jobs.Plan, docs []bson.Raw) []byte {
	tb.Helper()
	var buf bytes.Buffer
	enc, err := encode.New(f, &buf, plan.Columns, encode.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := enc.Begin(); err != nil {
		tb.Fatal(err)
	}
	src := &memSource{docs: docs, n: docsPerRun}
	for src.Next(context.Background()) {
		if err := enc.Encode(src.Current()); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}

// gzipAlone compresses data as the pipeline's gzip stage does (level 6, 64 KiB writes) into
// nothing, and returns how long that took.
func gzipAlone(tb testing.TB, data []byte) time.Duration {
	start := time.Now()
	zw, err := gzip.NewWriterLevel(io.Discard, 6)
	if err != nil {
		tb.Fatal(err)
	}
	for p := data; len(p) > 0; {
		n := min(len(p), 64<<10)
		if _, err := zw.Write(p[:n]); err != nil {
			tb.Fatal(err)
		}
		p = p[n:]
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkPipelineCSV measures the whole pipeline of each kind's CSV: in-memory raw BSON ->
// CSV encoder -> gzip level 6 -> a sink that discards, docsPerRun documents per op. Between
// timed runs, with the timer stopped, it compresses the same CSV bytes with gzip alone, so both
// share the machine's state (the benchmark machine has 2 cores shared with other work).
// Metrics: docs/s, MB/s of CSV (b.SetBytes), allocs/doc (all the run's allocations, fixed costs
// included, over its documents), gzip-MB/s (gzip alone) and x-gzip (pipeline MB/s over gzip-alone
// MB/s; the goal is at least 0.70).
func BenchmarkPipelineCSV(b *testing.B) {
	for _, k := range benchKinds {
		b.Run(k.name, func(b *testing.B) {
			docs := k.docs(b)
			plan := k.plan(b, encode.FormatCSV)
			csvBytes := encodeAll(b, encode.FormatCSV, plan, docs)
			newEnc := func(w io.Writer) (encode.Encoder, error) {
				return encode.New(encode.FormatCSV, w, plan.Columns, encode.Options{})
			}
			var gzipTime time.Duration
			var mallocs uint64
			var ms runtime.MemStats
			b.SetBytes(int64(len(csvBytes)))
			b.ResetTimer()
			for b.Loop() {
				b.StopTimer()
				runtime.ReadMemStats(&ms)
				before := ms.Mallocs
				b.StartTimer()
				src := &memSource{docs: docs, n: docsPerRun}
				stats, _, err := jobs.Stream(context.Background(), src, newEnc, &discardSink{}, jobs.Object{Key: "k"}, jobs.PipelineOptions{})
				b.StopTimer()
				runtime.ReadMemStats(&ms)
				mallocs += ms.Mallocs - before
				if err != nil {
					b.Fatal(err)
				}
				if stats.BytesUncompressed != int64(len(csvBytes)) {
					b.Fatalf("pipeline wrote %d bytes of CSV, the encoder alone %d", stats.BytesUncompressed, len(csvBytes))
				}
				gzipTime += gzipAlone(b, csvBytes)
				b.StartTimer()
			}
			b.StopTimer()
			n := float64(b.N)
			secs := b.Elapsed().Seconds()
			b.ReportMetric(n*docsPerRun/secs, "docs/s")
			b.ReportMetric(float64(mallocs)/(n*docsPerRun), "allocs/doc")
			pipeMBs := n * float64(len(csvBytes)) / 1e6 / secs
			gzipMBs := n * float64(len(csvBytes)) / 1e6 / gzipTime.Seconds()
			b.ReportMetric(gzipMBs, "gzip-MB/s")
			b.ReportMetric(pipeMBs/gzipMBs, "x-gzip")
		})
	}
}

// BenchmarkGzipAlone is gzip alone (level 6, 64 KiB writes, into nothing) on exactly the CSV
// bytes the pipeline of each kind writes: the ceiling of BenchmarkPipelineCSV.
func BenchmarkGzipAlone(b *testing.B) {
	for _, k := range benchKinds {
		b.Run(k.name, func(b *testing.B) {
			csvBytes := encodeAll(b, encode.FormatCSV, k.plan(b, encode.FormatCSV), k.docs(b))
			b.SetBytes(int64(len(csvBytes)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				gzipAlone(b, csvBytes)
			}
		})
	}
}

// BenchmarkEncode is the encoders alone (no gzip, no pipe), per kind and format, with their
// allocations per document.
func BenchmarkEncode(b *testing.B) {
	for _, k := range benchKinds {
		docs := k.docs(b)
		for _, v := range []struct {
			name string
			f    encode.Format
			opts encode.Options
		}{
			{"csv", encode.FormatCSV, encode.Options{}},
			{"ndjson", encode.FormatNDJSON, encode.Options{}},
			{"extjson", encode.FormatNDJSON, encode.Options{NDJSONMode: encode.NDJSONRelaxedExtJSON}},
		} {
			b.Run(k.name+"/"+v.name, func(b *testing.B) {
				plan := k.plan(b, v.f)
				var out countWriter
				enc, err := encode.New(v.f, &out, plan.Columns, v.opts)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if err := enc.Encode(docs[i%len(docs)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
				b.SetBytes(out.n / int64(max(i, 1)))
				b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "docs/s")
			})
		}
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

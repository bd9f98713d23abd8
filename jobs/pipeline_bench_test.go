package jobs_test

import (
	"context"
	"io"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/jobs"
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

func rawRegistrations(tb testing.TB, n int) []bson.Raw {
	tb.Helper()
	ds := fixtures.Generate(1, fixtures.Campaigns[:1], n)
	out := make([]bson.Raw, len(ds.Registrations))
	for i, d := range ds.Registrations {
		b, err := bson.Marshal(d)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// BenchmarkPipelineRegistrationsCSV measures the pipeline on its own: in-memory raw BSON ->
// CSV encoder -> gzip level 6 -> a sink that discards. It reports documents/s, MB/s of CSV
// (b.SetBytes) and allocations per document.
func BenchmarkPipelineRegistrationsCSV(b *testing.B) {
	docs := rawRegistrations(b, 2000)
	plan, err := jobs.DefaultRegistry().Plan(jobs.Message{Kind: "registrations", Format: jobs.FormatCSV, Params: []byte(`{"campaign_id":"c"}`)})
	if err != nil {
		b.Fatal(err)
	}
	newEnc := func(w io.Writer) (jobs.Encoder, error) {
		return jobs.NewEncoder(jobs.FormatCSV, w, plan.Columns, jobs.EncoderOptions{})
	}
	const perRun = 20000
	b.ReportAllocs()
	var csvBytes int64
	b.ResetTimer()
	for b.Loop() {
		src := &memSource{docs: docs, n: perRun}
		stats, _, err := jobs.Run(context.Background(), src, newEnc, &discardSink{}, jobs.Object{Key: "k"}, jobs.PipelineOptions{})
		if err != nil {
			b.Fatal(err)
		}
		csvBytes = stats.BytesUncompressed
	}
	b.StopTimer()
	b.SetBytes(csvBytes)
	docsTotal := float64(perRun) * float64(b.N)
	b.ReportMetric(docsTotal/b.Elapsed().Seconds(), "docs/s")
}

package jobs_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/jobs/encode"
	"github.com/verifiedfan/export-service/sink"
)

// errConnClosed is what the MongoDB driver returns when the server closes the connection
// between two getMore replies: an error that wraps io.EOF.
var errConnClosed = fmt.Errorf("connection(127.0.0.1:27017[-7]) incomplete read of message header: %w", io.EOF)

// failingSource yields n documents, then ends with err (or panics, if panicAt > 0, at that row).
type failingSource struct {
	memSource
	err     error
	panicAt int
}

func (s *failingSource) Next(ctx context.Context) bool {
	if s.panicAt > 0 && s.i+1 == s.panicAt {
		panic("source exploded")
	}
	return s.memSource.Next(ctx)
}

func (s *failingSource) Err() error { return s.err }

// panicEncoder panics on its row'th document.
type panicEncoder struct {
	encode.Encoder
	row, n int
}

func (p *panicEncoder) Encode(doc bson.Raw) error {
	if p.n++; p.n == p.row {
		panic("encoder exploded")
	}
	return p.Encoder.Encode(doc)
}

func csvEncoder(tb testing.TB) func(io.Writer) (encode.Encoder, error) {
	plan := benchKinds[0].plan(tb, encode.FormatCSV)
	return func(w io.Writer) (encode.Encoder, error) {
		return encode.New(encode.FormatCSV, w, plan.Columns, encode.Options{})
	}
}

// bodyErrSink records the error that ended its body.
type bodyErrSink struct{ err error }

func (s *bodyErrSink) Put(_ context.Context, _ jobs.Object, body io.Reader) (jobs.Written, error) {
	_, s.err = io.Copy(io.Discard, body)
	return jobs.Written{}, s.err
}

// The source's failure reaches the sink as a failure it cannot take for the end of the stream,
// even when the source's error wraps io.EOF; Run returns the source's error.
func TestPipelineSourceErrorIsNotEOF(t *testing.T) {
	t.Parallel()
	docs := rawRegistrations(t, 100)
	for _, srcErr := range []error{errConnClosed, io.EOF, errors.New("boom")} {
		sk := &bodyErrSink{}
		_, _, err := jobs.Stream(context.Background(), &failingSource{memSource: memSource{docs: docs, n: 100}, err: srcErr}, csvEncoder(t), sk, jobs.Object{Key: "k"}, jobs.PipelineOptions{})
		if !errors.Is(err, srcErr) {
			t.Errorf("%v: Run = %v, want the source's error", srcErr, err)
		}
		var se *jobs.StreamError
		if sk.err == nil || errors.Is(sk.err, io.EOF) || !errors.As(sk.err, &se) || !errors.Is(se.Cause(), srcErr) {
			t.Errorf("%v: the sink's body ended with %v, want a StreamError that is not io.EOF", srcErr, sk.err)
		}
	}
}

type s3Env struct {
	st     *stacktest.Stack
	bucket string
	prefix string
	sink   *sink.S3
}

func newS3Env(t *testing.T) *s3Env {
	t.Helper()
	st := stacktest.New(t)
	client := s3.NewFromConfig(aws.Config{Region: st.Env["AWS_REGION"]}, func(o *s3.Options) { *o = st.S3.Options() })
	bucket := st.Env["EXPORT_BUCKET"]
	return &s3Env{st: st, bucket: bucket, prefix: "pipelinetest/" + stacktest.RandomID() + "/", sink: sink.NewS3(client, bucket, sink.S3Options{PartSize: 5 << 20})}
}

// exporter is an exporter of db into the test's prefix of the bucket (destination internal).
func (e *s3Env) exporter(db *mongo.Database) *jobs.Exporter {
	return &jobs.Exporter{DB: db, Kinds: jobs.DefaultRegistry(), Destinations: map[string]jobs.Destination{
		"internal": {Name: "internal", Bucket: e.bucket, Prefix: e.prefix, Sink: e.sink}}}
}

// get returns the object at key.
func (e *s3Env) get(t *testing.T, key string) []byte {
	t.Helper()
	out, err := e.st.S3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// prepareVenues is the job of export id that exports the _id and name of every venue.
func prepareVenues(t *testing.T, ex *jobs.Exporter, id string) *jobs.Job {
	t.Helper()
	msg, err := jobs.Decode([]byte(`{"version":1,"export_id":"` + id + `","kind":"collection_fields","params":{"collection":"venues","fields":["_id","name"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	job, err := ex.PrepareMessage(msg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// nothingLeft checks that key has no object and the test's prefix no unfinished upload.
func (e *s3Env) nothingLeft(t *testing.T, key string) {
	t.Helper()
	ctx := context.Background()
	_, err := e.st.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	var nf *s3types.NotFound
	if !errors.As(err, &nf) {
		t.Errorf("s3://%s/%s: HeadObject = %v, want no object", e.bucket, key, err)
	}
	up, err := e.st.S3.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(e.bucket), Prefix: aws.String(e.prefix)})
	if err != nil || len(up.Uploads) != 0 {
		t.Errorf("unfinished uploads: %v", err)
	}
}

// A MongoDB connection closed between two replies (the source's error wraps io.EOF) leaves
// nothing in the bucket: no truncated object at the key, no unfinished upload.
func TestPipelineWrappedEOFCommitsNothing(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	docs := rawRegistrations(t, 500)
	key := e.prefix + "truncated.csv.gz"
	_, _, err := jobs.Stream(context.Background(), &failingSource{memSource: memSource{docs: docs, n: 500}, err: errConnClosed}, csvEncoder(t), e.sink, jobs.Object{Key: key}, jobs.PipelineOptions{})
	if !errors.Is(err, errConnClosed) {
		t.Errorf("Run = %v", err)
	}
	e.nothingLeft(t, key)
}

// A panic of the source or the encoder (on the producer's goroutine) fails the job with a
// permanent error of reason "panic" instead of crashing the process, and nothing is committed,
// before the first part (PutObject) or after some parts were stored (multipart).
func TestPipelinePanicsFailTheJob(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	docs := rawRegistrations(t, 2000)
	enc := csvEncoder(t)
	for _, tc := range []struct {
		name   string
		src    jobs.Source
		newEnc func(io.Writer) (encode.Encoder, error)
	}{
		{"source", &failingSource{memSource: memSource{docs: docs, n: 1000}, panicAt: 500}, enc},
		{"encoder", &memSource{docs: docs, n: 1000}, func(w io.Writer) (encode.Encoder, error) {
			inner, err := enc(w)
			return &panicEncoder{Encoder: inner, row: 700}, err
		}},
		// Past 5 MiB of gzip (random rows compress little): a multipart upload is open.
		{"source after parts", &failingSource{memSource: memSource{docs: noisyDocs(t, 256), n: 60000}, panicAt: 59000}, enc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := e.prefix + tc.name
			stats, _, err := jobs.Stream(context.Background(), tc.src, tc.newEnc, e.sink, jobs.Object{Key: key}, jobs.PipelineOptions{GzipLevel: 1})
			if tc.name == "source after parts" && stats.BytesCompressed < 6<<20 {
				t.Errorf("only %d bytes compressed: no part was uploaded before the panic", stats.BytesCompressed)
			}
			var pe *jobs.PanicError
			if reason, _ := jobs.IsPermanent(err); reason != "panic" || !errors.As(err, &pe) {
				t.Fatalf("Run = %v, want a permanent panic error", err)
			}
			e.nothingLeft(t, key)
		})
	}
}

// noisyDocs are n registrations whose ids and e-mails are random hex: about 250 bytes of CSV
// each that gzip cannot shrink much.
func noisyDocs(tb testing.TB, n int) []bson.Raw {
	r := rand.New(rand.NewPCG(1, 2))
	docs := make([]any, n)
	for i := range docs {
		b := make([]byte, 120)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		docs[i] = bson.D{{Key: "_id", Value: hex.EncodeToString(b[:20])}, {Key: "fan", Value: bson.D{{Key: "email", Value: hex.EncodeToString(b[20:])}}}}
	}
	return marshalAll(tb, docs)
}

type panicSink struct{}

func (panicSink) Put(_ context.Context, _ jobs.Object, body io.Reader) (jobs.Written, error) {
	_, _ = body.Read(make([]byte, 10))
	panic("sink exploded")
}

// A sink that panics fails the job (reason "panic"), and the producer, which was writing to it,
// is not left blocked: Run returns.
func TestPipelineSinkPanicFailsTheJob(t *testing.T) {
	t.Parallel()
	done := make(chan error, 1)
	go func() {
		_, _, err := jobs.Stream(context.Background(), &memSource{docs: rawRegistrations(t, 100), n: 100000}, csvEncoder(t), panicSink{}, jobs.Object{Key: "k"}, jobs.PipelineOptions{})
		done <- err
	}()
	select {
	case err := <-done:
		if reason, _ := jobs.IsPermanent(err); reason != "panic" {
			t.Fatalf("Run = %v, want a permanent panic error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
}

package jobs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/jobs"
)

// quietEnd ends a source after n documents without an error, as a cursor that lost its
// server-side state and got an empty last batch would.
type quietEnd struct {
	jobs.Source
	n, i int
}

func (q *quietEnd) Next(ctx context.Context) bool {
	if q.i >= q.n {
		return false
	}
	q.i++
	return q.Source.Next(ctx)
}

// A cursor that ends early without an error is not taken for the end of the export: the run
// fails (retryably) and commits nothing. An export whose collection grows while it runs still
// succeeds: documents above the first query's last _id are not expected.
func TestCursorThatEndsEarlyCommitsNothing(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	db := e.st.NewDatabase(t)
	ds := fixtures.Generate(uint64(time.Now().UnixNano()), fixtures.Campaigns[:1], 60)
	if _, err := db.Collection("registrations").InsertMany(context.Background(), ds.Registrations); err != nil {
		t.Fatal(err)
	}
	run := func(id string, wrap func(jobs.Source) jobs.Source) (string, error) {
		return runCampaignExport(t, e, db, id, wrap)
	}

	key, err := run("early", func(s jobs.Source) jobs.Source { return &quietEnd{Source: s, n: 20} })
	if err == nil || !strings.Contains(err.Error(), "ended after 20 rows") {
		t.Fatalf("Run with a cursor that stops at 20 of 60 rows = %v, want the early end reported", err)
	}
	if _, permanent := jobs.IsPermanent(err); permanent {
		t.Errorf("the early end is permanent (%v); a retry reads the whole export", err)
	}
	e.nothingLeft(t, key)

	// Rows added while the export runs (after its first document) are not waited for.
	grow := func(s jobs.Source) jobs.Source {
		return &insertAfterFirst{Source: s, insert: func() {
			doc := bson.M{"campaign_id": fixtures.Campaigns[0], "email": "late@example.com", "created_at": time.Now()}
			if _, err := db.Collection("registrations").InsertOne(context.Background(), doc); err != nil {
				t.Error(err)
			}
		}}
	}
	key, err = run("growing", grow)
	if err != nil {
		t.Fatalf("Run while the collection grows = %v", err)
	}
	if _, err := e.st.S3.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)}); err != nil {
		t.Errorf("no object after a clean run: %v", err)
	}
}

// insertAfterFirst calls insert once, after the first document.
type insertAfterFirst struct {
	jobs.Source
	insert func()
	done   bool
}

func (s *insertAfterFirst) Next(ctx context.Context) bool {
	ok := s.Source.Next(ctx)
	if ok && !s.done {
		s.done = true
		s.insert()
	}
	return ok
}

// runCampaignExport runs the registrations export of fixtures.Campaigns[0] in db into e's
// sink, its source wrapped by wrap, and returns its key and error.
func runCampaignExport(t *testing.T, e *s3Env, db *mongo.Database, id string, wrap func(jobs.Source) jobs.Source) (string, error) {
	t.Helper()
	ex := &jobs.Exporter{DB: db, Kinds: jobs.DefaultRegistry(), WrapSource: wrap, Destinations: map[string]jobs.Destination{
		"internal": {Name: "internal", Bucket: e.bucket, Prefix: e.prefix, Sink: e.sink}}}
	msg, err := jobs.Decode([]byte(`{"version":1,"export_id":"` + id + `","kind":"registrations","params":{"campaign_id":"` + fixtures.Campaigns[0] + `"}}`))
	if err != nil {
		t.Fatal(err)
	}
	job, err := ex.PrepareMessage(msg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = ex.Run(context.Background(), job, jobs.RunOptions{})
	return job.Key, err
}

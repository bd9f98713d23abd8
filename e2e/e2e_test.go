// Package e2e runs the export-service binary against the real local stack (FerretDB,
// SeaweedFS, local-aws-sqs) and checks what lands in S3, in the queues and on /metrics.
package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
)

// bundle is what most end-to-end tests need: the stack, a fresh database with seeded
// registrations, the test's own queues.
type bundle struct {
	st      *stacktest.Stack
	db      *mongo.Database
	queues  stacktest.Queues
	dataset fixtures.Dataset
}

func setup(t *testing.T, perCampaign int) *bundle {
	t.Helper()
	st := stacktest.New(t)
	b := &bundle{st: st, db: st.NewDatabase(t), queues: st.NewQueues(t, 30*time.Second, 5)}
	b.dataset = fixtures.Generate(uint64(time.Now().UnixNano()), fixtures.Campaigns, perCampaign)
	ctx := context.Background()
	if _, err := b.db.Collection("registrations").InsertMany(ctx, b.dataset.Registrations); err != nil {
		t.Fatalf("seed registrations: %v", err)
	}
	if len(b.dataset.AccessCodes) > 0 {
		if _, err := b.db.Collection("access_codes").InsertMany(ctx, b.dataset.AccessCodes); err != nil {
			t.Fatalf("seed access codes: %v", err)
		}
	}
	return b
}

func (b *bundle) workerEnv(t *testing.T, extra map[string]string) map[string]string {
	env := map[string]string{
		"EXPORT_QUEUE_URL": b.queues.JobsURL,
		"EXPORT_DLQ_URL":   b.queues.DLQURL,
		"MONGO_DATABASE":   b.db.Name(),
		"HTTP_ADDR":        stacktest.FreeAddr(t),
		// local-aws-sqs answers a long poll only when it times out, not when a message
		// arrives: a short wait keeps tests quick. Production uses the default 20s.
		"RECEIVE_WAIT": "1s",
		"STALL_AFTER":  "30s",
	}
	for k, v := range extra {
		env[k] = v
	}
	return b.st.WorkerEnv(env)
}

func (b *bundle) send(t *testing.T, body string) {
	t.Helper()
	if _, err := b.st.SQS.SendMessage(context.Background(), &sqs.SendMessageInput{
		QueueUrl: aws.String(b.queues.JobsURL), MessageBody: aws.String(body),
	}); err != nil {
		t.Fatalf("send message: %v", err)
	}
}

func jobBody(t *testing.T, m jobs.Message) string {
	t.Helper()
	if m.Version == 0 {
		m.Version = jobs.CurrentVersion
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitObject polls until bucket/key exists and returns its bytes.
func (b *bundle) waitObject(t *testing.T, bucket, key string, within time.Duration) []byte {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(within)
	for {
		out, err := b.st.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err == nil {
			defer out.Body.Close()
			data, err := io.ReadAll(out.Body)
			if err != nil {
				t.Fatalf("read s3://%s/%s: %v", bucket, key, err)
			}
			return data
		}
		var nsk *s3types.NoSuchKey
		if !errors.As(err, &nsk) {
			t.Logf("get s3://%s/%s: %v", bucket, key, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("s3://%s/%s did not appear within %s", bucket, key, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// gunzip decompresses an object.
func gunzip(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return raw
}

func gunzipCSV(t *testing.T, data []byte) [][]string {
	t.Helper()
	raw := gunzip(t, data)
	recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatalf("parse csv: %v", err)
	}
	return recs
}

// eventually retries cond until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func field(d bson.D, path ...string) any {
	for _, e := range d {
		if e.Key == path[0] {
			if len(path) == 1 {
				return e.Value
			}
			if sub, ok := e.Value.(bson.D); ok {
				return field(sub, path[1:]...)
			}
		}
	}
	return nil
}

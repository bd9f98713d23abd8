package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/stackenv"
	"github.com/verifiedfan/export-service/jobs"
)

// stack holds the clients of the local stack.
type stack struct {
	env   map[string]string
	sqs   *sqs.Client
	s3    *s3.Client // admin identity: sees and deletes every object
	mongo *mongo.Client
}

func connect(ctx context.Context, repo string) (*stack, error) {
	path := os.Getenv("STACK_ENV_FILE")
	if path == "" {
		path = filepath.Join(repo, ".stack", "env")
	}
	env, err := stackenv.Read(path)
	if err != nil {
		return nil, err
	}
	st := &stack{env: env}
	cfg := aws.Config{Region: env["AWS_REGION"], Credentials: credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")}
	st.sqs = sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(env["AWS_ENDPOINT_URL_SQS"]) })
	st.s3 = s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(env["AWS_ENDPOINT_URL_S3"])
		o.UsePathStyle = true
		o.Credentials = credentials.NewStaticCredentialsProvider(env["STACK_ADMIN_ACCESS_KEY_ID"], env["STACK_ADMIN_SECRET_ACCESS_KEY"], "")
	})
	st.mongo, err = mongo.Connect(options.Client().ApplyURI(env["MONGO_URI"]))
	if err != nil {
		return nil, fmt.Errorf("mongo connect: %w", err)
	}
	return st, nil
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// campaignIDs are the campaigns the exports read: one shared, or one per export.
func campaignIDs(cfg config) []string {
	if cfg.campaigns == "shared" {
		return []string{fmt.Sprintf("lb-shared-%d", cfg.rows)}
	}
	ids := make([]string, cfg.jobs)
	for i := range ids {
		ids[i] = fmt.Sprintf("lb-job-%d-%04d", cfg.rows, i)
	}
	return ids
}

// seed makes sure every campaign holds exactly rows registrations (it inserts them into a
// campaign that has none, and refuses one with another count) and creates the indexes.
func seed(ctx context.Context, db *mongo.Database, campaigns []string, rows int, seedValue uint64) error {
	coll := db.Collection("registrations")
	r := mrand.New(mrand.NewPCG(seedValue, seedValue^0x9e3779b97f4a7c15))
	base := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	start := time.Now()
	inserted := 0
	for _, c := range campaigns {
		n, err := coll.CountDocuments(ctx, bson.D{{Key: "campaign_id", Value: c}})
		if err != nil {
			return fmt.Errorf("count %s: %w", c, err)
		}
		if int(n) == rows {
			continue
		}
		if n != 0 {
			return fmt.Errorf("campaign %s of database %s has %d registrations, want %d (use another -db)", c, db.Name(), n, rows)
		}
		const batch = 5000
		for i := 0; i < rows; i += batch {
			docs := make([]any, 0, min(batch, rows-i))
			for k := i; k < rows && k < i+batch; k++ {
				docs = append(docs, fixtures.Registration(r, c, k, base))
			}
			if _, err := coll.InsertMany(ctx, docs); err != nil {
				return fmt.Errorf("insert into %s: %w", c, err)
			}
			inserted += len(docs)
			if rows > batch && (i+len(docs))%50_000 == 0 {
				logf("seeded %d/%d registrations of %s (%.0f/s)", i+len(docs), rows, c, float64(inserted)/time.Since(start).Seconds())
			}
		}
	}
	if inserted > 0 {
		logf("seeded %d registrations into %s in %s", inserted, db.Name(), time.Since(start).Round(time.Millisecond))
	}
	if _, err := jobs.CreateIndexes(ctx, db, jobs.DefaultRegistry()); err != nil {
		return fmt.Errorf("indexes: %w", err)
	}
	return nil
}

// newQueues creates a jobs queue and its DLQ.
func (st *stack) newQueues(ctx context.Context, name string) (jobsURL, dlqURL string, err error) {
	dlq, err := st.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		return "", "", fmt.Errorf("create dlq: %w", err)
	}
	attrs, err := st.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", "", fmt.Errorf("dlq arn: %w", err)
	}
	redrive, _ := json.Marshal(map[string]any{
		"deadLetterTargetArn": attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)],
		"maxReceiveCount":     "5",
	})
	q, err := st.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName:  aws.String(name),
		Attributes: map[string]string{"VisibilityTimeout": "120", "RedrivePolicy": string(redrive)},
	})
	if err != nil {
		return "", "", fmt.Errorf("create queue: %w", err)
	}
	return aws.ToString(q.QueueUrl), aws.ToString(dlq.QueueUrl), nil
}

func (st *stack) deleteQueues(urls ...string) {
	for _, u := range urls {
		if u != "" {
			_, _ = st.sqs.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(u)})
		}
	}
}

// queueCount is visible + in-flight messages of a queue.
func (st *stack) queueCount(ctx context.Context, url string) (int, error) {
	out, err := st.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		return 0, err
	}
	var a, b int
	fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)], &a)
	fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)], &b)
	return a + b, nil
}

// enqueue sends the job messages in batches of 10, 8 batches at once.
func (st *stack) enqueue(ctx context.Context, url string, bodies []string) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(bodies)/10+1)
	sem := make(chan struct{}, 8)
	for i := 0; i < len(bodies); i += 10 {
		var entries []sqstypes.SendMessageBatchRequestEntry
		for k := i; k < len(bodies) && k < i+10; k++ {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(k)), MessageBody: aws.String(bodies[k])})
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out, err := st.sqs.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
			if err == nil && len(out.Failed) > 0 {
				err = fmt.Errorf("%d messages refused: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// deletePrefix deletes every object under prefix of bucket.
func (st *stack) deletePrefix(ctx context.Context, bucket, prefix string) (int, error) {
	n := 0
	p := s3.NewListObjectsV2Paginator(st.s3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, err
		}
		if len(page.Contents) == 0 {
			continue
		}
		var ids []s3types.ObjectIdentifier
		for _, o := range page.Contents {
			ids = append(ids, s3types.ObjectIdentifier{Key: o.Key})
		}
		if _, err := st.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)}}); err != nil {
			for _, id := range ids { // a server without DeleteObjects
				if _, err := st.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: id.Key}); err != nil {
					return n, err
				}
				n++
			}
			continue
		}
		n += len(ids)
	}
	return n, nil
}

package main

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/tools/internal/benchkit"
)

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

// queueCount is visible + in-flight messages of a queue.
func queueCount(ctx context.Context, st *benchkit.Stack, url string) (int, error) {
	out, err := st.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
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
func enqueue(ctx context.Context, st *benchkit.Stack, url string, bodies []string) error {
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
			out, err := st.SQS.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
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

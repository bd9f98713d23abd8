// Package stacktest connects tests to the real local stack started by `go tool task stack:start`
// (FerretDB, SeaweedFS S3+STS, local-aws-sqs) and gives each test its own queues and database,
// so tests can run in parallel and leave nothing behind.
package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/stackenv"
)

// Root returns the repository root (the directory holding go.mod of the main module).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := stackenv.Root()
	if err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	return dir
}

// Env reads the stack's .stack/env (or the file named by STACK_ENV_FILE). A test that needs
// the stack fails, not skips, when it is missing: the README's test command starts it.
func Env(t testing.TB) map[string]string {
	t.Helper()
	path := os.Getenv("STACK_ENV_FILE")
	if path == "" {
		path = filepath.Join(Root(t), ".stack", "env")
	}
	env, err := stackenv.Read(path)
	if err != nil {
		t.Fatalf("stacktest: %v", err)
	}
	return env
}

// Stack holds clients of the local stack for one test.
type Stack struct {
	Env   map[string]string
	SQS   *sqs.Client
	S3    *s3.Client // as the admin identity: sees every bucket
	Mongo *mongo.Client
}

// New connects to the stack. Clients are closed when the test ends.
func New(t testing.TB) *Stack {
	t.Helper()
	env := Env(t)
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx,
		awsconfig.WithRegion(env["AWS_REGION"]),
		awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")),
	)
	if err != nil {
		t.Fatalf("stacktest: aws config: %v", err)
	}
	st := &Stack{Env: env}
	st.SQS = sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(env["AWS_ENDPOINT_URL_SQS"]) })
	st.S3 = s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(env["AWS_ENDPOINT_URL_S3"])
		o.UsePathStyle = true
		o.Credentials = credentials.NewStaticCredentialsProvider(env["STACK_ADMIN_ACCESS_KEY_ID"], env["STACK_ADMIN_SECRET_ACCESS_KEY"], "")
	})
	st.Mongo, err = mongo.Connect(options.Client().ApplyURI(env["MONGO_URI"]))
	if err != nil {
		t.Fatalf("stacktest: mongo connect: %v", err)
	}
	t.Cleanup(func() { _ = st.Mongo.Disconnect(context.Background()) })
	return st
}

// RandomID returns a short random hex string for names.
func RandomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Queues are a test's own jobs queue and dead-letter queue.
type Queues struct {
	JobsURL, DLQURL string
}

// NewQueues creates a jobs queue and its DLQ (redrive after maxReceive receives) for this test
// and deletes them when it ends.
func (st *Stack) NewQueues(t testing.TB, visibility time.Duration, maxReceive int) Queues {
	t.Helper()
	ctx := context.Background()
	name := "t-" + RandomID()
	dlq, err := st.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		t.Fatalf("stacktest: create dlq: %v", err)
	}
	attrs, err := st.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatalf("stacktest: dlq arn: %v", err)
	}
	redrive, _ := json.Marshal(map[string]any{
		"deadLetterTargetArn": attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)],
		"maxReceiveCount":     fmt.Sprint(maxReceive),
	})
	q, err := st.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName: aws.String(name),
		Attributes: map[string]string{
			"VisibilityTimeout": fmt.Sprint(int(visibility / time.Second)),
			"RedrivePolicy":     string(redrive),
		},
	})
	if err != nil {
		t.Fatalf("stacktest: create queue: %v", err)
	}
	t.Cleanup(func() {
		_, _ = st.SQS.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl})
		_, _ = st.SQS.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: dlq.QueueUrl})
	})
	return Queues{JobsURL: aws.ToString(q.QueueUrl), DLQURL: aws.ToString(dlq.QueueUrl)}
}

// NewDatabase returns a fresh database for this test, dropped when it ends.
func (st *Stack) NewDatabase(t testing.TB) *mongo.Database {
	t.Helper()
	db := st.Mongo.Database("t_" + RandomID())
	t.Cleanup(func() { _ = db.Drop(context.Background()) })
	return db
}

// QueueCounts returns the visible and in-flight message counts of a queue.
func (st *Stack) QueueCounts(t testing.TB, url string) (visible, inFlight int) {
	t.Helper()
	out, err := st.SQS.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{
			sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		},
	})
	if err != nil {
		t.Fatalf("stacktest: queue attributes of %s: %v", url, err)
	}
	fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)], &visible)
	fmt.Sscan(out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)], &inFlight)
	return visible, inFlight
}

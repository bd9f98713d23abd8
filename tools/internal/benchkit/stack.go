// Package benchkit holds what the bench commands under tools (loadbench, segbench) share: the
// local stack's clients and settings, the worker binary (built, started, made ready, stopped),
// queues and objects of a run, and CPU figures read from /proc.
package benchkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/stackenv"
)

// EnvPath is the local stack's env file: $STACK_ENV_FILE, else .stack/env of the repository
// root repo.
func EnvPath(repo string) string {
	if path := os.Getenv("STACK_ENV_FILE"); path != "" {
		return path
	}
	return filepath.Join(repo, ".stack", "env")
}

// Stack holds the clients of the local stack and its settings.
type Stack struct {
	Env   map[string]string // the env file's KEY=VALUE settings
	SQS   *sqs.Client
	S3    *s3.Client // admin identity: sees and deletes every object
	Mongo *mongo.Client
}

// Connect reads the stack's env file at envPath (see EnvPath) and makes its clients. The
// caller disconnects Mongo.
func Connect(envPath string) (*Stack, error) {
	env, err := stackenv.Read(envPath)
	if err != nil {
		return nil, err
	}
	st := &Stack{Env: env}
	cfg := aws.Config{Region: env["AWS_REGION"], Credentials: credentials.NewStaticCredentialsProvider(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], "")}
	st.SQS = sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(env["AWS_ENDPOINT_URL_SQS"]) })
	st.S3 = s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(env["AWS_ENDPOINT_URL_S3"])
		o.UsePathStyle = true
		o.Credentials = credentials.NewStaticCredentialsProvider(env["STACK_ADMIN_ACCESS_KEY_ID"], env["STACK_ADMIN_SECRET_ACCESS_KEY"], "")
	})
	st.Mongo, err = mongo.Connect(options.Client().ApplyURI(env["MONGO_URI"]))
	if err != nil {
		return nil, fmt.Errorf("mongo connect: %w", err)
	}
	return st, nil
}

// RandomID is 8 random hex digits, for the names of a run's database, queues and objects.
func RandomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// WorkerEnv is the environment that every bench worker process of a run gets: the stack's
// endpoints and credentials, the database, the run's queues and key prefix, RECEIVE_WAIT=1s,
// RETRY_BASE=1s, LOG_LEVEL=info and WORKER_CONCURRENCY. The caller adds HTTP_ADDR, WORKER_ID
// and its own settings.
func (st *Stack) WorkerEnv(database, jobsURL, dlqURL, keyPrefix string, concurrency int) map[string]string {
	env := map[string]string{
		"AWS_EC2_METADATA_DISABLED": "true",
		"MONGO_DATABASE":            database,
		"EXPORT_QUEUE_URL":          jobsURL,
		"EXPORT_DLQ_URL":            dlqURL,
		"EXPORT_KEY_PREFIX":         keyPrefix,
		"RECEIVE_WAIT":              "1s",
		"RETRY_BASE":                "1s",
		"WORKER_CONCURRENCY":        strconv.Itoa(concurrency),
		"LOG_LEVEL":                 "info",
	}
	for _, key := range []string{"AWS_REGION", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_SQS",
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MONGO_URI", "EXPORT_BUCKET", "S3_FORCE_PATH_STYLE"} {
		env[key] = st.Env[key]
	}
	return env
}

// NewQueues creates a jobs queue called name, with the given VisibilityTimeout in seconds,
// and its DLQ name-dlq (redrive after 5 receives). On an error it still returns the URL of
// the DLQ if that was created, so that DeleteQueues removes it.
func (st *Stack) NewQueues(ctx context.Context, name string, visibility int) (jobsURL, dlqURL string, err error) {
	dlq, err := st.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
	if err != nil {
		return "", "", fmt.Errorf("create dlq: %w", err)
	}
	dlqURL = aws.ToString(dlq.QueueUrl)
	attrs, err := st.SQS.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: dlq.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", dlqURL, fmt.Errorf("dlq arn: %w", err)
	}
	redrive, _ := json.Marshal(map[string]any{
		"deadLetterTargetArn": attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)],
		"maxReceiveCount":     "5",
	})
	q, err := st.SQS.CreateQueue(ctx, &sqs.CreateQueueInput{
		QueueName:  aws.String(name),
		Attributes: map[string]string{"VisibilityTimeout": strconv.Itoa(visibility), "RedrivePolicy": string(redrive)},
	})
	if err != nil {
		return "", dlqURL, fmt.Errorf("create queue: %w", err)
	}
	return aws.ToString(q.QueueUrl), dlqURL, nil
}

// DeleteQueues deletes the queues (empty URLs are skipped), ignoring errors.
func (st *Stack) DeleteQueues(urls ...string) {
	for _, u := range urls {
		if u != "" {
			_, _ = st.SQS.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: aws.String(u)})
		}
	}
}

// DeletePrefix deletes every object under prefix of bucket and returns how many it deleted.
func (st *Stack) DeletePrefix(ctx context.Context, bucket, prefix string) (int, error) {
	n := 0
	p := s3.NewListObjectsV2Paginator(st.S3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
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
		if _, err := st.S3.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket), Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)}}); err != nil {
			for _, id := range ids { // a server without DeleteObjects
				if _, err := st.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: id.Key}); err != nil {
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

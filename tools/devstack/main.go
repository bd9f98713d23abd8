// Command devstack provisions the local stack that scripts/stack.sh starts:
// the S3 buckets in SeaweedFS and the SQS queues in local-aws-sqs.
//
//	go run ./tools/devstack provision
//
// It is idempotent: buckets and queues that already exist are left alone (a
// jobs queue whose attributes drifted, for example after a change of
// STACK_VISIBILITY_TIMEOUT, gets them set again). The servers must already be
// up; transient errors while they finish starting are retried until
// STACK_PROVISION_TIMEOUT (default 60s).
//
// It reads its settings from the environment (scripts/stack.sh exports them):
//
//	AWS_REGION                       default us-east-1
//	AWS_ENDPOINT_URL_S3              SeaweedFS S3 endpoint (required)
//	AWS_ENDPOINT_URL_SQS             local-aws-sqs endpoint (required)
//	STACK_ADMIN_ACCESS_KEY_ID        SeaweedFS admin identity (required)
//	STACK_ADMIN_SECRET_ACCESS_KEY    SeaweedFS admin identity (required)
//	EXPORT_BUCKET, SFMC_BUCKET, TMOL_BUCKET
//	                                 default exports, sfmc-drop, tmol-drop
//	EXPORT_QUEUE_NAME, EXPORT_DLQ_NAME
//	                                 default export-jobs, export-jobs-dlq
//	STACK_VISIBILITY_TIMEOUT         jobs queue VisibilityTimeout in seconds, default 60
//	STACK_MAX_RECEIVE_COUNT          RedrivePolicy maxReceiveCount, default 5
//	AWS_ENDPOINT_URL_STS, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, SFMC_ROLE_ARN
//	                                 when all are set, the worker identity must be able to
//	                                 assume SFMC_ROLE_ARN (proves STS and the IAM config work)
//
// On success it prints, on stdout, the lines
//
//	EXPORT_QUEUE_URL=...
//	EXPORT_DLQ_URL=...
//
// for scripts/stack.sh to add to .stack/env. Progress goes to stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] != "provision" {
		fmt.Fprintln(os.Stderr, "usage: devstack provision")
		os.Exit(2)
	}
	if err := provision(); err != nil {
		fmt.Fprintln(os.Stderr, "devstack provision:", err)
		os.Exit(1)
	}
}

type settings struct {
	region          string
	s3Endpoint      string
	sqsEndpoint     string
	adminKey        string
	adminSecret     string
	buckets         []string
	queueName       string
	dlqName         string
	visibility      int
	maxReceiveCount int
	timeout         time.Duration
}

func loadSettings() (settings, error) {
	var s settings
	var missing []string
	need := func(key string) string {
		v := os.Getenv(key)
		if v == "" {
			missing = append(missing, key)
		}
		return v
	}
	s.region = envOr("AWS_REGION", "us-east-1")
	s.s3Endpoint = need("AWS_ENDPOINT_URL_S3")
	s.sqsEndpoint = need("AWS_ENDPOINT_URL_SQS")
	s.adminKey = need("STACK_ADMIN_ACCESS_KEY_ID")
	s.adminSecret = need("STACK_ADMIN_SECRET_ACCESS_KEY")
	if len(missing) > 0 {
		return s, fmt.Errorf("missing environment variables %v (run scripts/stack.sh start, or source .stack/env)", missing)
	}
	s.buckets = []string{
		envOr("EXPORT_BUCKET", "exports"),
		envOr("SFMC_BUCKET", "sfmc-drop"),
		envOr("TMOL_BUCKET", "tmol-drop"),
	}
	s.queueName = envOr("EXPORT_QUEUE_NAME", "export-jobs")
	s.dlqName = envOr("EXPORT_DLQ_NAME", "export-jobs-dlq")
	var err error
	if s.visibility, err = envInt("STACK_VISIBILITY_TIMEOUT", 60); err != nil {
		return s, err
	}
	if s.maxReceiveCount, err = envInt("STACK_MAX_RECEIVE_COUNT", 5); err != nil {
		return s, err
	}
	if s.timeout, err = time.ParseDuration(envOr("STACK_PROVISION_TIMEOUT", "60s")); err != nil {
		return s, fmt.Errorf("STACK_PROVISION_TIMEOUT: %w", err)
	}
	return s, nil
}

func provision() error {
	s, err := loadSettings()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()

	creds := credentials.NewStaticCredentialsProvider(s.adminKey, s.adminSecret, "")
	s3c := s3.New(s3.Options{
		Region:       s.region,
		BaseEndpoint: aws.String(s.s3Endpoint),
		Credentials:  creds,
		UsePathStyle: true, // SeaweedFS serves buckets by path, not by virtual host
	})
	// local-aws-sqs does not check signatures; the admin keys are as good as any.
	sqsc := sqs.New(sqs.Options{
		Region:       s.region,
		BaseEndpoint: aws.String(s.sqsEndpoint),
		Credentials:  creds,
	})

	for _, b := range s.buckets {
		if err := retry(ctx, "bucket "+b, func() error { return ensureBucket(ctx, s3c, b) }); err != nil {
			return err
		}
	}

	var dlqURL, dlqArn, queueURL string
	err = retry(ctx, "queue "+s.dlqName, func() error {
		var err error
		dlqURL, err = ensureQueue(ctx, sqsc, s.dlqName, nil)
		if err != nil {
			return err
		}
		dlqArn, err = queueArn(ctx, sqsc, dlqURL)
		return err
	})
	if err != nil {
		return err
	}

	redrive, err := json.Marshal(redrivePolicy{DeadLetterTargetArn: dlqArn, MaxReceiveCount: s.maxReceiveCount})
	if err != nil {
		return err
	}
	attrs := map[string]string{
		string(sqstypes.QueueAttributeNameVisibilityTimeout): strconv.Itoa(s.visibility),
		string(sqstypes.QueueAttributeNameRedrivePolicy):     string(redrive),
	}
	err = retry(ctx, "queue "+s.queueName, func() error {
		var err error
		queueURL, err = ensureQueue(ctx, sqsc, s.queueName, attrs)
		return err
	})
	if err != nil {
		return err
	}
	if err := checkJobsQueue(ctx, sqsc, queueURL, dlqArn, s); err != nil {
		return err
	}

	if err := retry(ctx, "sts", func() error { return checkAssumeRole(ctx, s.region) }); err != nil {
		return err
	}

	fmt.Printf("EXPORT_QUEUE_URL=%s\nEXPORT_DLQ_URL=%s\n", queueURL, dlqURL)
	return nil
}

// checkAssumeRole has the worker identity assume SFMC_ROLE_ARN, when the
// environment names all it takes; SeaweedFS answers S3 requests even when its
// advanced IAM config (STS, roles) did not load.
func checkAssumeRole(ctx context.Context, region string) error {
	endpoint, role := os.Getenv("AWS_ENDPOINT_URL_STS"), os.Getenv("SFMC_ROLE_ARN")
	key, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if endpoint == "" || role == "" || key == "" || secret == "" {
		return nil
	}
	c := sts.New(sts.Options{
		Region:       region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(key, secret, ""),
	})
	out, err := c.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(role), RoleSessionName: aws.String("devstack-provision")})
	if err != nil {
		return fmt.Errorf("worker AssumeRole %s (does SeaweedFS's log show its -s3.iam.config loaded?): %w", role, err)
	}
	logf("sts: worker may assume %s (session until %s)", role, aws.ToTime(out.Credentials.Expiration).Format(time.RFC3339))
	return nil
}

type redrivePolicy struct {
	DeadLetterTargetArn string `json:"deadLetterTargetArn"`
	MaxReceiveCount     int    `json:"maxReceiveCount"`
}

// ensureBucket creates bucket unless it exists already.
func ensureBucket(ctx context.Context, c *s3.Client, bucket string) error {
	if _, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err == nil {
		logf("bucket %s exists", bucket)
		return nil
	}
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *s3types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	logf("bucket %s created", bucket)
	return nil
}

// ensureQueue creates the queue, or, when it exists with other attributes,
// sets attrs on it. It returns the queue URL.
func ensureQueue(ctx context.Context, c *sqs.Client, name string, attrs map[string]string) (string, error) {
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err == nil {
		logf("queue %s ready", name)
		return aws.ToString(out.QueueUrl), nil
	}
	var exists *sqstypes.QueueNameExists
	if !errors.As(err, &exists) {
		return "", fmt.Errorf("create queue %s: %w", name, err)
	}
	got, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("get queue url %s: %w", name, err)
	}
	if _, err := c.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: got.QueueUrl, Attributes: attrs}); err != nil {
		return "", fmt.Errorf("set attributes of queue %s: %w", name, err)
	}
	logf("queue %s existed with other attributes; attributes updated", name)
	return aws.ToString(got.QueueUrl), nil
}

func queueArn(ctx context.Context, c *sqs.Client, url string) (string, error) {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("get attributes of %s: %w", url, err)
	}
	arn := out.Attributes[string(sqstypes.QueueAttributeNameQueueArn)]
	if arn == "" {
		return "", fmt.Errorf("queue %s has no QueueArn attribute", url)
	}
	return arn, nil
}

// checkJobsQueue reads the jobs queue's attributes back to prove the server
// stored the visibility timeout and the redrive policy.
func checkJobsQueue(ctx context.Context, c *sqs.Client, url, dlqArn string, s settings) error {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	if err != nil {
		return fmt.Errorf("get attributes of %s: %w", url, err)
	}
	if got := out.Attributes[string(sqstypes.QueueAttributeNameVisibilityTimeout)]; got != strconv.Itoa(s.visibility) {
		return fmt.Errorf("queue %s: VisibilityTimeout is %q, want %d", s.queueName, got, s.visibility)
	}
	raw := out.Attributes[string(sqstypes.QueueAttributeNameRedrivePolicy)]
	var rp struct {
		DeadLetterTargetArn string      `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.Number `json:"maxReceiveCount"` // a number or a string, depending on the server
	}
	if err := json.Unmarshal([]byte(raw), &rp); err != nil {
		return fmt.Errorf("queue %s: RedrivePolicy %q: %w", s.queueName, raw, err)
	}
	if rp.DeadLetterTargetArn != dlqArn || rp.MaxReceiveCount.String() != strconv.Itoa(s.maxReceiveCount) {
		return fmt.Errorf("queue %s: RedrivePolicy is %s, want deadLetterTargetArn %s and maxReceiveCount %d",
			s.queueName, raw, dlqArn, s.maxReceiveCount)
	}
	logf("queue %s: VisibilityTimeout=%d RedrivePolicy=%s", s.queueName, s.visibility, raw)
	return nil
}

// retry runs fn until it succeeds or ctx ends; servers that have just opened
// their port may still refuse requests for a moment.
func retry(ctx context.Context, what string, fn func() error) error {
	var err error
	for delay := 200 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		if err = fn(); err == nil {
			return nil
		}
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode() == "AccessDenied" || apiErr.ErrorCode() == "InvalidAccessKeyId" ||
			apiErr.ErrorCode() == "SignatureDoesNotMatch") {
			// Not a matter of waiting: the keys in the environment are not the server's.
			return fmt.Errorf("%s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up: %w", what, err)
		case <-time.After(delay):
		}
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "devstack: "+format+"\n", args...)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envInt(key string, def int) (int, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: not an integer", key, v)
	}
	return n, nil
}

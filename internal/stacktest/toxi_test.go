package stacktest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/stacktest"
)

func awsCfg(st *stacktest.Stack, key, secret string) aws.Config {
	return aws.Config{
		Region:      st.Env["AWS_REGION"],
		Credentials: credentials.NewStaticCredentialsProvider(key, secret, ""),
		// One attempt: a fault must show as an error here, not be retried away.
		RetryMaxAttempts: 1,
	}
}

// took runs f and returns how long it took.
func took(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func TestProxyMongo(t *testing.T) {
	st := stacktest.New(t)
	p := st.Proxy(t, stacktest.Mongo)
	if !strings.Contains(p.MongoURI(), p.Addr) || !strings.Contains(p.MongoURI(), "directConnection=true") {
		t.Fatalf("MongoURI %q does not go through %s directly", p.MongoURI(), p.Addr)
	}
	client, err := mongo.Connect(options.Client().ApplyURI(p.MongoURI()).SetServerSelectionTimeout(3 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	coll := client.Database("t_" + stacktest.RandomID()).Collection("c")
	t.Cleanup(func() { _ = st.Mongo.Database(coll.Database().Name()).Drop(context.Background()) })
	ctx := context.Background()
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatalf("insert through the proxy: %v", err)
	}
	// The document is really on the stack's server.
	if n, err := st.Mongo.Database(coll.Database().Name()).Collection("c").CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Fatalf("direct count = %d, %v; want 1", n, err)
	}

	lat := p.Inject(t, "latency", "downstream", toxiproxy.Attributes{"latency": 300})
	if d := took(func() {
		if err := coll.FindOne(ctx, bson.D{}).Err(); err != nil {
			t.Fatalf("find with latency: %v", err)
		}
	}); d < 300*time.Millisecond {
		t.Fatalf("find took %v with a 300ms latency toxic", d)
	}
	if err := p.RemoveToxic(lat); err != nil {
		t.Fatal(err)
	}

	p.Inject(t, "reset_peer", "upstream", toxiproxy.Attributes{"timeout": 0})
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := coll.FindOne(qctx, bson.D{}).Err(); err == nil {
		t.Fatal("find succeeded through a reset_peer toxic")
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}
	// The driver reconnects once the toxic is gone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := coll.FindOne(ctx, bson.D{}).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("find after Heal: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestProxyS3AndSTS(t *testing.T) {
	st := stacktest.New(t)
	p := st.Proxy(t, stacktest.S3)
	env := stacktest.ProxyEnv(nil, p)
	if env["AWS_ENDPOINT_URL_S3"] != p.Endpoint() || env["AWS_ENDPOINT_URL_STS"] != p.Endpoint() {
		t.Fatalf("Env = %v, want S3 and STS through %s", env, p.Endpoint())
	}
	ctx := context.Background()
	worker := s3.NewFromConfig(awsCfg(st, st.Env["AWS_ACCESS_KEY_ID"], st.Env["AWS_SECRET_ACCESS_KEY"]), func(o *s3.Options) {
		o.BaseEndpoint = aws.String(p.Endpoint())
		o.UsePathStyle = true
	})
	bucket, key := st.Env["EXPORT_BUCKET"], "stacktest-toxi/"+stacktest.RandomID()
	t.Cleanup(func() {
		_, _ = st.S3.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: &bucket, Key: &key})
	})
	// SigV4 signs the proxy's host; the server sees the same host, so the signature holds.
	body := bytes.Repeat([]byte("x"), 64<<10)
	if _, err := worker.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)}); err != nil {
		t.Fatalf("put through the proxy: %v", err)
	}
	get := func(ctx context.Context) error {
		out, err := worker.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		b, err := io.ReadAll(out.Body)
		if err == nil && !bytes.Equal(b, body) {
			err = errors.New("body differs")
		}
		return err
	}
	if err := get(ctx); err != nil {
		t.Fatalf("get through the proxy: %v", err)
	}

	// limit_data closes the connection after 10 KiB from the server: the body comes short.
	lim := p.Inject(t, "limit_data", "downstream", toxiproxy.Attributes{"bytes": 10 << 10})
	if err := get(ctx); err == nil {
		t.Fatal("get succeeded through a limit_data toxic")
	}
	if err := p.RemoveToxic(lim); err != nil {
		t.Fatal(err)
	}

	// timeout: the server never answers; only the caller's deadline ends the call.
	p.Inject(t, "timeout", "upstream", toxiproxy.Attributes{"timeout": 0})
	tctx, cancel := context.WithTimeout(ctx, 1*time.Second)
	defer cancel()
	if d := took(func() {
		if err := get(tctx); err == nil {
			t.Fatal("get succeeded through a timeout toxic")
		}
	}); d < 900*time.Millisecond {
		t.Fatalf("get failed after %v, before its 1s deadline: the toxic did not hold the call", d)
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}

	// STS through the same proxy: AssumeRole signed by the worker, then S3 with the role's keys.
	stsc := sts.NewFromConfig(awsCfg(st, st.Env["AWS_ACCESS_KEY_ID"], st.Env["AWS_SECRET_ACCESS_KEY"]), func(o *sts.Options) {
		o.BaseEndpoint = aws.String(p.Endpoint())
	})
	out, err := stsc.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(st.Env["SFMC_ROLE_ARN"]), RoleSessionName: aws.String("stacktest-toxi")})
	if err != nil {
		t.Fatalf("AssumeRole through the proxy: %v", err)
	}
	c := out.Credentials
	role := s3.NewFromConfig(aws.Config{Region: st.Env["AWS_REGION"], Credentials: credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken)},
		func(o *s3.Options) { o.BaseEndpoint = aws.String(p.Endpoint()); o.UsePathStyle = true })
	rkey := "stacktest-toxi/" + stacktest.RandomID()
	rbucket := st.Env["SFMC_BUCKET"]
	if _, err := role.PutObject(ctx, &s3.PutObjectInput{Bucket: &rbucket, Key: &rkey, Body: strings.NewReader("role")}); err != nil {
		t.Fatalf("put with role credentials through the proxy: %v", err)
	}
	_, _ = st.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &rbucket, Key: &rkey})
}

func TestProxySQS(t *testing.T) {
	st := stacktest.New(t)
	q := st.NewQueues(t, 30*time.Second, 5)
	p := st.Proxy(t, stacktest.SQS)
	client := sqs.NewFromConfig(awsCfg(st, st.Env["AWS_ACCESS_KEY_ID"], st.Env["AWS_SECRET_ACCESS_KEY"]), func(o *sqs.Options) {
		o.BaseEndpoint = aws.String(p.Endpoint())
	})
	ctx := context.Background()
	if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &q.JobsURL, MessageBody: aws.String("hello")}); err != nil {
		t.Fatalf("send through the proxy: %v", err)
	}

	p.Inject(t, "latency", "upstream", toxiproxy.Attributes{"latency": 300})
	if d := took(func() {
		if _, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &q.JobsURL}); err != nil {
			t.Fatalf("attributes with latency: %v", err)
		}
	}); d < 300*time.Millisecond {
		t.Fatalf("call took %v with a 300ms latency toxic: the queue URL's host was dialed, not the proxy", d)
	}
	if err := p.Heal(); err != nil {
		t.Fatal(err)
	}

	// A cut proxy is a server gone away: calls fail at once, and work again after Restore.
	p.Cut(t)
	if _, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q.JobsURL}); err == nil {
		t.Fatal("receive succeeded through a disabled proxy")
	}
	p.Restore(t)
	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: &q.JobsURL, WaitTimeSeconds: 1})
	if err != nil || len(out.Messages) != 1 || aws.ToString(out.Messages[0].Body) != "hello" {
		t.Fatalf("receive after Restore: %v, %d messages", err, len(out.Messages))
	}
}

func TestProxyEnvForWorker(t *testing.T) {
	st := stacktest.New(t)
	pm, ps3, psts, psqs := st.Proxy(t, stacktest.Mongo), st.Proxy(t, stacktest.S3), st.Proxy(t, stacktest.STS), st.Proxy(t, stacktest.SQS)
	env := st.WorkerEnv(stacktest.ProxyEnv(map[string]string{"WORKER_CONCURRENCY": "2"}, pm, ps3, psts, psqs))
	want := map[string]string{
		"MONGO_URI":            pm.MongoURI(),
		"AWS_ENDPOINT_URL_S3":  ps3.Endpoint(),
		"AWS_ENDPOINT_URL_STS": psts.Endpoint(),
		"AWS_ENDPOINT_URL_SQS": psqs.Endpoint(),
		"WORKER_CONCURRENCY":   "2",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if env["AWS_ACCESS_KEY_ID"] != st.Env["AWS_ACCESS_KEY_ID"] {
		t.Errorf("worker credentials lost")
	}
}

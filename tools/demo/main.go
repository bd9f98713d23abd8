// Command demo holds the steps of the README's demo (scripts/demo.sh) that need a client of the
// local stack: seed fan registrations, enqueue an export job, and show the exported object.
//
//	go run ./tools/demo seed     [-per-campaign 1000]
//	go run ./tools/demo enqueue  [-campaign ID] [-export-id ID]   prints the object's key
//	go run ./tools/demo show     -key KEY [-wait 2m] [-lines 6]
//
// It reads the stack's settings from the environment (scripts/demo.sh loads .stack/env).
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/jobs/encode"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: demo seed|enqueue|show [flags]")
		os.Exit(2)
	}
	ctx := context.Background()
	var err error
	switch os.Args[1] {
	case "seed":
		err = seed(ctx, os.Args[2:])
	case "enqueue":
		err = enqueue(ctx, os.Args[2:])
	case "show":
		err = show(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func env(name string) string {
	v := os.Getenv(name)
	if v == "" {
		fmt.Fprintf(os.Stderr, "demo: %s is not set (is .stack/env loaded?)\n", name)
		os.Exit(2)
	}
	return v
}

func database() string {
	if db := os.Getenv("MONGO_DATABASE"); db != "" {
		return db
	}
	return "titan"
}

func seed(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	per := fs.Int("per-campaign", 1000, "registrations per campaign")
	_ = fs.Parse(args)
	client, err := mongo.Connect(options.Client().ApplyURI(env("MONGO_URI")))
	if err != nil {
		return err
	}
	defer client.Disconnect(ctx)
	db := client.Database(database())
	ds := fixtures.Generate(2027, fixtures.Campaigns, *per)
	for name, docs := range map[string][]any{"registrations": ds.Registrations, "access_codes": ds.AccessCodes} {
		if err := db.Collection(name).Drop(ctx); err != nil {
			return fmt.Errorf("drop %s: %w", name, err)
		}
		if _, err := db.Collection(name).InsertMany(ctx, docs); err != nil {
			return fmt.Errorf("insert %s: %w", name, err)
		}
	}
	fmt.Printf("seeded %s: %d registrations over %d campaigns (%s), %d access codes\n",
		database(), len(ds.Registrations), len(fixtures.Campaigns), strings.Join(fixtures.Campaigns, ", "), len(ds.AccessCodes))
	return nil
}

func enqueue(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("enqueue", flag.ExitOnError)
	campaign := fs.String("campaign", fixtures.Campaigns[0], "campaign to export")
	id := fs.String("export-id", fmt.Sprintf("demo-%s", time.Now().UTC().Format("20060102T150405Z")), "export id")
	_ = fs.Parse(args)
	m := jobs.Message{Version: jobs.CurrentVersion, ExportID: *id, Kind: "registrations", Format: encode.FormatCSV,
		Params: json.RawMessage(fmt.Sprintf(`{"campaign_id":%q}`, *campaign)), RequestedBy: "demo"}
	body, err := m.Encode()
	if err != nil {
		return err
	}
	cfg := aws.Config{Region: env("AWS_REGION"), Credentials: credentials.NewStaticCredentialsProvider(env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"), "")}
	client := sqs.NewFromConfig(cfg, func(o *sqs.Options) { o.BaseEndpoint = aws.String(env("AWS_ENDPOINT_URL_SQS")) })
	out, err := client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(env("EXPORT_QUEUE_URL")), MessageBody: aws.String(string(body))})
	if err != nil {
		return fmt.Errorf("send job message: %w", err)
	}
	fmt.Fprintf(os.Stderr, "enqueued message %s: %s\n", aws.ToString(out.MessageId), body)
	// The key the worker will write (see jobs.ObjectKey); the demo waits for it.
	fmt.Printf("exports/registrations/%s/%s.csv.gz\n", *campaign, *id)
	return nil
}

func show(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("show", flag.ExitOnError)
	key := fs.String("key", "", "object key")
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the object")
	lines := fs.Int("lines", 6, "decompressed lines to print")
	_ = fs.Parse(args)
	bucket := env("EXPORT_BUCKET")
	cfg := aws.Config{Region: env("AWS_REGION"), Credentials: credentials.NewStaticCredentialsProvider(env("STACK_ADMIN_ACCESS_KEY_ID"), env("STACK_ADMIN_SECRET_ACCESS_KEY"), "")}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(env("AWS_ENDPOINT_URL_S3"))
		o.UsePathStyle = true
	})
	deadline := time.Now().Add(*wait)
	var obj *s3.GetObjectOutput
	for {
		var err error
		obj, err = client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(*key)})
		if err == nil {
			break
		}
		var nsk *s3types.NoSuchKey
		if !errors.As(err, &nsk) {
			return fmt.Errorf("get s3://%s/%s: %w", bucket, *key, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("s3://%s/%s did not appear within %s", bucket, *key, *wait)
		}
		time.Sleep(250 * time.Millisecond)
	}
	defer obj.Body.Close()
	data, err := io.ReadAll(obj.Body)
	if err != nil {
		return err
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("gunzip: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return fmt.Errorf("gunzip: %w", err)
	}
	recs, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		return fmt.Errorf("parse csv: %w", err)
	}
	fmt.Printf("\nobject:        s3://%s/%s\n", bucket, *key)
	fmt.Printf("content:       %s, encoding %s\n", aws.ToString(obj.ContentType), aws.ToString(obj.ContentEncoding))
	fmt.Printf("size:          %d bytes gzipped, %d bytes of CSV (ratio %.1f)\n", len(data), len(raw), float64(len(raw))/float64(len(data)))
	fmt.Printf("rows:          %d (plus the header)\n", len(recs)-1)
	campaigns := map[string]int{}
	for _, r := range recs[1:] {
		campaigns[r[1]]++
	}
	fmt.Printf("campaigns:     %v\n", campaigns)

	client2, err := mongo.Connect(options.Client().ApplyURI(env("MONGO_URI")))
	if err == nil {
		defer client2.Disconnect(ctx)
		for c := range campaigns {
			n, err := client2.Database(database()).Collection("registrations").CountDocuments(ctx, bson.D{{Key: "campaign_id", Value: c}})
			if err == nil {
				fmt.Printf("in MongoDB:    %d registrations of %s\n", n, c)
			}
		}
	}
	fmt.Printf("\nfirst %d lines of the decompressed CSV:\n", *lines)
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for i := 0; i < *lines && sc.Scan(); i++ {
		fmt.Println("  " + sc.Text())
	}
	return nil
}

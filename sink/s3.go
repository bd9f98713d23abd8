// Package sink holds the places exports are written to. S3 writes one object per export with a
// streaming multipart upload that is completed only after the whole stream was read, and
// aborted otherwise.
package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/verifiedfan/export-service/jobs"
)

// S3 writes objects into one bucket.
type S3 struct {
	bucket string
	opts   S3Options
	tm     *transfermanager.Client
}

// S3Options configure an S3 sink.
type S3Options struct {
	// PartSize is the multipart part size; 0 means 8 MiB.
	PartSize int64
	// Concurrency is the number of parts uploaded at once per object; 0 means 5.
	Concurrency int
	// ExpectedBucketOwner, if set, makes S3 refuse the write when the bucket belongs to another account.
	ExpectedBucketOwner string
}

var _ jobs.Sink = (*S3)(nil)

// NewS3 returns a sink writing into bucket with client.
func NewS3(client *s3.Client, bucket string, opts S3Options) *S3 {
	tm := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = opts.PartSize
		o.Concurrency = opts.Concurrency
		o.ChecksumAlgorithm = tmtypes.ChecksumAlgorithmCrc32c
		// Abort the multipart upload with a fresh context even when the job's context was canceled.
		o.FailTimeout = 30 * time.Second
	})
	return &S3{bucket: bucket, opts: opts, tm: tm}
}

// Bucket is the sink's bucket.
func (s *S3) Bucket() string { return s.bucket }

// Put streams body into obj.Key. The object appears only when the upload completed; on any
// error the multipart upload is aborted.
func (s *S3) Put(ctx context.Context, obj jobs.Object, body io.Reader) (jobs.Written, error) {
	in := &transfermanager.UploadObjectInput{
		Bucket:   aws.String(s.bucket),
		Key:      aws.String(obj.Key),
		Body:     body,
		Metadata: obj.Metadata,
	}
	if obj.ContentType != "" {
		in.ContentType = aws.String(obj.ContentType)
	}
	if obj.ContentEncoding != "" {
		in.ContentEncoding = aws.String(obj.ContentEncoding)
	}
	if s.opts.ExpectedBucketOwner != "" {
		in.ExpectedBucketOwner = aws.String(s.opts.ExpectedBucketOwner)
	}
	out, err := s.tm.UploadObject(ctx, in)
	if err != nil {
		return jobs.Written{}, Classify(fmt.Errorf("s3: put object s3://%s/%s: %w", s.bucket, obj.Key, err))
	}
	w := jobs.Written{Bucket: s.bucket, Key: obj.Key, ETag: aws.ToString(out.ETag)}
	if c := aws.ToString(out.ChecksumCRC32C); c != "" {
		w.Checksum, w.ChecksumAlgorithm = c, "CRC32C"
	}
	return w, nil
}

// permanentCodes are S3/STS error codes that retrying cannot fix.
var permanentCodes = map[string]string{
	"AccessDenied":          "access_denied",
	"AllAccessDisabled":     "access_denied",
	"InvalidAccessKeyId":    "access_denied",
	"SignatureDoesNotMatch": "access_denied",
	"AccountProblem":        "access_denied",
	"NoSuchBucket":          "no_such_bucket",
	"InvalidBucketName":     "no_such_bucket",
	"InvalidStorageClass":   "invalid_destination",
	"KMS.NotFoundException": "invalid_destination",
	"InvalidArgument":       "invalid_destination",
}

// Classify marks err permanent when its AWS error code says retrying cannot help; everything
// else (timeouts, throttling, 5xx, connection errors) stays retryable.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := jobs.IsPermanent(err); ok {
		return err
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		if reason, ok := permanentCodes[apiErr.ErrorCode()]; ok {
			return jobs.Permanent(reason, err)
		}
	}
	return err
}

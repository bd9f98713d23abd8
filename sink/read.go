package sink

import (
	"context"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/verifiedfan/export-service/jobs"
)

var _ jobs.ObjectReader = (*S3)(nil)

// ReadObject implements jobs.ObjectReader: it reads back a small object (a manifest), at most
// limit bytes of it. A destination whose role may not read (s3:GetObject) answers AccessDenied,
// which is returned as an error for the caller to judge.
func (s *S3) ReadObject(ctx context.Context, key string, limit int64) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}, s.timeouts)
	if err != nil {
		if code := errorCode(err); code == "NoSuchKey" || code == "NotFound" {
			return nil, fmt.Errorf("sink: read s3://%s/%s: %w", s.bucket, key, jobs.ErrNoObject)
		}
		return nil, fmt.Errorf("sink: read s3://%s/%s: %w", s.bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("sink: read s3://%s/%s: %w", s.bucket, key, err)
	}
	return b, nil
}

var _ jobs.ObjectDeleter = (*S3)(nil)

// DeleteObject implements jobs.ObjectDeleter: it removes the object at key (no error when there
// is none). On a versioned bucket the object becomes a delete marker.
func (s *S3) DeleteObject(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}, s.timeouts)
	if err != nil {
		return fmt.Errorf("sink: delete s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

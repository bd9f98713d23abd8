// Package sink holds the places exports are written to. S3 writes one object per export with a
// streaming multipart upload of its own: parts that grow with the stream, a checksum on every
// part and on the whole object, bounded memory, and an abort on any failure, so that an object
// appears only when complete.
package sink

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/verifiedfan/export-service/internal/awsx"
	"github.com/verifiedfan/export-service/jobs"
)

// Checksum algorithms the sink can send. Both are "full object" checksums: the value S3 keeps
// is the CRC of the whole object whatever its part sizes, so a partner can check a download
// with any tool, and S3 checks it against every part's CRC when the upload completes. CRC32C
// is the default: Go computes it with the CPU's CRC instructions at about 18 GB/s, CRC64NVME
// with tables at about 1.2 GB/s, a cost paid twice per byte (part and whole object) on the
// same cores as gzip.
const (
	ChecksumCRC64NVME = "CRC64NVME"
	ChecksumCRC32C    = "CRC32C"
)

// S3Options configure an S3 sink.
type S3Options struct {
	// PartSize is the size of the first parts; later parts grow (see PartSize). 0 means 8 MiB.
	PartSize int64
	// Concurrency is the number of parts uploaded at once while the next part fills; 0 means 4.
	// An upload holds at most Concurrency+1 part buffers, all taken from Buffers.
	Concurrency int
	// Buffers is the process's budget of part buffers, shared by every sink; nil means
	// DefaultBufferPool().
	Buffers *BufferPool
	// Timeouts are the deadlines of each attempt of the sink's requests (see awsx.Timeouts; the
	// zero value is awsx's defaults). They apply whatever the client's own options.
	Timeouts awsx.Timeouts
	// Checksum is ChecksumCRC32C (the default) or ChecksumCRC64NVME.
	Checksum string
	// ExpectedBucketOwner, if set, makes S3 refuse the write when the bucket belongs to another account.
	ExpectedBucketOwner string
	// SSE is the server-side encryption: "" (the bucket's default), "AES256" or "aws:kms".
	SSE string
	// KMSKeyID is the KMS key of SSE "aws:kms" (empty: the account's default key).
	KMSKeyID string
	// StorageClass, if set, is the objects' storage class (STANDARD, INTELLIGENT_TIERING, ...).
	StorageClass string
	// Destination names the destination in errors.
	Destination string
	// RoleARN is the role whose temporary credentials the client signs with, if any; with
	// Credentials it lets the sink tell expired credentials (retry with fresh ones) from a
	// wrong key (permanent).
	RoleARN     string
	Credentials *aws.CredentialsCache
	// AbortTimeout bounds the abort of a failed upload, which runs even when the job's context
	// was canceled; 0 means 30s.
	AbortTimeout time.Duration
}

// S3 writes objects into one bucket.
type S3 struct {
	client *s3.Client
	bucket string
	opts   S3Options
	// timeouts is the option giving every request of the sink its attempt deadlines.
	timeouts func(*s3.Options)
	// perTier is partsPerTier; tests lower it to see parts grow without uploading 8 GiB.
	perTier int
	// noSegmentMerge makes segments upload their parts as they come, short tail and all (a
	// test hook: it shows that S3 then refuses the object).
	noSegmentMerge bool
}

var _ jobs.Sink = (*S3)(nil)

// NewS3 returns a sink writing into bucket with client.
func NewS3(client *s3.Client, bucket string, opts S3Options) *S3 {
	if opts.PartSize <= 0 {
		opts.PartSize = 8 << 20
	}
	opts.PartSize = min(max(opts.PartSize, MinPartSize), MaxPartSize)
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.Buffers == nil {
		opts.Buffers = DefaultBufferPool()
	}
	if opts.Checksum == "" {
		opts.Checksum = ChecksumCRC32C
	}
	if opts.AbortTimeout <= 0 {
		opts.AbortTimeout = 30 * time.Second
	}
	return &S3{client: client, bucket: bucket, opts: opts, timeouts: awsx.S3(opts.Timeouts), perTier: partsPerTier}
}

// putObject writes a body that fit in one part with a single request.
func (u *upload) putObject(ctx context.Context, data []byte) (jobs.Written, error) {
	s := u.s
	u.full.Write(data)
	u.size, u.parts = int64(len(data)), 1
	sum := base64.StdEncoding.EncodeToString(u.full.Sum(nil))
	in := &s3.PutObjectInput{
		Bucket:              aws.String(s.bucket),
		Key:                 aws.String(u.obj.Key),
		ContentLength:       aws.Int64(int64(len(data))),
		Metadata:            u.obj.Metadata,
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
		ContentType:         optional(u.obj.ContentType),
		ContentEncoding:     optional(u.obj.ContentEncoding),
	}
	s.setChecksum(&in.ChecksumCRC64NVME, &in.ChecksumCRC32C, sum)
	if s.opts.SSE != "" {
		in.ServerSideEncryption = s3types.ServerSideEncryption(s.opts.SSE)
		in.SSEKMSKeyId = optional(s.opts.KMSKeyID)
	}
	if s.opts.StorageClass != "" {
		in.StorageClass = s3types.StorageClass(s.opts.StorageClass)
	}
	if err := u.beforeCommit(ctx); err != nil {
		return jobs.Written{}, err
	}
	var out *s3.PutObjectOutput
	var err error
	for attempt := 1; ; attempt++ {
		in.Body = bytes.NewReader(data)
		out, err = s.client.PutObject(ctx, in, unsignedPayload, s.timeouts)
		if err != nil && attempt == 1 && s.credentialsExpired(err) {
			s.opts.Credentials.Invalidate()
			continue
		}
		break
	}
	if err != nil {
		return jobs.Written{}, s.classify(fmt.Errorf("sink: put object s3://%s/%s: %w", s.bucket, u.obj.Key, err))
	}
	return jobs.Written{
		Bucket: s.bucket, Key: u.obj.Key, ETag: aws.ToString(out.ETag),
		Checksum: sum, ChecksumAlgorithm: s.opts.Checksum, Parts: 1,
	}, nil
}

// unsignedPayload leaves the body out of the SigV4 signature: the body's integrity is the
// job of its CRC checksum header, which the server verifies, and the SHA-256 the signature
// would need is a second full pass over every byte (jobs.Stream computes one already).
func unsignedPayload(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
}

// readPart fills buf from r. eof reports that r ended (n may then be less than len(buf), or 0).
// It watches ctx between reads, so a failed upload stops reading a slow stream soon.
func readPart(ctx context.Context, r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		if err := ctx.Err(); err != nil {
			return n, false, err
		}
		m, err := r.Read(buf[n:])
		n += m
		// Only io.EOF itself ends the stream. An error that wraps it (the MongoDB driver's for a
		// connection closed between replies) is a failure: taking it for the end would commit a
		// truncated object.
		if err == io.EOF { //nolint:errorlint // see above
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

var (
	crc64NVMETable  = crc64.MakeTable(0x9a6c9329ac4bc9b5)
	castagnoliTable = crc32.MakeTable(crc32.Castagnoli)
)

func (s *S3) newHash() hash.Hash {
	if s.opts.Checksum == ChecksumCRC32C {
		return crc32.New(castagnoliTable)
	}
	return crc64.New(crc64NVMETable)
}

// checksum is the base64 checksum of data, as S3's x-amz-checksum-* headers carry it.
func (s *S3) checksum(data []byte) string {
	var raw []byte
	if s.opts.Checksum == ChecksumCRC32C {
		raw = binary.BigEndian.AppendUint32(nil, crc32.Checksum(data, castagnoliTable))
	} else {
		raw = binary.BigEndian.AppendUint64(nil, crc64.Checksum(data, crc64NVMETable))
	}
	return base64.StdEncoding.EncodeToString(raw)
}

func (s *S3) setChecksum(crc64nvme, crc32c **string, sum string) {
	if s.opts.Checksum == ChecksumCRC32C {
		*crc32c = aws.String(sum)
	} else {
		*crc64nvme = aws.String(sum)
	}
}

func (s *S3) checksumOf(crc64nvme, crc32c *string) string {
	if s.opts.Checksum == ChecksumCRC32C {
		return aws.ToString(crc32c)
	}
	return aws.ToString(crc64nvme)
}

// sameChecksum compares checksums, ignoring a "-N" part count suffix some servers add.
func sameChecksum(server, ours string) bool {
	if server == ours {
		return true
	}
	for i := len(server) - 1; i > 0; i-- {
		if server[i] == '-' {
			return server[:i] == ours
		}
	}
	return false
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

var _ jobs.IncompleteAborter = (*S3)(nil)

// AbortIncomplete aborts the unfinished multipart uploads of key left behind by an earlier
// attempt (a worker killed mid-upload), but the upload keep (a checkpoint's, to be continued),
// and returns how many it aborted. A destination whose
// role may not list uploads (s3:ListBucketMultipartUploads) is left to the bucket's lifecycle
// rule: that AccessDenied is not an error, as it must not fail every export to the partner.
func (s *S3) AbortIncomplete(ctx context.Context, key, keep string) (int, error) {
	in := &s3.ListMultipartUploadsInput{
		Bucket:              aws.String(s.bucket),
		Prefix:              aws.String(key),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}
	aborted := 0
	for {
		out, err := s.client.ListMultipartUploads(ctx, in, s.timeouts)
		if err != nil {
			var are *AssumeRoleError
			if errorCode(err) == "AccessDenied" && s.opts.RoleARN != "" && !errors.As(err, &are) {
				return aborted, nil
			}
			return aborted, s.classify(fmt.Errorf("sink: list multipart uploads of s3://%s/%s: %w", s.bucket, key, err))
		}
		for _, up := range out.Uploads {
			if aws.ToString(up.Key) != key || (keep != "" && aws.ToString(up.UploadId) == keep) {
				continue // another key that merely starts with this one, or the one to continue
			}
			if _, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: aws.String(s.bucket), Key: up.Key, UploadId: up.UploadId,
				ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
			}, s.timeouts); err != nil && errorCode(err) != "NoSuchUpload" {
				return aborted, s.classify(fmt.Errorf("sink: abort upload %s of s3://%s/%s: %w", aws.ToString(up.UploadId), s.bucket, key, err))
			}
			aborted++
		}
		if !aws.ToBool(out.IsTruncated) {
			return aborted, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

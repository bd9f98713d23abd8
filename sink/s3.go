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
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

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
	// Part buffers never hold more than max((Concurrency+1) x PartSize, 2 x current part size).
	Concurrency int
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
	// perTier is partsPerTier; tests lower it to see parts grow without uploading 8 GiB.
	perTier int
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
	if opts.Checksum == "" {
		opts.Checksum = ChecksumCRC32C
	}
	if opts.AbortTimeout <= 0 {
		opts.AbortTimeout = 30 * time.Second
	}
	return &S3{client: client, bucket: bucket, opts: opts, perTier: partsPerTier}
}

// Bucket is the sink's bucket.
func (s *S3) Bucket() string { return s.bucket }

// Put streams body into obj.Key. A body shorter than one part is written with one PutObject;
// a longer one with a multipart upload that is completed only after body returned io.EOF and
// every part was stored, and aborted otherwise.
func (s *S3) Put(ctx context.Context, obj jobs.Object, body io.Reader) (jobs.Written, error) {
	w, _, err := s.put(ctx, obj, body)
	return w, err
}

func (s *S3) partSize(n int) int64 { return partSize(s.opts.PartSize, n, s.perTier) }

// putStats are figures of one upload, for tests and benchmarks.
type putStats struct {
	Parts int
	// PeakBuffered is the most bytes the upload's part buffers held at once.
	PeakBuffered int64
	Bytes        int64
}

func (s *S3) put(ctx context.Context, obj jobs.Object, body io.Reader) (jobs.Written, putStats, error) {
	u := &upload{s: s, obj: obj, full: s.newHash()}
	u.pool = newBufPool(int64(s.opts.Concurrency+1) * s.opts.PartSize)
	w, err := u.run(ctx, body)
	return w, putStats{Parts: u.parts, PeakBuffered: u.pool.peak, Bytes: u.size}, err
}

// upload is one Put in progress.
type upload struct {
	s     *S3
	obj   jobs.Object
	pool  *bufPool
	full  hash.Hash // CRC of the whole object, in stream order
	size  int64
	parts int

	mu        sync.Mutex
	completed []s3types.CompletedPart
}

func (u *upload) run(ctx context.Context, body io.Reader) (jobs.Written, error) {
	s := u.s
	first, err := u.pool.get(ctx, s.partSize(1))
	if err != nil {
		return jobs.Written{}, err
	}
	n, eof, err := readPart(ctx, body, first)
	if err != nil {
		return jobs.Written{}, err
	}
	if eof {
		return u.putObject(ctx, first[:n])
	}

	create := &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(u.obj.Key),
		Metadata:          u.obj.Metadata,
		ChecksumAlgorithm: s3types.ChecksumAlgorithm(s.opts.Checksum),
		ChecksumType:      s3types.ChecksumTypeFullObject,
	}
	if u.obj.ContentType != "" {
		create.ContentType = aws.String(u.obj.ContentType)
	}
	if u.obj.ContentEncoding != "" {
		create.ContentEncoding = aws.String(u.obj.ContentEncoding)
	}
	if s.opts.ExpectedBucketOwner != "" {
		create.ExpectedBucketOwner = aws.String(s.opts.ExpectedBucketOwner)
	}
	if s.opts.SSE != "" {
		create.ServerSideEncryption = s3types.ServerSideEncryption(s.opts.SSE)
		if s.opts.KMSKeyID != "" {
			create.SSEKMSKeyId = aws.String(s.opts.KMSKeyID)
		}
	}
	if s.opts.StorageClass != "" {
		create.StorageClass = s3types.StorageClass(s.opts.StorageClass)
	}
	out, err := s.client.CreateMultipartUpload(ctx, create)
	if err != nil {
		return jobs.Written{}, s.classify(fmt.Errorf("sink: create multipart upload s3://%s/%s: %w", s.bucket, u.obj.Key, err))
	}
	uploadID := aws.ToString(out.UploadId)

	w, err := u.uploadParts(ctx, uploadID, body, first[:n])
	if err != nil {
		// A fresh context: the job's may be canceled already, and a dangling upload costs money.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.AbortTimeout)
		defer cancel()
		if _, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(s.bucket), Key: aws.String(u.obj.Key), UploadId: aws.String(uploadID),
			ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
		}); aerr != nil {
			err = fmt.Errorf("%w (and aborting upload %s failed: %v)", err, uploadID, aerr)
		}
		return jobs.Written{}, err
	}
	return w, nil
}

// uploadParts uploads first and the rest of body as parts of uploadID, then completes it.
func (u *upload) uploadParts(ctx context.Context, uploadID string, body io.Reader, first []byte) (jobs.Written, error) {
	s := u.s
	g, gctx := errgroup.WithContext(ctx)
	send := func(n int, part []byte) {
		u.full.Write(part)
		u.size += int64(len(part))
		u.parts = n
		g.Go(func() error {
			defer u.pool.put(part)
			return u.uploadPart(gctx, uploadID, n, part)
		})
	}
	send(1, first)
	var readErr error
	for n := 2; ; n++ {
		buf, err := u.pool.get(gctx, s.partSize(n))
		if err != nil {
			readErr = err
			break
		}
		got, eof, err := readPart(gctx, body, buf)
		if err != nil || got == 0 {
			u.pool.put(buf)
			readErr = err
			break
		}
		if n > MaxParts {
			u.pool.put(buf)
			readErr = jobs.Permanentf("too_large", "sink: s3://%s/%s: the export is larger than %d parts of up to %d bytes (%d bytes)", s.bucket, u.obj.Key, MaxParts, PartSize(s.opts.PartSize, MaxParts), Capacity(s.opts.PartSize))
			break
		}
		send(n, buf[:got])
		if eof {
			break
		}
	}
	partsErr := g.Wait()
	switch {
	case readErr != nil && !errors.Is(readErr, context.Canceled):
		return jobs.Written{}, readErr
	case partsErr != nil:
		return jobs.Written{}, partsErr
	case readErr != nil:
		return jobs.Written{}, readErr
	}

	slices.SortFunc(u.completed, func(a, b s3types.CompletedPart) int {
		return int(aws.ToInt32(a.PartNumber) - aws.ToInt32(b.PartNumber))
	})
	sum := base64.StdEncoding.EncodeToString(u.full.Sum(nil))
	complete := &s3.CompleteMultipartUploadInput{
		Bucket:              aws.String(s.bucket),
		Key:                 aws.String(u.obj.Key),
		UploadId:            aws.String(uploadID),
		MultipartUpload:     &s3types.CompletedMultipartUpload{Parts: u.completed},
		ChecksumType:        s3types.ChecksumTypeFullObject,
		MpuObjectSize:       aws.Int64(u.size),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}
	s.setChecksum(&complete.ChecksumCRC64NVME, &complete.ChecksumCRC32C, sum)
	// Completing is the commit: it must not be cut short by a cancellation arriving now that
	// every byte is stored, or the export would be lost for nothing.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	out, err := s.completeWithFreshCredentials(cctx, complete)
	if err != nil {
		return jobs.Written{}, s.classify(fmt.Errorf("sink: complete multipart upload s3://%s/%s (%d parts): %w", s.bucket, u.obj.Key, len(u.completed), err))
	}
	if got := s.checksumOf(out.ChecksumCRC64NVME, out.ChecksumCRC32C); got != "" && !sameChecksum(got, sum) {
		return jobs.Written{}, fmt.Errorf("sink: s3://%s/%s: the server's %s checksum %s differs from the stream's %s", s.bucket, u.obj.Key, s.opts.Checksum, got, sum)
	}
	return jobs.Written{
		Bucket: s.bucket, Key: u.obj.Key, ETag: aws.ToString(out.ETag),
		Checksum: sum, ChecksumAlgorithm: s.opts.Checksum, Parts: len(u.completed),
	}, nil
}

func (s *S3) completeWithFreshCredentials(ctx context.Context, in *s3.CompleteMultipartUploadInput) (*s3.CompleteMultipartUploadOutput, error) {
	out, err := s.client.CompleteMultipartUpload(ctx, in)
	if err != nil && s.credentialsExpired(err) {
		s.opts.Credentials.Invalidate()
		out, err = s.client.CompleteMultipartUpload(ctx, in)
	}
	return out, err
}

// uploadPart stores one part with its checksum, which the server verifies.
func (u *upload) uploadPart(ctx context.Context, uploadID string, n int, part []byte) error {
	s := u.s
	sum := s.checksum(part)
	in := &s3.UploadPartInput{
		Bucket:              aws.String(s.bucket),
		Key:                 aws.String(u.obj.Key),
		UploadId:            aws.String(uploadID),
		PartNumber:          aws.Int32(int32(n)),
		ContentLength:       aws.Int64(int64(len(part))),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}
	s.setChecksum(&in.ChecksumCRC64NVME, &in.ChecksumCRC32C, sum)
	var out *s3.UploadPartOutput
	var err error
	for attempt := 1; ; attempt++ {
		in.Body = bytes.NewReader(part)
		out, err = s.client.UploadPart(ctx, in, unsignedPayload)
		// Credentials that expired in flight (a part slower than the refresh window): once
		// more with fresh ones. The SDK's own retries cover throttling and 5xx.
		if err != nil && attempt == 1 && s.credentialsExpired(err) {
			s.opts.Credentials.Invalidate()
			continue
		}
		break
	}
	if err != nil {
		return s.classify(fmt.Errorf("sink: upload part %d (%d bytes) of s3://%s/%s: %w", n, len(part), s.bucket, u.obj.Key, err))
	}
	cp := s3types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(n))}
	s.setChecksum(&cp.ChecksumCRC64NVME, &cp.ChecksumCRC32C, sum)
	u.mu.Lock()
	u.completed = append(u.completed, cp)
	u.mu.Unlock()
	return nil
}

// putObject writes a body that fit in one part with a single request.
func (u *upload) putObject(ctx context.Context, data []byte) (jobs.Written, error) {
	defer u.pool.put(data)
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
	var out *s3.PutObjectOutput
	var err error
	for attempt := 1; ; attempt++ {
		in.Body = bytes.NewReader(data)
		out, err = s.client.PutObject(ctx, in, unsignedPayload)
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
// would need is a second full pass over every byte (jobs.Run computes one already).
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
		if errors.Is(err, io.EOF) {
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

// bufPool hands out part buffers and bounds the bytes they hold. Part sizes only grow, so a
// returned buffer is reused by the next part of its size and dropped when parts outgrow it.
type bufPool struct {
	mu    sync.Mutex
	cond  *sync.Cond
	limit int64
	held  int64
	peak  int64
	free  [][]byte
}

func newBufPool(limit int64) *bufPool {
	p := &bufPool{limit: limit}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// get returns a buffer of size bytes, waiting while the buffers held would exceed
// max(limit, 2 x size): so one part can fill while another uploads, however large parts grow.
// Waiters are woken by put, which every part upload calls when it ends, failed or not.
func (p *bufPool) get(ctx context.Context, size int64) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for i, b := range p.free {
			if int64(cap(b)) >= size {
				p.free = slices.Delete(p.free, i, i+1)
				return b[:size], nil
			}
		}
		for _, b := range p.free {
			p.held -= int64(cap(b))
		}
		p.free = nil
		if p.held == 0 || p.held+size <= max(p.limit, 2*size) {
			p.held += size
			p.peak = max(p.peak, p.held)
			return make([]byte, size), nil
		}
		p.cond.Wait()
	}
}

func (p *bufPool) put(b []byte) {
	p.mu.Lock()
	p.free = append(p.free, b[:cap(b)])
	p.mu.Unlock()
	p.cond.Broadcast()
}

var _ jobs.IncompleteAborter = (*S3)(nil)

// AbortIncomplete aborts the unfinished multipart uploads of key left behind by an earlier
// attempt (a worker killed mid-upload), and returns how many it aborted. A destination whose
// role may not list uploads (s3:ListBucketMultipartUploads) is left to the bucket's lifecycle
// rule: that AccessDenied is not an error, as it must not fail every export to the partner.
func (s *S3) AbortIncomplete(ctx context.Context, key string) (int, error) {
	in := &s3.ListMultipartUploadsInput{
		Bucket:              aws.String(s.bucket),
		Prefix:              aws.String(key),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}
	aborted := 0
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			var are *AssumeRoleError
			if errorCode(err) == "AccessDenied" && s.opts.RoleARN != "" && !errors.As(err, &are) {
				return aborted, nil
			}
			return aborted, s.classify(fmt.Errorf("sink: list multipart uploads of s3://%s/%s: %w", s.bucket, key, err))
		}
		for _, up := range out.Uploads {
			if aws.ToString(up.Key) != key {
				continue // another key that merely starts with this one
			}
			if _, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: aws.String(s.bucket), Key: up.Key, UploadId: up.UploadId,
				ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
			}); err != nil && errorCode(err) != "NoSuchUpload" {
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

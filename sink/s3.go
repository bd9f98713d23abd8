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

// Put streams body into obj.Key. A body shorter than one part is written with one PutObject;
// a longer one with a multipart upload that is completed only after body returned io.EOF itself
// (not an error wrapping it: that is a failure) and every part was stored, and aborted
// otherwise. obj.BeforeCommit, if set, is called right before the object is committed; its
// error fails the Put and nothing is committed. A panic (of body, say) fails the Put with a
// permanent error of reason "panic", after aborting the upload.
func (s *S3) Put(ctx context.Context, obj jobs.Object, body io.Reader) (jobs.Written, error) {
	w, _, err := s.put(ctx, obj, body)
	return w, err
}

func (s *S3) partSize(n int) int64 { return partSize(s.opts.PartSize, n, s.perTier) }

// putStats are figures of one upload, for tests and benchmarks.
type putStats struct {
	Parts int
	// PeakBuffered is the most bytes of part buffers the upload held at once.
	PeakBuffered int64
	Bytes        int64
}

func (s *S3) put(ctx context.Context, obj jobs.Object, body io.Reader) (jobs.Written, putStats, error) {
	u := &upload{s: s, obj: obj, full: s.newHash()}
	w, err := u.run(ctx, body)
	return w, putStats{Parts: u.parts, PeakBuffered: u.peak, Bytes: u.size}, err
}

// upload is one Put in progress.
type upload struct {
	s     *S3
	obj   jobs.Object
	full  hash.Hash // CRC of the whole object, in stream order
	size  int64
	parts int

	uploadID string
	g        *errgroup.Group // the part uploads, once the multipart upload exists
	stop     context.CancelFunc
	// filling is the part buffer the reader holds, not yet handed to an upload: given back by
	// release whatever happens, a panic of the body included, or the budget would shrink.
	filling []byte

	mu        sync.Mutex
	held      int64 // bytes of part buffers held
	peak      int64
	completed []s3types.CompletedPart
}

// take gets a part buffer for the reader to fill.
func (u *upload) take(ctx context.Context, size int64) ([]byte, error) {
	b, err := u.s.opts.Buffers.Get(ctx, size)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	u.held += size
	u.peak = max(u.peak, u.held)
	u.mu.Unlock()
	u.filling = b
	return b, nil
}

// release gives back the buffer the reader holds, if any.
func (u *upload) release() {
	if u.filling != nil {
		u.put(u.filling)
		u.filling = nil
	}
}

func (u *upload) put(b []byte) {
	u.mu.Lock()
	u.held -= int64(len(b))
	u.mu.Unlock()
	u.s.opts.Buffers.Put(b)
}

func (u *upload) run(ctx context.Context, body io.Reader) (w jobs.Written, err error) {
	s := u.s
	defer func() {
		if r := recover(); r != nil {
			err = jobs.Recovered(fmt.Sprintf("sink: writing s3://%s/%s", s.bucket, u.obj.Key), r)
		}
		u.release()
		if u.g != nil {
			// Parts still in flight (a failure of the reader) are stopped and waited for, so
			// that none is stored after the abort.
			u.stop()
			_ = u.g.Wait()
		}
		if err != nil && u.uploadID != "" {
			err = u.abort(ctx, err)
		}
	}()

	// The first bytes go into a small buffer: a short body (a manifest, a tiny export) is
	// written from it and never takes a part buffer.
	sp := smallBufs.Get().(*[]byte)
	small := *sp
	n, eof, err := readPart(ctx, body, small)
	if err != nil {
		smallBufs.Put(sp)
		return jobs.Written{}, err
	}
	if eof {
		defer smallBufs.Put(sp)
		return u.putObject(ctx, small[:n])
	}
	first, err := u.take(ctx, s.partSize(1))
	if err != nil {
		smallBufs.Put(sp)
		return jobs.Written{}, err
	}
	copy(first, small[:n])
	smallBufs.Put(sp)
	m, eof, err := readPart(ctx, body, first[n:])
	n += m
	if err != nil {
		u.release()
		return jobs.Written{}, err
	}
	if eof {
		defer u.release()
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
	out, err := s.client.CreateMultipartUpload(ctx, create, s.timeouts)
	if err != nil {
		u.release()
		return jobs.Written{}, s.classify(fmt.Errorf("sink: create multipart upload s3://%s/%s: %w", s.bucket, u.obj.Key, err))
	}
	u.uploadID = aws.ToString(out.UploadId)
	return u.uploadParts(ctx, body, first[:n])
}

// abort aborts the multipart upload after err, and returns err (with the abort's failure).
func (u *upload) abort(ctx context.Context, err error) error {
	s := u.s
	// A fresh context: the job's may be canceled already, and a dangling upload costs money.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.AbortTimeout)
	defer cancel()
	if _, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(u.obj.Key), UploadId: aws.String(u.uploadID),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}, s.timeouts); aerr != nil {
		return fmt.Errorf("%w (and aborting upload %s failed: %v)", err, u.uploadID, aerr)
	}
	return err
}

// uploadParts uploads first and the rest of body as parts of the upload, then completes it.
// Parts upload on their own goroutines, at most Concurrency at once, while the next one fills.
func (u *upload) uploadParts(ctx context.Context, body io.Reader, first []byte) (jobs.Written, error) {
	s := u.s
	gctx, stop := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(gctx)
	g.SetLimit(s.opts.Concurrency)
	u.g, u.stop = g, stop
	send := func(n int, buf []byte, used int) {
		u.filling = nil // the part's goroutine gives it back
		part := buf[:used]
		u.full.Write(part)
		u.size += int64(len(part))
		u.parts = n
		g.Go(func() (err error) {
			defer u.put(buf)
			defer func() {
				if r := recover(); r != nil {
					err = jobs.Recovered(fmt.Sprintf("sink: uploading part %d of s3://%s/%s", n, s.bucket, u.obj.Key), r)
				}
			}()
			return u.uploadPart(gctx, n, part)
		})
	}
	send(1, first, len(first))
	var readErr error
	for n := 2; ; n++ {
		buf, err := u.take(gctx, s.partSize(n))
		if err != nil {
			readErr = err
			break
		}
		got, eof, err := readPart(gctx, body, buf)
		if err != nil || got == 0 {
			u.release()
			readErr = err
			break
		}
		if n > MaxParts {
			u.release()
			readErr = jobs.Permanentf(jobs.ReasonTooLarge, "sink: s3://%s/%s: the export is larger than %d parts of up to %d bytes (%d bytes)", s.bucket, u.obj.Key, MaxParts, PartSize(s.opts.PartSize, MaxParts), Capacity(s.opts.PartSize))
			break
		}
		send(n, buf, got)
		if eof {
			break
		}
	}
	partsErr := g.Wait()
	u.g = nil
	stop()
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
		UploadId:            aws.String(u.uploadID),
		MultipartUpload:     &s3types.CompletedMultipartUpload{Parts: u.completed},
		ChecksumType:        s3types.ChecksumTypeFullObject,
		MpuObjectSize:       aws.Int64(u.size),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}
	s.setChecksum(&complete.ChecksumCRC64NVME, &complete.ChecksumCRC32C, sum)
	// Completing is the commit: it must not be cut short by a cancellation arriving now that
	// every byte is stored, or the export would be lost for nothing. The commit hook decides.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if err := u.beforeCommit(cctx); err != nil {
		return jobs.Written{}, err
	}
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

// beforeCommit runs the object's commit hook, if any.
func (u *upload) beforeCommit(ctx context.Context) error {
	if u.obj.BeforeCommit == nil {
		return nil
	}
	if err := u.obj.BeforeCommit(ctx); err != nil {
		return fmt.Errorf("sink: s3://%s/%s not committed: %w", u.s.bucket, u.obj.Key, err)
	}
	return nil
}

func (s *S3) completeWithFreshCredentials(ctx context.Context, in *s3.CompleteMultipartUploadInput) (*s3.CompleteMultipartUploadOutput, error) {
	out, err := s.client.CompleteMultipartUpload(ctx, in, s.timeouts)
	if err != nil && s.credentialsExpired(err) {
		s.opts.Credentials.Invalidate()
		out, err = s.client.CompleteMultipartUpload(ctx, in, s.timeouts)
	}
	return out, err
}

// uploadPart stores one part with its checksum, which the server verifies.
func (u *upload) uploadPart(ctx context.Context, n int, part []byte) error {
	s := u.s
	sum := s.checksum(part)
	in := &s3.UploadPartInput{
		Bucket:              aws.String(s.bucket),
		Key:                 aws.String(u.obj.Key),
		UploadId:            aws.String(u.uploadID),
		PartNumber:          aws.Int32(int32(n)),
		ContentLength:       aws.Int64(int64(len(part))),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}
	s.setChecksum(&in.ChecksumCRC64NVME, &in.ChecksumCRC32C, sum)
	var out *s3.UploadPartOutput
	var err error
	for attempt := 1; ; attempt++ {
		in.Body = bytes.NewReader(part)
		out, err = s.client.UploadPart(ctx, in, unsignedPayload, s.timeouts)
		// Credentials that expired in flight (a part slower than the refresh window): once
		// more with fresh ones. The SDK's own retries cover throttling, 5xx and timeouts.
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
		out, err := s.client.ListMultipartUploads(ctx, in, s.timeouts)
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

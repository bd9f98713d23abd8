package sink

import (
	"bytes"
	"context"
	"encoding"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/verifiedfan/export-service/jobs"
)

var _ jobs.PartSink = (*S3)(nil)

// Put streams body into obj.Key. A body shorter than one part is written with one PutObject;
// a longer one with a multipart upload that is completed only after body returned io.EOF itself
// (not an error wrapping it: that is a failure) and every part was stored, and aborted
// otherwise. obj.BeforeCommit, if set, is called right before the object is committed; its
// error fails the Put and nothing is committed. A panic (of body, say) fails the Put with a
// permanent error of reason "panic", after aborting the upload.
func (s *S3) Put(ctx context.Context, obj jobs.Object, body io.Reader) (jobs.Written, error) {
	w, _, err := s.put(ctx, obj, &readerParts{s: s, body: body}, nil, nil)
	return w, err
}

// PutParts implements jobs.PartSink: parts are uploaded as they come, Concurrency at once,
// each with its checksum; checkpoint is called in part order after every part but the last.
func (s *S3) PutParts(ctx context.Context, obj jobs.Object, parts jobs.Parts, resume *jobs.UploadState, checkpoint func(context.Context, jobs.UploadState, jobs.Mark) error) (jobs.Written, error) {
	w, _, err := s.put(ctx, obj, parts, resume, checkpoint)
	return w, err
}

// PartSize implements jobs.PartSink.
func (s *S3) PartSize(n int) int64 { return s.partSize(n) }

func (s *S3) partSize(n int) int64 { return partSize(s.opts.PartSize, n, s.perTier) }

// putStats are figures of one upload, for tests and benchmarks.
type putStats struct {
	Parts int
	// PeakBuffered is the most bytes of parts the upload held at once.
	PeakBuffered int64
	Bytes        int64
}

func (s *S3) put(ctx context.Context, obj jobs.Object, parts jobs.Parts, resume *jobs.UploadState, checkpoint func(context.Context, jobs.UploadState, jobs.Mark) error) (jobs.Written, putStats, error) {
	u := &upload{s: s, obj: obj, full: s.newHash(), checkpoint: checkpoint, waiting: map[int]pendingPart{}, firstPart: 1, maxPart: MaxParts}
	w, err := u.run(ctx, parts, resume)
	return w, putStats{Parts: u.parts, PeakBuffered: u.peak, Bytes: u.size}, err
}

// upload is one Put in progress.
type upload struct {
	s     *S3
	obj   jobs.Object
	full  hash.Hash // checksum of the whole object, in stream order
	size  int64
	parts int

	uploadID   string
	checkpoint func(context.Context, jobs.UploadState, jobs.Mark) error

	// firstPart and maxPart are the upload's range of part numbers: 1 and MaxParts for a whole
	// object, a segment's own range for PutSegment (parts before it are other segments').
	firstPart, maxPart int
	// holdBack holds each part back until the next one exists, and merges a part under
	// MinPartSize (the stream's tail) into the held one: the upload's last part is at least
	// MinPartSize (a segment that is not its object's last; see PutSegment).
	holdBack bool
	// noComplete leaves the upload open once every part is stored (a segment: its export's
	// coordinator completes it); noAbort never aborts it on a failure (a segment: the upload
	// is shared, and the coordinator decides).
	noComplete, noAbort bool

	g    *errgroup.Group // the part uploads, once the multipart upload exists
	stop context.CancelFunc

	mu   sync.Mutex
	held int64 // bytes of parts held
	peak int64
	// stored are the parts stored in order from firstPart with no gap (checkpointed when there
	// is a checkpoint); waiting are stored parts after a gap.
	stored       []jobs.StoredPart
	waiting      map[int]pendingPart
	checkpointed bool
	cpErr        error      // the first failed checkpoint: no later one is made
	cpMu         sync.Mutex // one checkpoint at a time, in order
}

// pendingPart is a stored part on its way to the checkpoint.
type pendingPart struct {
	part jobs.StoredPart
	last bool
	mark jobs.Mark
	// size and state are the object's size and checksum state after the part.
	size  int64
	state []byte
}

func (u *upload) hold(p *jobs.Part) {
	u.mu.Lock()
	u.held += int64(len(p.Data))
	u.peak = max(u.peak, u.held)
	u.mu.Unlock()
}

func (u *upload) release(p *jobs.Part) {
	u.mu.Lock()
	u.held -= int64(len(p.Data))
	u.mu.Unlock()
	p.Release()
}

func (u *upload) run(ctx context.Context, parts jobs.Parts, resume *jobs.UploadState) (w jobs.Written, err error) {
	s := u.s
	defer func() {
		if r := recover(); r != nil {
			err = jobs.Recovered(fmt.Sprintf("sink: writing s3://%s/%s", s.bucket, u.obj.Key), r)
		}
		if u.g != nil {
			// Parts still in flight (a failure of the reader) are stopped and waited for, so
			// that none is stored after the abort.
			u.stop()
			_ = u.g.Wait()
		}
		if err != nil && u.uploadID != "" && !u.noAbort && u.shouldAbort(err) {
			err = u.abort(ctx, err)
		}
	}()

	if resume != nil {
		if err := u.resume(ctx, resume); err != nil {
			return jobs.Written{}, err
		}
		return u.uploadParts(ctx, parts, nil)
	}
	if u.uploadID != "" { // a segment of an upload that exists: never a single PutObject
		return u.uploadParts(ctx, parts, nil)
	}
	first, err := parts.Next(ctx)
	if err == io.EOF { //nolint:errorlint // only io.EOF itself is the end
		return jobs.Written{}, errors.New("sink: the stream ended without a part")
	}
	if err != nil {
		return jobs.Written{}, err
	}
	u.hold(first)
	if first.Last {
		defer u.release(first)
		return u.putObject(ctx, first.Data)
	}
	if err := u.create(ctx); err != nil {
		u.release(first)
		return jobs.Written{}, err
	}
	return u.uploadParts(ctx, parts, first)
}

// shouldAbort says whether a failed upload is aborted: yes unless a later attempt can
// continue it (it was checkpointed and the failure is not permanent) or it is not this
// attempt's any more.
func (u *upload) shouldAbort(err error) bool {
	if errors.Is(err, jobs.ErrKeepUpload) {
		return false
	}
	u.mu.Lock()
	checkpointed := u.checkpointed
	u.mu.Unlock()
	if !checkpointed {
		return true
	}
	_, permanent := jobs.IsPermanent(err)
	return permanent
}

func (u *upload) create(ctx context.Context) error {
	s := u.s
	create := &s3.CreateMultipartUploadInput{
		Bucket:              aws.String(s.bucket),
		Key:                 aws.String(u.obj.Key),
		Metadata:            u.obj.Metadata,
		ChecksumAlgorithm:   s3types.ChecksumAlgorithm(s.opts.Checksum),
		ChecksumType:        s3types.ChecksumTypeFullObject,
		ContentType:         optional(u.obj.ContentType),
		ContentEncoding:     optional(u.obj.ContentEncoding),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}
	if s.opts.SSE != "" {
		create.ServerSideEncryption = s3types.ServerSideEncryption(s.opts.SSE)
		create.SSEKMSKeyId = optional(s.opts.KMSKeyID)
	}
	if s.opts.StorageClass != "" {
		create.StorageClass = s3types.StorageClass(s.opts.StorageClass)
	}
	out, err := s.client.CreateMultipartUpload(ctx, create, s.timeouts)
	if err != nil {
		return s.classify(fmt.Errorf("sink: create multipart upload s3://%s/%s: %w", s.bucket, u.obj.Key, err))
	}
	u.uploadID = aws.ToString(out.UploadId)
	return nil
}

// resume continues the upload of a checkpoint after checking that S3 still holds it, with
// every part the checkpoint recorded (ListParts): parts stored after the checkpoint are
// uploaded again; a part missing or different (another attempt's) means starting over.
func (u *upload) resume(ctx context.Context, st *jobs.UploadState) error {
	s := u.s
	if st.ChecksumAlgorithm != s.opts.Checksum {
		return fmt.Errorf("sink: s3://%s/%s: the checkpoint's checksum is %s, the destination now uses %s: %w", s.bucket, u.obj.Key, st.ChecksumAlgorithm, s.opts.Checksum, jobs.ErrUploadGone)
	}
	if err := u.full.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.ChecksumState); err != nil {
		return fmt.Errorf("sink: s3://%s/%s: restore the checkpoint's %s state: %v: %w", s.bucket, u.obj.Key, st.ChecksumAlgorithm, err, jobs.ErrUploadGone)
	}
	if err := s.CheckUpload(ctx, u.obj.Key, *st); err != nil {
		return err
	}
	u.uploadID = st.UploadID
	u.stored = slices.Clone(st.Parts)
	u.size, u.parts, u.checkpointed = st.Size, len(st.Parts), true
	return nil
}

// CheckUpload implements jobs.PartSink: ListParts must show every part st recorded (any
// listed copy of a part number may match: SeaweedFS keeps every upload of a number, and
// completes with the one whose ETag it is given).
func (s *S3) CheckUpload(ctx context.Context, key string, st jobs.UploadState) error {
	have, err := s.listParts(ctx, key, st.UploadID)
	if err != nil {
		return err
	}
	for _, p := range st.Parts {
		if !slices.ContainsFunc(have[p.Number], func(got jobs.StoredPart) bool {
			return got.Size == p.Size && trimETag(got.ETag) == trimETag(p.ETag)
		}) {
			return fmt.Errorf("sink: s3://%s/%s: upload %s no longer holds part %d as checkpointed: %w", s.bucket, key, st.UploadID, p.Number, jobs.ErrUploadGone)
		}
	}
	return nil
}

// listParts returns the parts S3 holds of an upload, by number; ErrUploadGone if there is no
// such upload. A number may have several: SeaweedFS keeps every upload of a part number (and
// completes with the one whose ETag it is given), where AWS keeps the last.
func (s *S3) listParts(ctx context.Context, key, uploadID string) (map[int][]jobs.StoredPart, error) {
	in := &s3.ListPartsInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: aws.String(uploadID),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}
	have := map[int][]jobs.StoredPart{}
	for {
		out, err := s.client.ListParts(ctx, in, s.timeouts)
		switch errorCode(err) {
		case "NoSuchUpload":
			return nil, fmt.Errorf("sink: s3://%s/%s: upload %s: %w", s.bucket, key, uploadID, jobs.ErrUploadGone)
		case "AccessDenied":
			// A partner's role without s3:ListMultipartUploadParts: the upload cannot be
			// checked, so it is not continued (an export that starts over is still right).
			return nil, fmt.Errorf("sink: s3://%s/%s: may not list the parts of upload %s (s3:ListMultipartUploadParts), so it cannot be continued: %w", s.bucket, key, uploadID, jobs.ErrUploadGone)
		}
		if err != nil {
			return nil, s.classify(fmt.Errorf("sink: list the parts of upload %s of s3://%s/%s: %w", uploadID, s.bucket, key, err))
		}
		for _, p := range out.Parts {
			n := int(aws.ToInt32(p.PartNumber))
			have[n] = append(have[n], jobs.StoredPart{Number: n, ETag: aws.ToString(p.ETag), Size: aws.ToInt64(p.Size)})
		}
		if !aws.ToBool(out.IsTruncated) || out.NextPartNumberMarker == nil {
			return have, nil
		}
		in.PartNumberMarker = out.NextPartNumberMarker
	}
}

func trimETag(e string) string { return strings.Trim(e, `"`) }

// abort aborts the multipart upload after err, and returns err (with the abort's failure).
func (u *upload) abort(ctx context.Context, err error) error {
	if aerr := u.s.abortUpload(ctx, u.obj.Key, u.uploadID); aerr != nil {
		return fmt.Errorf("%w (and aborting upload %s failed: %v)", err, u.uploadID, aerr)
	}
	return err
}

// AbortUpload implements jobs.PartSink; an upload that is gone already is not an error.
func (s *S3) AbortUpload(ctx context.Context, key, uploadID string) error {
	return s.abortUpload(ctx, key, uploadID)
}

func (s *S3) abortUpload(ctx context.Context, key, uploadID string) error {
	// A fresh context: the job's may be canceled already, and a dangling upload costs money.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.AbortTimeout)
	defer cancel()
	_, err := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key), UploadId: aws.String(uploadID),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}, s.timeouts)
	if err != nil && errorCode(err) != "NoSuchUpload" {
		return s.classify(fmt.Errorf("sink: abort upload %s of s3://%s/%s: %w", uploadID, s.bucket, key, err))
	}
	return nil
}

// uploadParts uploads first (if any) and the rest of parts, then completes the upload. Parts
// upload on their own goroutines, at most Concurrency at once, while the next one is made.
func (u *upload) uploadParts(ctx context.Context, parts jobs.Parts, first *jobs.Part) (jobs.Written, error) {
	s := u.s
	gctx, stop := context.WithCancel(ctx)
	g, gctx := errgroup.WithContext(gctx)
	g.SetLimit(s.opts.Concurrency)
	u.g, u.stop = g, stop
	send := func(n int, p *jobs.Part) {
		u.full.Write(p.Data)
		u.size += int64(len(p.Data))
		u.parts++
		pend := pendingPart{last: p.Last, mark: p.Mark, size: u.size}
		if u.checkpoint != nil && !p.Last {
			pend.state, _ = u.full.(encoding.BinaryMarshaler).MarshalBinary()
		}
		g.Go(func() (err error) {
			defer u.release(p)
			defer func() {
				if r := recover(); r != nil {
					err = jobs.Recovered(fmt.Sprintf("sink: uploading part %d of s3://%s/%s", n, s.bucket, u.obj.Key), r)
				}
			}()
			sp, err := u.uploadPart(gctx, n, p.Data)
			if err != nil {
				return err
			}
			pend.part = sp
			return u.done(gctx, pend)
		})
	}
	n := u.firstPart + u.parts
	// put sends p as the next part, n, unless n is past the upload's range (p is released).
	put := func(p *jobs.Part) error {
		if n > u.maxPart {
			u.release(p)
			return u.tooLarge()
		}
		send(n, p)
		n++
		return nil
	}
	last := false
	var readErr error
	if first != nil {
		last, readErr = first.Last, put(first)
	}
	var held *jobs.Part // with holdBack, the part waiting for the next one
	defer func() {
		if held != nil { // a panic of the stream
			u.release(held)
		}
	}()
	for !last && readErr == nil {
		p, err := parts.Next(gctx)
		if err == io.EOF { //nolint:errorlint // only io.EOF itself is the end
			break
		}
		if err != nil {
			readErr = err
			break
		}
		u.hold(p)
		last = p.Last
		switch {
		case !u.holdBack:
			readErr = put(p)
		case held == nil:
			held = p
		case len(held.Data) < MinPartSize || len(p.Data) < MinPartSize:
			// A short part is the stream's tail (jobs.Parts: every part but the last is at
			// least MinPartSize): both are whole gzip members, so held+p is a valid part.
			a := held
			held = nil
			held, readErr = u.merge(gctx, a, p)
		default:
			a := held
			held = p
			readErr = put(a)
		}
		if readErr != nil {
			break
		}
	}
	// The held part is the last: stored if large enough.
	switch {
	case held == nil && u.holdBack && readErr == nil && u.parts == 0:
		readErr = u.tooSmall(0) // no part at all
	case held == nil:
	case readErr != nil:
		u.release(held)
	case len(held.Data) < MinPartSize:
		// Nothing was stored in this attempt (else held would have been merged).
		readErr = u.tooSmall(int64(len(held.Data)))
		u.release(held)
	default:
		readErr = put(held)
	}
	held = nil
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
	if u.noComplete {
		return jobs.Written{}, u.allStored()
	}
	return u.complete(ctx)
}

// tooLarge is the permanent failure of a stream with more parts than the upload's range.
func (u *upload) tooLarge() error {
	s := u.s
	if u.firstPart != 1 || u.maxPart != MaxParts {
		return jobs.Permanentf(jobs.ReasonTooLarge, "sink: s3://%s/%s: the segment is larger than its parts %d..%d of up to %d bytes", s.bucket, u.obj.Key, u.firstPart, u.maxPart, PartSize(s.opts.PartSize, MaxParts))
	}
	return jobs.Permanentf(jobs.ReasonTooLarge, "sink: s3://%s/%s: the export is larger than %d parts of up to %d bytes (%d bytes)", s.bucket, u.obj.Key, MaxParts, PartSize(s.opts.PartSize, MaxParts), Capacity(s.opts.PartSize))
}

// merge returns one part of a's bytes then b's, with b's mark and Last, in a new buffer of
// the budget; a and b are released (also on a failure, which returns nil).
func (u *upload) merge(ctx context.Context, a, b *jobs.Part) (*jobs.Part, error) {
	defer u.release(a)
	defer u.release(b)
	pool := u.s.opts.Buffers
	size := len(a.Data) + len(b.Data)
	buf, err := pool.Get(ctx, int64(size))
	if err != nil {
		return nil, err
	}
	copy(buf[copy(buf, a.Data):size], b.Data)
	m := jobs.NewPart(buf[:size], b.Last, b.Mark, func() { pool.Put(buf) })
	u.hold(m)
	return m, nil
}

// done records a stored part, and checkpoints every part it completes a gap-free run of.
func (u *upload) done(ctx context.Context, p pendingPart) error {
	u.mu.Lock()
	u.waiting[p.part.Number] = p
	u.mu.Unlock()
	u.cpMu.Lock()
	defer u.cpMu.Unlock()
	if u.cpErr != nil {
		return u.cpErr
	}
	for {
		u.mu.Lock()
		next, ok := u.waiting[u.firstPart+len(u.stored)]
		if ok {
			delete(u.waiting, next.part.Number)
			u.stored = append(u.stored, next.part)
		}
		state := jobs.UploadState{
			UploadID: u.uploadID, Parts: slices.Clone(u.stored), Size: next.size,
			ChecksumAlgorithm: u.s.opts.Checksum, ChecksumState: next.state,
		}
		u.mu.Unlock()
		if !ok {
			return nil
		}
		// The last part is not checkpointed: an attempt that continued after it would have
		// nothing to add but an empty gzip member.
		if u.checkpoint == nil || next.last {
			continue
		}
		if err := u.checkpoint(ctx, state, next.mark); err != nil {
			u.cpErr = fmt.Errorf("sink: checkpoint after part %d of s3://%s/%s: %w", next.part.Number, u.s.bucket, u.obj.Key, err)
			return u.cpErr
		}
		u.mu.Lock()
		u.checkpointed = true
		u.mu.Unlock()
	}
}

// allStored fails unless every part sent was stored, in order.
func (u *upload) allStored() error {
	if len(u.waiting) > 0 || len(u.stored) != u.parts {
		return fmt.Errorf("sink: s3://%s/%s: %d parts stored in order of %d", u.s.bucket, u.obj.Key, len(u.stored), u.parts)
	}
	return nil
}

// complete commits the upload with every stored part.
func (u *upload) complete(ctx context.Context) (jobs.Written, error) {
	if err := u.allStored(); err != nil {
		return jobs.Written{}, err
	}
	return u.commit(ctx, base64.StdEncoding.EncodeToString(u.full.Sum(nil)))
}

// commit completes the upload with u.stored, of u.size bytes in all, whose full-object
// checksum is sum, after the object's commit hook; the server's checksum must be sum.
func (u *upload) commit(ctx context.Context, sum string) (jobs.Written, error) {
	s := u.s
	completed := make([]s3types.CompletedPart, len(u.stored))
	for i, p := range u.stored {
		completed[i] = s3types.CompletedPart{ETag: aws.String(p.ETag), PartNumber: aws.Int32(int32(p.Number))}
		s.setChecksum(&completed[i].ChecksumCRC64NVME, &completed[i].ChecksumCRC32C, p.Checksum)
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket:              aws.String(s.bucket),
		Key:                 aws.String(u.obj.Key),
		UploadId:            aws.String(u.uploadID),
		MultipartUpload:     &s3types.CompletedMultipartUpload{Parts: completed},
		ChecksumType:        s3types.ChecksumTypeFullObject,
		MpuObjectSize:       aws.Int64(u.size),
		ExpectedBucketOwner: optional(s.opts.ExpectedBucketOwner),
	}
	s.setChecksum(&in.ChecksumCRC64NVME, &in.ChecksumCRC32C, sum)
	// Completing is the commit: it must not be cut short by a cancellation arriving now that
	// every byte is stored, or the export would be lost for nothing. The commit hook decides.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if err := u.beforeCommit(cctx); err != nil {
		return jobs.Written{}, err
	}
	out, err := s.completeWithFreshCredentials(cctx, in)
	if err != nil {
		return jobs.Written{}, s.classify(fmt.Errorf("sink: complete multipart upload s3://%s/%s (%d parts): %w", s.bucket, u.obj.Key, len(completed), err))
	}
	if got := s.checksumOf(out.ChecksumCRC64NVME, out.ChecksumCRC32C); got != "" && !sameChecksum(got, sum) {
		return jobs.Written{}, fmt.Errorf("sink: s3://%s/%s: the server's %s checksum %s differs from the stream's %s", s.bucket, u.obj.Key, s.opts.Checksum, got, sum)
	}
	return jobs.Written{
		Bucket: s.bucket, Key: u.obj.Key, ETag: aws.ToString(out.ETag),
		Checksum: sum, ChecksumAlgorithm: s.opts.Checksum, Parts: len(completed),
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
func (u *upload) uploadPart(ctx context.Context, n int, part []byte) (jobs.StoredPart, error) {
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
		return jobs.StoredPart{}, s.classify(fmt.Errorf("sink: upload part %d (%d bytes) of s3://%s/%s: %w", n, len(part), s.bucket, u.obj.Key, err))
	}
	return jobs.StoredPart{Number: n, ETag: aws.ToString(out.ETag), Checksum: sum, Size: int64(len(part))}, nil
}

// readerParts cuts a reader into parts of the sink's part sizes, in buffers of its budget.
type readerParts struct {
	s    *S3
	body io.Reader
	n    int
	eof  bool
}

// Next implements jobs.Parts.
func (r *readerParts) Next(ctx context.Context) (*jobs.Part, error) {
	if r.eof {
		return nil, io.EOF
	}
	r.n++
	var head []byte
	if r.n == 1 {
		// The first bytes go into a small buffer: a short body (a manifest, a tiny export) is
		// written from it and never takes a part buffer.
		sp := smallBufs.Get().(*[]byte)
		defer smallBufs.Put(sp)
		n, eof, err := readPart(ctx, r.body, *sp)
		if err != nil {
			return nil, err
		}
		if eof {
			r.eof = true
			return jobs.NewPart(bytes.Clone((*sp)[:n]), true, jobs.Mark{}, nil), nil
		}
		head = (*sp)[:n]
	}
	pool := r.s.opts.Buffers
	buf, err := pool.Get(ctx, r.s.partSize(r.n))
	if err != nil {
		return nil, err
	}
	kept := false
	defer func() {
		if !kept { // a failure or a panic of the body: the budget gets its buffer back
			pool.Put(buf)
		}
	}()
	n := copy(buf, head)
	m, eof, err := readPart(ctx, r.body, buf[n:])
	n += m
	if err != nil {
		return nil, err
	}
	r.eof = eof
	if n == 0 {
		return nil, io.EOF
	}
	kept = true
	return jobs.NewPart(buf[:n], eof, jobs.Mark{}, func() { pool.Put(buf) }), nil
}

// putReader is Put with the upload's figures (tests and benchmarks).
func (s *S3) putReader(ctx context.Context, obj jobs.Object, body io.Reader) (jobs.Written, putStats, error) {
	return s.put(ctx, obj, &readerParts{s: s, body: body}, nil, nil)
}

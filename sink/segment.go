package sink

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"github.com/verifiedfan/export-service/jobs"
)

// An export split into segments is written by several workers into ONE multipart upload:
// the coordinator creates it (CreateUpload), each segment stores its parts in its own range of
// part numbers (PutSegment), and the last segment to finish completes it with every segment's
// parts in order and the full-object checksum combined from the segments' (CompleteUpload,
// CombineChecksums).

// Segment is one segment's share of a shared multipart upload.
type Segment = jobs.UploadSegment

// SegmentWritten is what PutSegment stored.
type SegmentWritten = jobs.SegmentWritten

var _ jobs.SegmentSink = (*S3)(nil)

// ErrSegmentTooSmall says a segment that is not its object's last has fewer than MinPartSize
// bytes: its last part would be under S3's least part size, and the object could not be
// completed. PutSegment returns it wrapped in a permanent error, having stored nothing.
var ErrSegmentTooSmall = errors.New("a segment other than the object's last is under S3's least part size (5 MiB)")

// CreateUpload creates a multipart upload of obj for segments to share (PutSegment), with the
// sink's full-object checksum, metadata, encryption and storage class.
func (s *S3) CreateUpload(ctx context.Context, obj jobs.Object) (string, error) {
	u := &upload{s: s, obj: obj}
	if err := u.create(ctx); err != nil {
		return "", err
	}
	return u.uploadID, nil
}

// PutSegment stores parts as one segment of the shared upload seg.UploadID: it never creates
// the upload, never completes it, and never aborts it (the export's coordinator does). Parts
// are numbered from seg.FirstPart (after resume's parts, when continuing from a checkpoint) and
// uploaded Concurrency at once; a stream that needs a number past FirstPart+MaxParts-1 fails
// permanently (reason too_large).
//
// Unless seg.Last, every part is held back until the next one exists, and a part under
// MinPartSize (the stream's tail) is merged into the held one (both are whole gzip members, so
// their concatenation is one valid part): the segment's last part is at least MinPartSize, as
// S3 requires of every part but the object's last. A segment of fewer bytes fails with
// ErrSegmentTooSmall (permanent, nothing stored); a continued segment whose new tail is short
// while its checkpointed parts are stored cannot be continued (ErrUploadGone: start the
// segment over).
//
// checkpoint is called as for PutParts: in part order, for parts stored (not the held-back
// one), not after the segment's last part; the state lists the segment's parts and its
// ChecksumState is the running CRC of the segment's own bytes. With resume, the segment
// continues after its recorded parts once CheckUpload found them (ErrUploadGone otherwise).
func (s *S3) PutSegment(ctx context.Context, obj jobs.Object, seg Segment, parts jobs.Parts, resume *jobs.UploadState, checkpoint func(context.Context, jobs.UploadState, jobs.Mark) error) (SegmentWritten, error) {
	if seg.UploadID == "" || seg.FirstPart < 1 || seg.MaxParts < 1 || seg.FirstPart+seg.MaxParts-1 > MaxParts {
		return SegmentWritten{}, jobs.Permanentf(jobs.ReasonInvalidParams, "sink: s3://%s/%s: invalid segment %+v (upload id, parts 1..%d)", s.bucket, obj.Key, seg, MaxParts)
	}
	u := &upload{
		s: s, obj: obj, full: s.newHash(), checkpoint: checkpoint, waiting: map[int]pendingPart{},
		uploadID: seg.UploadID, firstPart: seg.FirstPart, maxPart: seg.FirstPart + seg.MaxParts - 1,
		holdBack: !seg.Last && !s.noSegmentMerge, noComplete: true, noAbort: true,
	}
	if resume != nil {
		if err := checkSegmentState(seg, *resume); err != nil {
			return SegmentWritten{}, fmt.Errorf("sink: s3://%s/%s: %w: %w", s.bucket, obj.Key, err, jobs.ErrUploadGone)
		}
	}
	if _, err := u.run(ctx, parts, resume); err != nil {
		return SegmentWritten{}, err
	}
	return SegmentWritten{
		Parts: slices.Clone(u.stored), Size: u.size,
		Checksum: base64.StdEncoding.EncodeToString(u.full.Sum(nil)),
	}, nil
}

// checkSegmentState says whether st is a checkpoint of seg: its upload, parts numbered from
// seg.FirstPart with no gap.
func checkSegmentState(seg Segment, st jobs.UploadState) error {
	if st.UploadID != seg.UploadID {
		return fmt.Errorf("the checkpoint is of upload %s, the segment's is %s", st.UploadID, seg.UploadID)
	}
	for i, p := range st.Parts {
		if p.Number != seg.FirstPart+i {
			return fmt.Errorf("the checkpoint's part %d is numbered %d, want %d (the segment's parts start at %d)", i+1, p.Number, seg.FirstPart+i, seg.FirstPart)
		}
	}
	if len(st.Parts) > seg.MaxParts {
		return fmt.Errorf("the checkpoint has %d parts, the segment at most %d", len(st.Parts), seg.MaxParts)
	}
	return nil
}

// tooSmall is the failure of a held-back stream (holdBack) whose last part, of n bytes, is
// under MinPartSize with nothing stored in this attempt to merge it into.
func (u *upload) tooSmall(n int64) error {
	s := u.s
	if u.parts > 0 {
		// A continued segment: the checkpoint's last part is stored, and the tail after it is
		// short (the rows after the checkpoint changed): only starting over can merge it.
		return fmt.Errorf("sink: s3://%s/%s: the segment's tail after its checkpoint is %d bytes, under %d, and its last part %d is stored already: %w", s.bucket, u.obj.Key, n, MinPartSize, u.firstPart+u.parts-1, jobs.ErrUploadGone)
	}
	return jobs.Permanent(jobs.ReasonInvalidParams, fmt.Errorf("sink: s3://%s/%s: segment of parts %d..%d has %d bytes: %w", s.bucket, u.obj.Key, u.firstPart, u.maxPart, n, ErrSegmentTooSmall))
}

// CompleteUpload completes the shared upload uploadID of obj with parts (every segment's, in
// order of their numbers), whose full-object checksum is checksum (CombineChecksums of the
// segments') and total size is size, after obj.BeforeCommit. The server's checksum must be
// checksum. A failure does not abort the upload.
func (s *S3) CompleteUpload(ctx context.Context, obj jobs.Object, uploadID string, parts []jobs.StoredPart, checksum string, size int64) (jobs.Written, error) {
	if uploadID == "" || len(parts) == 0 || checksum == "" {
		return jobs.Written{}, fmt.Errorf("sink: complete s3://%s/%s: an upload id, parts and a checksum are needed", s.bucket, obj.Key)
	}
	var sum int64
	for i, p := range parts {
		if i > 0 && p.Number <= parts[i-1].Number {
			return jobs.Written{}, fmt.Errorf("sink: complete s3://%s/%s: part %d follows part %d: parts must be in ascending order", s.bucket, obj.Key, p.Number, parts[i-1].Number)
		}
		sum += p.Size
	}
	if sum != size {
		return jobs.Written{}, fmt.Errorf("sink: complete s3://%s/%s: the parts hold %d bytes, not %d", s.bucket, obj.Key, sum, size)
	}
	u := &upload{s: s, obj: obj, uploadID: uploadID, stored: parts, size: size}
	return u.commit(ctx, checksum)
}

// CompleteSegments completes the shared upload uploadID of obj with the parts of segs, in
// order, and the full-object checksum combined from the segments' (CompleteUpload).
func (s *S3) CompleteSegments(ctx context.Context, obj jobs.Object, uploadID string, segs []jobs.SegmentWritten) (jobs.Written, error) {
	var parts []jobs.StoredPart
	sums := make([]SegmentChecksum, len(segs))
	var size int64
	for i, sg := range segs {
		parts = append(parts, sg.Parts...)
		sums[i] = SegmentChecksum{Checksum: sg.Checksum, Size: sg.Size}
		size += sg.Size
	}
	sum, err := CombineChecksums(s.opts.Checksum, sums)
	if err != nil {
		return jobs.Written{}, fmt.Errorf("sink: complete s3://%s/%s: combine the segments' checksums: %w", s.bucket, obj.Key, err)
	}
	return s.CompleteUpload(ctx, obj, uploadID, parts, sum, size)
}

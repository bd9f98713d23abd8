package ledger

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/jobs"
)

func testCheckpoint(t *testing.T, rows int64, lastID any) jobs.Checkpoint {
	t.Helper()
	typ, val, err := bson.MarshalValue(lastID)
	if err != nil {
		t.Fatal(err)
	}
	return jobs.Checkpoint{
		Key: "exports/k.csv.gz",
		Upload: jobs.UploadState{UploadID: "u-1", Size: 10 << 20, ChecksumAlgorithm: "CRC32C", ChecksumState: []byte{1, 2, 3},
			Parts: []jobs.StoredPart{{Number: 1, ETag: `"e1"`, Checksum: "c1", Size: 5 << 20}, {Number: 2, ETag: `"e2"`, Checksum: "c2", Size: 5 << 20}}},
		Mark: jobs.Mark{Rows: rows, BytesUncompressed: 3 * rows, BytesCompressed: 10 << 20,
			LastID: bson.RawValue{Type: typ, Value: val}, SHA256: []byte("state")},
		At: time.Now().UTC().Truncate(time.Millisecond),
	}
}

// A checkpoint is kept across attempts exactly as saved (the _id of any BSON type included),
// only its owner can save one, and it is dropped when the export succeeds or fails for good,
// not when it is released or fails retryably.
func TestCheckpointLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, lastID := range []any{int32(7), "seven", bson.NewObjectID()} {
		b := newLedgerBundle(t)
		_, e1, _ := b.claim(t, "m1", 5)
		cp := testCheckpoint(t, 1234, lastID)
		if err := b.l.SaveCheckpoint(ctx, e1, cp, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := b.l.Finish(ctx, e1, Released, jobs.Result{}, nil, jobs.ReasonShutdown); err != nil {
			t.Fatal(err)
		}
		r, e2, info := b.claim(t, "m1", 5)
		if r != Claimed || e2.Checkpoint == nil || info.TookOver != Released {
			t.Fatalf("claim after release: %v, checkpoint %v, %+v", r, e2.Checkpoint, info)
		}
		got := *e2.Checkpoint
		cp.Attempt = e1.Attempts
		if !got.Mark.LastID.Equal(cp.Mark.LastID) || got.Mark.Rows != cp.Mark.Rows || string(got.Mark.SHA256) != "state" ||
			got.Upload.UploadID != "u-1" || len(got.Upload.Parts) != 2 || got.Upload.Parts[1] != cp.Upload.Parts[1] ||
			string(got.Upload.ChecksumState) != "\x01\x02\x03" || !got.At.Equal(cp.At) || got.Attempt != 1 {
			t.Fatalf("checkpoint read back as %+v, saved %+v", got, cp)
		}
		if d := Describe(e2, time.Now()); strings.Contains(d, "checkpoint") {
			t.Errorf("running entry described as %q", d)
		}
		if d := DescribeCheckpoint(e2, time.Now()); !strings.Contains(d, "1234 rows") || !strings.Contains(d, "2 part(s)") {
			t.Errorf("DescribeCheckpoint = %q", d)
		}

		// The stale attempt cannot overwrite the new owner's checkpoint.
		if err := b.l.SaveCheckpoint(ctx, e1, testCheckpoint(t, 99, lastID), time.Minute); !IsLeaseLost(err) {
			t.Fatalf("stale attempt's checkpoint: %v, want lease lost", err)
		}
		// A retryable failure keeps it (the next attempt continues), a success drops it.
		if err := b.l.Finish(ctx, e2, Failed, jobs.Result{}, context.DeadlineExceeded, jobs.ReasonRetryable); err != nil {
			t.Fatal(err)
		}
		if e, _ := b.l.Get(ctx, b.job.Message.ExportID); e.Checkpoint == nil {
			t.Fatal("a retryable failure dropped the checkpoint")
		}
		_, e3, _ := b.claim(t, "m1", 5)
		if err := b.l.RecordResume(ctx, e3, true, false, 1234, 100); err != nil {
			t.Fatal(err)
		}
		if err := b.l.Finish(ctx, e3, Succeeded, jobs.Result{}, nil, ""); err != nil {
			t.Fatal(err)
		}
		e, err := b.l.Get(ctx, b.job.Message.ExportID)
		if err != nil {
			t.Fatal(err)
		}
		if e.Checkpoint != nil || e.Resumes != 1 || e.RowsResumed != 1234 || e.RowsReread != 100 {
			t.Fatalf("after success: checkpoint %v, resumes %d, resumed %d, reread %d", e.Checkpoint, e.Resumes, e.RowsResumed, e.RowsReread)
		}
	}
	// A permanent failure drops it too.
	b := newLedgerBundle(t)
	_, e1, _ := b.claim(t, "m1", 5)
	if err := b.l.SaveCheckpoint(ctx, e1, testCheckpoint(t, 1, int32(1)), time.Minute); err != nil {
		t.Fatal(err)
	}
	if d := Describe(Entry{Status: Released, Checkpoint: &jobs.Checkpoint{Mark: jobs.Mark{Rows: 5}}}, time.Now()); !strings.Contains(d, "continues it from its checkpoint") {
		t.Errorf("released entry with a checkpoint described as %q", d)
	}
	if err := b.l.Finish(ctx, e1, Failed, jobs.Result{}, jobs.Permanentf(jobs.ReasonTimeout, "too long"), jobs.ReasonTimeout); err != nil {
		t.Fatal(err)
	}
	if e, _ := b.l.Get(ctx, b.job.Message.ExportID); e.Checkpoint != nil {
		t.Fatal("a permanent failure kept the checkpoint")
	}
}

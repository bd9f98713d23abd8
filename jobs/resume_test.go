package jobs_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/jobs"
)

// Exporter.Run continues a checkpoint whose upload S3 still holds, to the object an
// uninterrupted run writes; one whose upload is gone it starts over (saying why), once.
func TestRunResumesOrStartsOver(t *testing.T) {
	t.Parallel()
	e := newS3Env(t)
	db := e.st.NewDatabase(t)
	// 6,000 venues of 2 KB of random base64: 12 MB that gzip shrinks to about 9 MiB, 2 parts.
	r := rand.New(rand.NewPCG(7, 7))
	docs := make([]any, 6000)
	for i := range docs {
		b := make([]byte, 1500)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		docs[i] = bson.D{{Key: "_id", Value: int32(i)}, {Key: "name", Value: base64.StdEncoding.EncodeToString(b)}, {Key: "city", Value: "x"}}
	}
	ctx := context.Background()
	if _, err := db.Collection("venues").InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	ex := e.exporter(db)
	prepare := func(id string) *jobs.Job { return prepareVenues(t, ex, id) }
	get := func(key string) []byte { return e.get(t, key) }
	// interrupted runs job until its first checkpoint and returns it. Its source waits before
	// row 5,500 (past the first part, which ends near row 4,700) until the stop, so that the
	// stop always comes before the end.
	interrupted := func(job *jobs.Job) *jobs.Checkpoint {
		stop := make(chan struct{})
		var once sync.Once
		var cp *jobs.Checkpoint
		ex.WrapSource = func(src jobs.Source) jobs.Source { return &gatedSource{Source: src, at: 5500, gate: stop} }
		defer func() { ex.WrapSource = nil }()
		_, err := ex.Run(ctx, job, jobs.RunOptions{Stop: stop, Checkpoint: func(_ context.Context, c jobs.Checkpoint) error {
			once.Do(func() { cp = &c; close(stop) })
			return nil
		}})
		if !errors.Is(err, jobs.ErrStopped) || cp == nil {
			t.Fatalf("interrupted run: %v, checkpoint %v", err, cp)
		}
		return cp
	}

	whole := prepare("whole")
	res, err := ex.Run(ctx, whole, jobs.RunOptions{})
	if err != nil || res.Written.Parts < 2 {
		t.Fatalf("uninterrupted run: %v, %d parts; the test wants several", err, res.Written.Parts)
	}
	want := get(whole.Key)

	for _, gone := range []bool{false, true} {
		job := prepare(map[bool]string{false: "resumed", true: "gone"}[gone])
		cp := interrupted(job)
		if gone {
			if err := e.sink.AbortUpload(ctx, job.Key, cp.Upload.UploadID); err != nil {
				t.Fatal(err)
			}
		}
		job.Resume, job.Attempt = cp, 2
		var starts []*jobs.Checkpoint
		res, err := ex.Run(ctx, job, jobs.RunOptions{OnStart: func(_ context.Context, c *jobs.Checkpoint) { starts = append(starts, c) }})
		if err != nil {
			t.Fatalf("gone=%v: %v", gone, err)
		}
		if res.Stats.Rows != int64(len(docs)) || res.Stats.SHA256 != res.Manifest.SHA256 {
			t.Errorf("gone=%v: %d rows, sha %s, manifest %s", gone, res.Stats.Rows, res.Stats.SHA256, res.Manifest.SHA256)
		}
		switch {
		case gone && (res.Resumed != nil || !strings.Contains(res.Restarted, "gone") || len(starts) != 1 || starts[0] != nil):
			t.Errorf("gone: resumed %v, restarted %q, starts %v; want one start from the beginning, saying why", res.Resumed, res.Restarted, starts)
		case !gone && (res.Resumed == nil || res.Restarted != "" || len(starts) != 1 || starts[0] != cp || res.RowsRead != int64(len(docs))-cp.Mark.Rows):
			t.Errorf("resumed: resumed %v, restarted %q, starts %v, read %d; want one start from the checkpoint (%d rows)", res.Resumed, res.Restarted, starts, res.RowsRead, cp.Mark.Rows)
		}
		if got := get(job.Key); !bytes.Equal(got, want) {
			t.Errorf("gone=%v: the object (%d bytes) differs from the uninterrupted run's (%d bytes)", gone, len(got), len(want))
		}
	}
	e.nothingLeft(t, e.prefix+"nothing")
}

// gatedSource waits before its row number at until gate is closed.
type gatedSource struct {
	jobs.Source
	at, i int
	gate  <-chan struct{}
}

func (g *gatedSource) Next(ctx context.Context) bool {
	if g.i++; g.i == g.at {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return false
		}
	}
	return g.Source.Next(ctx)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	vfjobs "github.com/verifiedfan/export-service/jobs"
)

// Cancels. The campaign cancels a fraction of its exports (-cancel, deterministic from the
// seed) with cancel messages on the jobs queue, as an upstream system does:
//
//	queued     right after its job message was sent (0-500 ms): most are still queued, and
//	           their claim acknowledges them without running; the cancel message may even
//	           be received before the job message
//	delayed    1-13 s after its job message: queued, running or finished by then
//	uploading  a multipart export (the campaigns collection), once the ledger shows it
//	           running with a checkpoint of at least one stored part (at the latest 60 s after
//	           its job message): it stops at its next lease renewal or at its fence, with its
//	           upload open
//
// A campaign of 5 exports or more cancels at least one (a delayed cancel of a job that is not a
// multipart export, if none was drawn). Either outcome is right: the export cancelled (ledger
// "cancelled", no object, no manifest, no upload left, a cancelled notice) or finished before
// the cancel was carried out (succeeded, checked as every export; or failed for good before it,
// in the dead-letter queue). See Checker.Check.

// Cancel modes.
const (
	CancelQueued    = "queued"
	CancelDelayed   = "delayed"
	CancelUploading = "uploading"
)

// CancelPlan is when the campaign cancels an export, and what happened when it did.
type CancelPlan struct {
	Mode  string
	Delay time.Duration // after the job message was sent (uploading: the latest)

	// Filled in by sendCancels.
	Sent         bool
	SentAt       time.Duration // since the campaign's start
	StatusAtSend string        // the ledger's status just before ("queued": no entry yet)
	PartsAtSend  int           // stored parts of its checkpoint then
	Err          string        // the cancel could not be sent
}

func (p *CancelPlan) String() string {
	s := fmt.Sprintf("cancel %s", p.Mode)
	if p.Mode != CancelUploading {
		s += fmt.Sprintf(" +%.1fs", p.Delay.Seconds())
	}
	if p.Sent {
		s += fmt.Sprintf(", sent at t+%.1fs with the export %s", p.SentAt.Seconds(), p.StatusAtSend)
		if p.PartsAtSend > 0 {
			s += fmt.Sprintf(" (%d part(s) stored)", p.PartsAtSend)
		}
	}
	if p.Err != "" {
		s += ", not sent: " + p.Err
	}
	return s
}

// planCancels draws the exports to cancel (fraction frac of them) and how, from r: a stream of
// its own, so that the jobs and faults of a seed do not change with -cancel.
func planCancels(r *rand.Rand, jobs []*Job, frac float64) {
	if frac <= 0 {
		return
	}
	drawn := false
	for _, j := range jobs {
		if r.Float64() >= frac {
			continue
		}
		drawn = true
		j.Cancel = drawCancel(r, j)
	}
	if !drawn && len(jobs) >= 5 {
		var small []*Job
		for _, j := range jobs {
			if j.Collection != "campaigns" {
				small = append(small, j)
			}
		}
		if len(small) > 0 {
			j := small[r.IntN(len(small))]
			j.Cancel = delayedCancel(r)
		}
	}
}

func drawCancel(r *rand.Rand, j *Job) *CancelPlan {
	if r.IntN(2) == 0 {
		return &CancelPlan{Mode: CancelQueued, Delay: time.Duration(r.Int64N(int64(500 * time.Millisecond)))}
	}
	if j.Collection == "campaigns" {
		return &CancelPlan{Mode: CancelUploading, Delay: 60 * time.Second}
	}
	return delayedCancel(r)
}

// delayedCancel draws a delayed cancel: 1-13 s after the job message.
func delayedCancel(r *rand.Rand) *CancelPlan {
	return &CancelPlan{Mode: CancelDelayed, Delay: time.Second + time.Duration(r.Int64N(int64(12*time.Second)))}
}

// Cancelled returns the jobs the campaign cancels.
func cancelled(jobs []*Job) []*Job {
	var out []*Job
	for _, j := range jobs {
		if j.Cancel != nil {
			out = append(out, j)
		}
	}
	return out
}

// cancelMessage is the cancel message of the export.
func cancelMessage(j *Job) (string, error) {
	b, err := vfjobs.CancelMessage{ExportID: j.ExportID, RequestedBy: "chaos-cancel",
		Reason: fmt.Sprintf("chaos campaign: %s cancel", j.Cancel.Mode)}.Encode()
	return string(b), err
}

// Canceller sends the campaign's cancel messages, each once its job message was sent.
type Canceller struct {
	SQS   *sqs.Client
	URL   string // the jobs queue
	DB    *mongo.Database
	Start time.Time

	mu   sync.Mutex
	sent map[string]time.Time // export id -> when its job message was sent
}

// JobSent records that the job message of export id was sent.
func (c *Canceller) JobSent(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sent == nil {
		c.sent = map[string]time.Time{}
	}
	c.sent[id] = time.Now()
}

// waitSent waits for the job message of export id; false if ctx ended first.
func (c *Canceller) waitSent(ctx context.Context, id string) (time.Time, bool) {
	for {
		c.mu.Lock()
		t, ok := c.sent[id]
		c.mu.Unlock()
		if ok {
			return t, true
		}
		if ctx.Err() != nil {
			return time.Time{}, false
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// Run sends the cancels of jobs and returns when all were sent (or ctx ended).
func (c *Canceller) Run(ctx context.Context, jobs []*Job) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(jobs))
	for _, j := range cancelled(jobs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.one(ctx, j); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (c *Canceller) one(ctx context.Context, j *Job) error {
	p := j.Cancel
	sentAt, ok := c.waitSent(ctx, j.ExportID)
	if !ok {
		return ctx.Err()
	}
	deadline := sentAt.Add(p.Delay)
	if p.Mode == CancelUploading {
		// Until it runs with a stored part, or it ended, or the deadline.
		for time.Now().Before(deadline) && ctx.Err() == nil {
			st, parts := c.status(ctx, j.ExportID)
			if st == "running" && parts >= 1 || st == "succeeded" || st == "failed" || st == "cancelled" {
				break
			}
			sleep(ctx, 250*time.Millisecond)
		}
	} else {
		sleep(ctx, time.Until(deadline))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	p.StatusAtSend, p.PartsAtSend = c.status(ctx, j.ExportID)
	body, err := cancelMessage(j)
	if err != nil {
		p.Err = err.Error()
		return err
	}
	for attempt := 0; attempt < 5; attempt++ {
		if _, err = c.SQS.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(c.URL), MessageBody: aws.String(body)}); err == nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		p.Err = err.Error()
		return fmt.Errorf("send the cancel of %s: %w", j.ExportID, err)
	}
	p.Sent, p.SentAt = true, time.Since(c.Start)
	return nil
}

// status reads the export's ledger status ("queued" without an entry, "?" when MongoDB did not
// answer) and the stored parts of its checkpoint.
func (c *Canceller) status(ctx context.Context, id string) (string, int) {
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var e struct {
		Status     string `bson:"status"`
		Checkpoint struct {
			Upload struct {
				Parts []struct{} `bson:"parts"`
			} `bson:"upload"`
		} `bson:"checkpoint"`
	}
	err := c.DB.Collection("exports").FindOne(qctx, bson.D{{Key: "_id", Value: id}},
		options.FindOne().SetProjection(bson.D{{Key: "status", Value: 1}, {Key: "checkpoint.upload.parts.n", Value: 1}})).Decode(&e)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return "queued", 0
	case err != nil:
		return "?", 0
	}
	return e.Status, len(e.Checkpoint.Upload.Parts)
}

// cancelSummary summarizes the plans: by mode, and the ledger status each cancel found.
func cancelSummary(jobs []*Job) string {
	modes, found := map[string]int{}, map[string]int{}
	n := 0
	for _, j := range cancelled(jobs) {
		n++
		modes[j.Cancel.Mode]++
		if j.Cancel.Sent {
			found[j.Cancel.StatusAtSend]++
		}
	}
	return fmt.Sprintf("%d cancels (%s); the export was, when each was sent: %s", n, sortedMap(modes), sortedMap(found))
}

package ledger

import (
	"fmt"
	"time"

	"github.com/verifiedfan/export-service/jobs"
)

// Describe says what an entry's status means for what happens next, for a person (the status
// command, enqueue --wait).
func Describe(e Entry, now time.Time) string {
	d := describeStatus(e, now)
	if c := e.CancelRequest; c != nil && !Ended(e) {
		switch e.Status {
		case "":
			return "cancel requested (" + c.Error() + "): not started; its message is acknowledged without running when a worker receives it"
		case Running, Segmented:
			d += "; cancel requested (" + c.Error() + "): it stops at its next lease renewal, aborting its upload"
		default:
			d = string(e.Status) + "; cancel requested (" + c.Error() + "): its message is acknowledged without running when it comes back"
		}
	}
	return d
}

func describeStatus(e Entry, now time.Time) string {
	switch e.Status {
	case Running:
		if e.LeaseExpires.Before(now) {
			return fmt.Sprintf("running, but its lease expired %s ago: the worker died; the message comes back and another worker %s", now.Sub(e.LeaseExpires).Round(time.Second), next(e))
		}
		return fmt.Sprintf("running (lease renewed, expires in %s)", e.LeaseExpires.Sub(now).Round(time.Second))
	case Succeeded:
		return "succeeded"
	case Failed:
		if e.Reason == jobs.ReasonRetryable {
			return fmt.Sprintf("failed (retryable, %d failure(s) so far): the message comes back after a backoff, and goes to the dead-letter queue after MAX_ATTEMPTS failures", e.Failures)
		}
		return "failed (permanent): the message was sent to the dead-letter queue (export-service dlq list)"
	case Cancelled:
		return e.Error + ": no object or manifest was written"
	case Released:
		return "released by a worker's shutdown: the message is back in the queue and another worker " + next(e)
	case Segmented:
		if p := e.Progress; p != nil {
			return fmt.Sprintf("running as %d segments over the fleet: %d done, %d running, %d waiting", p.Segments, p.Done, p.Running, p.Waiting)
		}
		return "running as segments over the fleet"
	}
	return string(e.Status)
}

// next says how the next attempt of an interrupted export starts.
func next(e Entry) string {
	if cp := e.Checkpoint; cp != nil {
		return fmt.Sprintf("continues it from its checkpoint (part %d, row %d)", len(cp.Upload.Parts), cp.Mark.Rows)
	}
	return "restarts it"
}

// DescribeCheckpoint is the checkpoint of e for a person, or "" without one.
func DescribeCheckpoint(e Entry, now time.Time) string {
	cp := e.Checkpoint
	if cp == nil {
		return ""
	}
	age := now.Sub(cp.At).Round(time.Second)
	return fmt.Sprintf("%d part(s), %d rows, %d bytes stored by attempt %d, %s ago; the next attempt reads the rows after _id %s (upload %s)",
		len(cp.Upload.Parts), cp.Mark.Rows, cp.Upload.Size, cp.Attempt, age, cp.Mark.LastID, cp.Upload.UploadID)
}

package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/verifiedfan/export-service/internal/clip"
)

// NoticeVersion is the version of the result notice (docs/result-notice.schema.json).
const NoticeVersion = 1

// Outcome is the terminal outcome of an export a result notice announces.
type Outcome string

// Outcomes.
const (
	// OutcomeSucceeded: the object and its manifest are complete; the notice carries the
	// manifest's fields.
	OutcomeSucceeded Outcome = "succeeded"
	// OutcomeFailed: the export failed for good (a permanent failure, or MAX_ATTEMPTS
	// failures); it does not run again unless an operator redrives its message.
	OutcomeFailed Outcome = "failed"
	// OutcomeDeadLettered: the export's message went to the dead-letter queue, where an
	// operator may redrive it (a later notice then says how that ended). A message that was
	// refused before its export ran (malformed, invalid) gets this notice only.
	OutcomeDeadLettered Outcome = "dead_lettered"
	// OutcomeCancelled: the export was cancelled before it completed; nothing was written.
	OutcomeCancelled Outcome = "cancelled"
)

// Notice is a result notice: what the results queue says of an export's terminal outcome.
// A succeeded export's notice carries its manifest's fields at the top level too, so that a
// consumer of the manifest notices of earlier versions reads it unchanged.
type Notice struct {
	NoticeVersion int `json:"notice_version"`
	// NoticeID is the same for every delivery of one notice (delivery is at least once) and
	// differs between notices (NoticeID): the key to de-duplicate on.
	NoticeID string  `json:"notice_id"`
	Outcome  Outcome `json:"outcome"`
	ExportID string  `json:"export_id"`
	// At is when the outcome happened.
	At          time.Time  `json:"at"`
	Kind        string     `json:"kind,omitempty"`
	Destination string     `json:"destination,omitempty"`
	RequestedBy string     `json:"requested_by,omitempty"`
	RequestedAt *time.Time `json:"requested_at,omitempty"`
	// Attempts is how many attempts of the export started; Failures how many failed.
	Attempts int `json:"attempts"`
	Failures int `json:"failures"`
	// Reason and Error say why a failed or dead-lettered export stopped, or why it was
	// cancelled.
	Reason Reason `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	*Manifest
}

// MaxNoticeError bounds a notice's error text.
const MaxNoticeError = 2000

// NoticeID is the id of the notice of an export's outcome. Succeeded and cancelled are final:
// an export has at most one of them, whoever records it (the attempt that completed the export,
// or the one that adopted its object after that attempt died), so its id is the export id and
// the outcome. Failed and dead-lettered can happen again after a redrive, so their id has the
// number of attempts started too: each is a notice of its own.
func NoticeID(exportID string, outcome Outcome, attempts int) string {
	if outcome == OutcomeSucceeded || outcome == OutcomeCancelled {
		return exportID + ":" + string(outcome)
	}
	return exportID + ":" + string(outcome) + ":" + strconv.Itoa(attempts)
}

// NewNotice returns the notice of outcome, with its id; m is the manifest of a succeeded
// export, nil otherwise.
func NewNotice(outcome Outcome, exportID string, attempts, failures int, m *Manifest) *Notice {
	n := &Notice{
		NoticeVersion: NoticeVersion,
		NoticeID:      NoticeID(exportID, outcome, attempts),
		Outcome:       outcome,
		ExportID:      exportID,
		At:            time.Now().UTC().Truncate(time.Millisecond),
		Attempts:      attempts,
		Failures:      failures,
		Manifest:      m,
	}
	if m != nil {
		n.Kind, n.Destination, n.RequestedBy, n.RequestedAt = m.Kind, m.Destination, m.RequestedBy, m.RequestedAt
	}
	return n
}

// WithJob fills in what the job says of the export: kind, destination, who asked and when.
func (n *Notice) WithJob(job *Job) *Notice {
	if job == nil {
		return n
	}
	n.Kind, n.Destination, n.RequestedBy = job.Plan.Kind.Name, job.Destination.Name, job.Message.RequestedBy
	if !job.RequestedAt.IsZero() {
		t := job.RequestedAt.UTC()
		n.RequestedAt = &t
	}
	return n
}

// WithError records why the export stopped.
func (n *Notice) WithError(reason Reason, err error) *Notice {
	n.Reason = reason
	if err != nil {
		n.Error = clip.String(err.Error(), MaxNoticeError)
	}
	return n
}

// Encode returns the notice's JSON.
func (n *Notice) Encode() ([]byte, error) {
	b, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("jobs: encode notice %s: %w", n.NoticeID, err)
	}
	return b, nil
}

// Notifier delivers result notices (the results queue).
type Notifier interface {
	Notify(ctx context.Context, n *Notice) error
}

package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

// ExportHandler runs export job messages with an Exporter, under a lease in the export ledger
// so that each export runs once however many times its message is delivered.
type ExportHandler struct {
	Exporter *jobs.Exporter
	Ledger   *ledger.Ledger
	Metrics  *Metrics
	Log      zerolog.Logger
	// Outbox, if set, records and sends each export's result notice.
	Outbox *Outbox
	// WorkerID identifies this process in the ledger.
	WorkerID string
	// Lease is the ledger lease of a running export, renewed every third of it (at most every
	// 10s). Use the worker's visibility timeout: a dead worker's message then comes back no
	// earlier than its ledger lease expires.
	Lease time.Duration
	// MaxAttempts is how many attempts of an export may fail (failures recorded in the
	// ledger, and attempts whose worker died) before its message goes to the dead-letter
	// queue with reason max_attempts. Releases at shutdown do not count. 0 means 5.
	MaxAttempts int
	// ProgressEvery is the interval of progress log lines of a running job; 0 means 30s.
	ProgressEvery time.Duration
	// FinishFor bounds the retries of recording a succeeded export in the ledger; 0 means 2m.
	FinishFor time.Duration
	// Segments chooses the exports split into segments over the fleet; Enqueue sends their
	// messages to the jobs queue (nil: never split).
	Segments jobs.SegmentOptions
	Enqueue  func(ctx context.Context, bodies []string) error
	// MaxDuration, if set, ends an attempt that ran this long as a permanent failure (reason
	// "timeout"). It must be shorter than the bucket's abort-incomplete-multipart-upload rule,
	// or that rule would abort the upload of an attempt still running.
	MaxDuration time.Duration
}

var (
	_ Handler            = (*ExportHandler)(nil)
	_ DeadLetterObserver = (*ExportHandler)(nil)
)

// errLedgerLeaseLost cancels an export whose ledger lease was taken over.
var errLedgerLeaseLost = errors.New("worker: ledger lease lost")

// DefaultMaxExportDuration is MAX_EXPORT_DURATION's default: a day less than the default of
// the exports bucket's abort-incomplete-multipart-upload rule (infra, 7 days).
const DefaultMaxExportDuration = 6 * 24 * time.Hour

// errMaxDuration cancels an attempt that ran for MaxDuration.
var errMaxDuration = errors.New("worker: the export ran longer than its maximum duration")

func (h *ExportHandler) maxAttempts() int {
	if h.MaxAttempts <= 0 {
		return 5
	}
	return h.MaxAttempts
}

// Handle implements Handler.
func (h *ExportHandler) Handle(ctx context.Context, m *Delivery) error {
	switch typ := jobs.MessageType([]byte(m.Body)); {
	case m.Control && typ != jobs.CancelMessageType:
		return jobs.Permanentf(jobs.ReasonInvalidMessage, "the control queue takes cancel messages only (type %q); export jobs go to the jobs queue", jobs.CancelMessageType)
	case typ == jobs.SegmentMessageType:
		return h.handleSegment(ctx, m)
	case typ == jobs.CancelMessageType:
		return h.handleCancel(ctx, m)
	}
	msg, err := jobs.Decode([]byte(m.Body))
	m.ExportID = msg.ExportID
	if err != nil {
		return err
	}
	job, err := h.Exporter.PrepareMessage(msg, m.RequestedAt)
	if err != nil {
		return err
	}
	// Only known (bounded) kinds and destinations become metric labels.
	m.Kind, m.Destination = job.Plan.Kind.Name, job.Destination.Name
	log := h.Log.With().Str("export_id", m.ExportID).Str("kind", m.Kind).Str("destination", m.Destination).Logger()
	a := &attempt{job: job, ledgerJob: job, log: log, noun: "export", what: "export " + m.ExportID}
	a.run = func(ctx context.Context, o jobs.RunOptions) (jobs.Result, error) {
		if a.entry.Segments != nil || a.entry.Checkpoint == nil {
			done, err := h.split(ctx, m, a)
			switch {
			case done:
				return jobs.Result{}, errSplit{err}
			case err != nil:
				return jobs.Result{}, err
			}
		}
		return h.Exporter.Run(ctx, a.job, o)
	}
	a.succeeded = func(ctx context.Context, res jobs.Result) error {
		log.Info().Int64("duration", res.Finished.Sub(res.Started).Milliseconds()).Int64("rows", res.Stats.Rows).
			Int64("bytes", res.Stats.BytesCompressed).Int64("bytes_uncompressed", res.Stats.BytesUncompressed).
			Str("bucket", job.Destination.Bucket).Str("key", job.Key).Str("sha256", res.Stats.SHA256).
			Int("aborted_uploads", res.AbortedUploads).Msg("export succeeded")
		return nil
	}
	a.failedForGood = func(ctx context.Context, _ error) bool { h.discardIncomplete(ctx, job, log); return false }
	a.failed = func(ctx context.Context, e ledger.Entry, reason jobs.Reason, err error) {
		h.announce(ctx, jobs.NewNotice(jobs.OutcomeFailed, e.ExportID, e.Attempts, e.Failures, nil).WithJob(job).WithError(reason, err), log)
	}
	a.watch = func(ctx context.Context) error { return h.cancelRequested(ctx, m.ExportID) }
	a.completed = func(ctx context.Context, e ledger.Entry) (bool, error) {
		man, err := h.Exporter.FindManifest(ctx, job)
		if err != nil {
			// Unknown: not cancelled blind. The message comes back, and this is asked again.
			return false, fmt.Errorf("worker: before cancelling export %s, look for its manifest: %w", m.ExportID, err)
		}
		if man == nil {
			return false, nil
		}
		if err := h.adopt(ctx, m, e, man); err != nil {
			return false, err
		}
		log.Warn().Str("key", man.Key).Msg("export completed before its cancel was seen: it stays succeeded")
		return true, nil
	}
	a.discard = func(ctx context.Context) { h.discardIncomplete(ctx, job, log) }
	a.cancel = func(ctx context.Context, e ledger.Entry, cause error) {
		h.announce(ctx, jobs.NewNotice(jobs.OutcomeCancelled, e.ExportID, e.Attempts, e.Failures, nil).WithJob(job).WithError(jobs.ReasonCancelled, cause), log)
	}
	return h.attempt(ctx, m, a)
}

// attempt is one attempt of a unit of work the ledger leases: an export, or one segment of a
// split export.
type attempt struct {
	// job is the export's job; ledgerJob the one claimed in the ledger (a segment's has the
	// segment's id).
	job, ledgerJob *jobs.Job
	log            zerolog.Logger
	// noun names it in log messages ("export", "segment"), what in errors ("export X",
	// "segment 2 of 4 of export X").
	noun, what string
	// entry and info are the claim's.
	entry ledger.Entry
	info  ledger.ClaimInfo
	// run runs it; succeeded follows its recorded success; failedForGood cleans up after a
	// permanent failure, and says whether the failure is absorbed (the message is then
	// acknowledged, not dead-lettered: a segment of an export that had failed already);
	// failed, if set, follows the recorded permanent failure (entry e, as claimed, with the
	// failure counted) that was not absorbed; watch, if set, is checked with every lease
	// renewal and cancels the attempt with its error; discard, if set, removes what a cancelled
	// unit left (its uploads, an object without manifest) before it is recorded cancelled;
	// cancel follows the recorded cancel (e: the unit's entry), and announces it.
	run           func(context.Context, jobs.RunOptions) (jobs.Result, error)
	succeeded     func(context.Context, jobs.Result) error
	failedForGood func(context.Context, error) bool
	failed        func(ctx context.Context, e ledger.Entry, reason jobs.Reason, err error)
	watch         func(context.Context) error
	discard       func(ctx context.Context)
	cancel        func(ctx context.Context, e ledger.Entry, cause error)
	// completed, if set, says whether the unit asked to cancel is complete after all (an
	// export whose manifest was written before the cancel was seen), having recorded it so.
	completed func(ctx context.Context, e ledger.Entry) (bool, error)
	// alreadyDone, if set, is called instead of acknowledging a duplicate of a unit that
	// succeeded.
	alreadyDone func(context.Context) error
}

// errSplit ends the planner's attempt of an export it split into segments (or failed to).
type errSplit struct{ err error }

func (e errSplit) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return "export split into segments"
}
func (e errSplit) Unwrap() error { return e.err }

// attempt claims a's unit in the ledger and runs it under a lease, and records its outcome.
func (h *ExportHandler) attempt(ctx context.Context, m *Delivery, a *attempt) error {
	log := a.log
	claim, entry, info, err := h.Ledger.Claim(ctx, a.ledgerJob, ledger.ClaimOptions{WorkerID: h.WorkerID, MessageID: m.ID, Lease: h.Lease, MaxFailures: h.maxAttempts(), Copy: m.CopyOf != ""})
	if err != nil {
		return err // MongoDB unreachable or the like: retryable
	}
	a.entry, a.info = entry, info
	m.Failures, m.Claimed = entry.Failures, true
	log.Debug().Str("message_id", m.ID).Int("claim", int(claim)).Str("status", string(entry.Status)).Int("attempts", entry.Attempts).Int("failures", entry.Failures).Msg("ledger claim")
	switch claim {
	case ledger.AlreadyDone:
		if a.alreadyDone != nil {
			return a.alreadyDone(ctx)
		}
		m.Outcome = OutcomeDuplicate
		log.Info().Str("message_id", m.ID).Str("key", entry.Key).Msg("export already succeeded: duplicate message acknowledged")
		return nil
	case ledger.InSegments:
		m.Outcome = OutcomeDuplicate
		log.Info().Str("message_id", m.ID).Msg("export runs as segments: duplicate message acknowledged")
		return nil
	case ledger.ClaimCancelled:
		m.Outcome = OutcomeCancelled
		if a.discard != nil {
			a.discard(ctx) // what an earlier attempt left
		}
		a.cancel(ctx, entry, errors.New(entry.Error))
		h.Metrics.Cancels.WithLabelValues("carried_out").Inc()
		log.Warn().Str("message_id", m.ID).Str("cancel", entry.Error).Msg(a.noun + " cancelled: message acknowledged without running")
		return nil
	case ledger.Busy:
		if entry.MessageID != m.ID && m.CopyOf == "" {
			// Another delivery runs it and holds its own message, which comes back if that
			// attempt dies: this one is a duplicate. A copy the worker made is never dropped
			// here: it was made of the attempt's carrier, and if the ledger's record of the
			// carrier is stale, deleting it could leave the attempt without a message.
			m.Outcome = OutcomeDuplicate
			log.Info().Str("message_id", m.ID).Str("running_on", entry.WorkerID).Msg("export is running elsewhere: duplicate message acknowledged")
			return nil
		}
		// This message carries the running attempt (a handover copy, or the message of an
		// attempt whose worker died and whose lease has not expired yet): keep it alive. Its
		// copy is known as a carrier by its copy attribute (ClaimOptions.Copy), so the ledger
		// is not written: only the owner writes a running entry. On FerretDB an update is a
		// read and a later replace of the whole entry, so a write here could undo the outcome
		// the owner records meanwhile (seen in CI: a succeeded export back to "running").
		return &HopError{Reason: "export running on " + entry.WorkerID, Delay: time.Until(entry.LeaseExpires) + time.Second}
	case ledger.Exhausted:
		if entry.DeadLettered && m.CopyOf != "" {
			// Another copy of its message is in the dead-letter queue already: one is enough.
			m.Outcome = OutcomeDuplicate
			log.Info().Str("message_id", m.ID).Msg("export failed for good and is in the dead-letter queue already: this copy is acknowledged")
			return nil
		}
		// The attempt this message carried failed for good, possibly after a handover, when
		// it had no message to dead-letter: do it now, with what the ledger recorded.
		reason := entry.Reason
		if !entry.Permanent {
			reason = jobs.ReasonMaxAttempts
		}
		log.Warn().Str("message_id", m.ID).Str("reason", string(reason)).Int("failures", entry.Failures).Msg("export failed for good: its message goes to the dead-letter queue")
		err := jobs.Permanentf(reason, "%s failed %d time(s) and may not run again: %s", a.what, entry.Failures, entry.Error)
		if a.failedForGood(ctx, err) {
			m.Outcome = OutcomeDuplicate
			return nil
		}
		if a.failed != nil {
			// Its attempt may have died before announcing it: announced again, once in all.
			a.failed(ctx, entry, reason, errors.New(entry.Error))
		}
		return err
	}

	job := a.job
	job.Attempt = entry.Attempts
	job.Resume = entry.Checkpoint
	fence := func(ctx context.Context) error { return h.Ledger.Fence(ctx, entry, h.Lease) }
	checkpoint := func(ctx context.Context, cp jobs.Checkpoint) error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := h.Ledger.SaveCheckpoint(cctx, entry, cp, h.Lease)
		switch {
		case err == nil, ctx.Err() != nil:
			return err
		case ledger.IsLeaseLost(err):
			// The export is another attempt's now, and so is its upload.
			return fmt.Errorf("%w: %w", err, jobs.ErrKeepUpload)
		}
		// MongoDB did not take it: the export goes on, and the next part's checkpoint covers
		// this one (an interruption before it costs the rows since the last one saved).
		log.Warn().Err(err).Int("parts", len(cp.Upload.Parts)).Msg("saving the export's checkpoint failed; going on")
		return nil
	}
	if info.Crashed && a.ledgerJob == a.job {
		// The attempt before this one died without recording its outcome: perhaps after its
		// object and manifest were complete. Then adopt them instead of exporting again (a
		// second run would replace a good object, and might differ from its manifest).
		man, ferr := h.Exporter.FindManifest(ctx, job)
		if ferr != nil {
			log.Warn().Err(ferr).Msg("could not check for the object of the attempt that died; running the export again")
		}
		if man != nil {
			if err := h.adopt(ctx, m, entry, man); err != nil {
				return err
			}
			log.Info().Str("message_id", m.ID).Str("key", man.Key).Int64("rows", man.Rows).Msg("the attempt that died had completed the export: its object and manifest adopted, not run again")
			return nil
		}
	}

	if c := (*ledger.CancelRequest)(nil); a.watch != nil && errors.As(a.watch(ctx), &c) {
		// A cancel the claim left to its new owner (it took over an attempt that died, and
		// there was no manifest to adopt), or one requested since: carried out before anything
		// runs.
		return h.stopCancelled(ctx, m, a, entry, jobs.Result{}, c, log)
	}

	m.SetOnHandOver(func(ctx context.Context, newID string) error { return h.Ledger.SetMessage(ctx, entry, newID) })
	started := log.Info().Str("message_id", m.ID).Int("receive_count", m.ReceiveCount).Int("attempt", entry.Attempts).
		Int("failures", entry.Failures).Str("format", string(job.Message.Format))
	if cp := job.Resume; cp != nil {
		started = started.Int64("checkpoint_rows", cp.Mark.Rows).Int("checkpoint_parts", len(cp.Upload.Parts)).
			Int64("checkpoint_bytes", cp.Upload.Size).Int64("previous_rows", info.PreviousRows)
	}
	started.Msg(a.noun + " started")

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if h.MaxDuration > 0 {
		stop := time.AfterFunc(h.MaxDuration, func() { cancel(errMaxDuration) })
		defer stop.Stop()
	}
	prog := new(jobs.Progress)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); h.renewLease(ctx, entry, prog, cancel, a.watch, log) }()
	go func() { defer wg.Done(); h.logProgress(ctx, log, prog) }()
	start := time.Now()
	res, err := a.run(ctx, jobs.RunOptions{Progress: prog, Fence: fence, Checkpoint: checkpoint, Stop: m.Stop, OnStart: h.onStart(entry, info, log)})
	cause := context.Cause(ctx)
	cancel(nil)
	wg.Wait()

	h.Metrics.Rows.WithLabelValues(m.Kind).Add(float64(res.RowsRead))
	h.Metrics.BytesUncompressed.WithLabelValues(m.Kind).Add(float64(res.Stats.BytesUncompressed))
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer lcancel()
	finish := func(status ledger.Status, reason jobs.Reason, cause error) {
		if ferr := h.Ledger.Finish(lctx, entry, status, res, cause, reason); ferr != nil {
			log.Error().Err(ferr).Str("status", string(status)).Msg("recording the export's outcome in the ledger failed")
		}
	}
	duration := time.Since(start).Milliseconds()
	var split errSplit
	var cancelled *ledger.CancelRequest
	switch {
	case errors.As(err, &split):
		return split.err
	case err == nil:
		// Complete, whatever came after its last fence (a cancel seen by a renewal since).
		var notice *jobs.Notice
		if a.ledgerJob == a.job { // an export, not one of its segments: the export's notice
			notice = jobs.NewNotice(jobs.OutcomeSucceeded, entry.ExportID, entry.Attempts, entry.Failures, res.Manifest)
		}
		if ferr := h.finishSucceeded(ctx, entry, res, notice, log); ferr != nil {
			// The object and manifest are complete. The message comes back; its next delivery
			// finds this attempt dead and adopts them (see info.Crashed above).
			return fmt.Errorf("worker: %s is complete, but recording it failed: %w", a.what, ferr)
		}
		h.Metrics.BytesWritten.WithLabelValues(m.Destination).Add(float64(res.Stats.BytesCompressed))
		if err := a.succeeded(ctx, res); err != nil {
			return err
		}
		if notice != nil {
			h.Outbox.SendNow(ctx, notice.NoticeID)
		}
		return nil
	case errors.As(cause, &cancelled), errors.As(err, &cancelled):
		// Asked to cancel: seen at a lease renewal (cause), or by the fence before a commit. A
		// run that ended without an error despite it passed its last fence before the cancel:
		// its object and manifest are complete, and stopCancelled adopts them.
		log = log.With().Int64("duration", duration).Int64("rows", res.Stats.Rows).Logger()
		return h.stopCancelled(lctx, m, a, entry, res, cancelled, log)
	case errors.Is(cause, errLedgerLeaseLost), ledger.IsLeaseLost(err):
		// Not ours any more: the new owner records the outcome.
		log.Warn().Err(err).Msg("export attempt stopped: another attempt owns the export now")
		return err
	case errors.Is(err, jobs.ErrStopped):
		finish(ledger.Released, jobs.ReasonShutdown, errors.New("stopped by shutdown at the drain deadline, after its last stored part; message released, the next attempt continues from the checkpoint"))
		return fmt.Errorf("%w: %w", err, ErrReleased)
	case errors.Is(cause, errDrainTimeout):
		finish(ledger.Released, jobs.ReasonShutdown, errors.New("canceled by shutdown after the drain deadline; message released"))
	case errors.Is(cause, errExportEnded):
		// Another segment failed the export for good: nothing to retry.
		finish(ledger.Failed, jobs.ReasonExportFailed, cause)
		h.Metrics.Segments.WithLabelValues("stopped").Inc()
		m.Outcome = OutcomeDuplicate
		log.Warn().Msg("segment stopped: its export failed in another segment")
		return nil
	case errors.Is(cause, errMaxDuration):
		err = jobs.Permanentf(jobs.ReasonTimeout, "%s ran longer than MAX_EXPORT_DURATION (%s), before the bucket's lifecycle rule would abort its upload: %w", a.what, h.MaxDuration, err)
		m.Failures = entry.Failures + 1
		absorbed := fence(lctx) == nil && a.failedForGood(lctx, err)
		finish(ledger.Failed, jobs.ReasonTimeout, err)
		if absorbed {
			m.Outcome = OutcomeDuplicate
			return nil
		}
		a.announceFailed(lctx, entry, jobs.ReasonTimeout, err)
	default:
		reason, permanent := jobs.IsPermanent(err)
		m.Failures = entry.Failures + 1
		if !permanent {
			reason = jobs.ReasonRetryable
			if m.Failures >= h.maxAttempts() {
				reason = jobs.ReasonMaxAttempts
				err = jobs.Permanent(reason, fmt.Errorf("%s failed %d times; the last failure: %w", a.what, m.Failures, err))
			}
		}
		_, permanent = jobs.IsPermanent(err)
		absorbed := permanent && fence(lctx) == nil && a.failedForGood(lctx, err)
		finish(ledger.Failed, reason, err)
		if absorbed {
			m.Outcome = OutcomeDuplicate
			log.Warn().Err(err).Msg(a.noun + " failed; its export had failed already")
			return nil
		}
		if permanent {
			a.announceFailed(lctx, entry, reason, err)
		}
	}
	log.Warn().Err(err).Int64("duration", duration).Int64("rows", res.Stats.Rows).Int("failures", m.Failures).Msg(a.noun + " failed")
	return err
}

// adopt records the export as succeeded with the manifest found at its destination (its object
// is complete), and announces it; the message is acknowledged as a duplicate.
func (h *ExportHandler) adopt(ctx context.Context, m *Delivery, entry ledger.Entry, man *jobs.Manifest) error {
	notice := jobs.NewNotice(jobs.OutcomeSucceeded, entry.ExportID, entry.Attempts, entry.Failures, man)
	if err := h.recordNotice(ctx, notice); err != nil {
		return err
	}
	if err := h.Ledger.Adopt(ctx, entry, man); err != nil {
		return err
	}
	m.Outcome = OutcomeDuplicate
	h.Outbox.SendNow(ctx, notice.NoticeID)
	return nil
}

// stopCancelled carries out the cancel c of the attempt's unit, which this attempt owns: unless
// the unit turns out complete (an export whose manifest was written: adopted, it stays
// succeeded), its uploads are aborted (a.discard), it is recorded cancelled and the cancel is
// announced (a.cancel). An attempt that lost the unit to another leaves all that to that one.
func (h *ExportHandler) stopCancelled(ctx context.Context, m *Delivery, a *attempt, entry ledger.Entry, res jobs.Result, c *ledger.CancelRequest, log zerolog.Logger) error {
	if a.completed != nil {
		if done, err := a.completed(ctx, entry); err != nil || done {
			return err
		}
	}
	// Still the owner? (A renewal: the fence would answer with the cancel itself.) Then what
	// it left is removed before the ledger says "cancelled", which means nothing is left.
	err := h.Ledger.Renew(ctx, entry, h.Lease, nil)
	if err == nil {
		if a.discard != nil {
			a.discard(ctx)
		}
		err = h.Ledger.Finish(ctx, entry, ledger.Cancelled, res, c, jobs.ReasonCancelled)
	}
	if err != nil {
		if ledger.IsLeaseLost(err) {
			log.Warn().Err(err).Msg("cancel not carried out here: another attempt owns the " + a.noun + " now and carries it out")
		}
		return err
	}
	entry.Status = ledger.Cancelled
	m.Outcome = OutcomeCancelled
	a.cancel(ctx, entry, c)
	h.Metrics.Cancels.WithLabelValues("carried_out").Inc()
	log.Warn().Str("cancel", c.Error()).Msg(a.noun + " cancelled: stopped, its upload aborted, nothing written")
	return nil
}

// onStart records, when the attempt's stream starts (from cp, or from the beginning when cp is
// nil; again from the beginning if cp's upload was gone), what it continues from and what the
// attempts before it had read that it reads again. That is a lower bound: an attempt that was
// killed read more than its last renewal or checkpoint said.
func (h *ExportHandler) onStart(entry ledger.Entry, info ledger.ClaimInfo, log zerolog.Logger) func(context.Context, *jobs.Checkpoint) {
	started := false
	return func(ctx context.Context, cp *jobs.Checkpoint) {
		restart := started
		started = true
		if info.TookOver == "" {
			return // the export's first attempt
		}
		var resumed, reread int64
		switch {
		case cp != nil:
			resumed, reread = cp.Mark.Rows, max(0, info.PreviousRows-cp.Mark.Rows)
		case restart:
			// The checkpoint's upload was gone: its rows are read again too.
			if prev := entry.Checkpoint; prev != nil {
				reread = prev.Mark.Rows
			}
		default:
			reread = info.PreviousRows
		}
		if entry.Checkpoint != nil {
			cause := "retry"
			switch {
			case info.Crashed:
				cause = "crash"
			case info.TookOver == ledger.Released:
				cause = "release"
			}
			result := "continued"
			if cp == nil {
				result = "restarted"
			}
			h.Metrics.Resumes.WithLabelValues(cause, result).Inc()
		}
		h.Metrics.RowsResumed.Add(float64(resumed))
		h.Metrics.RowsReread.Add(float64(reread))
		if resumed == 0 && reread == 0 && !restart {
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := h.Ledger.RecordResume(rctx, entry, cp != nil, restart, resumed, reread); err != nil && !ledger.IsLeaseLost(err) {
			log.Warn().Err(err).Msg("recording the resume in the ledger failed")
		}
	}
}

// finishSucceeded records the success, retrying for up to FinishFor: the export is complete,
// and a success left unrecorded costs a redelivery (which adopts the object) at best.
func (h *ExportHandler) finishSucceeded(ctx context.Context, entry ledger.Entry, res jobs.Result, notice *jobs.Notice, log zerolog.Logger) error {
	limit := h.FinishFor
	if limit <= 0 {
		limit = 2 * time.Minute
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
	defer cancel()
	backoff := 250 * time.Millisecond
	for {
		actx, acancel := context.WithTimeout(fctx, 10*time.Second)
		// The notice (an export's, not a segment's) is recorded first: the export is complete
		// (its manifest written), and a worker that dies before recording the success leaves
		// it to be adopted, with this notice.
		var err error
		if notice != nil {
			err = h.recordNotice(actx, notice)
		}
		if err == nil {
			err = h.Ledger.Finish(actx, entry, ledger.Succeeded, res, nil, "")
		}
		acancel()
		if err == nil || ledger.IsLeaseLost(err) {
			return err
		}
		log.Warn().Err(err).Dur("retry_in", backoff).Msg("recording the export's success failed; retrying")
		select {
		case <-fctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// discardIncomplete deletes an object left without its manifest by an earlier attempt of an
// export that now fails for good (see Exporter.DiscardIncomplete).
func (h *ExportHandler) discardIncomplete(ctx context.Context, job *jobs.Job, log zerolog.Logger) {
	deleted, err := h.Exporter.DiscardIncomplete(ctx, job)
	switch {
	case err != nil:
		log.Warn().Err(err).Str("key", job.Key).Msg("could not remove the object an earlier attempt left without a manifest")
	case deleted:
		log.Warn().Str("key", job.Key).Msg("removed the object an earlier attempt left without a manifest: the export failed for good")
	}
}

// recordNotice puts n in the outbox (nothing without one: no results queue).
func (h *ExportHandler) recordNotice(ctx context.Context, n *jobs.Notice) error {
	if h.Outbox == nil {
		return nil
	}
	_, err := h.Ledger.RecordNotice(ctx, n)
	return err
}

// announce records n in the outbox and sends it; a notice that could not be recorded is
// logged (the outcome stands; a later delivery of the message announces it again, where one
// comes).
func (h *ExportHandler) announce(ctx context.Context, n *jobs.Notice, log zerolog.Logger) {
	if err := h.Outbox.Record(ctx, n); err != nil {
		log.Error().Err(err).Str("notice_id", n.NoticeID).Msg("recording the result notice failed")
	}
}

// announceFailed announces the permanent failure recorded for the attempt's unit.
func (a *attempt) announceFailed(ctx context.Context, entry ledger.Entry, reason jobs.Reason, err error) {
	if a.failed != nil {
		entry.Failures++
		a.failed(ctx, entry, reason, err)
	}
}

// DeadLettered implements DeadLetterObserver: the ledger remembers it, so that a message
// redriven from the dead-letter queue gets a new budget of failures; and the export's upstream
// is told (a "dead_lettered" notice), whether its export ran or its message was refused.
func (h *ExportHandler) DeadLettered(ctx context.Context, m *Delivery, reason jobs.Reason, cause error) {
	typ := jobs.MessageType([]byte(m.Body))
	if m.ExportID == "" || !jobs.ValidExportID(m.ExportID) || typ == jobs.CancelMessageType {
		return // no export to speak of (a refused cancel message is the operators' business)
	}
	log := h.Log.With().Str("export_id", m.ExportID).Str("reason", string(reason)).Logger()
	if m.Claimed {
		if err := h.Ledger.MarkDeadLettered(ctx, m.ExportID, m.ID); err != nil {
			log.Warn().Err(err).Msg("recording the dead-lettering in the ledger failed")
		}
	}
	if h.Outbox == nil {
		return
	}
	// A message refused before it was claimed ran nothing (attempts 0), whatever another
	// message of the same export id did.
	var e ledger.Entry
	if m.Claimed {
		var err error
		if e, err = h.Ledger.Get(ctx, m.ExportID); err != nil && !errors.Is(err, ledger.ErrNotFound) {
			log.Warn().Err(err).Msg("reading the ledger for the dead-letter notice failed; announcing it without the export's attempts")
		}
	}
	n := jobs.NewNotice(jobs.OutcomeDeadLettered, m.ExportID, e.Attempts, e.Failures, nil).WithError(reason, cause)
	n.Kind, n.Destination = m.Kind, m.Destination
	if typ != jobs.SegmentMessageType {
		msg, _ := jobs.Decode([]byte(m.Body)) // what could be read of it, if it was refused
		if jobs.ValidRequestedBy(msg.RequestedBy) {
			n.RequestedBy = msg.RequestedBy
		}
	}
	if !m.RequestedAt.IsZero() {
		t := m.RequestedAt.UTC()
		n.RequestedAt = &t
	}
	h.announce(ctx, n, log)
}

// renewLease keeps the export's ledger lease alive (and its progress visible) until ctx ends;
// if another attempt took the export over, it cancels this one.
func (h *ExportHandler) renewLease(ctx context.Context, entry ledger.Entry, prog *jobs.Progress, cancel context.CancelCauseFunc, watch func(context.Context) error, log zerolog.Logger) {
	t := time.NewTicker(min(h.Lease/3, 10*time.Second))
	defer t.Stop()
	expires := time.Now().Add(h.Lease)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A MongoDB that never answers must not hold the renewal past the lease.
		rctx, rcancel := context.WithTimeout(ctx, max(time.Until(expires), time.Second))
		err := h.Ledger.Renew(rctx, entry, h.Lease, prog)
		rcancel()
		switch {
		case err == nil:
			expires = time.Now().Add(h.Lease)
			if watch != nil {
				if werr := watch(ctx); werr != nil {
					log.Warn().Err(werr).Msg("canceling this attempt")
					cancel(werr)
					return
				}
			}
		case ctx.Err() != nil:
			return
		case ledger.IsLeaseLost(err) || time.Now().After(expires):
			log.Error().Err(err).Msg("lost the export's ledger lease: canceling this attempt")
			cancel(errLedgerLeaseLost)
			return
		default:
			log.Warn().Err(err).Msg("renewing the export's ledger lease failed; will retry")
		}
	}
}

func (h *ExportHandler) logProgress(ctx context.Context, log zerolog.Logger, prog *jobs.Progress) {
	every := h.ProgressEvery
	if every <= 0 {
		every = 30 * time.Second
	}
	start := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			rows := prog.Rows.Load()
			secs := now.Sub(start).Seconds()
			log.Info().Int64("rows", rows).Float64("rows_per_second", float64(rows)/secs).
				Int64("bytes", prog.BytesCompressed.Load()).Int64("bytes_uncompressed", prog.BytesUncompressed.Load()).
				Int64("elapsed", int64(secs*1000)).Msg("export progress")
		}
	}
}

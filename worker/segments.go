package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/rs/zerolog"

	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

// An export large enough (ExportHandler.Segments) is split by the worker that claims it: it
// plans the segments (jobs.Exporter.PlanSegments: _id bounds, one shared multipart upload),
// records the plan in the export's ledger entry, sends one segment message per segment to
// the jobs queue (Enqueue) and marks the export "segmented". Any worker runs a segment like an
// export (claim, lease, checkpoints, retries, dead-lettering), under the segment's own ledger
// entry. The worker whose segment finds every segment done, and wins the completion claim,
// completes the upload and writes the one manifest and notice. A segment that fails for good
// fails the export, aborts the upload, and its message goes to the dead-letter queue naming
// it; the other segments stop at their next lease renewal.

// errExportEnded cancels a segment whose export failed in another segment.
var errExportEnded = errors.New("worker: the export failed in another segment")

// completionStale is how old a completion claim must be to be taken from its worker (which
// died completing the export): longer than completing an upload and writing a manifest take.
const completionStale = 10 * time.Minute

// split splits the attempt's export into segments when it is large enough, or continues the
// split of an earlier attempt that died after recording the plan. done says it did: the
// attempt ends, the segments run the export.
func (h *ExportHandler) split(ctx context.Context, m *Delivery, a *attempt) (done bool, err error) {
	plan := a.entry.Segments
	if plan == nil {
		if h.Enqueue == nil {
			return false, nil
		}
		if plan, err = h.Exporter.PlanSegments(ctx, a.job, h.Segments); err != nil || plan == nil {
			return false, err
		}
		plan.Message = m.Body
		if err := h.Ledger.SetSegmentPlan(ctx, a.entry, plan); err != nil {
			h.abortUpload(ctx, a.job, plan, a.log)
			return false, err
		}
		h.Metrics.Segments.WithLabelValues("planned").Add(float64(plan.Segments()))
	}
	k := plan.Segments()
	bodies := make([]string, k)
	for i := range k {
		b, err := jobs.SegmentMessage{Version: jobs.CurrentVersion, Type: jobs.SegmentMessageType, ExportID: a.entry.ExportID, Segment: i, Segments: k}.Encode()
		if err != nil {
			return false, err
		}
		bodies[i] = string(b)
	}
	if err := h.Enqueue(ctx, bodies); err != nil {
		return false, fmt.Errorf("worker: send the %d segment messages of export %s: %w", k, a.entry.ExportID, err)
	}
	if err := h.Ledger.MarkSegmented(ctx, a.entry); err != nil {
		// The segments run; the export's message comes back and this is done again (its
		// segment messages are then duplicates, acknowledged as such).
		return true, err
	}
	a.log.Info().Int("segments", k).Int64("rows", plan.Rows).Str("method", plan.Method).Str("upload_id", plan.UploadID).
		Int("parts_per_segment", plan.PartsPerSegment).Msg("export split into segments")
	return true, nil
}

// handleSegment runs a segment message.
func (h *ExportHandler) handleSegment(ctx context.Context, m *Delivery) error {
	sm, err := jobs.DecodeSegment([]byte(m.Body))
	m.ExportID = sm.ExportID
	if err != nil {
		return err
	}
	log := h.Log.With().Str("export_id", sm.ExportID).Int("segment", sm.Segment).Int("segments", sm.Segments).Logger()
	parent, err := h.Ledger.Get(ctx, sm.ExportID)
	if errors.Is(err, ledger.ErrNotFound) {
		return jobs.Permanentf(jobs.ReasonInvalidMessage, "segment %d of export %s: the export is not in the ledger", sm.Segment, sm.ExportID)
	}
	if err != nil {
		return err
	}
	plan := parent.Segments
	if plan == nil || plan.Segments() != sm.Segments {
		return jobs.Permanentf(jobs.ReasonInvalidMessage, "segment %d of %d of export %s: the export has no such segment plan", sm.Segment, sm.Segments, sm.ExportID)
	}
	msg, err := jobs.Decode([]byte(plan.Message))
	if err != nil {
		return err
	}
	job, err := h.Exporter.PrepareMessage(msg, plan.RequestedAt)
	if err != nil {
		return err
	}
	m.Kind, m.Destination = job.Plan.Kind.Name, job.Destination.Name
	log = log.With().Str("kind", m.Kind).Str("destination", m.Destination).Logger()
	if ledger.Ended(parent) {
		m.Outcome = OutcomeDuplicate
		log.Info().Str("message_id", m.ID).Str("export_status", string(parent.Status)).Msg("the segment's export has ended: segment message acknowledged")
		return nil
	}
	segJob := *job
	segJob.Message.ExportID = ledger.SegmentID(sm.ExportID, sm.Segment)
	what := "segment " + strconv.Itoa(sm.Segment) + " of " + strconv.Itoa(sm.Segments) + " of export " + sm.ExportID
	a := &attempt{job: job, ledgerJob: &segJob, log: log, noun: "segment", what: what}
	a.run = func(ctx context.Context, o jobs.RunOptions) (jobs.Result, error) {
		return h.Exporter.RunSegment(ctx, job, plan, sm.Segment, o)
	}
	a.watch = func(ctx context.Context) error {
		if err := h.cancelRequested(ctx, sm.ExportID); err != nil {
			return err
		}
		p, err := h.Ledger.Get(ctx, sm.ExportID)
		if err == nil && ledger.Ended(p) && p.Status == ledger.Failed {
			return fmt.Errorf("%w: %s", errExportEnded, p.Error)
		}
		return nil
	}
	a.succeeded = func(ctx context.Context, res jobs.Result) error {
		h.Metrics.Segments.WithLabelValues("succeeded").Inc()
		log.Info().Int64("duration", res.Finished.Sub(res.Started).Milliseconds()).Int64("rows", res.Stats.Rows).
			Int64("bytes", res.Stats.BytesCompressed).Int("parts", res.Written.Parts).Msg("segment succeeded")
		return h.completeSplit(ctx, m, job, plan, log)
	}
	a.alreadyDone = func(ctx context.Context) error {
		m.Outcome = OutcomeDuplicate
		log.Info().Str("message_id", m.ID).Msg("segment already succeeded: checking its export is completed")
		return h.completeSplit(ctx, m, job, plan, log)
	}
	a.failedForGood = func(ctx context.Context, err error) bool { return !h.failSplit(ctx, job, plan, what, err, log) }
	a.cancel = func(ctx context.Context, _ ledger.Entry, cause error) { h.cancelSplit(ctx, job, plan, cause, log) }
	return h.attempt(ctx, m, a)
}

// completeSplit completes the split export if every segment is done and no other worker is
// completing it.
func (h *ExportHandler) completeSplit(ctx context.Context, m *Delivery, job *jobs.Job, plan *jobs.SegmentPlan, log zerolog.Logger) error {
	id := job.Message.ExportID
	segs, err := h.Ledger.Segments(ctx, id, plan.Segments())
	if err != nil {
		return err
	}
	c := ledger.CountSegments(segs)
	if c.Done < len(segs) {
		log.Debug().Int("done", c.Done).Int("running", c.Running).Int("waiting", c.Waiting).Msg("segments not all done yet")
		return nil
	}
	won, err := h.Ledger.ClaimCompletion(ctx, id, h.WorkerID, completionStale)
	if err != nil {
		return err
	}
	parent, err := h.Ledger.Get(ctx, id)
	if err != nil {
		return err
	}
	if ledger.Ended(parent) {
		return nil // completed (or failed) already
	}
	if !won {
		// Another worker completes it. Should it die doing so, this message comes back to
		// take over once its claim is stale: until the export has ended, the last segment's
		// message is not let go.
		return &HopError{Reason: "export being completed by another worker", Delay: time.Minute}
	}
	done := make([]jobs.SegmentDone, len(segs))
	for i, s := range segs {
		if s.SegmentDone == nil {
			return fmt.Errorf("worker: export %s: segment %d succeeded without recording what it stored", id, i)
		}
		done[i] = *s.SegmentDone
	}
	fence := func(ctx context.Context) error { return h.Ledger.CancelErr(ctx, id) }
	res, err := h.Exporter.CompleteSegments(ctx, job, plan, done, fence)
	if err != nil {
		// A worker that completed it and died before recording it left the manifest (a
		// cancel since then changes nothing: the export is complete).
		if man, ferr := h.Exporter.FindManifest(ctx, job); ferr == nil && man != nil && len(man.Segments) == len(segs) {
			res.Manifest = man
			res.Stats = jobs.Stats{Rows: man.Rows, BytesUncompressed: man.BytesUncompressed, BytesCompressed: man.BytesCompressed}
			err = nil
		}
	}
	if err != nil {
		if cancelled := (*ledger.CancelRequest)(nil); errors.As(err, &cancelled) && h.cancelSplit(ctx, job, plan, cancelled, log) {
			h.Metrics.Cancels.WithLabelValues("carried_out").Inc()
			log.Warn().Str("cancel", cancelled.Error()).Msg("export cancelled before its segments were completed into its object: upload aborted, nothing written")
			m.Outcome = OutcomeCancelled
			err = nil
		}
		if rerr := h.Ledger.ReleaseCompletion(context.WithoutCancel(ctx), id, h.WorkerID); rerr != nil {
			log.Warn().Err(rerr).Msg("giving up the completion claim failed; it is taken over when stale")
		}
		return err
	}
	notice := jobs.NewNotice(jobs.OutcomeSucceeded, id, parent.Attempts, parent.Failures, res.Manifest)
	if err := h.recordNotice(ctx, notice); err != nil {
		return fmt.Errorf("worker: export %s is complete, but recording its notice failed: %w", id, err)
	}
	if err := h.Ledger.EndSegmented(ctx, id, ledger.Succeeded, res, nil, ""); err != nil && !ledger.IsNotSegmented(err) {
		return fmt.Errorf("worker: export %s is complete, but recording it failed: %w", id, err)
	}
	h.Metrics.Segments.WithLabelValues("completed").Inc()
	log.Info().Int64("rows", res.Stats.Rows).Int64("bytes", res.Stats.BytesCompressed).Int64("bytes_uncompressed", res.Stats.BytesUncompressed).
		Int("segments", len(segs)).Int("parts", res.Written.Parts).Str("bucket", job.Destination.Bucket).Str("key", job.Key).
		Int64("duration", time.Since(plan.PlannedAt).Milliseconds()).Msg("export succeeded")
	h.Outbox.SendNow(ctx, notice.NoticeID)
	return nil
}

// failSplit fails the split export for good because one of its segments did, and aborts its
// upload; its other segments stop at their next lease renewal. It says whether this segment
// failed the export (false: the export had ended already).
func (h *ExportHandler) failSplit(ctx context.Context, job *jobs.Job, plan *jobs.SegmentPlan, what string, cause error, log zerolog.Logger) bool {
	reason, _ := jobs.IsPermanent(cause)
	if reason == "" {
		reason = jobs.ReasonMaxAttempts
	}
	err := jobs.Permanent(reason, fmt.Errorf("%s failed for good: %w", what, cause))
	if lerr := h.Ledger.EndSegmented(ctx, job.Message.ExportID, ledger.Failed, jobs.Result{}, err, reason); lerr != nil {
		if !ledger.IsNotSegmented(lerr) {
			log.Error().Err(lerr).Msg("recording the export's failure failed")
			return true // the message goes to the dead-letter queue, and says why
		}
		return false
	}
	h.Metrics.Segments.WithLabelValues("failed").Inc()
	h.abortUpload(ctx, job, plan, log)
	h.announceExport(ctx, job, jobs.OutcomeFailed, reason, log)
	log.Error().Err(err).Str("reason", string(reason)).Str("upload_id", plan.UploadID).Msg("export failed: a segment failed for good; its upload is aborted and its other segments stop")
	return true
}

// cancelSplit carries out the cancel of a split export, unless its manifest was written (it is
// complete: its completer, or the next one, records it succeeded): its upload is aborted, an
// object completed without its manifest deleted, and it is recorded cancelled and announced (by
// whichever of its segments gets here first; again by the others, which changes nothing). It
// says whether the export is cancelled.
func (h *ExportHandler) cancelSplit(ctx context.Context, job *jobs.Job, plan *jobs.SegmentPlan, cause error, log zerolog.Logger) bool {
	man, err := h.Exporter.FindManifest(ctx, job)
	switch {
	case err != nil:
		log.Error().Err(err).Msg("before cancelling the split export, looking for its manifest failed; its next segment message tries again")
		return false
	case man != nil:
		log.Warn().Str("key", man.Key).Msg("the split export was completed before its cancel was seen: it stays succeeded")
		return false
	}
	h.abortUpload(ctx, job, plan, log)
	h.discardIncomplete(ctx, job, log)
	if err := h.Ledger.EndSegmented(ctx, job.Message.ExportID, ledger.Cancelled, jobs.Result{}, cause, jobs.ReasonCancelled); err != nil && !ledger.IsNotSegmented(err) {
		log.Error().Err(err).Msg("recording the export's cancel failed; its next segment message records it")
		return false
	}
	h.announceExport(ctx, job, jobs.OutcomeCancelled, jobs.ReasonCancelled, log)
	return true
}

// announceExport announces the outcome of a split export, if its entry says it ended so.
func (h *ExportHandler) announceExport(ctx context.Context, job *jobs.Job, outcome jobs.Outcome, reason jobs.Reason, log zerolog.Logger) {
	parent, err := h.Ledger.Get(ctx, job.Message.ExportID)
	if err != nil {
		log.Error().Err(err).Str("outcome", string(outcome)).Msg("reading the export for its result notice failed")
		return
	}
	if string(parent.Status) != string(outcome) {
		return // it ended otherwise (succeeded before the cancel, or failed before)
	}
	h.announce(ctx, jobs.NewNotice(outcome, parent.ExportID, parent.Attempts, parent.Failures, nil).WithJob(job).WithError(reason, errors.New(parent.Error)), log)
}

// abortUpload aborts the split export's upload.
func (h *ExportHandler) abortUpload(ctx context.Context, job *jobs.Job, plan *jobs.SegmentPlan, log zerolog.Logger) {
	ps, ok := job.Destination.Sink.(jobs.PartSink)
	if !ok {
		return
	}
	if err := ps.AbortUpload(ctx, job.Key, plan.UploadID); err != nil {
		log.Warn().Err(err).Str("upload_id", plan.UploadID).Msg("aborting the export's upload failed; the bucket's lifecycle rule removes it")
	}
}

// Enqueue sends bodies to the worker's own jobs queue, ten at a time.
func (w *Worker) Enqueue(ctx context.Context, bodies []string) error {
	for start := 0; start < len(bodies); start += 10 {
		batch := bodies[start:min(start+10, len(bodies))]
		in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(w.cfg.QueueURL)}
		for i, b := range batch {
			in.Entries = append(in.Entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(start + i)), MessageBody: aws.String(b)})
		}
		cctx, cancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
		out, err := w.sqs.SendMessageBatch(cctx, in)
		cancel()
		w.metrics.sqs("send_batch", err)
		if err != nil {
			return fmt.Errorf("worker: send %d messages: %w", len(batch), err)
		}
		if len(out.Failed) > 0 {
			f := out.Failed[0]
			return fmt.Errorf("worker: send %d messages: %d refused, the first: %s %s", len(batch), len(out.Failed), aws.ToString(f.Code), aws.ToString(f.Message))
		}
	}
	return nil
}

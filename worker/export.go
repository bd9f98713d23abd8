package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/verifiedfan/export-service/jobs"
)

// ExportHandler runs export job messages with an Exporter, under a lease in the export ledger
// so that each export runs once however many times its message is delivered.
type ExportHandler struct {
	Exporter *jobs.Exporter
	Ledger   *jobs.Ledger
	Metrics  *Metrics
	Log      zerolog.Logger
	// WorkerID identifies this process in the ledger.
	WorkerID string
	// Lease is the ledger lease of a running export, renewed every third of it. Use the
	// worker's visibility timeout: a dead worker's message then comes back no earlier than its
	// ledger lease expires.
	Lease time.Duration
	// ProgressEvery is the interval of progress log lines of a running job; 0 means 30s.
	ProgressEvery time.Duration
}

var _ Handler = (*ExportHandler)(nil)

// errLedgerLeaseLost cancels an export whose ledger lease was taken over.
var errLedgerLeaseLost = errors.New("worker: ledger lease lost")

// Handle implements Handler.
func (h *ExportHandler) Handle(ctx context.Context, m *Message) error {
	msg, err := jobs.Decode([]byte(m.Body))
	m.ExportID = msg.ExportID
	if err != nil {
		return err
	}
	job, err := h.Exporter.PrepareMessage(msg)
	if err != nil {
		return err
	}
	// The key may use the request's date: set it before the key is recorded in the ledger.
	job.RequestedAt = m.RequestedAt
	if job.Key, err = job.ObjectKey(); err != nil {
		return err
	}
	// Only known (bounded) kinds and destinations become metric labels.
	m.Kind, m.Destination = job.Plan.Kind.Name, job.Destination.Name
	log := h.Log.With().Str("export_id", m.ExportID).Str("kind", m.Kind).Str("destination", m.Destination).Logger()

	claim, entry, err := h.Ledger.Claim(ctx, job, h.WorkerID, m.ID, h.Lease)
	if err != nil {
		return err // MongoDB unreachable or the like: retryable
	}
	log.Debug().Str("message_id", m.ID).Int("claim", int(claim)).Str("status", entry.Status).Int("attempts", entry.Attempts).Msg("ledger claim")
	switch claim {
	case jobs.AlreadyDone:
		m.Outcome = OutcomeDuplicate
		log.Info().Str("message_id", m.ID).Str("key", entry.Key).Msg("export already succeeded: duplicate message acknowledged")
		return nil
	case jobs.Busy:
		if entry.MessageID != m.ID {
			// Another delivery runs it and holds its own message, which comes back if that
			// attempt dies: this one is a duplicate.
			m.Outcome = OutcomeDuplicate
			log.Info().Str("message_id", m.ID).Str("running_on", entry.WorkerID).Msg("export is running elsewhere: duplicate message acknowledged")
			return nil
		}
		// This message carries the running attempt (a handover copy, or the message of an
		// attempt whose worker died and whose lease has not expired yet): keep it alive.
		return &HopError{Reason: "export running on " + entry.WorkerID, Delay: time.Until(entry.LeaseExpires) + time.Second, OnSent: func(ctx context.Context, newID string) error {
			_, err := h.Ledger.HandOver(ctx, m.ExportID, m.ID, newID)
			return err
		}}
	}

	m.SetOnHandOver(func(ctx context.Context, newID string) error { return h.Ledger.SetMessage(ctx, entry, newID) })
	log.Info().Str("message_id", m.ID).Int("receive_count", m.ReceiveCount).Int("attempt", entry.Attempts).
		Str("format", string(msg.Format)).Msg("export started")

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	prog := new(jobs.Progress)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); h.renewLease(ctx, entry, prog, cancel, log) }()
	go func() { defer wg.Done(); h.logProgress(ctx, log, prog) }()
	res, err := h.Exporter.Run(ctx, job, prog)
	cause := context.Cause(ctx)
	cancel(nil)
	wg.Wait()

	h.Metrics.Rows.WithLabelValues(m.Kind).Add(float64(res.Stats.Rows))
	h.Metrics.BytesUncompressed.WithLabelValues(m.Kind).Add(float64(res.Stats.BytesUncompressed))
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer lcancel()
	finish := func(status, reason string, cause error) {
		if ferr := h.Ledger.Finish(lctx, entry, status, res, cause, reason); ferr != nil {
			log.Error().Err(ferr).Str("status", status).Msg("recording the export's outcome in the ledger failed")
		}
	}
	duration := res.Finished.Sub(res.Started).Milliseconds()
	switch {
	case err == nil:
		finish(jobs.StatusSucceeded, "", nil)
		h.Metrics.BytesWritten.WithLabelValues(m.Destination).Add(float64(res.Stats.BytesCompressed))
		log.Info().Int64("duration", duration).Int64("rows", res.Stats.Rows).
			Int64("bytes", res.Stats.BytesCompressed).Int64("bytes_uncompressed", res.Stats.BytesUncompressed).
			Str("bucket", res.Bucket).Str("key", res.Key).Str("sha256", res.Stats.SHA256).
			Int("aborted_uploads", res.AbortedUploads).Msg("export succeeded")
		return nil
	case errors.Is(cause, errLedgerLeaseLost):
		// Not ours any more: the new owner records the outcome.
		return err
	case errors.Is(cause, errDrainTimeout):
		finish(jobs.StatusReleased, "shutdown", errors.New("canceled by shutdown after the drain deadline; message released"))
	default:
		reason, permanent := jobs.IsPermanent(err)
		if !permanent {
			reason = "retryable"
		}
		finish(jobs.StatusFailed, reason, err)
	}
	log.Warn().Err(err).Int64("duration", duration).Int64("rows", res.Stats.Rows).Msg("export failed")
	return err
}

// renewLease keeps the export's ledger lease alive (and its progress visible) until ctx ends;
// if another attempt took the export over, it cancels this one.
func (h *ExportHandler) renewLease(ctx context.Context, entry jobs.LedgerEntry, prog *jobs.Progress, cancel context.CancelCauseFunc, log zerolog.Logger) {
	t := time.NewTicker(min(h.Lease/3, 10*time.Second))
	defer t.Stop()
	expires := time.Now().Add(h.Lease)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := h.Ledger.Renew(ctx, entry, h.Lease, prog)
		switch {
		case err == nil:
			expires = time.Now().Add(h.Lease)
		case ctx.Err() != nil:
			return
		case jobs.IsLeaseLost(err) || time.Now().After(expires):
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

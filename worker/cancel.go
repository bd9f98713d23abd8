package worker

import (
	"context"

	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

// A cancel message records the export's cancel request in the ledger (ledger.RequestCancel)
// and is acknowledged. Whoever handles the export next carries the cancel out: the running
// attempt at its next lease renewal (or at its fence before a commit), the claim of a queued
// or waiting message, every segment of a split export. The cancelled unit aborts its uploads,
// deletes an object left without its manifest, records "cancelled" and announces it.

// handleCancel runs a cancel message.
func (h *ExportHandler) handleCancel(ctx context.Context, m *Delivery) error {
	cm, err := jobs.DecodeCancel([]byte(m.Body))
	m.ExportID = cm.ExportID
	if err != nil {
		return err
	}
	e, recorded, err := h.Ledger.RequestCancel(ctx, cm.ExportID, cm.RequestedBy, cm.Reason)
	if err != nil {
		return err
	}
	m.Outcome = OutcomeControl // not an export's success: export_last_success_timestamp_seconds stays
	log := h.Log.With().Str("export_id", cm.ExportID).Str("message_id", m.ID).Str("requested_by", cm.RequestedBy).Str("status", string(e.Status)).Logger()
	switch {
	case e.Status == ledger.Succeeded:
		h.Metrics.Cancels.WithLabelValues("refused").Inc()
		log.Warn().Str("key", e.Key).Msg("cancel refused: the export succeeded already")
	case !recorded:
		h.Metrics.Cancels.WithLabelValues("repeated").Inc()
		log.Info().Msg("cancel requested before: nothing more to do")
	default:
		h.Metrics.Cancels.WithLabelValues("requested").Inc()
		log.Info().Str("reason", cm.Reason).Msg("cancel requested: the export stops at its next lease renewal if running, and will not run otherwise")
	}
	return nil
}

// cancelRequested returns the export's cancel request as an error (a *ledger.CancelRequest),
// nil if there is none or it could not be read (the next renewal reads it again; the fence
// reads it before any commit).
func (h *ExportHandler) cancelRequested(ctx context.Context, exportID string) error {
	c, err := h.Ledger.CancelRequested(ctx, exportID)
	if err != nil {
		h.Log.Warn().Err(err).Str("export_id", exportID).Msg("reading the export's cancel request failed; reading it again at the next renewal")
		return nil
	}
	if c != nil {
		return c
	}
	return nil
}

package worker

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/verifiedfan/export-service/jobs"
)

// ExportHandler runs export job messages with an Exporter.
type ExportHandler struct {
	Exporter *jobs.Exporter
	Metrics  *Metrics
	Log      zerolog.Logger
	// ProgressEvery is the interval of progress log lines of a running job; 0 means 30s.
	ProgressEvery time.Duration
}

var _ Handler = (*ExportHandler)(nil)

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
	// Only known (bounded) kinds and destinations become metric labels.
	m.Kind, m.Destination = job.Plan.Kind.Name, job.Destination.Name
	log := h.Log.With().Str("export_id", m.ExportID).Str("kind", m.Kind).Str("destination", m.Destination).Logger()
	log.Info().Str("message_id", m.ID).Int("receive_count", m.ReceiveCount).Str("format", string(msg.Format)).Msg("export started")

	prog := new(jobs.Progress)
	stop := h.logProgress(log, prog)
	res, err := h.Exporter.Run(ctx, job, prog)
	stop()
	h.Metrics.Rows.WithLabelValues(m.Kind).Add(float64(res.Stats.Rows))
	h.Metrics.BytesUncompressed.WithLabelValues(m.Kind).Add(float64(res.Stats.BytesUncompressed))
	if err != nil {
		return err
	}
	h.Metrics.BytesWritten.WithLabelValues(m.Destination).Add(float64(res.Stats.BytesCompressed))
	log.Info().
		Int64("duration", res.Finished.Sub(res.Started).Milliseconds()).
		Int64("rows", res.Stats.Rows).
		Int64("bytes", res.Stats.BytesCompressed).
		Int64("bytes_uncompressed", res.Stats.BytesUncompressed).
		Str("bucket", res.Bucket).Str("key", res.Key).
		Msg("export succeeded")
	return nil
}

func (h *ExportHandler) logProgress(log zerolog.Logger, prog *jobs.Progress) (stop func()) {
	every := h.ProgressEvery
	if every <= 0 {
		every = 30 * time.Second
	}
	done := make(chan struct{})
	go func() {
		start := time.Now()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				rows := prog.Rows.Load()
				secs := now.Sub(start).Seconds()
				log.Info().Int64("rows", rows).Float64("rows_per_second", float64(rows)/secs).
					Int64("bytes", prog.BytesCompressed.Load()).Int64("bytes_uncompressed", prog.BytesUncompressed.Load()).
					Int64("elapsed", int64(secs*1000)).Msg("export progress")
			}
		}
	}()
	return func() { close(done) }
}

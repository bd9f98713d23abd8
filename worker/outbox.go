package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/ledger"
)

// Outbox sends the completion notices kept in the export ledger. A succeeded export's notice
// is written into its ledger entry together with its success; the outbox sends it at once and,
// if that fails, again later with a growing backoff, on whichever worker finds it due. A notice
// that cannot be sent never fails or re-runs its export. Delivery is at least once: a worker
// that dies between sending and recording the send sends it again.
type Outbox struct {
	Ledger   *ledger.Ledger
	Notifier jobs.Notifier
	Metrics  *Metrics
	Log      zerolog.Logger
	// Every is the interval of the scan for due notices. Default 30s.
	Every time.Duration
	// RetryBase and RetryMax bound the backoff of a notice that failed: RetryBase * 2^(n-1),
	// at most RetryMax. Defaults 30s and 15m.
	RetryBase, RetryMax time.Duration
	// CallTimeout bounds each send and ledger write. Default 20s.
	CallTimeout time.Duration
}

func (o *Outbox) defaults() (every, base, most, call time.Duration) {
	every, base, most, call = o.Every, o.RetryBase, o.RetryMax, o.CallTimeout
	if every <= 0 {
		every = 30 * time.Second
	}
	if base <= 0 {
		base = 30 * time.Second
	}
	if most <= 0 {
		most = 15 * time.Minute
	}
	if call <= 0 {
		call = 20 * time.Second
	}
	return every, base, max(most, base), call
}

// Run sends due notices every Every until ctx is done.
func (o *Outbox) Run(ctx context.Context) {
	if o == nil {
		return
	}
	every, _, _, _ := o.defaults()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		o.sendDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SendNow sends the notice of exportID if it is pending (right after its export succeeded).
// Failures are left to Run.
func (o *Outbox) SendNow(ctx context.Context, exportID string) {
	if o == nil {
		return
	}
	_, _, _, call := o.defaults()
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), call)
	defer cancel()
	e, err := o.Ledger.Get(gctx, exportID)
	if err != nil {
		o.Log.Warn().Err(err).Str("export_id", exportID).Msg("reading the completion notice failed; the outbox will send it")
		return
	}
	if e.Notice != nil && e.Notice.Pending {
		o.send(ctx, e)
	}
}

func (o *Outbox) sendDue(ctx context.Context) {
	_, _, _, call := o.defaults()
	fctx, cancel := context.WithTimeout(ctx, call)
	due, err := o.Ledger.PendingNotices(fctx, time.Now().UTC(), 100)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			o.Log.Warn().Err(err).Msg("finding pending completion notices failed")
		}
		return
	}
	o.Metrics.NoticesPending.Set(float64(len(due)))
	for _, e := range due {
		if ctx.Err() != nil {
			return
		}
		o.send(ctx, e)
	}
}

func (o *Outbox) send(ctx context.Context, e ledger.Entry) {
	_, base, most, call := o.defaults()
	log := o.Log.With().Str("export_id", e.ExportID).Int("notice_attempts", e.Notice.Attempts+1).Logger()
	var m jobs.Manifest
	err := json.Unmarshal([]byte(e.Notice.Body), &m)
	if err != nil {
		err = fmt.Errorf("worker: decode the stored notice of export %s: %w", e.ExportID, err)
	} else {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), call)
		err = o.Notifier.Notify(sctx, &m)
		cancel()
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), call)
	defer cancel()
	if err == nil {
		o.Metrics.Notices.WithLabelValues("sent").Inc()
		if lerr := o.Ledger.NoticeSent(lctx, e.ExportID); lerr != nil {
			log.Warn().Err(lerr).Msg("completion notice sent, but recording it failed; it may be sent again")
		}
		return
	}
	o.Metrics.Notices.WithLabelValues("error").Inc()
	delay := base
	for i := 0; i < e.Notice.Attempts && delay < most; i++ {
		delay *= 2
	}
	delay = min(delay, most)
	if lerr := o.Ledger.NoticeFailed(lctx, e.ExportID, err, time.Now().Add(delay)); lerr != nil {
		log.Warn().Err(lerr).Msg("recording the failed completion notice failed")
	}
	log.Warn().Err(err).Dur("retry_in", delay).Msg("sending the completion notice failed; the export stays complete, the notice will be retried")
}

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

// Outbox sends the result notices kept in the export ledger (ledger.NoticesCollection). An
// export's notice is recorded with its outcome; the outbox sends it at once and, if that fails,
// again later with a growing backoff, on whichever worker finds it due. A notice that cannot be
// sent never changes or re-runs its export. Delivery is at least once: a worker that dies
// between sending and recording the send sends it again (the notice id tells the copies apart).
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
	every, _, _, call := o.defaults()
	t := time.NewTicker(every)
	defer t.Stop()
	for scan := 0; ; scan++ {
		if scan%10 == 0 {
			// Notices an earlier version left in its entries (see MigrateLegacyNotices): at
			// start, and every tenth scan while a rolling deploy may still run such workers.
			mctx, cancel := context.WithTimeout(ctx, call)
			if n, err := o.Ledger.MigrateLegacyNotices(mctx); err != nil && ctx.Err() == nil {
				o.Log.Warn().Err(err).Msg("moving earlier completion notices into the outbox failed; trying again later")
			} else if n > 0 {
				o.Log.Info().Int("notices", n).Msg("moved earlier completion notices into the outbox")
			}
			cancel()
		}
		o.sendDue(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Record puts the notice in the outbox and sends it at once, unless it was recorded before
// (by another worker, which sends it: one send where one will do); a failed send is left to
// Run. It returns an error only when the notice could not be recorded.
func (o *Outbox) Record(ctx context.Context, n *jobs.Notice) error {
	if o == nil {
		return nil
	}
	_, _, _, call := o.defaults()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), call)
	defer cancel()
	recorded, err := o.Ledger.RecordNotice(rctx, n)
	if err != nil {
		return err
	}
	if recorded {
		o.SendNow(ctx, n.NoticeID)
	}
	return nil
}

// SendNow sends the notice if it is pending (right after its outcome was recorded). Failures
// are left to Run.
func (o *Outbox) SendNow(ctx context.Context, noticeID string) {
	if o == nil {
		return
	}
	_, _, _, call := o.defaults()
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), call)
	defer cancel()
	n, err := o.Ledger.PendingNotice(gctx, noticeID)
	if err != nil {
		o.Log.Warn().Err(err).Str("notice_id", noticeID).Msg("reading the result notice failed; the outbox will send it")
		return
	}
	if n != nil {
		o.send(ctx, *n)
	}
}

func (o *Outbox) sendDue(ctx context.Context) {
	_, _, _, call := o.defaults()
	fctx, cancel := context.WithTimeout(ctx, call)
	due, err := o.Ledger.PendingNotices(fctx, time.Now().UTC(), 100)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			o.Log.Warn().Err(err).Msg("finding pending result notices failed")
		}
		return
	}
	o.Metrics.NoticesPending.Set(float64(len(due)))
	for _, n := range due {
		if ctx.Err() != nil {
			return
		}
		o.send(ctx, n)
	}
}

func (o *Outbox) send(ctx context.Context, n ledger.Notice) {
	_, base, most, call := o.defaults()
	log := o.Log.With().Str("export_id", n.ExportID).Str("notice_id", n.NoticeID).Str("outcome", string(n.Outcome)).Int("notice_attempts", n.Attempts+1).Logger()
	var notice jobs.Notice
	err := json.Unmarshal([]byte(n.Body), &notice)
	if err != nil {
		err = fmt.Errorf("worker: decode the stored notice %s: %w", n.NoticeID, err)
	} else {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), call)
		err = o.Notifier.Notify(sctx, &notice)
		cancel()
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), call)
	defer cancel()
	if err == nil {
		o.Metrics.Notices.WithLabelValues("sent").Inc()
		if lerr := o.Ledger.NoticeSent(lctx, n.NoticeID); lerr != nil {
			log.Warn().Err(lerr).Msg("result notice sent, but recording it failed; it may be sent again")
		}
		return
	}
	o.Metrics.Notices.WithLabelValues("error").Inc()
	delay := base
	for i := 0; i < n.Attempts && delay < most; i++ {
		delay *= 2
	}
	delay = min(delay, most)
	if lerr := o.Ledger.NoticeFailed(lctx, n.NoticeID, err, time.Now().Add(delay)); lerr != nil {
		log.Warn().Err(lerr).Msg("recording the failed result notice failed")
	}
	log.Warn().Err(err).Dur("retry_in", delay).Msg("sending the result notice failed; the export's outcome stands, the notice will be retried")
}

package worker

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/verifiedfan/export-service/internal/buildinfo"
)

// HeartbeatStatus is the body of GET /heartbeat.
type HeartbeatStatus struct {
	Status        string     `json:"status"`
	Version       string     `json:"version"`
	UptimeSeconds int64      `json:"uptime_seconds"`
	JobsInFlight  int64      `json:"jobs_in_flight"`
	Concurrency   int        `json:"concurrency"`
	LastReceive   *time.Time `json:"last_receive"`
	Draining      bool       `json:"draining"`
	// Reason says why the status is not "ok".
	Reason string `json:"reason,omitempty"`
}

// Heartbeat reports the worker's health from its own state, never by calling a dependency.
//
// It is unhealthy only when replacing the instance can help: while draining (the instance is
// going away) and when the receive loop has made no progress for stallAfter although it has a
// free slot (it is stuck). A failing dependency (SQS, MongoDB, S3 unreachable) does not fail it:
// every instance would fail alike, and the ASG replacing them all would only add a storm to the
// outage. Those failures show in the metrics and logs instead.
func (w *Worker) Heartbeat(stallAfter time.Duration) (HeartbeatStatus, bool) {
	now := time.Now()
	st := HeartbeatStatus{
		Status:        "ok",
		Version:       buildinfo.String(),
		UptimeSeconds: int64(now.Sub(w.started).Seconds()),
		JobsInFlight:  w.inFlight.Load(),
		Concurrency:   w.cfg.Concurrency,
		Draining:      w.draining.Load(),
	}
	if ns := w.lastReceive.Load(); ns != 0 {
		t := time.Unix(0, ns).UTC()
		st.LastReceive = &t
	}
	switch {
	case st.Draining:
		st.Status, st.Reason = "draining", "shutting down: not receiving new jobs"
	case stallAfter > 0 && st.JobsInFlight < int64(w.cfg.Concurrency) && now.Sub(time.Unix(0, w.lastProgress.Load())) > stallAfter:
		st.Status, st.Reason = "stalled", "receive loop made no progress for "+stallAfter.String()
	}
	return st, st.Status == "ok"
}

// NewHTTPHandler serves GET /heartbeat and GET /metrics (from gatherer), instrumented with the
// HTTP metrics.
func NewHTTPHandler(w *Worker, m *Metrics, gatherer prometheus.Gatherer, stallAfter time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /heartbeat", instrument(m, "heartbeat", http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		st, ok := w.Heartbeat(stallAfter)
		rw.Header().Set("Content-Type", "application/json")
		rw.Header().Set("Cache-Control", "no-store")
		if !ok {
			rw.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(rw).Encode(st)
	})))
	mux.Handle("GET /metrics", instrument(m, "metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})))
	mux.Handle("/", instrument(m, "other", http.NotFoundHandler()))
	return mux
}

func instrument(m *Metrics, name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: rw, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		code := strconv.Itoa(sw.code)
		m.HTTPRequests.WithLabelValues(name, code).Inc()
		m.HTTPDuration.WithLabelValues(name, code).Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

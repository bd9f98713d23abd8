package worker

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/verifiedfan/export-service/internal/buildinfo"
)

// Outcomes of a job, the values of the "outcome" label.
const (
	OutcomeSucceeded       = "succeeded"
	OutcomeFailedPermanent = "failed_permanent"
	OutcomeFailedRetryable = "failed_retryable"
	OutcomeDuplicate       = "duplicate"
	OutcomeReleased        = "released"
	// OutcomeDeferred: the message carried an export running elsewhere and was re-sent delayed.
	OutcomeDeferred = "deferred"
	// OutcomeCancelled: the export was cancelled; its message was acknowledged.
	OutcomeCancelled = "cancelled"
	// OutcomeControl: a control message (a cancel request) was handled; no export ran.
	OutcomeControl = "control"
)

// Metrics are the service's Prometheus collectors. Label values are bounded: kinds and
// destinations come from the registry and configuration (unknown ones are reported as "unknown"),
// outcomes, operations and reasons from constants.
type Metrics struct {
	Jobs              *prometheus.CounterVec
	JobDuration       *prometheus.HistogramVec
	Rows              *prometheus.CounterVec
	BytesUncompressed *prometheus.CounterVec
	BytesWritten      *prometheus.CounterVec
	InFlight          prometheus.Gauge
	SQSRequests       *prometheus.CounterVec
	AssumeRole        *prometheus.CounterVec
	DLQMessages       *prometheus.CounterVec
	QueueMessages     *prometheus.GaugeVec
	MessageAge        prometheus.Histogram
	LastSuccess       prometheus.Gauge
	LastProgress      prometheus.Gauge
	HTTPRequests      *prometheus.CounterVec
	HTTPDuration      *prometheus.HistogramVec
	Notices           *prometheus.CounterVec
	NoticesPending    prometheus.Gauge
	Resumes           *prometheus.CounterVec
	RowsResumed       prometheus.Counter
	RowsReread        prometheus.Counter
	Segments          *prometheus.CounterVec
	Cancels           *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them, with the Go and process collectors and
// build info, on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_jobs_total", Help: "Export jobs finished, by kind, destination and outcome.",
		}, []string{"kind", "destination", "outcome"}),
		JobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "export_job_duration_seconds", Help: "Time from a job's start to its outcome.",
			Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200},
		}, []string{"kind", "outcome"}),
		Rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_rows_total", Help: "Rows read and encoded by export attempts, by kind (a resumed attempt counts only the rows it read).",
		}, []string{"kind"}),
		BytesUncompressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_bytes_uncompressed_total", Help: "Encoded bytes before compression, by kind.",
		}, []string{"kind"}),
		BytesWritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_bytes_written_total", Help: "Compressed bytes written to sinks, by destination.",
		}, []string{"destination"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "export_jobs_in_flight", Help: "Jobs running now.",
		}),
		SQSRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_sqs_requests_total", Help: "SQS calls by operation and result (ok or error).",
		}, []string{"op", "result"}),
		AssumeRole: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_assume_role_total", Help: "STS AssumeRole calls by destination and result (ok or error).",
		}, []string{"destination", "result"}),
		DLQMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_dlq_messages_total", Help: "Messages this worker sent to the dead-letter queue, by reason.",
		}, []string{"reason"}),
		QueueMessages: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "export_queue_messages", Help: "Approximate messages in a queue (jobs or dlq) by state (visible, in_flight, delayed), polled with GetQueueAttributes.",
		}, []string{"queue", "state"}),
		MessageAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "export_message_age_seconds", Help: "Time a message waited in the queue before this worker received it.",
			Buckets: []float64{0.1, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 43200},
		}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "export_last_success_timestamp_seconds", Help: "Unix time of the last successful export.",
		}),
		LastProgress: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "export_receive_loop_last_progress_timestamp_seconds", Help: "Unix time the receive loop last completed a receive call (with or without messages).",
		}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_http_requests_total", Help: "Requests to the side HTTP server by handler and status code.",
		}, []string{"handler", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "export_http_request_duration_seconds", Help: "Duration of requests to the side HTTP server.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 3},
		}, []string{"handler", "code"}),
		Notices: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_notices_total", Help: "Result notices (succeeded, failed, dead_lettered, cancelled) sent from the ledger's outbox, by result (sent or error).",
		}, []string{"result"}),
		NoticesPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "export_notices_pending", Help: "Result notices due and not yet sent, as of this worker's last outbox scan.",
		}),
		Resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_resumes_total", Help: "Attempts that found a checkpoint, by why the attempt before stopped (crash, release, retry) and result (continued, or restarted when its upload was gone).",
		}, []string{"cause", "result"}),
		RowsResumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "export_rows_resumed_total", Help: "Rows resumed attempts did not read again: their checkpoint's.",
		}),
		RowsReread: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "export_rows_reread_total", Help: "Rows an attempt read again: what the attempt before it had read past its last checkpoint (or past the start).",
		}),
		Segments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_segments_total", Help: "Segments of exports split over the fleet, by event: planned (by the worker that split the export), succeeded, failed (for good: the export fails), stopped (its export failed in another segment), completed (exports this worker completed from their segments).",
		}, []string{"event"}),
		Cancels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "export_cancels_total", Help: "Cancels by event: requested (a cancel message recorded), refused (the export had succeeded already), repeated (asked before), carried_out (an export or segment stopped or acknowledged unrun because it was cancelled).",
		}, []string{"event"}),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "export_build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": buildinfo.String(), "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	reg.MustRegister(
		m.Jobs, m.JobDuration, m.Rows, m.BytesUncompressed, m.BytesWritten, m.InFlight,
		m.SQSRequests, m.AssumeRole, m.DLQMessages, m.QueueMessages, m.MessageAge,
		m.LastSuccess, m.LastProgress, m.HTTPRequests, m.HTTPDuration, m.Notices, m.NoticesPending,
		m.Resumes, m.RowsResumed, m.RowsReread, m.Segments, m.Cancels, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *Metrics) sqs(op string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.SQSRequests.WithLabelValues(op, result).Inc()
}

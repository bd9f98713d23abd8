package infracheck

import (
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/verifiedfan/export-service/worker"
)

// recordingRegisterer registers on a real registry and remembers every collector, so that the
// names of vectors that have no series yet (which Gather does not show) are known too.
type recordingRegisterer struct {
	reg        *prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.reg.Register(c)
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recordingRegisterer) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

// registeredMetrics returns every metric worker.NewMetrics registers on a fresh registry (the
// service's own registry: its metrics, the Go and process collectors, build info), with its
// type: counter, gauge, histogram, summary or untyped.
func registeredMetrics(t *testing.T) map[string]string {
	t.Helper()
	rec := &recordingRegisterer{reg: prometheus.NewRegistry()}
	worker.NewMetrics(rec)
	out := map[string]string{}
	mfs, err := rec.reg.Gather()
	if err != nil {
		t.Fatalf("gather a fresh registry: %v", err)
	}
	for _, mf := range mfs {
		out[mf.GetName()] = strings.ToLower(mf.GetType().String())
	}
	for _, c := range rec.collectors {
		typ := ""
		// Gauge before Counter: a Gauge has a Counter's methods too.
		switch c.(type) {
		case prometheus.Gauge, *prometheus.GaugeVec:
			typ = "gauge"
		case prometheus.Counter, *prometheus.CounterVec:
			typ = "counter"
		case prometheus.Histogram, *prometheus.HistogramVec:
			typ = "histogram"
		case prometheus.Summary, *prometheus.SummaryVec:
			typ = "summary"
		}
		ch := make(chan *prometheus.Desc, 512)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := descName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			if _, known := out[m[1]]; !known || typ != "" {
				if typ == "" {
					typ = "untyped"
				}
				out[m[1]] = typ
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d metrics registered: %v", len(out), out)
	}
	return out
}

// seriesMetric maps a series name to the registered metric it belongs to: histogram and
// summary series to their metric.
func seriesMetric(registered map[string]string, series string) (string, bool) {
	if _, ok := registered[series]; ok {
		return series, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(series, suffix)
		if !ok {
			continue
		}
		switch registered[base] {
		case "histogram":
			return base, true
		case "summary":
			return base, suffix != "_bucket"
		}
	}
	return "", false
}

// Every metric the service promises is registered, with the promised type.
func TestContractMetricsRegistered(t *testing.T) {
	t.Parallel()
	registered := registeredMetrics(t)
	for name, typ := range contractMetrics {
		if got, ok := registered[name]; !ok {
			t.Errorf("%s is promised but worker.NewMetrics does not register it", name)
		} else if got != typ {
			t.Errorf("%s is registered as a %s, promised as a %s", name, got, typ)
		}
	}
	for name := range standardMetrics {
		if _, ok := registered[name]; !ok && name != "up" {
			t.Errorf("%s is listed as a standard metric but the registry does not have it", name)
		}
	}
}

// The test's own reading of the registry: vectors without series and histograms are found.
func TestRegisteredMetricsReading(t *testing.T) {
	t.Parallel()
	r := registeredMetrics(t)
	for name, typ := range map[string]string{
		"export_dlq_messages_total": "counter", "export_queue_messages": "gauge", "export_job_duration_seconds": "histogram",
		"export_build_info": "gauge", "go_goroutines": "gauge", "go_gc_duration_seconds": "summary", "process_resident_memory_bytes": "gauge",
	} {
		if r[name] != typ {
			t.Errorf("%s: %q, want %q", name, r[name], typ)
		}
	}
	for series, want := range map[string]string{
		"export_job_duration_seconds_bucket": "export_job_duration_seconds", "export_job_duration_seconds_count": "export_job_duration_seconds",
		"go_gc_duration_seconds_sum": "go_gc_duration_seconds", "export_jobs_total": "export_jobs_total",
	} {
		if got, ok := seriesMetric(r, series); !ok || got != want {
			t.Errorf("seriesMetric(%s) = %q, %v; want %q", series, got, ok, want)
		}
	}
	for _, series := range []string{"export_jobs_total_bucket", "go_gc_duration_seconds_bucket", "export_nope_total"} {
		if got, ok := seriesMetric(r, series); ok {
			t.Errorf("seriesMetric(%s) = %q, want no metric", series, got)
		}
	}
}

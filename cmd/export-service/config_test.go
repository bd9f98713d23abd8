package main

import (
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfigDefaults(t *testing.T) {
	c, err := loadConfig(envOf(map[string]string{"EXPORT_QUEUE_URL": "q", "MONGO_URI": "mongodb://x", "EXPORT_BUCKET": "b"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.Concurrency != 4 || c.DrainTimeout != 600*time.Second || c.ReceiveWait != 20*time.Second ||
		c.MongoDatabase != "titan" || c.KeyPrefix != "exports/" || c.GzipLevel != 6 || c.MaxMessageLease != 11*time.Hour {
		t.Errorf("defaults: %+v", c)
	}
}

// Every problem is reported at once, each naming its variable.
func TestLoadConfigReportsEveryProblem(t *testing.T) {
	_, err := loadConfig(envOf(map[string]string{
		"WORKER_CONCURRENCY": "zero", "DRAIN_TIMEOUT": "soon", "GZIP_LEVEL": "11", "S3_FORCE_PATH_STYLE": "maybe",
		"EXPORT_KEY_PREFIX": "/abs", "LOG_LEVEL": "loud",
	}))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"EXPORT_QUEUE_URL is required", "MONGO_URI is required", "EXPORT_BUCKET is required",
		"WORKER_CONCURRENCY", "DRAIN_TIMEOUT", "GZIP_LEVEL", "S3_FORCE_PATH_STYLE", "EXPORT_KEY_PREFIX", "LOG_LEVEL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
}

// RECEIVE_WAIT, DRAIN_TIMEOUT and HANDOVER_DELAY set to 0 reach the worker as 0 (a short
// poll, no drain, an undelayed copy), in every spelling; unset, they are the documented
// defaults. Neither the config nor the worker may take an explicit 0 for "unset".
func TestExplicitZerosReachTheWorker(t *testing.T) {
	base := map[string]string{"EXPORT_QUEUE_URL": "q", "MONGO_URI": "m", "EXPORT_BUCKET": "b"}
	c, err := loadConfig(envOf(base))
	if err != nil {
		t.Fatal(err)
	}
	w := workerConfig(c)
	w.SetDefaults() // as worker.New does
	if w.WaitTime != 20*time.Second || w.DrainTimeout != 600*time.Second || w.HandOverDelay != 15*time.Minute {
		t.Errorf("unset: wait %s, drain %s, handover delay %s; want the documented 20s, 600s, 15m", w.WaitTime, w.DrainTimeout, w.HandOverDelay)
	}
	if err := w.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	for _, zero := range []string{"0", "0s", "0m", " 0 "} {
		env := map[string]string{"RECEIVE_WAIT": zero, "DRAIN_TIMEOUT": zero, "HANDOVER_DELAY": zero}
		for k, v := range base {
			env[k] = v
		}
		c, err := loadConfig(envOf(env))
		if err != nil {
			t.Fatalf("%q: %v", zero, err)
		}
		w := workerConfig(c)
		w.SetDefaults() // as worker.New does
		if w.WaitTime != 0 || w.DrainTimeout != 0 || w.HandOverDelay != 0 {
			t.Errorf("%q: wait %s, drain %s, handover delay %s reach the worker; want 0 each", zero, w.WaitTime, w.DrainTimeout, w.HandOverDelay)
		}
		if err := w.Validate(); err != nil {
			t.Errorf("%q: %v", zero, err)
		}
		// The other fields still get their defaults.
		if w.Concurrency != 4 || w.VisibilityTimeout != 2*time.Minute || w.QueueURL != "q" {
			t.Errorf("%q: %+v", zero, w)
		}
	}
}

func TestLoadConfigSecondsAsNumber(t *testing.T) {
	c, err := loadConfig(envOf(map[string]string{"EXPORT_QUEUE_URL": "q", "MONGO_URI": "m", "EXPORT_BUCKET": "b", "DRAIN_TIMEOUT": "30"}))
	if err != nil || c.DrainTimeout != 30*time.Second {
		t.Errorf("DRAIN_TIMEOUT=30 -> %s, %v; want 30s", c.DrainTimeout, err)
	}
}

func TestHeartbeatURL(t *testing.T) {
	for in, want := range map[string]string{
		"":               "http://127.0.0.1:8080/heartbeat",
		":8080":          "http://127.0.0.1:8080/heartbeat",
		"0.0.0.0:9000":   "http://127.0.0.1:9000/heartbeat",
		"127.0.0.1:1234": "http://127.0.0.1:1234/heartbeat",
		"[::1]:8080":     "http://[::1]:8080/heartbeat",
	} {
		if got := heartbeatURL(in); got != want {
			t.Errorf("heartbeatURL(%q) = %q, want %q", in, got, want)
		}
	}
}

package main

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfigDefaults(t *testing.T) {
	c, err := loadConfig(envOf(map[string]string{"EXPORT_QUEUE_URL": "q", "MONGO_URI": "mongodb://x", "EXPORT_BUCKET": "b"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.Concurrency != 4 || c.DrainTimeout != 120*time.Second || c.StopGrace != 60*time.Second ||
		c.ReceiveWait != 20*time.Second || c.MongoDatabase != "titan" || c.KeyPrefix != "exports/" || c.GzipLevel != 6 ||
		c.GzipConcurrency != min(runtime.NumCPU(), 256) || c.MaxMessageLease != 11*time.Hour {
		t.Errorf("defaults: %+v", c)
	}
}

// Every problem is reported at once, each naming its variable. DRAIN_STOP_GRACE=0 is one: the
// worker would take a zero grace for "unset" (60s), so the config refuses it rather than let it
// mean something else than it says.
func TestLoadConfigReportsEveryProblem(t *testing.T) {
	_, err := loadConfig(envOf(map[string]string{
		"WORKER_CONCURRENCY": "zero", "DRAIN_TIMEOUT": "soon", "GZIP_LEVEL": "11", "S3_FORCE_PATH_STYLE": "maybe",
		"EXPORT_KEY_PREFIX": "/abs", "LOG_LEVEL": "loud", "DRAIN_STOP_GRACE": "0", "GZIP_CONCURRENCY": "257",
	}))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"EXPORT_QUEUE_URL is required", "MONGO_URI is required", "EXPORT_BUCKET is required",
		"WORKER_CONCURRENCY", "DRAIN_TIMEOUT", "GZIP_LEVEL", "S3_FORCE_PATH_STYLE", "EXPORT_KEY_PREFIX", "LOG_LEVEL",
		"DRAIN_STOP_GRACE", "GZIP_CONCURRENCY"} {
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
	if w.WaitTime != 20*time.Second || w.DrainTimeout != 120*time.Second || w.StopGrace != time.Minute || w.HandOverDelay != 15*time.Minute {
		t.Errorf("unset: wait %s, drain %s, stop grace %s, handover delay %s; want the documented 20s, 120s, 60s, 15m",
			w.WaitTime, w.DrainTimeout, w.StopGrace, w.HandOverDelay)
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

// DRAIN_STOP_GRACE (1s..1h) and GZIP_CONCURRENCY (1..256), when set, are what the worker and
// the exporter get; outside their ranges they are errors naming them.
func TestStopGraceAndGzipConcurrency(t *testing.T) {
	load := func(name, value string) (config, error) {
		return loadConfig(envOf(map[string]string{"EXPORT_QUEUE_URL": "q", "MONGO_URI": "m", "EXPORT_BUCKET": "b", name: value}))
	}
	for value, want := range map[string]time.Duration{"1s": time.Second, "90": 90 * time.Second, "1h": time.Hour} {
		c, err := load("DRAIN_STOP_GRACE", value)
		w := workerConfig(c)
		w.SetDefaults() // as worker.New does
		if err != nil || c.StopGrace != want || w.StopGrace != want {
			t.Errorf("DRAIN_STOP_GRACE=%s -> config %s, worker %s, %v; want %s", value, c.StopGrace, w.StopGrace, err, want)
		}
	}
	for value, want := range map[string]int{"1": 1, "3": 3, "256": 256} {
		if c, err := load("GZIP_CONCURRENCY", value); err != nil || c.GzipConcurrency != want {
			t.Errorf("GZIP_CONCURRENCY=%s -> %d, %v; want %d", value, c.GzipConcurrency, err, want)
		}
	}
	for name, values := range map[string][]string{
		"DRAIN_STOP_GRACE": {"0", "500ms", "61m", "soon"},
		"GZIP_CONCURRENCY": {"0", "-1", "257", "many"},
	} {
		for _, value := range values {
			if _, err := load(name, value); err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%s=%s: want an error naming it, got %v", name, value, err)
			}
		}
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

// MONGO_READ_PREFERENCE: secondaryPreferred unless set, each of MongoDB's five modes by its
// name, anything else refused naming the variable and the values it takes.
func TestReadPreferenceConfig(t *testing.T) {
	base := map[string]string{"EXPORT_QUEUE_URL": "q", "MONGO_URI": "m", "EXPORT_BUCKET": "b"}
	with := func(v string) map[string]string {
		env := map[string]string{"MONGO_READ_PREFERENCE": v}
		for k, x := range base {
			env[k] = x
		}
		return env
	}
	c, err := loadConfig(envOf(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.ReadPreference == nil || c.ReadPreference.Mode() != readpref.SecondaryPreferredMode {
		t.Errorf("default read preference %v, want secondaryPreferred", c.ReadPreference)
	}
	for v, want := range map[string]readpref.Mode{
		"primary": readpref.PrimaryMode, "primaryPreferred": readpref.PrimaryPreferredMode, "secondary": readpref.SecondaryMode,
		"secondaryPreferred": readpref.SecondaryPreferredMode, "nearest": readpref.NearestMode, " nearest ": readpref.NearestMode,
	} {
		c, err := loadConfig(envOf(with(v)))
		if err != nil || c.ReadPreference.Mode() != want {
			t.Errorf("MONGO_READ_PREFERENCE=%q: %v, %v; want %s", v, c.ReadPreference, err, want)
		}
	}
	for _, v := range []string{"secondarypreferred", "SECONDARY", "fastest", "secondary,primary", "mode=secondary"} {
		_, err := loadConfig(envOf(with(v)))
		want := fmt.Sprintf("MONGO_READ_PREFERENCE=%q: want one of primary, primaryPreferred, secondary, secondaryPreferred, nearest", v)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("MONGO_READ_PREFERENCE=%q: got %v, want an error %q", v, err, want)
		}
	}
}

// The Exporter's database reads with MONGO_READ_PREFERENCE, the ledger's with the primary,
// whatever the connection string says (its readPreference is only the client's default, which
// both override). mongo-driver v2 has no accessor of a database's read preference: the test
// reads the options the databases are made with. The commands on the wire: e2e
// TestExportQueriesCarryTheReadPreference.
func TestExportAndLedgerDatabasesReadPreferences(t *testing.T) {
	readPrefOf := func(b *options.DatabaseOptionsBuilder) *readpref.ReadPref {
		var o options.DatabaseOptions
		for _, set := range b.List() {
			if err := set(&o); err != nil {
				t.Fatal(err)
			}
		}
		return o.ReadPreference
	}
	for _, v := range []string{"", "primary", "nearest"} {
		env := map[string]string{"EXPORT_QUEUE_URL": "q", "MONGO_URI": "m", "EXPORT_BUCKET": "b", "MONGO_READ_PREFERENCE": v}
		c, err := loadConfig(envOf(env))
		if err != nil {
			t.Fatal(err)
		}
		want := readpref.SecondaryPreferredMode
		if v != "" {
			want, _ = readpref.ModeFromString(v)
		}
		if rp := readPrefOf(exportDatabaseOptions(c)); rp == nil || rp.Mode() != want {
			t.Errorf("MONGO_READ_PREFERENCE=%q: the export database reads with %v, want %s", v, rp, want)
		}
		if rp := readPrefOf(ledgerDatabaseOptions()); rp == nil || rp.Mode() != readpref.PrimaryMode {
			t.Errorf("MONGO_READ_PREFERENCE=%q: the ledger database reads with %v, want primary", v, rp)
		}
	}
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://127.0.0.1:1/?readPreference=secondary"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	c, _ := loadConfig(envOf(map[string]string{"EXPORT_QUEUE_URL": "q", "MONGO_URI": "m", "EXPORT_BUCKET": "b", "MONGO_DATABASE": "titan_x"}))
	if e, l := exportDatabase(client, c).Name(), ledgerDatabase(client, c).Name(); e != "titan_x" || l != "titan_x" {
		t.Errorf("databases %s and %s, want MONGO_DATABASE titan_x", e, l)
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/ledger"
)

func TestParseInterspersed(t *testing.T) {
	for _, c := range []struct {
		args []string
		pos  []string
		json bool
	}{
		{[]string{"id"}, []string{"id"}, false},
		{[]string{"--json", "id"}, []string{"id"}, true},
		{[]string{"id", "--json"}, []string{"id"}, true},
		{[]string{"a", "--json", "b"}, []string{"a", "b"}, true},
		{[]string{"--", "--json"}, []string{"--json"}, false},
		{[]string{"a", "--", "-b"}, []string{"a", "-b"}, false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		j := fs.Bool("json", false, "")
		pos, err := parseInterspersed(fs, c.args)
		if err != nil || !slices.Equal(pos, c.pos) || *j != c.json {
			t.Errorf("%q: %q json=%v err=%v; want %q json=%v", c.args, pos, *j, err, c.pos, c.json)
		}
	}
}

// status prints a ledger entry for a person and as JSON, and says what a missing one means.
func TestStatus(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	db := st.NewDatabase(t)
	env := map[string]string{"MONGO_URI": st.Env["MONGO_URI"], "MONGO_DATABASE": db.Name()}
	started := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	ledgerDoc(t, st, db.Name(), bson.M{"_id": "st-1", "status": "succeeded", "attempts": 2, "worker_id": "host/1/abc", "message_id": "m-1",
		"kind": "registrations", "destination": "internal", "bucket": "exports", "key": "exports/registrations/c1/st-1.csv.gz",
		"rows": int64(4000), "bytes": int64(123456), "bytes_uncompressed": int64(1234567), "sha256": "ab12",
		"created_at": started, "started_at": started, "updated_at": started.Add(12 * time.Second), "finished_at": started.Add(12 * time.Second),
		"lease_expires": started.Add(12 * time.Second)})
	ledgerDoc(t, st, db.Name(), bson.M{"_id": "st-2", "status": "failed", "attempts": 1, "kind": "registrations", "destination": "sfmc",
		"reason": "access_denied", "error": "sink: put: AccessDenied\nsecond line", "started_at": started, "updated_at": started, "finished_at": started})

	code, out, errOut := runCmd(t, env, "status", "st-1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"export       st-1", "status       succeeded", "object       s3://exports/exports/registrations/c1/st-1.csv.gz\n",
		"rows         4000\n", "bytes        123.5 kB written (1.2 MB before gzip)", "attempts     2", "worker       host/1/abc", "(took 12s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCmd(t, env, "status", "st-2")
	for _, want := range []string{"failed (permanent)", "dlq list", "reason       access_denied", "error        sink: put: AccessDenied\n             second line"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("failed status lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = runCmd(t, env, "status", "st-1", "--json")
	// What a consumer of --json reads: the names and shapes it relies on.
	var got struct {
		ExportID          string     `json:"export_id"`
		Status            string     `json:"status"`
		Rows              int64      `json:"rows"`
		Bytes             int64      `json:"bytes"`
		BytesUncompressed int64      `json:"bytes_uncompressed"`
		Attempts          int        `json:"attempts"`
		Key               string     `json:"key"`
		SHA256            string     `json:"sha256"`
		StartedAt         *time.Time `json:"started_at"`
		LeaseExpires      *time.Time `json:"lease_expires"`
	}
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, out)
	}
	if got.ExportID != "st-1" || got.Status != "succeeded" || got.Rows != 4000 || got.Bytes != 123456 || got.BytesUncompressed != 1234567 ||
		got.Attempts != 2 || got.Key != "exports/registrations/c1/st-1.csv.gz" || got.StartedAt == nil || !got.StartedAt.Equal(started) ||
		got.LeaseExpires != nil || got.SHA256 != "ab12" {
		t.Errorf("--json = %+v", got)
	}
	for _, key := range []string{`"export_id"`, `"bytes_uncompressed"`, `"finished_at"`} {
		if !strings.Contains(out, key) {
			t.Errorf("--json lacks %s:\n%s", key, out)
		}
	}

	code, _, errOut = runCmd(t, env, "status", "nope")
	if code != 1 || !strings.Contains(errOut, `export "nope" is not in the ledger of database "`+db.Name()+`"`) || !strings.Contains(errOut, "dlq list") {
		t.Errorf("missing export: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, nil, "status", "st-1"); code != 1 || !strings.Contains(errOut, "MONGO_URI is not set") {
		t.Errorf("no MONGO_URI: exit %d, stderr %q", code, errOut)
	}
}

func TestDescribeRunning(t *testing.T) {
	now := time.Now()
	var b bytes.Buffer
	printStatus(&b, ledger.Entry{ExportID: "r", Status: ledger.Running, Rows: 500, StartedAt: now.Add(-10 * time.Second), UpdatedAt: now,
		LeaseExpires: now.Add(90 * time.Second), Key: "k", Bucket: "b"}, now)
	for _, want := range []string{"running (lease renewed, expires in 1m30s)", "500 so far (50 rows/s)", "s3://b/k (written only when the export succeeds)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	if s := ledger.Describe(ledger.Entry{Status: ledger.Running, LeaseExpires: now.Add(-time.Minute)}, now); !strings.Contains(s, "lease expired 1m0s ago") {
		t.Errorf("expired lease: %s", s)
	}
}

package main

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verifiedfan/export-service/internal/jsontest"
	vfjobs "github.com/verifiedfan/export-service/jobs"
)

func noticeSchemaForTest(t *testing.T) any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "result-notice.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jsontest.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func raw(t *testing.T, n *vfjobs.Notice) RawNotice {
	t.Helper()
	b, err := n.Encode()
	if err != nil {
		t.Fatal(err)
	}
	attrs := map[string]string{"notice_id": n.NoticeID, "export_id": n.ExportID, "outcome": string(n.Outcome)}
	if n.Kind != "" {
		attrs["kind"] = n.Kind
	}
	if n.Destination != "" {
		attrs["destination"] = n.Destination
	}
	return RawNotice{Body: string(b), Attrs: attrs}
}

func testManifest(id string) *vfjobs.Manifest {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	return &vfjobs.Manifest{ManifestVersion: 1, ExportID: id, Kind: "access_codes", Format: "csv", Destination: "internal",
		Bucket: "exports", Key: "run/" + id + ".csv.gz", Params: json.RawMessage(`{}`), RequestedBy: "chaos", Columns: []string{"code"},
		Rows: 10, BytesUncompressed: 100, BytesCompressed: 50, ContentType: "text/csv", ContentEncoding: "gzip",
		SHA256: strings.Repeat("ab", 32), Parts: 1, StartedAt: at, FinishedAt: at, ServiceVersion: "test"}
}

func invariants(vs []Violation) string {
	var out []string
	for _, v := range vs {
		out = append(out, v.String())
	}
	return strings.Join(out, "\n")
}

// The checker takes valid notices and their identical copies, and reports a copy that differs,
// an invalid notice, a notice of an unknown export, and a wrong notice id.
func TestReadNotices(t *testing.T) {
	schema := noticeSchemaForTest(t)
	known := func(id string) bool { return strings.HasPrefix(id, "run-") }
	ok := raw(t, vfjobs.NewNotice(vfjobs.OutcomeSucceeded, "run-001", 1, 0, testManifest("run-001")))
	cancelled := raw(t, vfjobs.NewNotice(vfjobs.OutcomeCancelled, "run-002", 1, 0, nil).WithError(vfjobs.ReasonCancelled, errors.New("cancelled by chaos")))
	ns, vs := readNotices(schema, []RawNotice{ok, ok, cancelled}, known)
	if len(vs) > 0 {
		t.Fatalf("violations of valid notices:\n%s", invariants(vs))
	}
	if ns.Messages != 3 || ns.Copies != 1 || len(ns.ByExport) != 2 || ns.Outcomes["succeeded"] != 1 || ns.Outcomes["cancelled"] != 1 {
		t.Errorf("notices %+v", ns)
	}

	later := vfjobs.NewNotice(vfjobs.OutcomeSucceeded, "run-001", 1, 0, testManifest("run-001"))
	later.At = later.At.Add(time.Second)
	noReason := raw(t, vfjobs.NewNotice(vfjobs.OutcomeCancelled, "run-003", 1, 0, nil))
	unknown := raw(t, vfjobs.NewNotice(vfjobs.OutcomeFailed, "other-1", 2, 2, nil).WithError(vfjobs.ReasonMaxAttempts, errors.New("x")))
	wrongID := vfjobs.NewNotice(vfjobs.OutcomeFailed, "run-004", 2, 2, nil).WithError(vfjobs.ReasonMaxAttempts, errors.New("x"))
	wrongID.NoticeID = "run-004:failed:3"
	wrongAttrs := raw(t, vfjobs.NewNotice(vfjobs.OutcomeFailed, "run-005", 1, 1, nil).WithError(vfjobs.ReasonMaxAttempts, errors.New("x")))
	wrongAttrs.Attrs["outcome"] = "succeeded"
	_, vs = readNotices(schema, []RawNotice{ok, raw(t, later), noReason, unknown, raw(t, wrongID), wrongAttrs}, known)
	got := invariants(vs)
	for _, want := range []string{"two copies of notice run-001:succeeded differ", "run-003: notice run-003:cancelled is not valid",
		"other-1: notice other-1:failed:2 of an export the campaign never sent", `notice id "run-004:failed:3"`, "run-005: notice run-005:failed:1: message attributes"} {
		if !strings.Contains(got, want) {
			t.Errorf("violations lack %q:\n%s", want, got)
		}
	}
	if len(vs) != 5 {
		t.Errorf("%d violations, want 5:\n%s", len(vs), got)
	}
}

// Per export: what each way of ending needs, and what it may not have.
func TestCheckExportNotices(t *testing.T) {
	job := &Job{ExportID: "run-001", Kind: "access_codes", Destination: "internal"}
	man := testManifest("run-001")
	mf := &manifest{Bucket: man.Bucket, Key: man.Key, Rows: man.Rows, SHA256: man.SHA256, BytesCompressed: man.BytesCompressed}
	succ := vfjobs.NewNotice(vfjobs.OutcomeSucceeded, "run-001", 2, 1, man)
	canc := vfjobs.NewNotice(vfjobs.OutcomeCancelled, "run-001", 1, 0, nil).WithError(vfjobs.ReasonCancelled, errors.New("c"))
	failed := vfjobs.NewNotice(vfjobs.OutcomeFailed, "run-001", 5, 5, nil).WithError(vfjobs.ReasonMaxAttempts, errors.New("f"))
	dead := vfjobs.NewNotice(vfjobs.OutcomeDeadLettered, "run-001", 5, 5, nil).WithError(vfjobs.ReasonMaxAttempts, errors.New("f"))
	set := func(ns ...*vfjobs.Notice) map[string]vfjobs.Notice {
		out := map[string]vfjobs.Notice{}
		for _, n := range ns {
			// As the checker has them: decoded from their JSON.
			b, _ := n.Encode()
			var d vfjobs.Notice
			if err := json.Unmarshal(b, &d); err != nil {
				t.Fatal(err)
			}
			out[d.NoticeID] = d
		}
		return out
	}
	complete := ExportEnd{Job: job, Complete: true, Manifest: mf, Status: "succeeded", Attempts: 2}
	wrongRows := *mf
	wrongRows.Rows = 11
	dlq := ExportEnd{Job: job, Status: "failed", Permanent: true, Attempts: 5, DLQ: []DLQEntry{{ExportID: "run-001", Reason: "max_attempts"}}}
	redriven := ExportEnd{Job: job, Status: "failed", Attempts: 4, DLQ: []DLQEntry{{ExportID: "run-001", Reason: "max_receives"}}}
	cancelled := ExportEnd{Job: job, Status: "cancelled", Attempts: 1}
	for _, c := range []struct {
		name string
		end  ExportEnd
		ns   map[string]vfjobs.Notice
		want []string // substrings of the violations, in any order; none: no violation
	}{
		{"complete", complete, set(succ), nil},
		{"complete without a notice", complete, set(), []string{"no succeeded notice"}},
		{"complete, another manifest", ExportEnd{Job: job, Complete: true, Manifest: &wrongRows, Status: "succeeded"}, set(succ), []string{"11 rows"}},
		{"complete and cancelled", complete, set(succ, canc), []string{"both succeeded", "announced as run-001:cancelled", "ledger says \"succeeded\""}},
		{"succeeded notice without an object", cancelled, set(succ, canc), []string{"both succeeded", "no complete object"}},
		{"dead-lettered", dlq, set(failed, dead), nil},
		{"dead-lettered without notices", dlq, set(), []string{"no dead_lettered notice", "no failed notice"}},
		{"redriven by the queue", redriven, set(), nil},
		{"cancelled", cancelled, set(canc), nil},
		{"cancelled without a notice", cancelled, set(), []string{"no cancelled notice"}},
		{"cancelled notice, ledger failed", dlq, set(failed, dead, canc), []string{"announced cancelled"}},
	} {
		vs := checkExportNotices(c.end, c.ns, func(string) string { return "none" })
		got := invariants(vs)
		if len(vs) != len(c.want) {
			t.Errorf("%s: %d violations, want %d:\n%s", c.name, len(vs), len(c.want), got)
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: violations lack %q:\n%s", c.name, w, got)
			}
		}
	}
}

// planCancels is deterministic, cancels about the fraction asked, and at least one export of a
// campaign of five or more.
func TestPlanCancels(t *testing.T) {
	draw := func(seed uint64, n int, frac float64) []*Job {
		jobs := makeJobs(newRand(seed, 0x10b5), n, "run", time.Minute)
		planCancels(newRand(seed, 0xca9ce1), jobs, frac)
		return jobs
	}
	a, b := draw(7, 200, 0.15), draw(7, 200, 0.15)
	n := 0
	for i := range a {
		if (a[i].Cancel == nil) != (b[i].Cancel == nil) || a[i].Cancel != nil && *a[i].Cancel != *b[i].Cancel {
			t.Fatalf("job %d: cancel %v, then %v", i, a[i].Cancel, b[i].Cancel)
		}
		if a[i].Cancel != nil {
			n++
			if a[i].Cancel.Mode == CancelUploading && a[i].Collection != "campaigns" {
				t.Errorf("job %d: an uploading cancel of a %s export", i, a[i].Collection)
			}
		}
	}
	if n < 15 || n > 45 {
		t.Errorf("%d of 200 exports cancelled at 0.15", n)
	}
	for seed := range uint64(20) {
		if len(cancelled(draw(seed, 5, 0.01))) == 0 {
			t.Errorf("seed %d: a campaign of 5 exports cancels none", seed)
		}
		if len(cancelled(draw(seed, 5, 0))) != 0 {
			t.Errorf("seed %d: -cancel 0 cancelled an export", seed)
		}
	}
}

func newRand(seed, stream uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, stream)) }

package jobs

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/verifiedfan/export-service/jobs/encode"
)

func testManifest() *Manifest {
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	return &Manifest{
		ManifestVersion: ManifestVersion, ExportID: "exp-1", Kind: "registrations", Format: encode.FormatCSV,
		Destination: "sfmc", Bucket: "b", Key: "k/exp-1.csv.gz", Params: json.RawMessage(`{"campaign_id":"c"}`),
		RequestedBy: "crm", RequestedAt: &at, Columns: []string{"a", "b"}, Rows: 3, BytesUncompressed: 30, BytesCompressed: 20,
		ContentType: "text/csv", ContentEncoding: "gzip", SHA256: strings.Repeat("ab", 32), Parts: 1,
		StartedAt: at, FinishedAt: at.Add(time.Second), ServiceVersion: "test",
	}
}

// Every notice the service builds is valid to docs/result-notice.schema.json, and the schema
// refuses what a consumer must not get.
func TestNoticesAgreeWithTheSchema(t *testing.T) {
	root := loadSchemaFile(t, "result-notice.schema.json")
	job := &Job{Message: Message{ExportID: "exp-1", RequestedBy: "crm"}, RequestedAt: time.Now(), Plan: &Plan{Kind: RegistrationsKind()}, Destination: Destination{Name: "sfmc"}}
	valid := map[string]*Notice{
		"succeeded":       NewNotice(OutcomeSucceeded, "exp-1", 2, 1, testManifest()),
		"failed":          NewNotice(OutcomeFailed, "exp-1", 5, 5, nil).WithJob(job).WithError(ReasonMaxAttempts, errors.New("s3 down")),
		"dead_lettered":   NewNotice(OutcomeDeadLettered, "exp-1", 5, 5, nil).WithJob(job).WithError(ReasonMaxAttempts, errors.New("s3 down")),
		"refused unrun":   NewNotice(OutcomeDeadLettered, "exp-1", 0, 0, nil).WithError(ReasonInvalidParams, errors.New("params.campaign_id: required")),
		"cancelled":       NewNotice(OutcomeCancelled, "exp-1", 1, 0, nil).WithJob(job).WithError(ReasonCancelled, errors.New("cancelled by crm")),
		"cancelled unrun": NewNotice(OutcomeCancelled, "exp-1", 0, 0, nil).WithError(ReasonCancelled, errors.New("cancelled")),
		"long error":      NewNotice(OutcomeFailed, "exp-1", 1, 1, nil).WithError(ReasonTimeout, errors.New(strings.Repeat("é", 3000))),
	}
	// Succeeded and cancelled are final, so their id is the export and the outcome; failed and
	// dead-lettered can happen again after a redrive, so theirs has the attempts too.
	wantID := map[string]string{
		"succeeded":       "exp-1:succeeded",
		"failed":          "exp-1:failed:5",
		"dead_lettered":   "exp-1:dead_lettered:5",
		"refused unrun":   "exp-1:dead_lettered:0",
		"cancelled":       "exp-1:cancelled",
		"cancelled unrun": "exp-1:cancelled",
		"long error":      "exp-1:failed:1",
	}
	for name, n := range valid {
		b, err := n.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if p := validateAgainst(t, root, b); p != nil {
			t.Errorf("%s: the schema refuses %s: %v", name, b, p)
		}
		if want, ok := wantID[name]; !ok || n.NoticeID != want {
			t.Errorf("%s: notice id %q, want %q", name, n.NoticeID, want)
		}
	}
	// A succeeded notice reads as the manifest it carries (what consumers of the manifest
	// notices before version 1 parse).
	b, _ := valid["succeeded"].Encode()
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil || m.Key != testManifest().Key || m.Rows != 3 || m.SHA256 != testManifest().SHA256 || m.ExportID != "exp-1" {
		t.Errorf("a succeeded notice read as a manifest: %+v, %v", m, err)
	}
	invalid := map[string]string{
		"succeeded without manifest": `{"notice_version":1,"notice_id":"e:succeeded:1","outcome":"succeeded","export_id":"e","at":"2026-01-01T00:00:00Z","attempts":1,"failures":0}`,
		"failed without reason":      `{"notice_version":1,"notice_id":"e:failed:1","outcome":"failed","export_id":"e","at":"2026-01-01T00:00:00Z","attempts":1,"failures":1,"error":"x"}`,
		"cancelled other reason":     `{"notice_version":1,"notice_id":"e:cancelled:1","outcome":"cancelled","export_id":"e","at":"2026-01-01T00:00:00Z","attempts":1,"failures":0,"reason":"timeout","error":"x"}`,
		"unknown outcome":            `{"notice_version":1,"notice_id":"e:done:1","outcome":"done","export_id":"e","at":"2026-01-01T00:00:00Z","attempts":1,"failures":0}`,
		"failed with a key":          `{"notice_version":1,"notice_id":"e:failed:1","outcome":"failed","export_id":"e","at":"2026-01-01T00:00:00Z","attempts":1,"failures":1,"reason":"timeout","error":"x","key":"k"}`,
		"version 2":                  `{"notice_version":2,"notice_id":"e:failed:1","outcome":"failed","export_id":"e","at":"2026-01-01T00:00:00Z","attempts":1,"failures":1,"reason":"timeout","error":"x"}`,
	}
	for name, body := range invalid {
		if p := validateAgainst(t, root, []byte(body)); p == nil {
			t.Errorf("%s: the schema accepts %s", name, body)
		}
	}
}

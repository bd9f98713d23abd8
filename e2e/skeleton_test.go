package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
)

// One message becomes one gzipped CSV in S3 holding exactly the campaign's registrations; the
// message is deleted, /heartbeat answers 200 and the jobs counter goes up by one.
func TestMessageBecomesGzippedCSV(t *testing.T) {
	t.Parallel()
	b := setup(t, 150)
	p := stacktest.Start(t, b.workerEnv(t, nil), "worker")

	before := stacktest.Sum(p.Metrics(t), "export_jobs_total", map[string]string{"outcome": "succeeded"})
	campaign := fixtures.Campaigns[1]
	exportID := "e2e-skeleton-" + stacktest.RandomID()
	b.send(t, jobBody(t, jobs.Message{ExportID: exportID, Kind: "registrations", Params: json.RawMessage(fmt.Sprintf(`{"campaign_id":%q}`, campaign))}))

	key := fmt.Sprintf("exports/registrations/%s/%s.csv.gz", campaign, exportID)
	recs := gunzipCSV(t, b.waitObject(t, b.st.Env["EXPORT_BUCKET"], key, 60*time.Second))

	wantHeader := []string{"registration_id", "campaign_id", "email", "first_name", "last_name", "phone", "postal_code", "country", "locale", "status", "marketing_opt_in", "score", "tags", "created_at"}
	if !slices.Equal(recs[0], wantHeader) {
		t.Fatalf("header = %v, want %v", recs[0], wantHeader)
	}
	// What was inserted for the campaign, rendered independently of the encoder.
	want := map[string][]string{}
	for _, d := range b.dataset.Registrations {
		doc := d.(bson.D)
		if field(doc, "campaign_id") != campaign {
			continue
		}
		phone, _ := field(doc, "fan", "phone").(string)
		id := field(doc, "_id").(bson.ObjectID).Hex()
		want[id] = []string{id, campaign,
			field(doc, "fan", "email").(string), field(doc, "fan", "first_name").(string), field(doc, "fan", "last_name").(string),
			phone, field(doc, "fan", "postal_code").(string), field(doc, "fan", "country").(string), field(doc, "fan", "locale").(string),
			field(doc, "status").(string), fmt.Sprint(field(doc, "marketing_opt_in")), fmt.Sprint(field(doc, "score")),
			tagsJSON(field(doc, "tags").(bson.A)),
			field(doc, "created_at").(time.Time).UTC().Format("2006-01-02T15:04:05.000Z")}
	}
	if len(want) == 0 {
		t.Fatal("the seed has no registrations for the campaign")
	}
	rows := recs[1:]
	if len(rows) != len(want) {
		t.Errorf("object has %d rows, the campaign has %d registrations", len(rows), len(want))
	}
	seen := map[string]bool{}
	for _, row := range rows {
		exp, ok := want[row[0]]
		if !ok {
			t.Errorf("row %v is not a registration of %s", row, campaign)
			continue
		}
		if seen[row[0]] {
			t.Errorf("registration %s appears twice", row[0])
		}
		seen[row[0]] = true
		if !slices.Equal(row, exp) {
			t.Errorf("row\n got %q\nwant %q", row, exp)
		}
	}

	eventually(t, 30*time.Second, "message deleted from the jobs queue", func() bool {
		v, inflight := b.st.QueueCounts(t, b.queues.JobsURL)
		return v == 0 && inflight == 0
	})
	if v, inflight := b.st.QueueCounts(t, b.queues.DLQURL); v+inflight != 0 {
		t.Errorf("dead-letter queue has %d messages", v+inflight)
	}
	code, body := p.Get("/heartbeat")
	var hb struct{ Status string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &hb) != nil || hb.Status != "ok" {
		t.Errorf("GET /heartbeat = %d %s", code, body)
	}
	eventually(t, 10*time.Second, "export_jobs_total{outcome=succeeded} up by one", func() bool {
		return stacktest.Sum(p.Metrics(t), "export_jobs_total", map[string]string{"outcome": "succeeded"}) == before+1
	})
}

func tagsJSON(a bson.A) string {
	b, _ := json.Marshal(a)
	return string(b)
}

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// A delta export (updated_from/updated_to) of each kind holds exactly the documents of its
// campaign whose updated_at is in [from, to): the same ids, in the same order, as a direct
// query of MongoDB. Besides the fixtures' documents (spread over a month), documents at the
// window's edges, without updated_at, with a null or a text updated_at and of another campaign
// are seeded, and each is checked to be in or out as the half-open window says.
func TestDeltaExportsHoldExactlyTheDocumentsUpdatedInTheWindow(t *testing.T) {
	t.Parallel()
	b := setup(t, 100) // 400 registrations and their access codes: FerretDB scans whole collections
	ctx := context.Background()
	c0, c1 := fixtures.Campaigns[0], fixtures.Campaigns[1]
	// fixtures.Generate creates registrations in the 30 days from 2026-09-01, updated within
	// the hour; access codes are updated 2 or 3 days after their registration.
	from := time.Date(2026, 9, 8, 0, 0, 0, 0, time.UTC)
	to := time.Date(2026, 9, 16, 0, 0, 0, 0, time.UTC)
	// The message writes the end with an offset: the same instant.
	fromParam, toParam := from.Format(time.RFC3339), to.In(time.FixedZone("", 2*3600)).Format(time.RFC3339)

	// edge is a seeded document, its updated_at (absent when the key is absent) and whether the
	// delta must hold it.
	type edge struct {
		name    string
		updated any // time.Time, nil (null), "none" (no field), a string
		in      bool
		other   bool // of another campaign
	}
	edges := []edge{
		{name: "at-from", updated: from, in: true},
		{name: "before-from", updated: from.Add(-time.Millisecond)},
		{name: "before-to", updated: to.Add(-time.Millisecond), in: true},
		{name: "at-to", updated: to},
		{name: "after-to", updated: to.Add(time.Hour)},
		{name: "inside", updated: from.Add(36 * time.Hour), in: true},
		{name: "no-field", updated: "none"},
		{name: "null", updated: nil},
		{name: "text", updated: from.Add(time.Hour).Format(time.RFC3339)},
		{name: "other-campaign", updated: from.Add(time.Hour), other: true},
	}
	withUpdated := func(d bson.D, e edge) bson.D {
		if e.updated != "none" {
			d = append(d, bson.E{Key: "updated_at", Value: e.updated})
		}
		return d
	}
	var regs, codes []any
	regEdge := map[string]edge{}  // registration id -> edge
	codeEdge := map[string]edge{} // code -> edge
	created := time.Date(2026, 9, 2, 0, 0, 0, 0, time.UTC)
	for i, e := range edges {
		campaign := c0
		if e.other {
			campaign = c1
		}
		id := bson.NewObjectIDFromTimestamp(created.Add(time.Duration(i) * time.Second))
		regs = append(regs, withUpdated(bson.D{{Key: "_id", Value: id}, {Key: "campaign_id", Value: campaign},
			{Key: "fan", Value: bson.D{{Key: "email", Value: "delta-" + e.name + "@example.com"}}},
			{Key: "status", Value: "verified"}, {Key: "created_at", Value: created}}, e))
		regEdge[id.Hex()] = e
		code := "DELTA-" + e.name
		codes = append(codes, withUpdated(bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "code", Value: code},
			{Key: "campaign_id", Value: campaign}, {Key: "event_id", Value: "evt-delta"}, {Key: "tier", Value: "ga"},
			{Key: "status", Value: "assigned"}, {Key: "registration_id", Value: id}}, e))
		codeEdge[code] = e
	}
	if _, err := b.db.Collection("registrations").InsertMany(ctx, regs); err != nil {
		t.Fatalf("seed the edge registrations: %v", err)
	}
	if _, err := b.db.Collection("access_codes").InsertMany(ctx, codes); err != nil {
		t.Fatalf("seed the edge access codes: %v", err)
	}

	window := bson.D{{Key: "$gte", Value: from}, {Key: "$lt", Value: to}}
	cases := []struct {
		name, kind string
		format     encode.Format
		params     string
		collection string
		filter     bson.D // written here, independently of the kinds' code
		rowID      func(map[string]string) string
		docID      func(bson.M) string
		edgeOf     map[string]edge // by row id
	}{
		{name: "registrations, csv", kind: "registrations", format: encode.FormatCSV,
			params:     fmt.Sprintf(`{"campaign_id":%q,"updated_from":%q,"updated_to":%q}`, c0, fromParam, toParam),
			collection: "registrations", filter: bson.D{{Key: "campaign_id", Value: c0}, {Key: "updated_at", Value: window}},
			rowID: func(r map[string]string) string { return r["registration_id"] }, docID: func(d bson.M) string { return hexID(d, "_id") },
			edgeOf: regEdge},
		{name: "access codes, ndjson", kind: "access_codes", format: encode.FormatNDJSON,
			params:     fmt.Sprintf(`{"campaign_id":%q,"updated_from":%q,"updated_to":%q}`, c0, fromParam, toParam),
			collection: "access_codes", filter: bson.D{{Key: "campaign_id", Value: c0}, {Key: "status", Value: "assigned"}, {Key: "updated_at", Value: window}},
			rowID: func(r map[string]string) string { return r["code"] }, docID: func(d bson.M) string { return fmt.Sprint(d["code"]) },
			edgeOf: codeEdge},
	}

	stacktest.Start(t, b.workerEnv(t, nil), "worker")
	run := stacktest.RandomID()
	keys := make([]string, len(cases))
	for i, c := range cases {
		exportID := fmt.Sprintf("delta-%s-%d", run, i)
		b.send(t, jobBody(t, jobs.Message{ExportID: exportID, Kind: c.kind, Format: c.format, Params: json.RawMessage(c.params)}))
		keys[i] = fmt.Sprintf("exports/%s/%s/%s.%s.gz", c.kind, c0, exportID, c.format)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := b.waitObject(t, b.st.Env["EXPORT_BUCKET"], keys[i], 90*time.Second)
			var rows []map[string]string
			if c.format == encode.FormatCSV {
				recs := gunzipCSV(t, data)
				for _, r := range recs[1:] {
					row := map[string]string{}
					for j, h := range recs[0] {
						row[h] = r[j]
					}
					rows = append(rows, row)
				}
			} else {
				_, rows = gunzipNDJSON(t, data)
			}
			var got []string
			for _, r := range rows {
				got = append(got, c.rowID(r))
			}
			cur, err := b.db.Collection(c.collection).Find(ctx, c.filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
			if err != nil {
				t.Fatalf("query %s: %v", c.collection, err)
			}
			var docs []bson.M
			if err := cur.All(ctx, &docs); err != nil {
				t.Fatalf("query %s: %v", c.collection, err)
			}
			var want []string
			for _, d := range docs {
				want = append(want, c.docID(d))
			}
			fixtureDocs := 0
			for _, id := range want {
				if _, ok := c.edgeOf[id]; !ok {
					fixtureDocs++
				}
			}
			if c.kind == "registrations" && fixtureDocs == 0 {
				t.Errorf("the window holds none of the fixtures' registrations: widen it")
			}
			if !slices.Equal(got, want) {
				t.Errorf("export holds %d rows, the query %d documents\n got %v\nwant %v", len(got), len(want), got, want)
			}
			// The edges, by what the window says rather than by what the server answers.
			for id, e := range c.edgeOf {
				if slices.Contains(got, id) != e.in {
					t.Errorf("edge %s (updated_at %v): in the export %v, want %v", e.name, e.updated, !e.in, e.in)
				}
			}
			t.Logf("%d rows: %d edges, %d of the fixtures", len(got), len(got)-fixtureDocs, fixtureDocs)
		})
	}
	if v, inflight := b.st.QueueCounts(t, b.queues.DLQURL); v+inflight != 0 {
		t.Errorf("dead-letter queue has %d messages", v+inflight)
	}
}

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/verifiedfan/export-service/internal/fixtures"
	"github.com/verifiedfan/export-service/internal/stacktest"
	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/jobs/encode"
	"github.com/verifiedfan/export-service/ledger"
)

// `export-service indexes` run twice in a row succeeds both times, and afterwards every index
// every kind declares, and the ledger's outbox's, exists with its keys in order.
func TestIndexesCommandTwice(t *testing.T) {
	t.Parallel()
	st := stacktest.New(t)
	db := st.NewDatabase(t)
	env := st.WorkerEnv(map[string]string{"MONGO_DATABASE": db.Name()})
	for run := 1; run <= 2; run++ {
		p := stacktest.Start(t, env, "indexes")
		if code := p.Wait(60 * time.Second); code != 0 {
			t.Fatalf("run %d: export-service indexes exited %d:\n%s", run, code, p.Output())
		}
		for _, k := range jobs.DefaultRegistry().Kinds() {
			for _, ix := range k.Indexes {
				if line := fmt.Sprintf("index %s.%s: ok", k.Collection, ix.Name); !strings.Contains(p.Output(), line) {
					t.Errorf("run %d: output lacks %q:\n%s", run, line, p.Output())
				}
			}
		}
	}
	// Every index every kind declares, and the ledger's outbox: the scan for due notices, and
	// an export's notices.
	type wantIndex struct {
		coll, name, of string
		keys           []string
	}
	var want []wantIndex
	for _, k := range jobs.DefaultRegistry().Kinds() {
		for _, ix := range k.Indexes {
			want = append(want, wantIndex{k.Collection, ix.Name, "kind " + k.Name, ix.Keys})
		}
	}
	want = append(want,
		wantIndex{ledger.NoticesCollection, "pending_1_next_at_1", "the ledger's outbox", []string{"pending", "next_at"}},
		wantIndex{ledger.NoticesCollection, "export_id_1_created_at_1", "the ledger's outbox", []string{"export_id", "created_at"}})

	ctx := context.Background()
	listed := map[string]map[string]bson.Raw{} // collection -> index name -> keys
	for _, w := range want {
		if w.coll == "" || listed[w.coll] != nil {
			continue
		}
		specs, err := db.Collection(w.coll).Indexes().ListSpecifications(ctx)
		if err != nil {
			t.Fatalf("list indexes of %s: %v", w.coll, err)
		}
		listed[w.coll] = map[string]bson.Raw{}
		for _, s := range specs {
			listed[w.coll][s.Name] = bson.Raw(s.KeysDocument)
			t.Logf("%s: index %s %s", w.coll, s.Name, bson.Raw(s.KeysDocument))
		}
	}
	for _, w := range want {
		keys, ok := listed[w.coll][w.name]
		if !ok {
			t.Errorf("index %s.%s (%s) does not exist", w.coll, w.name, w.of)
			continue
		}
		var got []string
		elems, _ := keys.Elements()
		for _, e := range elems {
			if n, ok := e.Value().AsInt64OK(); !ok || n != 1 {
				t.Errorf("index %s.%s: key %s is %s, want 1", w.coll, w.name, e.Key(), e.Value())
			}
			got = append(got, e.Key())
		}
		if !slices.Equal(got, w.keys) {
			t.Errorf("index %s.%s has keys %v, want %v", w.coll, w.name, got, w.keys)
		}
	}
}

// kindCase is one export and the MongoDB query, written here independently of the kinds'
// code, that selects what it must contain.
type kindCase struct {
	name       string
	kind       string
	format     encode.Format
	params     string
	campaign   string // the key's campaign folder
	collection string
	filter     bson.D
	header     []string // CSV header / NDJSON keys, in order
	// rowID and docID identify a row of the export and a document of the query alike.
	rowID func(cells map[string]string) string
	docID func(d bson.M) string
}

func hexID(d bson.M, k string) string {
	switch v := d[k].(type) {
	case bson.ObjectID:
		return v.Hex()
	case string:
		return v
	}
	return fmt.Sprint(d[k])
}

// Every kind's export, in CSV and NDJSON, holds exactly the documents its filter selects, in
// _id order, with exactly its columns.
func TestKindsExportExactlyTheirDocuments(t *testing.T) {
	t.Parallel()
	b := setup(t, 150)
	ctx := context.Background()
	campaigns := make([]any, len(fixtures.Campaigns))
	for i, c := range fixtures.Campaigns {
		campaigns[i] = bson.D{{Key: "_id", Value: c}, {Key: "name", Value: fmt.Sprintf("Tour %d, \"live\"", i)}, {Key: "artist", Value: "Artist " + c},
			{Key: "status", Value: "live"}, {Key: "markets", Value: bson.A{"US", "GB"}}, {Key: "starts_at", Value: time.Date(2027, 1, i+1, 20, 0, 0, 0, time.UTC)},
			{Key: "internal_notes", Value: "not allowlisted"}}
	}
	venues := []any{
		bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "name", Value: "Wembley"}, {Key: "city", Value: "London"}, {Key: "country", Value: "GB"}, {Key: "capacity", Value: int32(90000)}},
		bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "name", Value: "Olympiastadion"}, {Key: "city", Value: "München"}, {Key: "country", Value: "DE"}},
	}
	if _, err := b.db.Collection("campaigns").InsertMany(ctx, campaigns); err != nil {
		t.Fatal(err)
	}
	if _, err := b.db.Collection("venues").InsertMany(ctx, venues); err != nil {
		t.Fatal(err)
	}
	// The access codes' most frequent (campaign, tier) among assigned codes, so the tier filter
	// selects something.
	count := map[[2]string]int{}
	for _, d := range b.dataset.AccessCodes {
		doc := d.(bson.D)
		if field(doc, "status") == "assigned" {
			count[[2]string{field(doc, "campaign_id").(string), field(doc, "tier").(string)}]++
		}
	}
	var tierCase [2]string
	for k, n := range count {
		if n > count[tierCase] || n == count[tierCase] && (k[0]+k[1]) < (tierCase[0]+tierCase[1]) {
			tierCase = k
		}
	}
	c0, c1, c2 := fixtures.Campaigns[0], fixtures.Campaigns[1], fixtures.Campaigns[2]
	from, to := time.Date(2026, 9, 5, 0, 0, 0, 0, time.UTC), time.Date(2026, 9, 20, 12, 0, 0, 0, time.UTC)
	regHeader := []string{"registration_id", "campaign_id", "email", "first_name", "last_name", "phone", "postal_code", "country", "locale", "status", "marketing_opt_in", "score", "tags", "created_at"}
	codeHeader := []string{"code", "campaign_id", "event_id", "tier", "status", "registration_id", "email", "assigned_at", "expires_at"}
	regRow := func(c map[string]string) string { return c["registration_id"] }
	regDoc := func(d bson.M) string { return hexID(d, "_id") }
	codeRow := func(c map[string]string) string { return c["code"] + "/" + c["registration_id"] }
	codeDoc := func(d bson.M) string { return fmt.Sprint(d["code"]) + "/" + hexID(d, "registration_id") }
	idRow := func(c map[string]string) string { return c["_id"] }
	var acFields []string
	for _, c := range jobs.OpsCollections() {
		if c.Name == "access_codes" {
			acFields = c.Fields
		}
	}
	cases := []kindCase{
		{name: "registrations by status and time, csv", kind: "registrations", format: encode.FormatCSV, campaign: c0,
			params:     fmt.Sprintf(`{"campaign_id":%q,"status":"verified","created_from":%q,"created_to":%q}`, c0, from.Format(time.RFC3339), to.Format(time.RFC3339)),
			collection: "registrations", filter: bson.D{{Key: "campaign_id", Value: c0}, {Key: "status", Value: "verified"}, {Key: "created_at", Value: bson.D{{Key: "$gte", Value: from}, {Key: "$lt", Value: to}}}},
			header: regHeader, rowID: regRow, docID: regDoc},
		{name: "registrations of a campaign, ndjson", kind: "registrations", format: encode.FormatNDJSON, campaign: c1,
			params:     fmt.Sprintf(`{"campaign_id":%q}`, c1),
			collection: "registrations", filter: bson.D{{Key: "campaign_id", Value: c1}},
			header: regHeader, rowID: regRow, docID: regDoc},
		{name: "assigned access codes, csv", kind: "access_codes", format: encode.FormatCSV, campaign: c2,
			params:     fmt.Sprintf(`{"campaign_id":%q}`, c2),
			collection: "access_codes", filter: bson.D{{Key: "campaign_id", Value: c2}, {Key: "status", Value: "assigned"}},
			header: codeHeader, rowID: codeRow, docID: codeDoc},
		{name: "access codes of a tier, ndjson", kind: "access_codes", format: encode.FormatNDJSON, campaign: tierCase[0],
			params:     fmt.Sprintf(`{"campaign_id":%q,"status":"assigned","tier":%q}`, tierCase[0], tierCase[1]),
			collection: "access_codes", filter: bson.D{{Key: "campaign_id", Value: tierCase[0]}, {Key: "status", Value: "assigned"}, {Key: "tier", Value: tierCase[1]}},
			header: codeHeader, rowID: codeRow, docID: codeDoc},
		{name: "ops: registration fields of a campaign, csv", kind: "collection_fields", format: encode.FormatCSV, campaign: c1,
			params:     fmt.Sprintf(`{"collection":"registrations","campaign_id":%q,"fields":["_id","status","fan.country","created_at"]}`, c1),
			collection: "registrations", filter: bson.D{{Key: "campaign_id", Value: c1}},
			header: []string{"_id", "status", "fan.country", "created_at"}, rowID: idRow, docID: regDoc},
		{name: "ops: access codes of a campaign, any status, csv", kind: "collection_fields", format: encode.FormatCSV, campaign: c2,
			params:     fmt.Sprintf(`{"collection":"access_codes","campaign_id":%q}`, c2),
			collection: "access_codes", filter: bson.D{{Key: "campaign_id", Value: c2}},
			header: acFields, rowID: idRow, docID: regDoc},
		{name: "ops: all campaigns, ndjson", kind: "collection_fields", format: encode.FormatNDJSON, campaign: "all",
			params:     `{"collection":"campaigns","fields":["_id","name","starts_at"]}`,
			collection: "campaigns", filter: bson.D{},
			header: []string{"_id", "name", "starts_at"}, rowID: idRow, docID: regDoc},
		{name: "ops: venues, csv", kind: "collection_fields", format: encode.FormatCSV, campaign: "all",
			params:     `{"collection":"venues","fields":["_id","city","capacity"]}`,
			collection: "venues", filter: bson.D{},
			header: []string{"_id", "city", "capacity"}, rowID: idRow, docID: regDoc},
	}

	stacktest.Start(t, b.workerEnv(t, nil), "worker")
	run := stacktest.RandomID()
	keys := make([]string, len(cases))
	for i, c := range cases {
		exportID := fmt.Sprintf("kinds-%s-%d", run, i)
		b.send(t, jobBody(t, jobs.Message{ExportID: exportID, Kind: c.kind, Format: c.format, Params: json.RawMessage(c.params)}))
		keys[i] = fmt.Sprintf("exports/%s/%s/%s.%s.gz", c.kind, c.campaign, exportID, c.format)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := b.waitObject(t, b.st.Env["EXPORT_BUCKET"], keys[i], 90*time.Second)
			var header []string
			var rows []map[string]string
			if c.format == encode.FormatCSV {
				recs := gunzipCSV(t, data)
				header = recs[0]
				for _, r := range recs[1:] {
					row := map[string]string{}
					for j, h := range header {
						row[h] = r[j]
					}
					rows = append(rows, row)
				}
			} else {
				header, rows = gunzipNDJSON(t, data)
			}
			if !slices.Equal(header, c.header) {
				t.Fatalf("columns %v, want %v", header, c.header)
			}
			var got []string
			for _, r := range rows {
				got = append(got, c.rowID(r))
			}
			cur, err := b.db.Collection(c.collection).Find(ctx, c.filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
			if err != nil {
				t.Fatal(err)
			}
			var docs []bson.M
			if err := cur.All(ctx, &docs); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, d := range docs {
				want = append(want, c.docID(d))
			}
			if len(want) == 0 {
				t.Fatalf("the query selects nothing: a test that proves nothing (filter %v)", c.filter)
			}
			if !slices.Equal(got, want) {
				t.Errorf("export holds %d rows, the query %d documents\n got %v\nwant %v", len(got), len(want), got, want)
			}
			if c.kind == "collection_fields" {
				for _, r := range rows {
					for h, v := range r {
						if strings.Contains(v, "@") {
							t.Errorf("ops export cell %s = %q looks like an e-mail address", h, v)
						}
					}
				}
			}
		})
	}
	if v, inflight := b.st.QueueCounts(t, b.queues.DLQURL); v+inflight != 0 {
		t.Errorf("dead-letter queue has %d messages", v+inflight)
	}
}

// gunzipNDJSON returns the keys of the first line, in order, and every line's values as text
// (strings as is, other values as their JSON).
func gunzipNDJSON(t *testing.T, data []byte) ([]string, []map[string]string) {
	t.Helper()
	raw := gunzip(t, data)
	var keys []string
	var rows []map[string]string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 0; sc.Scan(); n++ {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("line %d is not a JSON object: %s", n+1, sc.Bytes())
		}
		row := map[string]string{}
		var lineKeys []string
		for dec.More() {
			k, _ := dec.Token()
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("line %d: %v", n+1, err)
			}
			var s string
			if json.Unmarshal(v, &s) != nil {
				s = string(v)
			}
			row[k.(string)] = s
			lineKeys = append(lineKeys, k.(string))
		}
		if n == 0 {
			keys = lineKeys
		} else if !slices.Equal(lineKeys, keys) {
			t.Fatalf("line %d has keys %v, the first %v", n+1, lineKeys, keys)
		}
		rows = append(rows, row)
	}
	return keys, rows
}

// The message's csv and ndjson options reach the object: a semicolon-delimited CSV with a BOM,
// and NDJSON in relaxed Extended JSON.
func TestExportOptions(t *testing.T) {
	// Remove this line once jobs/export.go passes job.Message.EncoderOptions() to NewEncoder:
	// until then the options are validated but not applied.
	t.Parallel()
	b := setup(t, 40)
	stacktest.Start(t, b.workerEnv(t, nil), "worker")
	campaign := fixtures.Campaigns[3]
	run := stacktest.RandomID()
	csvID, extID := "opts-csv-"+run, "opts-ext-"+run
	b.send(t, fmt.Sprintf(`{"version":1,"export_id":%q,"kind":"registrations","csv":{"delimiter":";","bom":true},"params":{"campaign_id":%q}}`, csvID, campaign))
	b.send(t, fmt.Sprintf(`{"version":1,"export_id":%q,"kind":"registrations","format":"ndjson","ndjson":{"mode":"relaxed_extjson"},"params":{"campaign_id":%q}}`, extID, campaign))
	want := 0
	for _, d := range b.dataset.Registrations {
		if field(d.(bson.D), "campaign_id") == campaign {
			want++
		}
	}

	data := gunzip(t, b.waitObject(t, b.st.Env["EXPORT_BUCKET"], fmt.Sprintf("exports/registrations/%s/%s.csv.gz", campaign, csvID), 60*time.Second))
	if !bytes.HasPrefix(data, []byte("\xEF\xBB\xBFregistration_id;campaign_id;email;")) {
		t.Errorf("CSV does not start with a BOM and a semicolon-delimited header: %.60q", data)
	}
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))))
	r.Comma = ';'
	recs, err := r.ReadAll()
	if err != nil || len(recs) != want+1 || len(recs[0]) != 14 {
		t.Errorf("CSV: %d records of %d cells (%v), want %d of 14", len(recs), len(recs[0]), err, want+1)
	}

	data = gunzip(t, b.waitObject(t, b.st.Env["EXPORT_BUCKET"], fmt.Sprintf("exports/registrations/%s/%s.ndjson.gz", campaign, extID), 60*time.Second))
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	if len(lines) != want {
		t.Fatalf("NDJSON has %d lines, want %d", len(lines), want)
	}
	for _, line := range lines {
		var doc bson.D
		if err := bson.UnmarshalExtJSON(line, false, &doc); err != nil {
			t.Fatalf("the driver cannot read %s: %v", line, err)
		}
		if _, ok := field(doc, "registration_id").(bson.ObjectID); !ok {
			t.Fatalf("registration_id is not an ObjectId once read back: %s", line)
		}
		if _, ok := field(doc, "created_at").(bson.DateTime); !ok {
			t.Fatalf("created_at is not a date once read back: %s", line)
		}
	}
}

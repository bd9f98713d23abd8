package jobs

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/jobs/encode"
)

func planOf(t *testing.T, kind, params string) (*Plan, error) {
	t.Helper()
	return DefaultRegistry().Plan(Message{Kind: kind, Format: encode.FormatCSV, Params: json.RawMessage(params)})
}

func TestCollectionFieldsPlan(t *testing.T) {
	p, err := planOf(t, "collection_fields", `{"collection":"registrations","fields":["status","fan.country","_id"],"campaign_id":"c1"}`)
	if err != nil {
		t.Fatal(err)
	}
	var headers []string
	for _, c := range p.Columns {
		headers = append(headers, c.Header)
		if c.Header != c.Path {
			t.Errorf("column %+v: the header must be the path", c)
		}
	}
	if !slices.Equal(headers, []string{"status", "fan.country", "_id"}) {
		t.Errorf("columns %v: want the fields in the order given", headers)
	}
	if p.Collection != "registrations" || !equalD(p.Filter, bson.D{{Key: "campaign_id", Value: "c1"}}) || p.Vars["campaign"] != "c1" {
		t.Errorf("plan = %+v", p)
	}
	p, err = planOf(t, "collection_fields", `{"collection":"campaigns","campaign_id":"cmp-x"}`)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := opsCollection("campaigns")
	if len(p.Columns) != len(c.Fields) || !equalD(p.Filter, bson.D{{Key: "_id", Value: "cmp-x"}}) {
		t.Errorf("campaigns plan = %+v", p)
	}
	p, err = planOf(t, "collection_fields", `{"collection":"venues"}`)
	if err != nil || len(p.Filter) != 0 || p.Vars["campaign"] != "" {
		t.Errorf("venues plan = %+v, %v", p, err)
	}
	for params, mention := range map[string]string{
		`{}`:                     `field "params.collection": required`,
		`{"collection":"users"}`: `field "params.collection": "users" is not one of`,
		`{"collection":"registrations","fields":["fan.email"]}`:   `field "params.fields": "fan.email" is not an exportable field of registrations`,
		`{"collection":"registrations","fields":[]}`:              `field "params.fields": must name at least one field`,
		`{"collection":"registrations","fields":["_id","_id"]}`:   `field "params.fields": "_id" is named twice`,
		`{"collection":"registrations","fields":[1]}`:             `field "params.fields[0]": got a number, want a string`,
		`{"collection":"venues","campaign_id":"c"}`:               `field "params.campaign_id": collection venues has no campaign`,
		`{"collection":"access_codes","campaign_id":"bad id"}`:    `field "params.campaign_id": "bad id" must be`,
		`{"collection":"access_codes","filter":{"$where":"1"}}`:   `field "params.filter": unknown field`,
		`{"collection":"access_codes","campaign_id":{"$ne":1}}`:   `field "params.campaign_id": got an object, want a string`,
		`{"collection":"access_codes","fields":["code","email"]}`: `"code" is not an exportable field`,
	} {
		_, err := planOf(t, "collection_fields", params)
		reason, ok := IsPermanent(err)
		if !ok || reason != "invalid_params" || !strings.Contains(err.Error(), mention) {
			t.Errorf("%s: got %v (reason %q), want an invalid_params error mentioning %s", params, err, reason, mention)
		}
	}
}

func equalD(a, b bson.D) bool {
	x, _ := bson.Marshal(a)
	y, _ := bson.Marshal(b)
	return string(x) == string(y)
}

// What the ops kind may export: no personal data, no secret, no path that is a prefix of another
// (MongoDB refuses such projections), and for every campaign field an index the kinds create
// that serves {campaign: X} sorted by _id.
func TestOpsAllowlist(t *testing.T) {
	forbidden := []string{"email", "first_name", "last_name", "phone", "postal_code", "code", "name_on_card", "address", "birth"}
	indexed := map[string]bool{}
	for _, k := range DefaultRegistry().Kinds() {
		for _, ix := range k.Indexes {
			indexed[k.Collection+":"+strings.Join(ix.Keys, ",")] = true
		}
	}
	for _, c := range OpsCollections() {
		if c.Name == "campaigns" && c.CampaignField != "_id" {
			t.Errorf("campaigns: the campaign id is the _id")
		}
		for i, f := range c.Fields {
			leaf := f[strings.LastIndexByte(f, '.')+1:]
			if slices.Contains(forbidden, leaf) && c.Name != "campaigns" && c.Name != "venues" {
				t.Errorf("%s: field %s is personal data or a secret", c.Name, f)
			}
			for j, g := range c.Fields {
				if i != j && (f == g || strings.HasPrefix(g, f+".")) {
					t.Errorf("%s: fields %s and %s collide in a projection", c.Name, f, g)
				}
			}
		}
		if c.CampaignField != "" && c.CampaignField != "_id" && !indexed[c.Name+":"+c.CampaignField+",_id"] {
			t.Errorf("%s: no kind creates the index {%s: 1, _id: 1} its campaign queries need", c.Name, c.CampaignField)
		}
	}
}

// Every kind declares formats, columns with unique headers, and a stable sort by _id.
func TestKindsDeclareWhatTheyNeed(t *testing.T) {
	params := map[string]string{
		"registrations": `{"campaign_id":"c"}`, "access_codes": `{"campaign_id":"c"}`, "collection_fields": `{"collection":"registrations"}`,
	}
	for _, k := range DefaultRegistry().Kinds() {
		if len(k.Formats) == 0 || k.Description == "" {
			t.Errorf("kind %s: no formats or description", k.Name)
		}
		p, err := planOf(t, k.Name, params[k.Name])
		if err != nil {
			t.Fatalf("kind %s: %v", k.Name, err)
		}
		seen := map[string]bool{}
		for _, c := range p.Columns {
			if seen[c.Header] {
				t.Errorf("kind %s: header %s twice", k.Name, c.Header)
			}
			seen[c.Header] = true
		}
		if !equalD(p.Sort, bson.D{{Key: "_id", Value: 1}}) || p.Collection == "" || len(p.Projection) == 0 {
			t.Errorf("kind %s: plan %+v", k.Name, p)
		}
	}
}

// updated_from/updated_to select a delta on updated_at, half-open [from, to), in UTC, after
// the other conditions; no window, no condition.
func TestDeltaPlans(t *testing.T) {
	from := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	to := time.Date(2026, 11, 26, 9, 30, 0, 500_000_000, time.UTC)
	win := func(f, t *time.Time) bson.E {
		d := bson.D{}
		if f != nil {
			d = append(d, bson.E{Key: "$gte", Value: *f})
		}
		if t != nil {
			d = append(d, bson.E{Key: "$lt", Value: *t})
		}
		return bson.E{Key: "updated_at", Value: d}
	}
	created := bson.E{Key: "created_at", Value: bson.D{{Key: "$gte", Value: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}}
	for _, tc := range []struct {
		kind, params string
		want         bson.D
	}{
		{"registrations", `{"campaign_id":"c","updated_from":"2026-11-26T09:00:00+01:00","updated_to":"2026-11-26T09:30:00.5Z"}`,
			bson.D{{Key: "campaign_id", Value: "c"}, win(&from, &to)}},
		{"registrations", `{"campaign_id":"c","status":"verified","created_from":"2026-01-01T00:00:00Z","updated_to":"2026-11-26T09:30:00.5Z"}`,
			bson.D{{Key: "campaign_id", Value: "c"}, {Key: "status", Value: "verified"}, created, win(nil, &to)}},
		{"registrations", `{"campaign_id":"c","updated_from":"2026-11-26T08:00:00Z"}`,
			bson.D{{Key: "campaign_id", Value: "c"}, win(&from, nil)}},
		{"registrations", `{"campaign_id":"c"}`, bson.D{{Key: "campaign_id", Value: "c"}}},
		{"access_codes", `{"campaign_id":"c","updated_from":"2026-11-26T08:00:00Z","updated_to":"2026-11-26T04:30:00.5-05:00"}`,
			bson.D{{Key: "campaign_id", Value: "c"}, {Key: "status", Value: "assigned"}, win(&from, &to)}},
		{"access_codes", `{"campaign_id":"c","status":"redeemed","tier":"ga","updated_to":"2026-11-26T09:30:00.5Z"}`,
			bson.D{{Key: "campaign_id", Value: "c"}, {Key: "status", Value: "redeemed"}, {Key: "tier", Value: "ga"}, win(nil, &to)}},
		{"access_codes", `{"campaign_id":"c"}`, bson.D{{Key: "campaign_id", Value: "c"}, {Key: "status", Value: "assigned"}}},
	} {
		p, err := planOf(t, tc.kind, tc.params)
		if err != nil {
			t.Errorf("%s %s: %v", tc.kind, tc.params, err)
			continue
		}
		if !equalD(p.Filter, tc.want) {
			t.Errorf("%s %s: filter %v, want %v", tc.kind, tc.params, p.Filter, tc.want)
		}
		// The typed parameters (manifest, ledger) carry the window.
		b, _ := json.Marshal(p.Params)
		if strings.Contains(tc.params, "updated_") != strings.Contains(string(b), "updated_") {
			t.Errorf("%s %s: params %s", tc.kind, tc.params, b)
		}
	}
}

// A bad delta window is refused like a bad created window: a bad date-time, an end not after
// its start (equal instants written differently too), a field the kind does not have.
func TestDeltaPlansRefuse(t *testing.T) {
	for _, tc := range []struct{ kind, params, mention string }{
		{"registrations", `{"campaign_id":"c","updated_from":"2026-11-26"}`, `field "params.updated_from": "2026-11-26" is not an RFC 3339 date-time`},
		{"registrations", `{"campaign_id":"c","updated_to":"2026-02-30T00:00:00Z"}`, `field "params.updated_to": "2026-02-30T00:00:00Z" is not an RFC 3339 date-time`},
		{"registrations", `{"campaign_id":"c","updated_from":"1999-12-31T23:59:59Z"}`, `field "params.updated_from": "1999-12-31T23:59:59Z" is outside the years 2000-2099`},
		{"registrations", `{"campaign_id":"c","updated_to":1767225600}`, `field "params.updated_to": got a number, want a string`},
		{"registrations", `{"campaign_id":"c","updated_from":{"$gt":"2026-01-01T00:00:00Z"}}`, `field "params.updated_from": got an object, want a string`},
		{"registrations", `{"campaign_id":"c","updated_from":"2026-02-01T00:00:00Z","updated_to":"2026-01-01T00:00:00Z"}`, `field "params.updated_to": must be after params.updated_from`},
		{"registrations", `{"campaign_id":"c","updated_from":"2026-02-01T01:00:00+01:00","updated_to":"2026-02-01T00:00:00Z"}`, `field "params.updated_to": must be after params.updated_from`},
		{"registrations", `{"campaign_id":"c","updated_at":"2026-01-01T00:00:00Z"}`, `field "params.updated_at": unknown field`},
		{"registrations", `{"campaign_id":"c","Updated_From":"2026-01-01T00:00:00Z"}`, `field "params.Updated_From": unknown field`},
		{"access_codes", `{"campaign_id":"c","updated_from":"2026-01-01T00:00:00"}`, `field "params.updated_from": "2026-01-01T00:00:00" is not an RFC 3339 date-time`},
		{"access_codes", `{"campaign_id":"c","updated_from":"2026-01-01T00:00:00Z","updated_to":"2026-01-01T00:00:00Z"}`, `field "params.updated_to": must be after params.updated_from`},
		{"access_codes", `{"campaign_id":"c","created_from":"2026-01-01T00:00:00Z"}`, `field "params.created_from": unknown field`},
		{"collection_fields", `{"collection":"registrations","updated_from":"2026-01-01T00:00:00Z"}`, `field "params.updated_from": unknown field`},
	} {
		_, err := planOf(t, tc.kind, tc.params)
		reason, ok := IsPermanent(err)
		if !ok || reason != ReasonInvalidParams || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s %s: got %v (reason %q), want an invalid_params error mentioning %s", tc.kind, tc.params, err, reason, tc.mention)
		}
	}
	// Every problem at once: both windows' ends and the bad start.
	_, err := planOf(t, "registrations", `{"campaign_id":"c","created_from":"2026-02-01T00:00:00Z","created_to":"2026-01-01T00:00:00Z","updated_from":"2026-02-01T00:00:00Z","updated_to":"2026-02-01T00:00:00Z","status":"x"}`)
	for _, want := range []string{"params.created_to", "params.updated_to", "params.status"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want a problem of %s", err, want)
		}
	}
}

// The indexes a delta needs: each kind with a window on updated_at has an index that starts
// with its equality fields, then updated_at, then _id (the range, then the sort).
func TestDeltaIndexes(t *testing.T) {
	for kind, keys := range map[string][]string{
		"registrations": {"campaign_id", "updated_at", "_id"},
		"access_codes":  {"campaign_id", "status", "updated_at", "_id"},
	} {
		var k *Kind
		for _, x := range DefaultRegistry().Kinds() {
			if x.Name == kind {
				k = x
			}
		}
		if !slices.ContainsFunc(k.Indexes, func(ix Index) bool { return slices.Equal(ix.Keys, keys) }) {
			t.Errorf("kind %s: no index %v among %+v", kind, keys, k.Indexes)
		}
		for _, ix := range k.Indexes {
			want := ""
			for i, key := range ix.Keys {
				if i > 0 {
					want += "_"
				}
				want += key + "_1"
			}
			if ix.Name != want {
				t.Errorf("kind %s: index %v named %s, want MongoDB's default name %s", kind, ix.Keys, ix.Name, want)
			}
		}
	}
}

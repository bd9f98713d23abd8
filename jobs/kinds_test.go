package jobs

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

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

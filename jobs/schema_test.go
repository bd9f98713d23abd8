package jobs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/verifiedfan/export-service/internal/jsontest"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// The schemas in docs/ are checked with jsontest.Validate, a small JSON Schema 2020-12
// evaluator rather than a library: it implements exactly the keywords the schemas use and fails
// on any other, so a schema cannot rely on a keyword that nothing checks.

// schemas are the schema documents of docs/, by file name, loaded once each.
var schemas sync.Map // name -> func() (any, error)

func loadSchemaFile(tb testing.TB, name string) any {
	tb.Helper()
	load, _ := schemas.LoadOrStore(name, sync.OnceValues(func() (any, error) {
		b, err := os.ReadFile(filepath.Join("..", "docs", name))
		if err != nil {
			return nil, err
		}
		return jsontest.Decode(b)
	}))
	doc, err := load.(func() (any, error))()
	if err != nil {
		tb.Fatalf("load docs/%s: %v", name, err)
	}
	return doc
}

func loadSchema(tb testing.TB) any { return loadSchemaFile(tb, "job-message.schema.json") }

// validateAgainst reports the problems of instance (raw JSON) against the schema root; nil
// means valid. Invalid JSON is a problem too.
func validateAgainst(tb testing.TB, root any, instance []byte) []string {
	tb.Helper()
	problems, err := jsontest.Validate(root, instance)
	if err != nil {
		tb.Fatal(err)
	}
	return problems
}

// schemaValidate reports the problems of instance against the job message's schema.
func schemaValidate(tb testing.TB, instance []byte) []string {
	return validateAgainst(tb, loadSchema(tb), instance)
}

// decoderAccepts is the service's verdict on a message: Decode, then the kind's parameters.
func decoderAccepts(body []byte) error {
	m, err := Decode(body)
	if err != nil {
		return err
	}
	_, err = DefaultRegistry().Plan(m)
	return err
}

// schemaCannotSay reports whether err is a problem the schema cannot express (see its
// description): the message is then valid to the schema but not to the service.
func schemaCannotSay(body []byte, err error) bool {
	if len(body) > MaxMessageBytes {
		return true
	}
	if strings.Contains(err.Error(), "appears more than once") {
		return true // a duplicate key: the schema sees only one of them
	}
	// A window's end not after its start: without the ends named, the service must accept the
	// message.
	var ends []string
	for _, w := range []string{"created", "updated"} {
		if strings.Contains(err.Error(), "must be after params."+w+"_from") {
			ends = append(ends, w+"_to")
		}
	}
	if len(ends) == 0 {
		return false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	var p map[string]json.RawMessage
	if json.Unmarshal(m["params"], &p) != nil {
		return false
	}
	for _, k := range ends {
		delete(p, k)
	}
	m["params"], _ = json.Marshal(p)
	b, _ := json.Marshal(m)
	return decoderAccepts(b) == nil
}

// checkSchemaAgrees fails when the schema and the decoder disagree on body.
func checkSchemaAgrees(t testing.TB, body []byte) {
	t.Helper()
	problems := schemaValidate(t, body)
	err := decoderAccepts(body)
	switch {
	case len(problems) == 0 && err != nil && !schemaCannotSay(body, err):
		t.Errorf("schema accepts %.300q, the decoder refuses it: %v", body, err)
	case len(problems) > 0 && err == nil:
		t.Errorf("the decoder accepts %.300q, the schema refuses it: %v", body, problems)
	}
}

var (
	validMessages = []string{
		`{"version":1,"export_id":"exp-1","kind":"registrations","params":{"campaign_id":"c1"}}`,
		`{"version":1.0,"export_id":"A.b_c-9","kind":"registrations","format":"csv","destination":"internal","params":{"campaign_id":"cmp-x","status":"verified","created_from":"2026-01-01T00:00:00Z","created_to":"2026-02-01T00:00:00.5+01:00"},"requested_by":"campaign-manager"}`,
		`{"version":10e-1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_to":"2099-12-31T23:59:59.999999999Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":"2000-01-01T00:00:00-05:00"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","format":"csv","csv":{"delimiter":";","bom":true},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","csv":{"delimiter":"\t"},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","csv":{},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","format":"ndjson","ndjson":{"mode":"relaxed_extjson"},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","format":"ndjson","ndjson":{"mode":"plain"},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","format":"ndjson","params":{"campaign_id":"c","status":"redeemed","tier":"vip_1"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","updated_from":"2026-11-26T09:00:00Z","updated_to":"2026-11-26T10:00:00.5+01:00"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","status":"verified","created_from":"2026-01-01T00:00:00Z","updated_from":"2026-02-01T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","updated_to":"2099-12-31T23:59:59.999999999Z"}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","params":{"campaign_id":"c","updated_from":"2000-01-01T00:00:00-05:00","updated_to":"2000-01-01T00:00:01-05:00"}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","params":{"campaign_id":"c","status":"redeemed","tier":"ga","updated_from":"2026-11-26T09:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"campaigns"}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"registrations","fields":["status","fan.country","_id"],"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"venues","fields":["name"]}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"access_codes","campaign_id":"c","fields":["tier","status"]}}`,
		` {"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c"}} ` + "\n",
	}
	// duplicateKeyMessages repeat a key: the decoder refuses them, the schema cannot (its data
	// model has one value per key; the test's evaluator, like most, keeps the last one).
	duplicateKeyMessages = []string{
		`{"version":2,"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"a"},"params":{"campaign_id":"b"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"a","campaign_id":"b"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","par\u0061ms":{"campaign_id":"a"},"params":{"campaign_id":"b"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","csv":{"delimiter":";","delimiter":","},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","format":"ndjson","ndjson":{"mode":"plain","mode":"relaxed_extjson"},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"venues","fields":["name"],"fields":["_id"]}}`,
		`{"version":1,"export_id":"a","export_id":"b","kind":"registrations","destination":"x","destination":"internal","params":{"campaign_id":"c"}}`,
	}
	invalidMessages = []string{
		`hello`, ``, `null`, `[1]`, `"x"`, `{}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c"}} {}`,
		`{"Version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","Kind":"registrations","kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"Campaign_ID":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","bucket":"evil","params":{"campaign_id":"c"}}`,
		`{"version":"1","export_id":"e","kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"version":2,"export_id":"e","kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"version":1.5,"export_id":"e","kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"version":null,"export_id":"e","kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"export_id":"e","kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"version":1,"kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"","kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"../x","kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"` + strings.Repeat("a", 129) + `","kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e\n","kind":"registrations","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"users","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","format":"xlsx","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","format":"","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","format":null,"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","destination":"Evil Bucket","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","requested_by":"","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","requested_by":"a b","params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations"}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":null}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":[]}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{}}`,
		`{"version":1,"export_id":"e","kind":"registrations","csv":{"delimiter":"::"},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","csv":{"delimiter":"\""},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","csv":{"bom":"yes"},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","csv":{"quote":"'"},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","csv":null,"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","format":"ndjson","csv":{},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","ndjson":{"mode":"plain"},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","format":"ndjson","ndjson":{"mode":"canonical"},"params":{"campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":{"$ne":null}}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","filter":{}}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c d"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","status":"x"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","status":null}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":"2026-01-01"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":"2026-01-01t00:00:00z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":"2026-13-01T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":"2026-02-30T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":"0026-01-01T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_to":"2100-01-01T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":"1999-12-31T23:59:59Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":"2026-01-01T00:00:00+24:00"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":1767225600}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","updated_from":"2026-11-26"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","updated_to":"2026-02-30T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","updated_from":"1999-12-31T23:59:59Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","updated_from":null}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","updated_to":{"$gt":"2026-01-01T00:00:00Z"}}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","Updated_From":"2026-01-01T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","updated_at":"2026-01-01T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","params":{"campaign_id":"c","updated_from":"2026-01-01T00:00:00"}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","params":{"campaign_id":"c","updated_to":"2100-01-01T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","params":{"campaign_id":"c","updated_from":1767225600}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","params":{"campaign_id":"c","created_from":"2026-01-01T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","params":{"campaign_id":"c","status":"verified"}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","params":{"campaign_id":"c","tier":""}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","params":{"campaign_id":"c","tier":"` + strings.Repeat("t", 33) + `"}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","params":{"tier":"ga"}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"users"}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"registrations","fields":["fan.email"]}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"registrations","fields":[]}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"registrations","fields":["status","status"]}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"registrations","fields":["status",1]}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"registrations","fields":"status"}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"access_codes","fields":["code"]}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"venues","campaign_id":"c"}}`,
		`{"version":1,"export_id":"e","kind":"collection_fields","params":{"collection":"campaigns","campaign_id":""}}`,
	}
)

// The schema and the decoder accept and refuse the same messages.
func TestSchemaAgreesWithDecoder(t *testing.T) {
	for _, body := range validMessages {
		if p := schemaValidate(t, []byte(body)); p != nil {
			t.Errorf("schema refuses valid %.200q: %v", body, p)
		}
		if err := decoderAccepts([]byte(body)); err != nil {
			t.Errorf("decoder refuses valid %.200q: %v", body, err)
		}
	}
	for _, body := range invalidMessages {
		if p := schemaValidate(t, []byte(body)); p == nil {
			t.Errorf("schema accepts invalid %.200q", body)
		}
		if err := decoderAccepts([]byte(body)); err == nil {
			t.Errorf("decoder accepts invalid %.200q", body)
		}
	}
	// What only the decoder can refuse: a repeated key...
	for _, body := range duplicateKeyMessages {
		if p := schemaValidate(t, []byte(body)); p != nil {
			t.Errorf("schema refuses %.200q (it cannot see duplicates; the test expects it to accept the last values): %v", body, p)
		}
		if err := decoderAccepts([]byte(body)); err == nil || !schemaCannotSay([]byte(body), err) {
			t.Errorf("decoder: %v for %.200q, want a duplicate key error", err, body)
		}
	}
	// ... and a window's end not after its start (created or updated; equal ends too, the
	// window being half-open).
	for _, body := range []string{
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":"2026-02-01T00:00:00Z","created_to":"2026-01-01T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","updated_from":"2026-02-01T00:00:00Z","updated_to":"2026-01-01T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","updated_from":"2026-02-01T01:00:00+01:00","updated_to":"2026-02-01T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":"2026-02-01T00:00:00Z","created_to":"2026-01-01T00:00:00Z","updated_from":"2026-02-01T00:00:00Z","updated_to":"2026-02-01T00:00:00Z"}}`,
		`{"version":1,"export_id":"e","kind":"access_codes","params":{"campaign_id":"c","updated_from":"2026-02-01T00:00:00Z","updated_to":"2026-01-31T23:59:59.999Z"}}`,
	} {
		if p := schemaValidate(t, []byte(body)); p != nil {
			t.Errorf("schema refuses %s: %v", body, p)
		}
		if err := decoderAccepts([]byte(body)); err == nil || !schemaCannotSay([]byte(body), err) {
			t.Errorf("decoder: %v for %s, want only the window's end refused", err, body)
		}
	}
}

// The schema names what the code allows: the message's fields, the kinds, their parameters and
// enums, the collections and fields of collection_fields; every object it describes refuses
// other properties.
func TestSchemaMatchesCode(t *testing.T) {
	root := loadSchema(t).(map[string]any)
	props := root["properties"].(map[string]any)
	defs := root["$defs"].(map[string]any)

	var fields []string
	mt := reflect.TypeFor[Message]()
	for i := range mt.NumField() {
		name, _, _ := strings.Cut(mt.Field(i).Tag.Get("json"), ",")
		fields = append(fields, name)
	}
	if got := sortedKeys(props); !slices.Equal(got, sorted(fields)) || !slices.Equal(got, sorted(messageFields)) {
		t.Errorf("schema properties %v, Message fields %v, decoder fields %v", got, sorted(fields), sorted(messageFields))
	}
	if got := strs(root["required"]); !slices.Equal(sorted(got), []string{"export_id", "kind", "params", "version"}) {
		t.Errorf("required = %v", got)
	}
	var kinds []string
	for _, k := range DefaultRegistry().Kinds() {
		kinds = append(kinds, k.Name)
	}
	if got := strs(props["kind"].(map[string]any)["enum"]); !slices.Equal(got, kinds) {
		t.Errorf("kind enum %v, registry %v", got, kinds)
	}
	if got := strs(props["format"].(map[string]any)["enum"]); !slices.Equal(got, []string{string(encode.FormatCSV), string(encode.FormatNDJSON)}) {
		t.Errorf("format enum %v", got)
	}
	csvProps := props["csv"].(map[string]any)["properties"].(map[string]any)
	if got := strs(csvProps["delimiter"].(map[string]any)["enum"]); !slices.Equal(got, CSVDelimiters) {
		t.Errorf("csv.delimiter enum %q, code %q", got, CSVDelimiters)
	}
	ndProps := props["ndjson"].(map[string]any)["properties"].(map[string]any)
	if got := strs(ndProps["mode"].(map[string]any)["enum"]); !slices.Equal(got, []string{string(encode.NDJSONPlain), string(encode.NDJSONRelaxedExtJSON)}) {
		t.Errorf("ndjson.mode enum %v", got)
	}
	for _, k := range kinds {
		if _, ok := defs[k+"_params"]; !ok {
			t.Errorf("no $defs/%s_params", k)
		}
	}
	enumOf := func(def, prop string) []string {
		return strs(defs[def].(map[string]any)["properties"].(map[string]any)[prop].(map[string]any)["enum"])
	}
	if got := enumOf("registrations_params", "status"); !slices.Equal(got, RegistrationStatuses) {
		t.Errorf("registrations status enum %v, code %v", got, RegistrationStatuses)
	}
	if got := enumOf("access_codes_params", "status"); !slices.Equal(got, AccessCodeStatuses) {
		t.Errorf("access_codes status enum %v, code %v", got, AccessCodeStatuses)
	}
	var colls []string
	byColl := map[string][]string{}
	for _, c := range OpsCollections() {
		colls = append(colls, c.Name)
		byColl[c.Name] = c.Fields
	}
	if got := enumOf("collection_fields_params", "collection"); !slices.Equal(got, colls) {
		t.Errorf("collection enum %v, code %v", got, colls)
	}
	for _, branch := range defs["collection_fields_params"].(map[string]any)["allOf"].([]any) {
		b := branch.(map[string]any)
		name := b["if"].(map[string]any)["properties"].(map[string]any)["collection"].(map[string]any)["const"].(string)
		thenProps := b["then"].(map[string]any)["properties"].(map[string]any)
		got := strs(thenProps["fields"].(map[string]any)["items"].(map[string]any)["enum"])
		if !slices.Equal(got, byColl[name]) {
			t.Errorf("fields of %s: schema %v, code %v", name, got, byColl[name])
		}
		c, _ := opsCollection(name)
		if _, refused := thenProps["campaign_id"]; refused != (c.CampaignField == "") {
			t.Errorf("collection %s: schema refuses campaign_id %v, code has campaign field %q", name, refused, c.CampaignField)
		}
		delete(byColl, name)
	}
	if len(byColl) > 0 {
		t.Errorf("the schema has no fields enum for %v", sortedKeys(byColl))
	}
	// Every object schema (other than if/then/else refinements) closes its properties.
	var walk func(v any, path string)
	walk = func(v any, path string) {
		m, ok := v.(map[string]any)
		if !ok {
			if a, ok := v.([]any); ok {
				for i, x := range a {
					walk(x, fmt.Sprintf("%s/%d", path, i))
				}
			}
			return
		}
		if _, ok := m["properties"]; ok && m["additionalProperties"] != false {
			t.Errorf("%s: properties without additionalProperties: false", path)
		}
		for k, x := range m {
			if k == "if" || k == "then" || k == "else" || k == "properties" && path == "#/properties/params" {
				continue
			}
			if k == "properties" {
				for name, p := range x.(map[string]any) {
					walk(p, path+"/properties/"+name)
				}
				continue
			}
			walk(x, path+"/"+k)
		}
	}
	walk(root, "#")
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

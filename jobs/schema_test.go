package jobs

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/verifiedfan/export-service/internal/jsontest"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// The schema in docs/ is checked with a small JSON Schema 2020-12 evaluator below rather than a
// library: it implements exactly the keywords the schema uses and fails on any other, so the
// schema cannot rely on a keyword that nothing checks.

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
	v, err := jsontest.Decode(instance)
	if err != nil {
		return []string{"not JSON: " + err.Error()}
	}
	ev := &evaluator{root: root}
	ev.eval(root, v, "")
	if ev.unknown != nil {
		tb.Fatalf("schema uses keyword %q, which the test evaluator does not implement", *ev.unknown)
	}
	return ev.problems
}

// schemaValidate reports the problems of instance against the job message's schema.
func schemaValidate(tb testing.TB, instance []byte) []string {
	return validateAgainst(tb, loadSchema(tb), instance)
}

type evaluator struct {
	root     any
	problems []string
	unknown  *string
}

var annotationKeywords = []string{"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"}

// eval applies schema to v at path, recording problems.
func (ev *evaluator) eval(schema, v any, path string) {
	switch s := schema.(type) {
	case bool:
		if !s {
			ev.fail(path, "not allowed")
		}
		return
	case map[string]any:
		keys := make([]string, 0, len(s))
		for k := range s {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ev.keyword(s, k, s[k], v, path)
		}
	default:
		ev.fail(path, fmt.Sprintf("schema is a %T", schema))
	}
}

func (ev *evaluator) fail(path, msg string) {
	ev.problems = append(ev.problems, fmt.Sprintf("%s: %s", path, msg))
}

// valid evaluates schema on its own, for the applicators that only need a verdict.
func (ev *evaluator) valid(schema, v any, path string) bool {
	sub := &evaluator{root: ev.root}
	sub.eval(schema, v, path)
	if sub.unknown != nil {
		ev.unknown = sub.unknown
	}
	return len(sub.problems) == 0
}

func (ev *evaluator) keyword(s map[string]any, k string, arg, v any, path string) {
	obj, isObj := v.(map[string]any)
	arr, isArr := v.([]any)
	str, isStr := v.(string)
	num, isNum := v.(json.Number)
	switch k {
	case "type":
		types := []any{arg}
		if a, ok := arg.([]any); ok {
			types = a
		}
		if !slices.ContainsFunc(types, func(t any) bool { return jsonTypeIs(v, t.(string)) }) {
			ev.fail(path, fmt.Sprintf("not of type %v", arg))
		}
	case "enum":
		if !slices.ContainsFunc(arg.([]any), func(e any) bool { return jsontest.Equal(e, v) }) {
			ev.fail(path, "not in enum")
		}
	case "const":
		if !jsontest.Equal(arg, v) {
			ev.fail(path, "not the const")
		}
	case "properties":
		if isObj {
			for name, sub := range arg.(map[string]any) {
				if pv, ok := obj[name]; ok {
					ev.eval(sub, pv, path+"/"+name)
				}
			}
		}
	case "additionalProperties":
		if isObj {
			props, _ := s["properties"].(map[string]any)
			for name, pv := range obj {
				if _, ok := props[name]; !ok {
					ev.eval(arg, pv, path+"/"+name)
				}
			}
		}
	case "required":
		if isObj {
			for _, r := range arg.([]any) {
				if _, ok := obj[r.(string)]; !ok {
					ev.fail(path, "missing "+r.(string))
				}
			}
		}
	case "pattern":
		if isStr && !schemaRegexp(arg.(string)).MatchString(str) {
			ev.fail(path, "does not match "+arg.(string))
		}
	case "minLength":
		if isStr && utf8.RuneCountInString(str) < jsonInt(arg) {
			ev.fail(path, "too short")
		}
	case "maxLength":
		if isStr && utf8.RuneCountInString(str) > jsonInt(arg) {
			ev.fail(path, "too long")
		}
	case "minimum", "maximum":
		if isNum {
			f, _ := num.Float64()
			lim, _ := arg.(json.Number).Float64()
			if k == "minimum" && f < lim || k == "maximum" && f > lim {
				ev.fail(path, "out of range")
			}
		}
	case "format":
		if arg != "date-time" {
			ev.unknown = &k
			return
		}
		var t time.Time
		if isStr && t.UnmarshalText([]byte(str)) != nil {
			ev.fail(path, "not a date-time")
		}
	case "items":
		for i, item := range arr {
			ev.eval(arg, item, fmt.Sprintf("%s/%d", path, i))
		}
	case "minItems":
		if isArr && len(arr) < jsonInt(arg) {
			ev.fail(path, "too few items")
		}
	case "maxItems":
		if isArr && len(arr) > jsonInt(arg) {
			ev.fail(path, "too many items")
		}
	case "uniqueItems":
		if isArr && arg == true {
			for i := range arr {
				for j := range i {
					if jsontest.Equal(arr[i], arr[j]) {
						ev.fail(path, "items not unique")
					}
				}
			}
		}
	case "allOf":
		for _, sub := range arg.([]any) {
			ev.eval(sub, v, path)
		}
	case "anyOf", "oneOf":
		n := 0
		for _, sub := range arg.([]any) {
			if ev.valid(sub, v, path) {
				n++
			}
		}
		if n == 0 || k == "oneOf" && n > 1 {
			ev.fail(path, k+" not satisfied")
		}
	case "not":
		if ev.valid(arg, v, path) {
			ev.fail(path, "matches what it must not")
		}
	case "if":
		if ev.valid(arg, v, path) {
			if then, ok := s["then"]; ok {
				ev.eval(then, v, path)
			}
		} else if els, ok := s["else"]; ok {
			ev.eval(els, v, path)
		}
	case "then", "else":
		// applied by "if"
	case "$ref":
		ref := arg.(string)
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		target := ev.root.(map[string]any)["$defs"].(map[string]any)[name]
		if !ok || target == nil {
			ev.unknown = &ref
			return
		}
		ev.eval(target, v, path)
	default:
		if !slices.Contains(annotationKeywords, k) {
			ev.unknown = &k
		}
	}
}

var schemaRegexps sync.Map // pattern -> *regexp.Regexp

func schemaRegexp(pattern string) *regexp.Regexp {
	if re, ok := schemaRegexps.Load(pattern); ok {
		return re.(*regexp.Regexp)
	}
	re := regexp.MustCompile(pattern)
	schemaRegexps.Store(pattern, re)
	return re
}

func jsonTypeIs(v any, t string) bool {
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		_, digits, point := jsontest.NormalizeNumber(string(n))
		return digits == "" || int64(len(digits)) <= point
	}
	return false
}

func jsonInt(v any) int {
	n, _ := strconv.Atoi(string(v.(json.Number)))
	return n
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
	if !strings.Contains(err.Error(), "must be after params.created_from") {
		return false
	}
	// Without created_to the service must accept the message.
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	var p map[string]json.RawMessage
	if json.Unmarshal(m["params"], &p) != nil {
		return false
	}
	delete(p, "created_to")
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
	// ... and created_to before created_from.
	body := `{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":"2026-02-01T00:00:00Z","created_to":"2026-01-01T00:00:00Z"}}`
	if p := schemaValidate(t, []byte(body)); p != nil {
		t.Errorf("schema refuses %s: %v", body, p)
	}
	if err := decoderAccepts([]byte(body)); err == nil || !schemaCannotSay([]byte(body), err) {
		t.Errorf("decoder: %v, want only the created_to problem", err)
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

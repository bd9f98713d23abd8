package jobs

import (
	"bytes"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// segBody is a valid segment message with the given members replaced (a value "" drops the
// member), in the order of segmentMessageFields.
func segBody(replace ...string) string {
	vals := map[string]string{"version": `1`, "type": `"export_segment"`, "export_id": `"exp-1"`, "segment": `0`, "segments": `2`}
	for i := 0; i+1 < len(replace); i += 2 {
		vals[replace[i]] = replace[i+1]
	}
	var parts []string
	for _, k := range segmentMessageFields {
		if v := vals[k]; v != "" {
			parts = append(parts, `"`+k+`":`+v)
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func TestDecodeSegmentValid(t *testing.T) {
	for _, tc := range []struct {
		body string
		want SegmentMessage
	}{
		{segBody(), SegmentMessage{Version: 1, Type: SegmentMessageType, ExportID: "exp-1", Segment: 0, Segments: 2}},
		{segBody("segment", `9999`, "segments", `10000`), SegmentMessage{Version: 1, Type: SegmentMessageType, ExportID: "exp-1", Segment: 9999, Segments: 10000}},
		{`{"segments":8, "segment":3, "export_id":"a.b_c-D", "type":"export_segment", "version":1}`, SegmentMessage{Version: 1, Type: SegmentMessageType, ExportID: "a.b_c-D", Segment: 3, Segments: 8}},
		{segBody("version", `1.0`, "segment", `0.3e1`, "segments", `40E-1`), SegmentMessage{Version: 1, Type: SegmentMessageType, ExportID: "exp-1", Segment: 3, Segments: 4}},
		{segBody("segment", `-0`, "type", `"export\u005fsegment"`), SegmentMessage{Version: 1, Type: SegmentMessageType, ExportID: "exp-1", Segment: 0, Segments: 2}},
	} {
		m, err := DecodeSegment([]byte(tc.body))
		if err != nil {
			t.Errorf("DecodeSegment(%s): %v", tc.body, err)
			continue
		}
		if m != tc.want {
			t.Errorf("DecodeSegment(%s) = %+v, want %+v", tc.body, m, tc.want)
		}
	}
}

// Every bad segment message is a permanent error, with Decode's reasons, whose text names what
// is wrong.
func TestDecodeSegmentRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, body, reason, mention string
	}{
		{"not json", `hello`, "malformed_message", "not valid JSON"},
		{"empty", ``, "malformed_message", "empty"},
		{"array", `[1,2]`, "malformed_message", "expected shape"},
		{"null", `null`, "malformed_message", "got null"},
		{"trailing", segBody() + ` {}`, "malformed_message", "after the JSON object"},
		{"unknown field", `{"version":1,"type":"export_segment","export_id":"e","segment":0,"segments":2,"kind":"registrations"}`, "malformed_message", `field "kind": unknown field`},
		{"field case", `{"version":1,"Type":"export_segment","export_id":"e","segment":0,"segments":2}`, "malformed_message", `field "Type": unknown field`},
		{"duplicate key", `{"version":1,"type":"export_segment","export_id":"e","segment":0,"segment":1,"segments":2}`, "malformed_message", `field "segment": the key appears more than once`},
		{"version string", segBody("version", `"1"`), "malformed_message", `field "version": got a string`},
		{"version null", segBody("version", `null`), "malformed_message", `field "version": got null`},
		{"no version", segBody("version", ``), "invalid_message", `field "version": required`},
		{"future version", segBody("version", `2`), "invalid_message", `field "version": 2 is not supported`},
		{"type number", segBody("type", `1`), "malformed_message", `field "type": got a number`},
		{"no type", segBody("type", ``), "invalid_message", `field "type": required`},
		{"other type", segBody("type", `"export_job"`), "invalid_message", `field "type": "export_job" is not "export_segment"`},
		{"type case", segBody("type", `"Export_Segment"`), "invalid_message", `field "type"`},
		{"export id number", segBody("export_id", `5`), "malformed_message", `field "export_id": got a number`},
		{"no export id", segBody("export_id", ``), "invalid_message", `field "export_id": required`},
		{"empty export id", segBody("export_id", `""`), "invalid_message", `field "export_id"`},
		{"bad export id", segBody("export_id", `"../x"`), "invalid_message", `field "export_id": "../x" must be`},
		{"export id with slash", segBody("export_id", `"a/segment/1"`), "invalid_message", `field "export_id"`},
		{"long export id", segBody("export_id", `"`+strings.Repeat("a", 129)+`"`), "invalid_message", `field "export_id"`},
		{"segment string", segBody("segment", `"0"`), "malformed_message", `field "segment": got a string`},
		{"no segment", segBody("segment", ``), "invalid_message", `field "segment": required`},
		{"negative segment", segBody("segment", `-1`), "invalid_message", `field "segment": -1 is not from 0 to 9999`},
		{"fractional segment", segBody("segment", `0.5`), "invalid_message", `field "segment": 0.5 is not an integer`},
		{"segment not below segments", segBody("segment", `2`), "invalid_message", `field "segment": 2 must be less than segments (2)`},
		{"segment too big", segBody("segment", `10000`, "segments", `10000`), "invalid_message", `field "segment": 10000 is not from 0 to 9999`},
		{"segments bool", segBody("segments", `true`), "malformed_message", `field "segments": got a boolean`},
		{"no segments", segBody("segments", ``), "invalid_message", `field "segments": required`},
		{"one segment", segBody("segments", `1`), "invalid_message", `field "segments": 1 is not from 2 to 10000`},
		{"too many segments", segBody("segments", `10001`), "invalid_message", `field "segments": 10001 is not from 2 to 10000`},
		{"huge segments", segBody("segments", `1e30`), "invalid_message", `field "segments": 1e30 is not from 2 to 10000`},
		{"huge exponent", segBody("segments", `1e99999999999`), "invalid_message", `field "segments"`},
		{"tiny segments", segBody("segments", `1e-99999999999`), "invalid_message", `is not an integer`},
		{"fractional segments", segBody("segments", `2.5`), "invalid_message", `field "segments": 2.5 is not an integer`},
		{"oversize", segBody() + strings.Repeat(" ", MaxMessageBytes), "oversize_message", "bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeSegment([]byte(tc.body))
			reason, ok := IsPermanent(err)
			if !ok || string(reason) != tc.reason || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("DecodeSegment(%.80q) = %v (reason %q), want a permanent %q error mentioning %q", tc.body, err, reason, tc.reason, tc.mention)
			}
		})
	}
}

// Every problem is reported at once; the fields that could be read come back with the error.
func TestDecodeSegmentReportsAllAndKeepsExportID(t *testing.T) {
	m, err := DecodeSegment([]byte(`{"version":3,"type":"export_segment","export_id":"exp-9","segment":-1,"segments":1}`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, f := range []string{`"version"`, `"segment"`, `"segments"`} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
	if m.ExportID != "exp-9" || m.Type != SegmentMessageType {
		t.Errorf("got %+v with the error, want the export id and type", m)
	}
	m, err = DecodeSegment([]byte(segBody("export_id", `"exp-9"`, "segment", `"x"`)))
	if reason, _ := IsPermanent(err); reason != ReasonMalformedMessage || m.ExportID != "exp-9" || m.Segments != 2 {
		t.Errorf("got %+v, %v; want the export id and segments with a malformed_message error", m, err)
	}
}

// export_id follows the job message's rule, with the same error.
func TestDecodeSegmentExportIDAsJobMessage(t *testing.T) {
	for _, id := range []string{`"../x"`, `""`, `"-a"`, `"` + strings.Repeat("a", 129) + `"`, `"a b"`} {
		_, segErr := DecodeSegment([]byte(segBody("export_id", id)))
		_, jobErr := Decode([]byte(`{"version":1,"export_id":` + id + `,"kind":"registrations","params":{"campaign_id":"c"}}`))
		if segErr == nil || jobErr == nil {
			t.Errorf("export_id %s: segment %v, job %v; want both refused", id, segErr, jobErr)
			continue
		}
		_, segMsg, _ := strings.Cut(segErr.Error(), "invalid segment message: ")
		if !strings.Contains(jobErr.Error(), segMsg) {
			t.Errorf("export_id %s: segment error %q, job error %q", id, segMsg, jobErr)
		}
	}
	for _, id := range []string{"e", "A1", strings.Repeat("a", 128), "x.y_z-1"} {
		if _, err := DecodeSegment([]byte(segBody("export_id", `"`+id+`"`))); err != nil {
			t.Errorf("export_id %q: %v", id, err)
		}
	}
}

func TestSegmentMessageEncodeRoundTrip(t *testing.T) {
	for _, m := range []SegmentMessage{
		{ExportID: "exp-1", Segment: 3, Segments: 8},
		{Version: 1, Type: SegmentMessageType, ExportID: strings.Repeat("z", 128), Segment: 9999, Segments: 10000},
		{Version: 1, Type: SegmentMessageType, ExportID: "e", Segment: 0, Segments: 2},
	} {
		b, err := m.Encode()
		if err != nil {
			t.Errorf("Encode(%+v): %v", m, err)
			continue
		}
		if p := segmentSchemaValidate(t, b); p != nil {
			t.Errorf("schema refuses encoded %s: %v", b, p)
		}
		if !IsSegmentMessage(b) {
			t.Errorf("IsSegmentMessage(%s) = false", b)
		}
		got, err := DecodeSegment(b)
		want := m
		want.Version, want.Type = CurrentVersion, SegmentMessageType
		if err != nil || got != want {
			t.Errorf("DecodeSegment(%s) = %+v, %v; want %+v", b, got, err, want)
		}
		if b2, _ := got.Encode(); !bytes.Equal(b, b2) {
			t.Errorf("encoding not stable: %s, then %s", b, b2)
		}
	}
}

// Encode refuses a message DecodeSegment would refuse, with its reason.
func TestSegmentMessageEncodeValidates(t *testing.T) {
	for _, m := range []SegmentMessage{
		{ExportID: "", Segment: 0, Segments: 2},
		{ExportID: "../x", Segment: 0, Segments: 2},
		{ExportID: "e", Segment: 2, Segments: 2},
		{ExportID: "e", Segment: -1, Segments: 2},
		{ExportID: "e", Segment: 0, Segments: 1},
		{ExportID: "e", Segment: 0, Segments: 10001},
		{Version: 2, ExportID: "e", Segment: 0, Segments: 2},
		{Type: "export_job", ExportID: "e", Segment: 0, Segments: 2},
	} {
		b, err := m.Encode()
		if reason, ok := IsPermanent(err); !ok || reason != ReasonInvalidMessage || b != nil {
			t.Errorf("Encode(%+v) = %s, %v; want an invalid_message error", m, b, err)
		}
	}
}

func TestSegmentMessageSegmentID(t *testing.T) {
	m := SegmentMessage{ExportID: "exp-1", Segment: 17, Segments: 20}
	if got := m.SegmentID(); got != "exp-1/segment/17" {
		t.Errorf("SegmentID() = %q", got)
	}
	// A segment id is never a valid export id, so it cannot collide with an export's ledger id.
	if exportIDPattern.MatchString(m.SegmentID()) {
		t.Errorf("segment id %q is a valid export id", m.SegmentID())
	}
}

func TestIsSegmentMessage(t *testing.T) {
	job, err := Message{Version: 1, ExportID: "exp-1", Kind: "registrations", Params: []byte(`{"campaign_id":"c"}`)}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if IsSegmentMessage(job) {
		t.Errorf("IsSegmentMessage(job message %s) = true", job)
	}
	if _, err := DecodeSegment(job); err == nil {
		t.Errorf("DecodeSegment accepts the job message %s", job)
	}
	seg, err := SegmentMessage{ExportID: "exp-1", Segment: 1, Segments: 4}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !IsSegmentMessage(seg) {
		t.Errorf("IsSegmentMessage(segment message %s) = false", seg)
	}
	// The job decoder refuses a segment message: "type" is not a job message field.
	if _, err := Decode(seg); err == nil || !strings.Contains(err.Error(), `field "type": unknown field`) {
		t.Errorf("Decode(%s) = %v, want the unknown field type", seg, err)
	}
	for _, tc := range []struct {
		body string
		want bool
	}{
		{`{"type":"export_segment"}`, true}, // DecodeSegment reports the rest
		{`{"type":"export\u005fsegment","segments":"x"}`, true},
		{` {"version":1, "type" : "export_segment"} `, true},
		{`{"type":"export_segment","params":{"type":"x"}}`, true},
		{`{"params":{"type":"export_segment"}}`, false},
		{`{"Type":"export_segment"}`, false},
		{`{"TYPE":"export_segment"}`, false},
		{`{"type":"Export_Segment"}`, false},
		{`{"type":"export_segment "}`, false},
		{`{"type":["export_segment"]}`, false},
		{`{"type":null}`, false},
		{`{"type":"export_job"}`, false},
		{`{}`, false},
		{`["export_segment"]`, false},
		{`"export_segment"`, false},
		{`null`, false},
		{``, false},
		{`hello`, false},
		{`{"type":"export_segment"`, false},
		{`{"type":"export_segment"} {}`, false},
		{`{"type":"export_segment"}` + strings.Repeat(" ", MaxMessageBytes), false}, // Decode reports the size
	} {
		if got := IsSegmentMessage([]byte(tc.body)); got != tc.want {
			t.Errorf("IsSegmentMessage(%.60q) = %v, want %v", tc.body, got, tc.want)
		}
	}
}

func TestJSONNumberInt(t *testing.T) {
	for _, tc := range []struct {
		s              string
		v              int64
		integral, huge bool
	}{
		{"0", 0, true, false},
		{"-0", 0, true, false},
		{"0.0e5", 0, true, false},
		{"7", 7, true, false},
		{"-7", -7, true, false},
		{"7.000", 7, true, false},
		{"70e-1", 7, true, false},
		{"0.07E2", 7, true, false},
		{"10000", 10000, true, false},
		{"1e4", 10000, true, false},
		{"0.5", 0, false, false},
		{"1.25e1", 0, false, false},
		{"1e-1", 0, false, false},
		{"999999999999999999", 999999999999999999, true, false},
		{"1e18", 0, true, true},
		{"1e30", 0, true, true},
		{"1e9999999999", 0, true, true},
		{"1e-9999999999", 0, false, false},
		{"0e9999999999", 0, true, false},
	} {
		v, integral, huge := jsonNumberInt(tc.s)
		if v != tc.v || integral != tc.integral || huge != tc.huge {
			t.Errorf("jsonNumberInt(%q) = %d, %v, %v; want %d, %v, %v", tc.s, v, integral, huge, tc.v, tc.integral, tc.huge)
		}
	}
}

// The schema of docs/segment-message.schema.json, checked with schema_test.go's evaluator.

func loadSegmentSchema(tb testing.TB) any { return loadSchemaFile(tb, "segment-message.schema.json") }

// segmentSchemaValidate reports the problems of instance against the segment message's schema.
func segmentSchemaValidate(tb testing.TB, instance []byte) []string {
	return validateAgainst(tb, loadSegmentSchema(tb), instance)
}

// segmentSchemaCannotSay reports whether err is a problem the segment schema cannot express
// (see its description): the size limit, a repeated key, segment not less than segments.
func segmentSchemaCannotSay(body []byte, err error) bool {
	if len(body) > MaxMessageBytes {
		return true
	}
	if strings.Contains(err.Error(), "appears more than once") {
		return true
	}
	// Only the segment < segments problem, nothing else.
	msg := err.Error()
	return strings.Count(msg, `field "`) == 1 && strings.Contains(msg, "must be less than segments")
}

var (
	validSegmentMessages = []string{
		segBody(),
		segBody("segment", `1`),
		segBody("segment", `9999`, "segments", `10000`),
		segBody("segment", `4999`, "segments", `5000`),
		segBody("version", `1.0`),
		segBody("version", `10e-1`),
		segBody("segment", `0.0`, "segments", `2.0`),
		segBody("segment", `0.1e1`, "segments", `20E-1`),
		segBody("segment", `-0`),
		segBody("export_id", `"A"`),
		segBody("export_id", `"`+strings.Repeat("a", 128)+`"`),
		segBody("export_id", `"0._-"`),
		segBody("type", `"export\u005fsegment"`),
		`{"segments":3,"segment":2,"export_id":"e","type":"export_segment","version":1}`,
		" \n{ \"version\" : 1 , \"type\" : \"export_segment\" , \"export_id\" : \"e\" , \"segment\" : 0 , \"segments\" : 2 }\n",
	}
	invalidSegmentMessages = []string{
		``,
		`hello`,
		`null`,
		`[]`,
		`"export_segment"`,
		`{}`,
		segBody() + ` {}`,
		segBody() + `}`,
		segBody() + `]`,
		segBody("version", ``),
		segBody("version", `null`),
		segBody("version", `"1"`),
		segBody("version", `2`),
		segBody("version", `0`),
		segBody("version", `1.5`),
		segBody("type", ``),
		segBody("type", `null`),
		segBody("type", `1`),
		segBody("type", `""`),
		segBody("type", `"export_job"`),
		segBody("type", `"Export_Segment"`),
		segBody("type", `["export_segment"]`),
		segBody("export_id", ``),
		segBody("export_id", `null`),
		segBody("export_id", `5`),
		segBody("export_id", `""`),
		segBody("export_id", `"-a"`),
		segBody("export_id", `"../x"`),
		segBody("export_id", `"a/b"`),
		segBody("export_id", `"a b"`),
		segBody("export_id", `"`+strings.Repeat("a", 129)+`"`),
		segBody("export_id", `{"$ne":null}`),
		segBody("segment", ``),
		segBody("segment", `null`),
		segBody("segment", `"0"`),
		segBody("segment", `false`),
		segBody("segment", `-1`),
		segBody("segment", `0.5`),
		segBody("segment", `1e-1`),
		segBody("segment", `10000`, "segments", `10000`),
		segBody("segment", `1e30`, "segments", `10000`),
		segBody("segments", ``),
		segBody("segments", `null`),
		segBody("segments", `"2"`),
		segBody("segments", `[2]`),
		segBody("segments", `0`),
		segBody("segments", `1`),
		segBody("segments", `-2`),
		segBody("segments", `2.5`),
		segBody("segments", `10001`),
		segBody("segments", `1e4000`),
		`{"version":1,"type":"export_segment","export_id":"e","segment":0,"segments":2,"kind":"registrations"}`,
		`{"version":1,"type":"export_segment","export_id":"e","segment":0,"segments":2,"params":{}}`,
		`{"version":1,"Type":"export_segment","export_id":"e","segment":0,"segments":2}`,
		`{"version":1,"type":"export_segment","export_id":"e","Segment":0,"segments":2}`,
		`{"version":1,"type":"export_segment","export_id":"e","segment":0,"segments":2,"":1}`,
		`{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c"}}`,
	}
	// Valid to the schema, refused by the decoder only: see segmentSchemaCannotSay.
	segmentMessagesSchemaCannotRefuse = []string{
		segBody("segment", `2`),
		segBody("segment", `9999`, "segments", `2`),
		segBody("segment", `5`, "segments", `5.0`),
		`{"version":1,"type":"export_segment","export_id":"e","segment":0,"segment":1,"segments":2}`,
		`{"version":1,"version":1,"type":"export_segment","export_id":"e","segment":0,"segments":2}`,
		segBody() + strings.Repeat(" ", MaxMessageBytes),
	}
)

// The segment schema and DecodeSegment accept and refuse the same messages.
func TestSegmentSchemaAgreesWithDecoder(t *testing.T) {
	for _, body := range validSegmentMessages {
		if p := segmentSchemaValidate(t, []byte(body)); p != nil {
			t.Errorf("schema refuses valid %.200q: %v", body, p)
		}
		if _, err := DecodeSegment([]byte(body)); err != nil {
			t.Errorf("decoder refuses valid %.200q: %v", body, err)
		}
	}
	for _, body := range invalidSegmentMessages {
		if p := segmentSchemaValidate(t, []byte(body)); p == nil {
			t.Errorf("schema accepts invalid %.200q", body)
		}
		if _, err := DecodeSegment([]byte(body)); err == nil {
			t.Errorf("decoder accepts invalid %.200q", body)
		}
	}
	for _, body := range segmentMessagesSchemaCannotRefuse {
		if p := segmentSchemaValidate(t, []byte(body)); p != nil {
			t.Errorf("schema refuses %.200q (it cannot say what is wrong with it): %v", body, p)
		}
		if _, err := DecodeSegment([]byte(body)); err == nil || !segmentSchemaCannotSay([]byte(body), err) {
			t.Errorf("decoder: %v for %.200q, want only a problem the schema cannot say", err, body)
		}
	}
}

// The segment schema names what the code allows.
func TestSegmentSchemaMatchesCode(t *testing.T) {
	root := loadSegmentSchema(t).(map[string]any)
	props := root["properties"].(map[string]any)
	var fields []string
	mt := reflect.TypeFor[SegmentMessage]()
	for i := range mt.NumField() {
		name, _, _ := strings.Cut(mt.Field(i).Tag.Get("json"), ",")
		fields = append(fields, name)
	}
	if got := sortedKeys(props); !slices.Equal(got, sorted(fields)) || !slices.Equal(got, sorted(segmentMessageFields)) {
		t.Errorf("schema properties %v, SegmentMessage fields %v, decoder fields %v", got, sorted(fields), sorted(segmentMessageFields))
	}
	if got := strs(root["required"]); !slices.Equal(sorted(got), sorted(segmentMessageFields)) {
		t.Errorf("required = %v, want every field", got)
	}
	if root["additionalProperties"] != false {
		t.Errorf("additionalProperties = %v, want false", root["additionalProperties"])
	}
	prop := func(name, kw string) any { return props[name].(map[string]any)[kw] }
	num := func(v any) string { s, _ := v.(interface{ String() string }); return s.String() }
	if got := prop("version", "const"); num(got) != "1" || CurrentVersion != 1 {
		t.Errorf("version const %v, CurrentVersion %d", got, CurrentVersion)
	}
	if got := prop("type", "const"); got != SegmentMessageType {
		t.Errorf("type const %v, code %q", got, SegmentMessageType)
	}
	jobIDPattern := loadSchema(t).(map[string]any)["properties"].(map[string]any)["export_id"].(map[string]any)["pattern"]
	if got := prop("export_id", "pattern"); got != exportIDPattern.String() || got != jobIDPattern {
		t.Errorf("export_id pattern %v, code %v, job message schema %v", got, exportIDPattern, jobIDPattern)
	}
	for _, tc := range []struct {
		name   string
		lo, hi int
	}{{"segment", 0, MaxSegments - 1}, {"segments", MinSegments, MaxSegments}} {
		if prop(tc.name, "type") != "integer" || num(prop(tc.name, "minimum")) != strconv.Itoa(tc.lo) || num(prop(tc.name, "maximum")) != strconv.Itoa(tc.hi) {
			t.Errorf("%s: type %v from %v to %v, code from %d to %d", tc.name, prop(tc.name, "type"), prop(tc.name, "minimum"), prop(tc.name, "maximum"), tc.lo, tc.hi)
		}
	}
	for _, want := range []string{"never by upstream", "one of these per segment", "16384"} {
		if !strings.Contains(root["description"].(string), want) {
			t.Errorf("description does not say %q", want)
		}
	}
}

// FuzzDecodeSegment: DecodeSegment never panics, agrees with the schema (but for what the
// schema cannot say), refuses with permanent errors, and a message it accepts re-encodes to
// the same message, byte-stable.
func FuzzDecodeSegment(f *testing.F) {
	for _, s := range slices.Concat(validSegmentMessages, invalidSegmentMessages, segmentMessagesSchemaCannotRefuse) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := DecodeSegment(body)
		schemaOK := segmentSchemaValidate(t, body) == nil
		switch {
		case err == nil && !schemaOK:
			t.Fatalf("decoder accepts %q, the schema refuses it", body)
		case err != nil && schemaOK && !segmentSchemaCannotSay(body, err):
			t.Fatalf("schema accepts %q, the decoder refuses it: %v", body, err)
		}
		if err != nil {
			if _, ok := IsPermanent(err); !ok {
				t.Fatalf("error is not permanent: %v", err)
			}
			return
		}
		if !IsSegmentMessage(body) {
			t.Fatalf("IsSegmentMessage(%q) = false for a message DecodeSegment accepts", body)
		}
		b1, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v): %v", m, err)
		}
		m1, err := DecodeSegment(b1)
		if err != nil || m1 != m {
			t.Fatalf("re-decode of %s: %+v, %v; want %+v", b1, m1, err, m)
		}
		if b2, _ := m1.Encode(); !bytes.Equal(b1, b2) {
			t.Fatalf("encoding not stable:\n%s\n%s", b1, b2)
		}
	})
}

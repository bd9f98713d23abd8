package jobs

import (
	"bytes"
	"strings"
	"testing"

	"github.com/verifiedfan/export-service/jobs/encode"
)

func TestDecodeValid(t *testing.T) {
	m, err := Decode([]byte(`{"version":1,"export_id":"exp-1","kind":"registrations","params":{"campaign_id":"c1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != encode.FormatCSV || m.Destination != DefaultDestination {
		t.Errorf("defaults not applied: %+v", m)
	}
	p, err := DefaultRegistry().Plan(m)
	if err != nil {
		t.Fatal(err)
	}
	if p.Vars["campaign"] != "c1" || p.Collection != "registrations" {
		t.Errorf("plan = %+v", p)
	}
}

// Every bad message is a permanent error whose text names what is wrong.
func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, body, reason, mention string
	}{
		{"not json", `hello`, "malformed_message", "not valid JSON"},
		{"empty", ``, "malformed_message", "empty"},
		{"array", `[1,2]`, "malformed_message", "expected shape"},
		{"trailing", `{"version":1} {}`, "malformed_message", "after the JSON object"},
		{"unknown field", `{"version":1,"export_id":"e","kind":"registrations","bucket":"evil","params":{}}`, "malformed_message", `"bucket"`},
		{"wrong type", `{"version":"1","export_id":"e","kind":"registrations","params":{}}`, "malformed_message", `field "version"`},
		{"no version", `{"export_id":"e","kind":"registrations","params":{}}`, "invalid_message", `"version": required`},
		{"future version", `{"version":2,"export_id":"e","kind":"registrations","params":{}}`, "invalid_message", "not supported"},
		{"bad export id", `{"version":1,"export_id":"../x","kind":"registrations","params":{}}`, "invalid_message", `"export_id"`},
		{"no kind", `{"version":1,"export_id":"e","params":{}}`, "invalid_message", `"kind": required`},
		{"bad format", `{"version":1,"export_id":"e","kind":"registrations","format":"xlsx","params":{}}`, "invalid_message", `"format"`},
		{"no params", `{"version":1,"export_id":"e","kind":"registrations"}`, "invalid_message", `"params": required`},
		{"oversize", `{"version":1,"export_id":"` + strings.Repeat("a", MaxMessageBytes) + `"}`, "oversize_message", "bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.body))
			reason, ok := IsPermanent(err)
			if !ok || string(reason) != tc.reason || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("Decode(%.60q) = %v (reason %q), want a permanent %q error mentioning %q", tc.body, err, reason, tc.reason, tc.mention)
			}
		})
	}
}

// A key repeated in any object, at any depth, is refused as malformed, naming the key by its
// full path: readers disagree on which of the two counts (encoding/json and most validators
// keep the last, others the first), so one body could be two different exports.
func TestDecodeRefusesDuplicateKeys(t *testing.T) {
	const tail = `"export_id":"e","kind":"registrations"`
	for _, tc := range []struct {
		name, body string
		want       []string // every duplicate, each named once
	}{
		{"top level", `{"version":1,` + tail + `,"params":{"campaign_id":"a"},"params":{"campaign_id":"b"}}`, []string{`field "params": the key appears more than once`}},
		{"escaped spelling", `{"version":1,` + tail + `,"par\u0061ms":{"campaign_id":"a"},"params":{"campaign_id":"b"}}`, []string{`field "params"`}},
		{"scalar", `{"version":1,"version":1,` + tail + `,"params":{"campaign_id":"a"}}`, []string{`field "version"`}},
		{"in params", `{"version":1,` + tail + `,"params":{"campaign_id":"a","status":"verified","campaign_id":"b"}}`, []string{`field "params.campaign_id"`}},
		{"in csv", `{"version":1,` + tail + `,"csv":{"bom":true,"bom":false},"params":{"campaign_id":"a"}}`, []string{`field "csv.bom"`}},
		{"in ndjson", `{"version":1,` + tail + `,"format":"ndjson","ndjson":{"mode":"plain","mode":"relaxed_extjson"},"params":{"campaign_id":"a"}}`, []string{`field "ndjson.mode"`}},
		{"nested object", `{"version":1,` + tail + `,"params":{"campaign_id":{"$eq":"a","$eq":"b"}}}`, []string{`field "params.campaign_id.$eq"`}},
		{"object in an array", `{"version":1,` + tail + `,"params":{"fields":["a",{"x":1,"y":[{"z":1,"z":2}],"x":2}]}}`, []string{`field "params.fields[1].y[0].z"`, `field "params.fields[1].x"`}},
		{"three times, named once", `{"version":1,` + tail + `,"params":{"status":"a","status":"b","status":"c"}}`, []string{`field "params.status"`}},
		{"all at once", `{"version":1,"kind":"k",` + tail + `,"csv":{"delimiter":";","delimiter":","},"params":{"campaign_id":"a","campaign_id":"b"}}`, []string{`field "kind"`, `field "csv.delimiter"`, `field "params.campaign_id"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.body))
			reason, ok := IsPermanent(err)
			if !ok || reason != "malformed_message" {
				t.Fatalf("Decode(%s) = %v (reason %q), want a permanent malformed_message error", tc.body, err, reason)
			}
			for _, w := range tc.want {
				if strings.Count(err.Error(), w) != 1 {
					t.Errorf("error %q names %s %d times, want once", err, w, strings.Count(err.Error(), w))
				}
			}
			if got := strings.Count(err.Error(), "appears more than once"); got != len(tc.want) {
				t.Errorf("error %q reports %d duplicates, want %d", err, got, len(tc.want))
			}
		})
	}
	// The same key in two different objects is no duplicate.
	body := `{"version":1,` + tail + `,"csv":{"delimiter":";"},"params":{"campaign_id":"a","status":"verified"}}`
	if _, err := Decode([]byte(body)); err != nil {
		t.Errorf("Decode(%s): %v", body, err)
	}
}

func TestPlanRefuses(t *testing.T) {
	reg := DefaultRegistry()
	for _, tc := range []struct {
		name, body, reason, mention string
	}{
		{"unknown kind", `{"version":1,"export_id":"e","kind":"users","params":{}}`, "unknown_kind", "unknown kind"},
		{"missing campaign", `{"version":1,"export_id":"e","kind":"registrations","params":{}}`, "invalid_params", "params.campaign_id"},
		{"operator in param", `{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":{"$ne":null}}}`, "invalid_params", "campaign_id"},
		{"unknown param", `{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","filter":{}}}`, "invalid_params", `field "params.filter": unknown field`},
		{"bad status", `{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","status":"x"}}`, "invalid_params", "params.status"},
		{"bad range", `{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","created_from":"2026-02-01T00:00:00Z","created_to":"2026-01-01T00:00:00Z"}}`, "invalid_params", "created_to"},
		{"bad delta range", `{"version":1,"export_id":"e","kind":"access_codes","params":{"campaign_id":"c","updated_from":"2026-02-01T00:00:00Z","updated_to":"2026-02-01T00:00:00Z"}}`, "invalid_params", `field "params.updated_to": must be after params.updated_from`},
		{"bad delta time", `{"version":1,"export_id":"e","kind":"registrations","params":{"campaign_id":"c","updated_from":"yesterday"}}`, "invalid_params", `field "params.updated_from": "yesterday" is not an RFC 3339 date-time`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Decode([]byte(tc.body))
			if err == nil {
				_, err = reg.Plan(m)
			}
			reason, ok := IsPermanent(err)
			if !ok || string(reason) != tc.reason || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("got %v (reason %q), want a permanent %q error mentioning %q", err, reason, tc.reason, tc.mention)
			}
		})
	}
}

// The message's csv and ndjson objects become the encoder's options.
func TestMessageEncoderOptions(t *testing.T) {
	for body, want := range map[string]encode.Options{
		`{"version":1,"export_id":"e","kind":"k","params":{}}`:                                                       {},
		`{"version":1,"export_id":"e","kind":"k","csv":{"delimiter":";","bom":true},"params":{}}`:                    {Delimiter: ';', BOM: true},
		`{"version":1,"export_id":"e","kind":"k","csv":{"delimiter":"\t"},"params":{}}`:                              {Delimiter: '\t'},
		`{"version":1,"export_id":"e","kind":"k","csv":{"delimiter":"|"},"params":{}}`:                               {Delimiter: '|'},
		`{"version":1,"export_id":"e","kind":"k","format":"ndjson","ndjson":{"mode":"relaxed_extjson"},"params":{}}`: {NDJSONMode: encode.NDJSONRelaxedExtJSON},
		`{"version":1,"export_id":"e","kind":"k","format":"ndjson","ndjson":{},"params":{}}`:                         {},
	} {
		m, err := Decode([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if got := m.EncoderOptions(); got != want {
			t.Errorf("%s: EncoderOptions() = %+v, want %+v", body, got, want)
		}
		var buf bytes.Buffer
		if _, err := encode.New(m.Format, &buf, []encode.Column{{Header: "a", Path: "a"}}, m.EncoderOptions()); err != nil {
			t.Errorf("%s: encode.New refuses the options: %v", body, err)
		}
	}
}

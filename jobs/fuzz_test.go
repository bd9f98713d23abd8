package jobs

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/verifiedfan/export-service/internal/jsontest"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// FuzzDecode: the decoder never panics, agrees with the JSON Schema, reads a message it accepts
// as every JSON reader does (whether it keeps the first or the last of a repeated key), and a
// message it accepts re-encodes to one it decodes to the same message, byte-stable from then on.
func FuzzDecode(f *testing.F) {
	for _, s := range validMessages {
		f.Add([]byte(s))
	}
	for _, s := range invalidMessages {
		f.Add([]byte(s))
	}
	for _, s := range duplicateKeyMessages {
		f.Add([]byte(s))
	}
	reg := DefaultRegistry()
	f.Fuzz(func(t *testing.T, body []byte) {
		checkSchemaAgrees(t, body)
		m, err := Decode(body)
		if err != nil {
			if _, ok := IsPermanent(err); !ok {
				t.Fatalf("Decode error is not permanent: %v", err)
			}
			return
		}
		if last, err := jsontest.Decode(body); err != nil || !jsontest.Equal(last, decodeFirstWins(t, body)) {
			t.Fatalf("accepted %q, which a first-wins reader and a last-wins reader read differently (%v)", body, err)
		}
		_, planErr := reg.Plan(m)
		if planErr != nil {
			if _, ok := IsPermanent(planErr); !ok {
				t.Fatalf("Plan error is not permanent: %v", planErr)
			}
		}
		b1, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v): %v", m, err)
		}
		m1, err := Decode(b1)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", b1, err)
		}
		p0, _ := jsontest.Decode(m.Params)
		p1, _ := jsontest.Decode(m1.Params)
		if !jsontest.Equal(p0, p1) {
			t.Fatalf("params changed: %s -> %s", m.Params, m1.Params)
		}
		m.Params, m1.Params = nil, nil
		if !reflect.DeepEqual(m, m1) {
			t.Fatalf("message changed:\n%+v\n%+v", m, m1)
		}
		m1, _ = Decode(b1)
		b2, _ := m1.Encode()
		if !bytes.Equal(b1, b2) {
			t.Fatalf("encoding not stable:\n%s\n%s", b1, b2)
		}
		if _, err := reg.Plan(m1); (err == nil) != (planErr == nil) {
			t.Fatalf("Plan verdict changed: %v, then %v", planErr, err)
		}
	})
}

// FuzzDecodeFields builds messages from fuzzed field values (where FuzzDecode's byte mutations
// rarely reach): the schema and the decoder must agree on every one.
func FuzzDecodeFields(f *testing.F) {
	f.Add("1", "exp-1", "registrations", "csv", "internal", "c1", "verified", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00+01:00", "ga", ";", byte(0))
	f.Add("1.0", "e", "access_codes", "ndjson", "partner_x", "cmp-x", "assigned", "", "", "vip_1", "relaxed_extjson", byte(1))
	f.Add("1e0", "e.1", "collection_fields", "csv", "internal", "c", "registrations", "status", "fan.country", "_id", "\t", byte(2))
	f.Add("2", "-x", "registrations", "xml", "Bad", "", "x", "2026-02-30T00:00:00Z", "1999-12-31T23:59:59Z", "", "|", byte(3))
	f.Add("1", "delta", "registrations", "csv", "internal", "c1", "verified", "2026-11-26T09:00:00Z", "2026-11-26T10:00:00+01:00", "", ";", byte(64))
	f.Add("1", "delta", "access_codes", "ndjson", "internal", "c1", "assigned", "2026-11-26T09:00:00Z", "2026-11-27T00:00:00Z", "ga", "plain", byte(36))
	f.Fuzz(func(t *testing.T, version, exportID, kind, format, dest, campaign, status, from, to, tier, opt string, shape byte) {
		if !json.Valid([]byte(version)) {
			version = strconv.Quote(version)
		}
		q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
		var params []string
		if shape&1 == 0 {
			params = append(params, `"campaign_id":`+q(campaign))
		}
		switch kind {
		case "registrations":
			params = append(params, `"status":`+q(status))
			window := "created"
			if shape&64 != 0 {
				window = "updated"
			}
			if from != "" {
				params = append(params, `"`+window+`_from":`+q(from))
			}
			if to != "" {
				params = append(params, `"`+window+`_to":`+q(to))
			}
		case "access_codes":
			params = append(params, `"status":`+q(status), `"tier":`+q(tier))
			if from != "" {
				params = append(params, `"updated_from":`+q(from))
			}
			if to != "" {
				params = append(params, `"updated_to":`+q(to))
			}
		case "collection_fields":
			params = append(params, `"collection":`+q(status))
			if shape&2 == 0 {
				params = append(params, `"fields":[`+q(from)+`,`+q(to)+`]`)
			}
		}
		fields := []string{`"version":` + version, `"export_id":` + q(exportID), `"kind":` + q(kind), `"params":{` + strings.Join(params, ",") + `}`}
		if shape&4 == 0 {
			fields = append(fields, `"format":`+q(format))
		}
		if shape&8 == 0 {
			fields = append(fields, `"destination":`+q(dest))
		}
		switch shape >> 4 & 3 {
		case 1:
			fields = append(fields, `"csv":{"delimiter":`+q(opt)+`,"bom":true}`)
		case 2:
			fields = append(fields, `"ndjson":{"mode":`+q(opt)+`}`)
		case 3:
			fields = append(fields, `"requested_by":`+q(opt))
		}
		checkSchemaAgrees(t, []byte("{"+strings.Join(fields, ",")+"}"))
	})
}

// FuzzKeyTemplate: whatever the template and the values, a rendered data key is never a
// manifest key, its own or another export's.
func FuzzKeyTemplate(f *testing.F) {
	f.Add("{export_id}", "x", "x.manifest.json", "c")
	f.Add("{export_id}.json", "x.manifest", "x", "c")
	f.Add("{export_id}manifest.json", "x.", "x", "c")
	f.Add("{campaign}/{export_id}", "x", "y", "c.manifest.json")
	f.Add(DefaultKeyTemplate, "x.manifest.json", "x", "c")
	f.Fuzz(func(t *testing.T, src, id1, id2, campaign string) {
		tmpl, err := ParseKeyTemplate(src)
		if err != nil {
			return
		}
		render := func(id string) (string, bool) {
			key, err := tmpl.Render("p/", KeyVars{ExportID: id, Kind: "k", Campaign: campaign, Format: encode.FormatNDJSON, Date: time.Unix(0, 0)})
			return key, err == nil
		}
		k1, ok1 := render(id1)
		k2, ok2 := render(id2)
		for _, k := range []string{k1, k2} {
			if strings.HasSuffix(k, ManifestSuffix) {
				t.Fatalf("template %q rendered the manifest-like key %q", src, k)
			}
		}
		if ok1 && ok2 && (k1 == ManifestKey(k2) || k2 == ManifestKey(k1)) {
			t.Fatalf("template %q: %q and %q collide with a manifest", src, k1, k2)
		}
	})
}

// decodeFirstWins decodes one JSON value (numbers as json.Number) keeping the first of a
// repeated key, as some JSON readers do; jsontest.Decode keeps the last, as encoding/json does.
func decodeFirstWins(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var value func() any
	value = func() any {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("decodeFirstWins(%q): %v", b, err)
		}
		switch tok {
		case json.Delim('{'):
			obj := map[string]any{}
			for dec.More() {
				k, _ := dec.Token()
				v := value()
				if _, seen := obj[k.(string)]; !seen {
					obj[k.(string)] = v
				}
			}
			_, _ = dec.Token()
			return obj
		case json.Delim('['):
			arr := []any{}
			for dec.More() {
				arr = append(arr, value())
			}
			_, _ = dec.Token()
			return arr
		}
		return tok
	}
	return value()
}

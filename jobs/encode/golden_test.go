package encode_test

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/verifiedfan/export-service/jobs"
	"github.com/verifiedfan/export-service/jobs/encode"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden/")

func oid(hex string) bson.ObjectID {
	id, err := bson.ObjectIDFromHex(hex)
	if err != nil {
		panic(err)
	}
	return id
}

func dec128(s string) bson.Decimal128 {
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		panic(err)
	}
	return d
}

var (
	goldenWhen  = time.Date(2026, 11, 26, 9, 5, 7, 123e6, time.UTC)
	goldenWhen2 = time.Date(2027, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
)

// goldenDocs are the documents each kind's golden files are written from. Together they cover
// every BSON type the kinds' columns touch (ObjectId, string, int32, int64, double, decimal128,
// bool, date, timestamp, null, array, document, binary), nested documents, arrays, missing
// fields, paths through non-documents, Unicode, delimiters, quotes, CR/LF, and formula-looking
// text next to the signed numbers that are left alone.
var goldenDocs = map[string][]bson.D{
	"registrations": {
		{
			{Key: "_id", Value: oid("65f1a2b3c4d5e6f708192a3b")}, {Key: "campaign_id", Value: "cmp-coldplay-spheres"},
			{Key: "fan", Value: bson.D{
				{Key: "email", Value: "ana.garcia.1@example.com"}, {Key: "first_name", Value: "Ana"}, {Key: "last_name", Value: "García"},
				{Key: "postal_code", Value: "02139"}, {Key: "country", Value: "US"}, {Key: "locale", Value: "en-US"}, {Key: "phone", Value: "+15555550123"},
			}},
			{Key: "status", Value: "verified"}, {Key: "marketing_opt_in", Value: true}, {Key: "score", Value: int32(742)},
			{Key: "tags", Value: bson.A{"fan-club", "vip"}}, {Key: "source", Value: "web"},
			{Key: "created_at", Value: goldenWhen}, {Key: "updated_at", Value: goldenWhen2},
		},
		{
			// Text that needs quoting, Unicode, formula-looking values.
			{Key: "_id", Value: oid("65f1a2b3c4d5e6f708192a3c")}, {Key: "campaign_id", Value: "cmp-coldplay-spheres"},
			{Key: "fan", Value: bson.D{
				{Key: "email", Value: "=HYPERLINK(\"http://evil.example\",\"click\")"}, {Key: "first_name", Value: "Zoë \"Zee\""},
				{Key: "last_name", Value: "O'Brien, Jr."}, {Key: "postal_code", Value: "-12345"}, {Key: "country", Value: "東京"},
				{Key: "locale", Value: "line1\nline2\r\nline3"}, {Key: "phone", Value: "+1 555 0100"},
			}},
			{Key: "status", Value: "@SUM(A1:A9)"}, {Key: "marketing_opt_in", Value: false}, {Key: "score", Value: int64(1) << 40},
			{Key: "tags", Value: bson.A{"🎫", "a,b", "\"q\"", int32(3), bson.D{{Key: "k", Value: "v"}}, bson.A{}}},
			{Key: "created_at", Value: time.Date(1969, 12, 31, 23, 59, 59, 999e6, time.UTC)},
		},
		{
			// Missing fields, null, and values of unexpected types.
			{Key: "_id", Value: "legacy-id-7"}, {Key: "campaign_id", Value: "cmp-coldplay-spheres"},
			{Key: "fan", Value: bson.D{
				{Key: "email", Value: " leading space"}, {Key: "first_name", Value: "\tTabbed"}, {Key: "last_name", Value: nil},
				{Key: "postal_code", Value: int32(2139)}, {Key: "country", Value: ""},
			}},
			{Key: "status", Value: "registered"}, {Key: "marketing_opt_in", Value: nil}, {Key: "score", Value: 4.5},
			{Key: "tags", Value: bson.A{}}, {Key: "created_at", Value: bson.Timestamp{T: 1767225600, I: 1}},
		},
		{
			// A fan that is not a document: every fan.* path is missing.
			{Key: "_id", Value: oid("65f1a2b3c4d5e6f708192a3d")}, {Key: "campaign_id", Value: "cmp-coldplay-spheres"},
			{Key: "fan", Value: "not-a-document"}, {Key: "score", Value: dec128("1234.5600")}, {Key: "marketing_opt_in", Value: int32(1)},
			{Key: "tags", Value: bson.D{{Key: "weird", Value: math.Inf(1)}, {Key: "bin", Value: bson.Binary{Data: []byte("hi")}}}},
		},
		{
			// Only an id.
			{Key: "_id", Value: oid("65f1a2b3c4d5e6f708192a3e")},
		},
	},
	"access_codes": {
		{
			{Key: "_id", Value: oid("6600000000000000000000a1")}, {Key: "code", Value: "KXQP-0042"}, {Key: "campaign_id", Value: "cmp-adele-munich"},
			{Key: "event_id", Value: "evt-1-007"}, {Key: "tier", Value: "floor"}, {Key: "status", Value: "assigned"},
			{Key: "registration_id", Value: oid("65f1a2b3c4d5e6f708192a3b")}, {Key: "email", Value: "léa.müller.3@example.org"},
			{Key: "assigned_at", Value: goldenWhen}, {Key: "expires_at", Value: goldenWhen2},
		},
		{
			{Key: "_id", Value: oid("6600000000000000000000a2")}, {Key: "code", Value: "-ABCD-0001"}, {Key: "campaign_id", Value: "cmp-adele-munich"},
			{Key: "event_id", Value: int64(42)}, {Key: "tier", Value: "vip; \"gold\""}, {Key: "status", Value: "assigned"},
			{Key: "registration_id", Value: "+4915112345678"}, {Key: "email", Value: "a@b.example\r\n=1+1"},
			{Key: "assigned_at", Value: time.Date(2000, 2, 29, 0, 0, 0, 1e6, time.UTC)},
		},
		{
			{Key: "_id", Value: oid("6600000000000000000000a3")}, {Key: "code", Value: "ZZZZ-9999"}, {Key: "campaign_id", Value: "cmp-adele-munich"},
			{Key: "status", Value: "assigned"}, {Key: "registration_id", Value: nil}, {Key: "expires_at", Value: nil},
		},
	},
	"collection_fields": {
		{
			{Key: "_id", Value: "cmp-coldplay-spheres"}, {Key: "name", Value: "Music of the Spheres, \"World Tour\""}, {Key: "artist", Value: "Coldplay"},
			{Key: "status", Value: "live"}, {Key: "markets", Value: bson.A{"US", "GB", bson.D{{Key: "code", Value: "DE"}, {Key: "cap", Value: int32(5)}}}},
			{Key: "starts_at", Value: goldenWhen}, {Key: "ends_at", Value: goldenWhen2},
			{Key: "created_at", Value: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, {Key: "updated_at", Value: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
			{Key: "secret_notes", Value: "never exported"},
		},
		{
			{Key: "_id", Value: "cmp-bad-bunny-pr"}, {Key: "name", Value: "=cmd|' /C calc'!A0"}, {Key: "artist", Value: "Bad Bunny 🐰"},
			{Key: "status", Value: "draft\nsecond line"}, {Key: "presale_starts_at", Value: goldenWhen},
		},
	},
}

// goldenPlans are the messages each kind's golden files are planned from.
var goldenParams = map[string]string{
	"registrations":     `{"campaign_id":"cmp-coldplay-spheres"}`,
	"access_codes":      `{"campaign_id":"cmp-adele-munich"}`,
	"collection_fields": `{"collection":"campaigns"}`,
}

var goldenVariants = []struct {
	name   string
	format encode.Format
	opts   encode.Options
}{
	{"csv", encode.FormatCSV, encode.Options{}},
	{"semicolon-bom.csv", encode.FormatCSV, encode.Options{Delimiter: ';', BOM: true}},
	{"ndjson", encode.FormatNDJSON, encode.Options{}},
	{"relaxed-extjson.ndjson", encode.FormatNDJSON, encode.Options{NDJSONMode: encode.NDJSONRelaxedExtJSON}},
}

// Each kind's output, in each format, is exactly the golden file. Run with -update after a
// deliberate change and review the diff.
func TestGolden(t *testing.T) {
	reg := jobs.DefaultRegistry()
	for _, k := range reg.Kinds() {
		docs, ok := goldenDocs[k.Name]
		if !ok {
			t.Errorf("kind %s has no golden documents", k.Name)
			continue
		}
		for _, v := range goldenVariants {
			t.Run(k.Name+"."+v.name, func(t *testing.T) {
				if !slices.Contains(k.Formats, v.format) {
					t.Skipf("kind %s has no format %s", k.Name, v.format)
				}
				plan, err := reg.Plan(jobs.Message{Kind: k.Name, Format: v.format, Params: json.RawMessage(goldenParams[k.Name])})
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				enc, err := encode.New(v.format, &buf, plan.Columns, v.opts)
				if err != nil {
					t.Fatal(err)
				}
				if err := enc.Begin(); err != nil {
					t.Fatal(err)
				}
				for _, d := range docs {
					if err := enc.Encode(encode.MustRaw(t, d)); err != nil {
						t.Fatal(err)
					}
				}
				got := buf.Bytes()
				checkWellFormed(t, v.format, v.opts, got, plan.Columns, len(docs))
				path := filepath.Join("testdata", "golden", k.Name+"."+v.name)
				if *update {
					if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("output differs from %s (run with -update and review the diff):\n got %q\nwant %q", path, got, want)
				}
			})
		}
	}
}

// checkWellFormed checks what a golden file must be whatever its content: CSV that
// encoding/csv reads as a header and one row per document of the columns' width; NDJSON lines
// that are each a JSON object with the columns' keys in order.
func checkWellFormed(t *testing.T, f encode.Format, opts encode.Options, out []byte, cols []encode.Column, docs int) {
	t.Helper()
	switch f {
	case encode.FormatCSV:
		if opts.BOM != bytes.HasPrefix(out, []byte("\xEF\xBB\xBF")) {
			t.Errorf("BOM: want %v", opts.BOM)
		}
		r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(out, []byte("\xEF\xBB\xBF"))))
		if opts.Delimiter != 0 {
			r.Comma = rune(opts.Delimiter)
		}
		r.FieldsPerRecord = len(cols)
		recs, err := r.ReadAll()
		if err != nil {
			t.Fatalf("encoding/csv: %v", err)
		}
		if len(recs) != docs+1 {
			t.Errorf("%d records, want %d", len(recs), docs+1)
		}
	case encode.FormatNDJSON:
		sc := bufio.NewScanner(bytes.NewReader(out))
		lines := 0
		for sc.Scan() {
			lines++
			dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
			if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
				t.Fatalf("line %d is not an object: %s", lines, sc.Bytes())
			}
			i := 0
			for ; dec.More(); i++ {
				key, _ := dec.Token()
				if i >= len(cols) || key != cols[i].Header {
					t.Fatalf("line %d: key %d is %v", lines, i, key)
				}
				var v json.RawMessage
				if err := dec.Decode(&v); err != nil {
					t.Fatalf("line %d: %v", lines, err)
				}
			}
			if i != len(cols) {
				t.Fatalf("line %d has %d keys, want %d", lines, i, len(cols))
			}
		}
		if lines != docs {
			t.Errorf("%d lines, want %d", lines, docs)
		}
	}
}

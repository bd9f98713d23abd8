package encode

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func mustRaw(t testing.TB, d bson.D) bson.Raw {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encodeCSV(t testing.TB, cols []Column, opts Options, docs ...bson.D) string {
	t.Helper()
	var buf bytes.Buffer
	enc, err := New(FormatCSV, &buf, cols, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.Begin(); err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		if err := enc.Encode(mustRaw(t, d)); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

func TestCSVCells(t *testing.T) {
	oid, _ := bson.ObjectIDFromHex("65f1a2b3c4d5e6f708192a3b")
	dec, _ := bson.ParseDecimal128("1234567890.123456789")
	when := time.Date(2026, 11, 26, 9, 5, 7, 123e6, time.FixedZone("x", 3600))
	cols := []Column{
		{"id", "_id"}, {"email", "fan.email"}, {"name", "fan.name"}, {"missing", "fan.nope"}, {"deep_missing", "a.b.c"},
		{"n32", "n32"}, {"n64", "n64"}, {"f", "f"}, {"neg", "neg"}, {"dec", "dec"}, {"ok", "ok"}, {"when", "when"},
		{"tags", "tags"}, {"nested", "fan"}, {"null", "null"},
	}
	doc := bson.D{
		{Key: "_id", Value: oid},
		{Key: "fan", Value: bson.D{{Key: "email", Value: "a@example.com"}, {Key: "name", Value: "O'Brien, \"Zoë\"\nline2"}}},
		{Key: "n32", Value: int32(-7)}, {Key: "n64", Value: int64(1) << 40}, {Key: "f", Value: 0.1}, {Key: "neg", Value: -2.5},
		{Key: "dec", Value: dec}, {Key: "ok", Value: true}, {Key: "when", Value: when},
		{Key: "tags", Value: bson.A{"vip", int32(3), bson.D{{Key: "k", Value: "v"}}}},
		{Key: "null", Value: nil},
	}
	got := encodeCSV(t, cols, Options{}, doc)
	recs, err := csv.NewReader(strings.NewReader(got)).ReadAll()
	if err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, got)
	}
	want := []string{"65f1a2b3c4d5e6f708192a3b", "a@example.com", "O'Brien, \"Zoë\"\nline2", "", "",
		"-7", "1099511627776", "0.1", "-2.5", "1234567890.123456789", "true", "2026-11-26T08:05:07.123Z",
		`["vip",3,{"k":"v"}]`, `{"email":"a@example.com","name":"O'Brien, \"Zoë\"\nline2"}`, ""}
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2", len(recs))
	}
	for i := range want {
		if recs[1][i] != want[i] {
			t.Errorf("column %s = %q, want %q", cols[i].Header, recs[1][i], want[i])
		}
	}
	if !strings.HasSuffix(got, "\r\n") {
		t.Error("rows must end with CRLF (RFC 4180)")
	}
}

func TestCSVFormulaEscaping(t *testing.T) {
	cols := []Column{{"v", "v"}}
	for _, tc := range []struct {
		in   any
		want string
	}{
		{"=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"},
		{"+1555", "+1555"}, // a signed number: read as a number, nothing to run
		{"-4.5", "-4.5"},
		{"+1 555", "'+1 555"}, // not only a number
		{"-1.2.3", "'-1.2.3"},
		{"+", "'+"},
		{"-.5", "'-.5"},
		{"+1+1", "'+1+1"},
		{"-1+2", "'-1+2"},
		{"@SUM(A1)", "'@SUM(A1)"},
		{"\tx", "'\tx"},
		{"\rx", "'\rx"},
		{"plain", "plain"},
		{int32(-5), "-5"}, // numbers are never escaped
		{-0.5, "-0.5"},
	} {
		got := encodeCSV(t, cols, Options{}, bson.D{{Key: "v", Value: tc.in}})
		recs, err := csv.NewReader(strings.NewReader(got)).ReadAll()
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if recs[1][0] != tc.want {
			t.Errorf("%#v -> %q, want %q", tc.in, recs[1][0], tc.want)
		}
	}
	got := encodeCSV(t, cols, Options{NoFormulaEscape: true}, bson.D{{Key: "v", Value: "=1+1"}})
	if !strings.Contains(got, "\r\n=1+1\r\n") {
		t.Errorf("with escaping off, got %q", got)
	}
}

func TestCSVDelimiterAndBOM(t *testing.T) {
	got := encodeCSV(t, []Column{{"a", "a"}, {"b", "b"}}, Options{Delimiter: ';', BOM: true},
		bson.D{{Key: "a", Value: "x;y"}, {Key: "b", Value: "z,w"}})
	want := "\xEF\xBB\xBFa;b\r\n\"x;y\";z,w\r\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := New(FormatCSV, &bytes.Buffer{}, nil, Options{Delimiter: '"'}); err == nil {
		t.Error("a quote as delimiter must be refused")
	}
}

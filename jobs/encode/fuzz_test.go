package encode

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

var signedNumber = regexp.MustCompile(`^[+-][0-9]+(\.[0-9]+)?$`)

// wantCSVText is what a CSV reader must get back for a document string s: s itself, prefixed
// with ' when a spreadsheet would run it as a formula, with CRLF read as LF (encoding/csv does
// that inside quoted cells, RFC 4180 allows both).
func wantCSVText(s string, escape bool) string {
	if escape && s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) && !signedNumber.MatchString(s) {
		s = "'" + s
	}
	return strings.ReplaceAll(s, "\r\n", "\n")
}

// validJSONText is s as a JSON reader gets it back from the encoder: every invalid byte is U+FFFD.
func validJSONText(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // range yields U+FFFD for each invalid byte
	}
	return b.String()
}

var fuzzDelimiters = []byte{',', ';', '\t', '|', ' ', ':', '-', '.', 'a', '0', '\'', '"', '\r', 0x80}

// FuzzCSV: any strings and numbers, in any delimiter the encoder accepts, come back from
// encoding/csv as exactly the expected cells: text as is (formula-prefixed by the rule),
// numbers in their documented form, nested values as JSON that decodes to the same values.
func FuzzCSV(f *testing.F) {
	f.Add("plain", "O'Brien, \"Zoë\"\nline2", "=HYPERLINK(\"x\")", int64(-5), 0.1, true, byte(0), true, false)
	f.Add("+15555550123", "-4.5", "@SUM(A1)", int64(math.MaxInt64), math.Inf(-1), false, byte(1), true, true)
	f.Add("", " lead", "\r\n", int64(0), -0.0, false, byte(2), false, false)
	f.Add("\tx", "\rx", "+-1", int64(1), 1e21, true, byte(3), true, false)
	f.Add("a\xffb", "\u2028", "-.5", int64(1), math.NaN(), true, byte(6), true, true)
	f.Fuzz(func(t *testing.T, a, b, c string, n int64, fl float64, ok bool, delimSel byte, escape, bom bool) {
		delim := fuzzDelimiters[int(delimSel)%len(fuzzDelimiters)]
		opts := Options{Delimiter: delim, BOM: bom, NoFormulaEscape: !escape}
		cols := []Column{{"a", "a"}, {"b", "nest.b"}, {"c", "c"}, {"n", "n"}, {"f", "f"}, {"ok", "ok"},
			{"missing", "nope"}, {"arr", "nest.arr"}, {"nest", "nest"}, {"a again", "a"}}
		doc := bson.D{
			{Key: "a", Value: a},
			{Key: "nest", Value: bson.D{{Key: "b", Value: b}, {Key: "arr", Value: bson.A{c, n}}}},
			{Key: "c", Value: c}, {Key: "n", Value: n}, {Key: "f", Value: fl}, {Key: "ok", Value: ok},
		}
		var buf bytes.Buffer
		enc, err := New(FormatCSV, &buf, cols, opts)
		if delim == '"' || delim == '\'' || delim == '\r' || delim >= 0x80 {
			if err == nil {
				t.Fatalf("delimiter %q accepted", delim)
			}
			return
		}
		if err != nil {
			t.Fatalf("delimiter %q: %v", delim, err)
		}
		raw := mustRaw(t, doc)
		if err := enc.Begin(); err != nil {
			t.Fatal(err)
		}
		for _, d := range []bson.Raw{raw, mustRaw(t, bson.D{}), raw} {
			if err := enc.Encode(d); err != nil {
				t.Fatal(err)
			}
		}
		out := buf.Bytes()
		if bom != bytes.HasPrefix(out, []byte("\xEF\xBB\xBF")) {
			t.Fatalf("BOM %v, output %.20q", bom, out)
		}
		if !utf8.Valid(out) && utf8.ValidString(a) && utf8.ValidString(b) && utf8.ValidString(c) {
			t.Fatalf("valid UTF-8 in, invalid out: %q", out)
		}
		recs := readCSV(t, bytes.TrimPrefix(out, []byte("\xEF\xBB\xBF")), delim, len(cols))
		if len(recs) != 4 {
			t.Fatalf("%d records, want 4:\n%q", len(recs), out)
		}
		for i, c := range cols {
			if recs[0][i] != c.Header {
				t.Fatalf("header %d = %q, want %q", i, recs[0][i], c.Header)
			}
		}
		for _, row := range [][]string{recs[1], recs[3]} {
			want := []string{wantCSVText(a, escape), wantCSVText(b, escape), wantCSVText(c, escape), strconv.FormatInt(n, 10),
				floatCell(strconv.FormatFloat(fl, 'f', -1, 64)), strconv.FormatBool(ok), "", row[7], row[8], wantCSVText(a, escape)}
			if !reflect.DeepEqual(row, want) {
				t.Fatalf("delimiter %q escape %v:\n got %q\nwant %q\ncsv %q", delim, escape, row, want, out)
			}
			var arr []any
			dec := json.NewDecoder(strings.NewReader(row[7]))
			dec.UseNumber()
			if err := dec.Decode(&arr); err != nil || len(arr) != 2 || arr[0] != validJSONText(c) || arr[1] != json.Number(strconv.FormatInt(n, 10)) {
				t.Fatalf("nested array cell %q decodes to %#v (%v), want [%q %d]", row[7], arr, err, c, n)
			}
			var nest struct{ B string }
			if err := json.Unmarshal([]byte(row[8]), &nest); err != nil || nest.B != validJSONText(b) {
				t.Fatalf("nested document cell %q decodes to %+v (%v)", row[8], nest, err)
			}
		}
		if !reflect.DeepEqual(recs[2], make([]string, len(cols))) {
			t.Fatalf("empty document row = %q", recs[2])
		}

		// One column alone: an empty cell must still be a row.
		buf.Reset()
		enc, _ = New(FormatCSV, &buf, cols[:1], opts)
		_ = enc.Begin()
		_ = enc.Encode(raw)
		_ = enc.Encode(mustRaw(t, bson.D{}))
		recs = readCSV(t, bytes.TrimPrefix(buf.Bytes(), []byte("\xEF\xBB\xBF")), delim, 1)
		if want := [][]string{{"a"}, {wantCSVText(a, escape)}, {""}}; !reflect.DeepEqual(recs, want) {
			t.Fatalf("one column: got %q, want %q\ncsv %q", recs, want, buf.Bytes())
		}
	})
}

func floatCell(f string) string {
	switch f {
	case "+Inf":
		return "Infinity"
	case "-Inf":
		return "-Infinity"
	}
	return f
}

func readCSV(t *testing.T, data []byte, delim byte, fields int) [][]string {
	t.Helper()
	r := csv.NewReader(bytes.NewReader(data))
	r.Comma = rune(delim)
	r.FieldsPerRecord = fields
	var recs [][]string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return recs
		}
		if err != nil {
			t.Fatalf("encoding/csv cannot read the output (delimiter %q): %v\n%q", delim, err, data)
		}
		recs = append(recs, rec)
	}
}

// FuzzMatcher: for any valid BSON document, the one-pass matcher finds what LookupErr finds.
func FuzzMatcher(f *testing.F) {
	for _, d := range []bson.D{
		{{Key: "a", Value: bson.D{{Key: "b", Value: int32(1)}}}, {Key: "a", Value: "dup"}},
		{{Key: "fan", Value: bson.D{{Key: "email", Value: "x"}, {Key: "email", Value: "y"}}}, {Key: "tags", Value: bson.A{"a", bson.D{{Key: "k", Value: 1.5}}}}},
		{{Key: "_id", Value: bson.NewObjectID()}, {Key: "b", Value: bson.A{bson.A{"x"}}}},
	} {
		b, _ := bson.Marshal(d)
		f.Add(b)
	}
	paths := []string{"a", "a.b", "a.b.c", "fan.email", "fan", "tags.0", "tags.1.k", "b.0.0", "_id", "", "a..b"}
	m, slots := newMatcher(paths)
	f.Fuzz(func(t *testing.T, doc []byte) {
		// LookupErr reads past a document's declared length when the slice is longer; the
		// matcher stays within it. A cursor's documents are exactly their length.
		if bson.Raw(doc).Validate() != nil || len(doc) < 4 || int(int32(binary.LittleEndian.Uint32(doc))) != len(doc) {
			m.match(doc) // must not panic on garbage either
			return
		}
		m.match(doc)
		for i, p := range paths {
			want, _ := bsoncore.Document(doc).LookupErr(strings.Split(p, ".")...)
			if got := m.value(slots[i]); !got.Equal(want) {
				t.Fatalf("path %q: matcher %v, LookupErr %v", p, got, want)
			}
		}
	})
}

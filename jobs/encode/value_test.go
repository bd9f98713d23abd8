package encode

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/verifiedfan/export-service/internal/jsontest"
)

func TestAppendISOMillisMatchesTime(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := []int64{0, -1, 1, 999, -999, -1000, -1001, 86399999, -86400000, 951782400000, 4107542399999,
		-62167219200000, -62167219200001, 253402300799999, 253402300800000, math.MinInt64, math.MaxInt64,
		time.Date(2000, 2, 29, 12, 0, 0, 0, time.UTC).UnixMilli(), time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC).UnixMilli()}
	for range 200000 {
		cases = append(cases, r.Int64N(2*253402300800000)-253402300800000)
	}
	for _, ms := range cases {
		got := string(appendISOMillis(nil, ms))
		want := time.UnixMilli(ms).UTC().Format(isoMillis)
		if got != want {
			t.Fatalf("appendISOMillis(%d) = %s, want %s", ms, got, want)
		}
	}
}

// The encoders' date cache writes what appendISOMillis writes, in any order of dates.
func TestDateCache(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var c dateCache
	ms := int64(1767225600000)
	for i := range 100000 {
		switch i % 3 {
		case 0:
			ms += r.Int64N(3600000) // the same day, mostly
		case 1:
			ms = r.Int64N(2*253402300800000) - 253402300800000
		case 2:
			ms = -r.Int64N(86400000 * 3)
		}
		if i%1000 == 0 {
			ms = []int64{math.MinInt64, math.MaxInt64, 253402300800000, -62167219200001}[i/1000%4]
		}
		if got, want := string(c.append(nil, ms)), string(appendISOMillis(nil, ms)); got != want {
			t.Fatalf("dateCache.append(%d) = %s, want %s", ms, got, want)
		}
	}
}

// The one-pass matcher finds what bsoncore's LookupErr finds, path by path.
func TestMatcherMatchesLookup(t *testing.T) {
	paths := []string{"_id", "a", "a.b", "a.b.c", "a.x", "arr.0", "arr.1.k", "dup", "dup.k", "s.k", "missing", "a.b", "z"}
	docs := []bson.D{
		{{Key: "_id", Value: int32(1)}, {Key: "a", Value: bson.D{{Key: "b", Value: bson.D{{Key: "c", Value: "deep"}}}, {Key: "x", Value: 2.5}}}},
		{{Key: "a", Value: "not a doc"}, {Key: "arr", Value: bson.A{"zero", bson.D{{Key: "k", Value: true}}}}},
		// Duplicated keys: the first one counts, even when it has no sub-document.
		{{Key: "dup", Value: int32(1)}, {Key: "dup", Value: bson.D{{Key: "k", Value: "second"}}}},
		{{Key: "dup", Value: bson.D{{Key: "j", Value: 1}}}, {Key: "dup", Value: bson.D{{Key: "k", Value: "second"}}}},
		{{Key: "s", Value: bson.A{bson.D{{Key: "k", Value: 1}}}}, {Key: "z", Value: nil}},
		{},
		{{Key: "a", Value: bson.D{{Key: "b", Value: bson.A{}}}}, {Key: "_id", Value: "last"}},
	}
	m, slots := newMatcher(paths)
	for _, d := range append(docs, docs...) {
		if len(docs) > 0 && m.gen == uint32(len(docs)) {
			m.gen = math.MaxUint32 - 1 // the document counter wraps around midway
		}
		raw := mustRaw(t, d)
		m.match(raw)
		for i, p := range paths {
			want, _ := bsoncore.Document(raw).LookupErr(strings.Split(p, ".")...)
			if got := m.value(slots[i]); !got.Equal(want) {
				t.Errorf("doc %v path %s: matcher %v, LookupErr %v", d, p, got, want)
			}
		}
	}
}

// Relaxed Extended JSON means the same as the driver's, value by value (the driver trims zero
// milliseconds off dates, this encoder always writes them).
func TestExtJSONMatchesDriver(t *testing.T) {
	oid, _ := bson.ObjectIDFromHex("65f1a2b3c4d5e6f708192a3b")
	dec, _ := bson.ParseDecimal128("-1234567890.123456789E-3")
	values := []any{
		"text \"q\" \n \u2028 é", int32(-7), int64(1) << 40, int64(5), 0.1, 1.0, -2.5, 1e21, 1e-7, math.Inf(1), math.Inf(-1), math.NaN(),
		true, false, nil, oid, dec,
		time.Date(2026, 11, 26, 9, 5, 7, 123e6, time.UTC), time.Date(2026, 11, 26, 9, 5, 7, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		bson.Binary{Subtype: 4, Data: []byte{1, 2, 3, 250}}, bson.Timestamp{T: 1700000000, I: 7},
		bson.Regex{Pattern: `^a"b\d`, Options: "im"}, bson.JavaScript("function(){}"), bson.Symbol("sym"),
		bson.CodeWithScope{Code: "x", Scope: bson.D{{Key: "a", Value: int32(1)}}},
		bson.DBPointer{DB: "db.c", Pointer: oid}, bson.Undefined{}, bson.MinKey{}, bson.MaxKey{},
		bson.A{"a", int32(1), bson.D{{Key: "d", Value: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}},
		bson.D{{Key: "k", Value: oid}, {Key: "n", Value: bson.A{}}},
	}
	for _, v := range values {
		raw := mustRaw(t, bson.D{{Key: "v", Value: v}})
		val := bsoncore.Document(raw).Lookup("v")
		got := appendExtJSON(nil, val)
		want, err := bson.MarshalExtJSON(raw, false, false)
		if err != nil {
			t.Fatal(err)
		}
		gotV, err1 := jsontest.Decode(append(append([]byte(`{"v":`), got...), '}'))
		wantV, err2 := jsontest.Decode(want)
		if err1 != nil || err2 != nil {
			t.Fatalf("%#v: invalid JSON %s (%v) / %s (%v)", v, got, err1, want, err2)
		}
		if !jsontest.Equal(normalizeDates(gotV), normalizeDates(wantV)) {
			t.Errorf("%#v:\n got %s\nwant %s", v, got, want)
		}
		// And the driver reads it back as the same value.
		back := bson.D{}
		if err := bson.UnmarshalExtJSON(append(append([]byte(`{"v":`), got...), '}'), false, &back); err != nil {
			t.Errorf("%#v: the driver cannot read %s: %v", v, got, err)
		}
	}
}

// normalizeDates replaces {"$date": "<RFC 3339>"} by its milliseconds.
func normalizeDates(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if s, ok := v["$date"].(string); ok && len(v) == 1 {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err == nil {
				return t.UnixMilli()
			}
		}
		for k, x := range v {
			v[k] = normalizeDates(x)
		}
	case []any:
		for i, x := range v {
			v[i] = normalizeDates(x)
		}
	}
	return v
}

func TestNDJSONModes(t *testing.T) {
	oid, _ := bson.ObjectIDFromHex("65f1a2b3c4d5e6f708192a3b")
	when := time.Date(2026, 11, 26, 9, 5, 7, 123e6, time.UTC)
	cols := []Column{{"id", "_id"}, {"when", "when"}, {"n", "n"}, {"missing", "x.y"}}
	doc := mustRaw(t, bson.D{{Key: "_id", Value: oid}, {Key: "when", Value: when}, {Key: "n", Value: int64(3)}})
	for mode, want := range map[NDJSONMode]string{
		"":                   `{"id":"65f1a2b3c4d5e6f708192a3b","when":"2026-11-26T09:05:07.123Z","n":3,"missing":null}` + "\n",
		NDJSONPlain:          `{"id":"65f1a2b3c4d5e6f708192a3b","when":"2026-11-26T09:05:07.123Z","n":3,"missing":null}` + "\n",
		NDJSONRelaxedExtJSON: `{"id":{"$oid":"65f1a2b3c4d5e6f708192a3b"},"when":{"$date":"2026-11-26T09:05:07.123Z"},"n":3,"missing":null}` + "\n",
	} {
		var buf bytes.Buffer
		enc, err := New(FormatNDJSON, &buf, cols, Options{NDJSONMode: mode})
		if err != nil {
			t.Fatal(err)
		}
		if err := enc.Begin(); err != nil {
			t.Fatal(err)
		}
		if err := enc.Encode(doc); err != nil {
			t.Fatal(err)
		}
		if buf.String() != want {
			t.Errorf("mode %q:\n got %s\nwant %s", mode, buf.String(), want)
		}
		if !json.Valid(bytes.TrimSpace(buf.Bytes())) {
			t.Errorf("mode %q: not JSON", mode)
		}
	}
	if _, err := New(FormatNDJSON, &bytes.Buffer{}, cols, Options{NDJSONMode: "canonical"}); err == nil {
		t.Error("an unknown mode must be refused")
	}
}

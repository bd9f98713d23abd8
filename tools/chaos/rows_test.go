package main

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func testDocs() []bson.D {
	t := time.Date(2026, 11, 26, 9, 5, 7, 123e6, time.UTC)
	id, _ := bson.ObjectIDFromHex("65f1a2b3c4d5e6f708192a3b")
	return []bson.D{
		{{Key: "_id", Value: id}, {Key: "name", Value: "Hall \"B\", North\nside"}, {Key: "n", Value: int32(7)},
			{Key: "at", Value: bson.NewDateTimeFromTime(t)}, {Key: "tags", Value: bson.A{"vip", "app"}},
			{Key: "fan", Value: bson.D{{Key: "phone", Value: "+15555550123"}}}, {Key: "ok", Value: true}},
		{{Key: "_id", Value: id}, {Key: "name", Value: "=cmd"}, {Key: "n", Value: int64(-3)}, {Key: "tags", Value: bson.A{}}},
	}
}

var testCols = []Column{{"id", "_id"}, {"name", "name"}, {"n", "n"}, {"at", "at"}, {"tags", "tags"}, {"phone", "fan.phone"}, {"ok", "ok"}}

const goodCSV = "id;name;n;at;tags;phone;ok\r\n" +
	"65f1a2b3c4d5e6f708192a3b;\"Hall \"\"B\"\", North\nside\";7;2026-11-26T09:05:07.123Z;\"[\"\"vip\"\",\"\"app\"\"]\";+15555550123;true\r\n" +
	"65f1a2b3c4d5e6f708192a3b;'=cmd;-3;;[];;\r\n"

func TestCompareCSV(t *testing.T) {
	j := &Job{Format: "csv", Delimiter: ";", Columns: testCols}
	if n, err := compareRows(j, []byte(goodCSV), testDocs()); err != nil || n != 2 {
		t.Fatalf("good CSV: %d rows, %v", n, err)
	}
	for name, bad := range map[string]string{
		"changed cell":    strings.Replace(goodCSV, ";7;", ";8;", 1),
		"missing row":     goodCSV[:strings.Index(goodCSV, "65f1a2b3c4d5e6f708192a3b;'")],
		"truncated":       goodCSV[:len(goodCSV)-5],
		"no formula mark": strings.Replace(goodCSV, "'=cmd", "=cmd", 1),
		"header":          strings.Replace(goodCSV, "phone", "fon", 1),
		"bom":             "\xef\xbb\xbf" + goodCSV,
	} {
		if _, err := compareRows(j, []byte(bad), testDocs()); err == nil {
			t.Errorf("%s: not caught", name)
		}
	}
}

const goodNDJSON = `{"id":"65f1a2b3c4d5e6f708192a3b","name":"Hall \"B\", North\nside","n":7,"at":"2026-11-26T09:05:07.123Z","tags":["vip","app"],"phone":"+15555550123","ok":true}` + "\n" +
	`{"id":"65f1a2b3c4d5e6f708192a3b","name":"=cmd","n":-3,"at":null,"tags":[],"phone":null,"ok":null}` + "\n"

func TestCompareNDJSON(t *testing.T) {
	j := &Job{Format: "ndjson", Mode: "plain", Columns: testCols}
	if n, err := compareRows(j, []byte(goodNDJSON), testDocs()); err != nil || n != 2 {
		t.Fatalf("good NDJSON: %d rows, %v", n, err)
	}
	for name, bad := range map[string]string{
		"changed value": strings.Replace(goodNDJSON, `"n":7`, `"n":7.5`, 1),
		"key order":     strings.Replace(goodNDJSON, `"n":7,"at":"2026-11-26T09:05:07.123Z"`, `"at":"2026-11-26T09:05:07.123Z","n":7`, 1),
		"missing key":   strings.Replace(goodNDJSON, `,"ok":null`, ``, 1),
		"truncated":     goodNDJSON[:len(goodNDJSON)-10],
		"extra line":    goodNDJSON + goodNDJSON[:strings.Index(goodNDJSON, "\n")+1],
	} {
		if _, err := compareRows(j, []byte(bad), testDocs()); err == nil {
			t.Errorf("%s: not caught", name)
		}
	}
	relaxed := `{"id":{"$oid":"65f1a2b3c4d5e6f708192a3b"},"at":{"$date":"2026-11-26T09:05:07.123Z"}}` + "\n"
	j = &Job{Format: "ndjson", Mode: "relaxed_extjson", Columns: []Column{{"id", "_id"}, {"at", "at"}}}
	if _, err := compareRows(j, []byte(relaxed), testDocs()[:1]); err != nil {
		t.Fatalf("relaxed: %v", err)
	}
}

func TestReruns(t *testing.T) {
	l := &Logs{}
	l.add("w1.1", []byte(`{"level":"info","export_id":"a","message":"export started","time":"2026-12-01T10:00:00Z"}`))
	l.add("w1.1", []byte(`{"level":"info","export_id":"a","message":"export succeeded","time":"2026-12-01T10:00:05Z"}`))
	l.add("w2.1", []byte(`{"level":"info","export_id":"b","message":"export started","time":"2026-12-01T10:00:06Z"}`))
	l.add("w2.1", []byte(`{"level":"info","export_id":"b","message":"export succeeded","time":"2026-12-01T10:00:07Z"}`))
	if v := reruns(l.Events()); len(v) != 0 {
		t.Fatalf("violations without a rerun: %v", v)
	}
	l.add("w3.2", []byte(`{"level":"info","export_id":"a","message":"export started","time":"2026-12-01T10:00:09Z"}`))
	l.add("w3.2", []byte("panic: boom"))
	v := reruns(l.Events())
	if len(v) != 1 || v[0].ExportID != "a" || v[0].Invariant != "rerun" {
		t.Fatalf("violations = %v, want one rerun of a", v)
	}
	if odd := l.Odd(); len(odd) != 1 {
		t.Fatalf("odd lines = %q, want the panic", odd)
	}
}

func TestRowEnds(t *testing.T) {
	j := &Job{Format: "csv", Delimiter: ";", BOM: true, Columns: testCols}
	body := "\xef\xbb\xbf" + goodCSV
	_, ends, err := compareRowsEnds(j, []byte(body), testDocs())
	if err != nil {
		t.Fatal(err)
	}
	header := 3 + strings.Index(goodCSV, "\r\n") + 2
	row1 := 3 + strings.Index(goodCSV, "65f1a2b3c4d5e6f708192a3b;'")
	if want := []int64{int64(header), int64(row1), int64(len(body))}; !slices.Equal(ends, want) {
		t.Errorf("CSV row ends %v, want %v", ends, want)
	}
	j = &Job{Format: "ndjson", Mode: "plain", Columns: testCols}
	_, ends, err = compareRowsEnds(j, []byte(goodNDJSON), testDocs())
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{int64(strings.Index(goodNDJSON, "\n") + 1), int64(len(goodNDJSON))}; !slices.Equal(ends, want) {
		t.Errorf("NDJSON row ends %v, want %v", ends, want)
	}
}

func TestMakeJobs(t *testing.T) {
	for seed := range uint64(50) {
		jobs := makeJobs(rand.New(rand.NewPCG(seed, 0x10b5)), 8, "r", time.Minute)
		big := 0
		for _, j := range jobs {
			if j.Collection != "campaigns" {
				continue
			}
			big++
			if !slices.ContainsFunc(j.Columns, func(c Column) bool { return c.Path == "markets" }) {
				t.Errorf("seed %d: %s exports no markets: %v", seed, j.ExportID, j.Params)
			}
		}
		if big == 0 {
			t.Errorf("seed %d: no big export among 8", seed)
		}
	}
	jobs := makeJobs(rand.New(rand.NewPCG(1, 0x10b5)), 2000, "r", time.Minute)
	big := 0
	for _, j := range jobs {
		if j.Collection == "campaigns" {
			big++
		}
	}
	if big < 200 || big > 300 {
		t.Errorf("%d big exports of 2000, want about 12%%", big)
	}
}

func TestRandomText(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, a := range []string{marketAlphabet, nameAlphabet, artistAlphabet} {
		if len(a) != 64 {
			t.Fatalf("alphabet %q has %d characters", a, len(a))
		}
		s := randomText(r, a, 1000)
		if len(s) != 1000 || strings.Trim(s, a) != "" {
			t.Errorf("randomText of %q: %q", a, s)
		}
	}
}

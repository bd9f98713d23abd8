package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// This file is the checker's own reading of an export: an independent query of MongoDB and an
// independent rendering of its values by the rules README.md documents (How values are
// written), compared with what a CSV or JSON reader makes of the object. It shares no code
// with the service's encoders.

// expectedDocs runs the job's query on db, sorted by _id as the service promises.
func expectedDocs(ctx context.Context, db *mongo.Database, j *Job) ([]bson.D, error) {
	cur, err := db.Collection(j.Collection).Find(ctx, j.Filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		return nil, err
	}
	var docs []bson.D
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	return docs, nil
}

// lookup follows a dotted path through documents; ok is false when a field is missing.
func lookup(d bson.D, path string) (any, bool) {
	var cur any = d
	for _, part := range strings.Split(path, ".") {
		switch doc := cur.(type) {
		case bson.D:
			found := false
			for _, e := range doc {
				if e.Key == part {
					cur, found = e.Value, true
					break
				}
			}
			if !found {
				return nil, false
			}
		case bson.M:
			v, found := doc[part]
			if !found {
				return nil, false
			}
			cur = v
		default:
			return nil, false
		}
	}
	return cur, true
}

func isoMillis(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// csvCell is how README.md says a value is written in a CSV cell.
func csvCell(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return formulaGuard(x), nil
	case int32:
		return strconv.FormatInt(int64(x), 10), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case bool:
		return strconv.FormatBool(x), nil
	case bson.DateTime:
		return isoMillis(x.Time()), nil
	case bson.ObjectID:
		return hex.EncodeToString(x[:]), nil
	case bson.A:
		// Compact JSON; the data set's arrays hold plain ASCII strings only.
		var parts []string
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return "", fmt.Errorf("array element of type %T not supported by the checker", e)
			}
			b, _ := json.Marshal(s)
			parts = append(parts, string(b))
		}
		return "[" + strings.Join(parts, ",") + "]", nil
	}
	return "", fmt.Errorf("value of type %T not supported by the checker", v)
}

// formulaGuard prefixes text a spreadsheet would run as a formula with ', unless it is only a
// signed number.
func formulaGuard(s string) string {
	if s == "" || !strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return s
	}
	if (s[0] == '+' || s[0] == '-') && len(s) > 1 {
		if _, err := strconv.ParseFloat(s[1:], 64); err == nil && !strings.ContainsAny(s[1:], "+-eEinfINFaA") {
			return s
		}
	}
	return "'" + s
}

// jsonValue is the value README.md says an NDJSON line holds, in the form encoding/json decodes
// it with UseNumber: string, json.Number, bool, nil, []any, map[string]any.
func jsonValue(v any, relaxed bool) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return x, nil
	case int32:
		return json.Number(strconv.FormatInt(int64(x), 10)), nil
	case int64:
		return json.Number(strconv.FormatInt(x, 10)), nil
	case bool:
		return x, nil
	case bson.DateTime:
		if relaxed {
			return map[string]any{"$date": isoMillis(x.Time())}, nil
		}
		return isoMillis(x.Time()), nil
	case bson.ObjectID:
		if relaxed {
			return map[string]any{"$oid": hex.EncodeToString(x[:])}, nil
		}
		return hex.EncodeToString(x[:]), nil
	case bson.A:
		out := []any{}
		for _, e := range x {
			ev, err := jsonValue(e, relaxed)
			if err != nil {
				return nil, err
			}
			out = append(out, ev)
		}
		return out, nil
	}
	return nil, fmt.Errorf("value of type %T not supported by the checker", v)
}

// compareRows checks the gunzipped body of an export against the documents, in order. It
// returns the number of data rows read and the first difference, if any.
func compareRows(j *Job, body []byte, docs []bson.D) (int, error) {
	n, _, err := compareRowsEnds(j, body, docs)
	return n, err
}

// compareRowsEnds is compareRows that also returns where rows end in body: the offset after
// the header (CSV) and after each row read, in order.
func compareRowsEnds(j *Job, body []byte, docs []bson.D) (int, []int64, error) {
	var ends []int64
	var n int
	var err error
	if j.Format == "csv" {
		n, err = compareCSV(j, body, docs, &ends)
	} else {
		n, err = compareNDJSON(j, body, docs, &ends)
	}
	return n, ends, err
}

func compareCSV(j *Job, body []byte, docs []bson.D, ends *[]int64) (int, error) {
	bom := []byte("\xef\xbb\xbf")
	if j.BOM != bytes.HasPrefix(body, bom) {
		return 0, fmt.Errorf("byte order mark: want %v, object has %v", j.BOM, bytes.HasPrefix(body, bom))
	}
	body = bytes.TrimPrefix(body, bom)
	offset := int64(0)
	if j.BOM {
		offset = int64(len(bom))
	}
	if len(body) > 0 && !bytes.HasSuffix(body, []byte("\r\n")) {
		return 0, fmt.Errorf("the CSV does not end with CRLF (truncated?): ends with %q", tail(body, 40))
	}
	rd := csv.NewReader(bytes.NewReader(body))
	rd.Comma = []rune(j.Delimiter)[0]
	rd.FieldsPerRecord = len(j.Columns)
	header, err := rd.Read()
	if err != nil {
		return 0, fmt.Errorf("CSV header: %w", err)
	}
	for i, c := range j.Columns {
		if header[i] != c.Header {
			return 0, fmt.Errorf("CSV header column %d is %q, want %q", i+1, header[i], c.Header)
		}
	}
	*ends = append(*ends, offset+rd.InputOffset())
	n := 0
	for {
		rec, err := rd.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, fmt.Errorf("CSV row %d: %w", n+1, err)
		}
		if n >= len(docs) {
			return n + 1, fmt.Errorf("CSV has more rows than MongoDB's %d: row %d is %q", len(docs), n+1, rec)
		}
		for i, c := range j.Columns {
			v, _ := lookup(docs[n], c.Path)
			want, err := csvCell(v)
			if err != nil {
				return n, err
			}
			if rec[i] != want {
				return n, fmt.Errorf("CSV row %d (_id %v) column %s is %q, MongoDB has %q", n+1, idOf(docs[n]), c.Header, rec[i], want)
			}
		}
		*ends = append(*ends, offset+rd.InputOffset())
		n++
	}
	if n != len(docs) {
		return n, fmt.Errorf("CSV has %d rows, MongoDB %d", n, len(docs))
	}
	return n, nil
}

func compareNDJSON(j *Job, body []byte, docs []bson.D, ends *[]int64) (int, error) {
	if len(body) > 0 && body[len(body)-1] != '\n' {
		return 0, fmt.Errorf("the NDJSON does not end with a newline (truncated?): ends with %q", tail(body, 40))
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	sc.Split(scanLF)
	n := 0
	offset := int64(0)
	for sc.Scan() {
		offset += int64(len(sc.Bytes())) + 1
		*ends = append(*ends, offset)
		if n >= len(docs) {
			return n + 1, fmt.Errorf("NDJSON has more lines than MongoDB's %d rows: %s", len(docs), tail(sc.Bytes(), 120))
		}
		keys, vals, err := orderedObject(sc.Bytes())
		if err != nil {
			return n, fmt.Errorf("NDJSON line %d: %w", n+1, err)
		}
		if len(keys) != len(j.Columns) {
			return n, fmt.Errorf("NDJSON line %d has keys %q, want %d columns", n+1, keys, len(j.Columns))
		}
		for i, c := range j.Columns {
			if keys[i] != c.Header {
				return n, fmt.Errorf("NDJSON line %d key %d is %q, want %q", n+1, i+1, keys[i], c.Header)
			}
			v, _ := lookup(docs[n], c.Path)
			want, err := jsonValue(v, j.Mode == "relaxed_extjson")
			if err != nil {
				return n, err
			}
			if !reflect.DeepEqual(vals[i], want) {
				return n, fmt.Errorf("NDJSON line %d (_id %v) %s is %#v, MongoDB has %#v", n+1, idOf(docs[n]), c.Header, vals[i], want)
			}
		}
		n++
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	if n != len(docs) {
		return n, fmt.Errorf("NDJSON has %d lines, MongoDB %d rows", n, len(docs))
	}
	return n, nil
}

// scanLF splits at each \n, keeping everything else (bufio.ScanLines drops a \r before it,
// which would shift the row ends).
func scanLF(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// orderedObject decodes a JSON object keeping its keys' order.
func orderedObject(line []byte) ([]string, []any, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, nil, fmt.Errorf("not a JSON object: %q", tail(line, 80))
	}
	var keys []string
	var vals []any
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		k, _ := t.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		keys, vals = append(keys, k), append(vals, v)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, err
	}
	if dec.More() {
		return nil, nil, fmt.Errorf("more than one value on a line")
	}
	return keys, vals, nil
}

func idOf(d bson.D) any { v, _ := lookup(d, "_id"); return v }

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// gunzipAll decompresses a whole gzip stream (all members), checking its CRC and length.
func gunzipAll(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		return out, err
	}
	return out, zr.Close()
}

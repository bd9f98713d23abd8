package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"testing"
	"time"
)

// memSink keeps what is put into it.
type memSink struct{ objs map[string][]byte }

func (m *memSink) Put(_ context.Context, obj Object, body io.Reader) (Written, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return Written{}, err
	}
	m.objs[obj.Key] = b
	return Written{Key: obj.Key, Parts: 1}, nil
}

func TestManifest(t *testing.T) {
	t.Parallel()
	sink := &memSink{objs: map[string][]byte{}}
	e := &Exporter{Kinds: DefaultRegistry(), Destinations: map[string]Destination{
		"sfmc": {Name: "sfmc", Bucket: "sfmc-drop", Prefix: "vf/", Keys: MustParseKeyTemplate("dt={date}/{kind}/{export_id}.{format}.gz"), Sink: sink},
	}}
	requested := time.Date(2026, 11, 26, 23, 59, 0, 0, time.UTC)
	job, err := prepare(e, []byte(`{"version":1,"export_id":"e-1","kind":"registrations","destination":"sfmc","requested_by":"crm",
		"params":{ "campaign_id": "cmp-1",  "status": "verified" }}`), requested)
	if err != nil {
		t.Fatal(err)
	}
	key := job.Key
	if key != "vf/dt=2026-11-26/registrations/e-1.csv.gz" {
		t.Fatalf("key = %q", key)
	}
	start := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	res := Result{
		Started: start, Finished: start.Add(time.Minute),
		Stats:   Stats{Rows: 3, BytesUncompressed: 300, BytesCompressed: 100, SHA256: "ab"},
		Written: Written{Bucket: "sfmc-drop", Key: key, ETag: `"e"`, Checksum: "AAAAAA==", ChecksumAlgorithm: "CRC32C", Parts: 2},
	}
	m := NewManifest(job, res)
	if _, err := writeManifest(context.Background(), sink, m, nil); err != nil {
		t.Fatal(err)
	}
	raw, ok := sink.objs[key+".manifest.json"]
	if !ok {
		t.Fatalf("no manifest at %s.manifest.json: %v", key, sink.objs)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"manifest_version": 1.0, "export_id": "e-1", "kind": "registrations", "format": "csv", "destination": "sfmc",
		"bucket": "sfmc-drop", "key": key, "requested_by": "crm", "requested_at": "2026-11-26T23:59:00Z",
		"rows": 3.0, "bytes_uncompressed": 300.0, "bytes_compressed": 100.0, "sha256": "ab", "parts": 2.0,
		"content_type": "text/csv; charset=utf-8", "content_encoding": "gzip", "etag": `"e"`,
		"started_at": "2026-11-27T01:00:00Z", "finished_at": "2026-11-27T01:01:00Z",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("manifest %s = %v, want %v", k, got[k], v)
		}
	}
	if p, _ := json.Marshal(got["params"]); !bytes.Equal(p, []byte(`{"campaign_id":"cmp-1","status":"verified"}`)) {
		t.Errorf("params = %s", p)
	}
	if c, _ := json.Marshal(got["s3_checksum"]); string(c) != `{"algorithm":"CRC32C","type":"FULL_OBJECT","value":"AAAAAA=="}` {
		t.Errorf("s3_checksum = %s", c)
	}
	if cols, _ := got["columns"].([]any); len(cols) != len(job.Plan.Columns) || cols[0] != job.Plan.Columns[0].Header {
		t.Errorf("columns = %v", got["columns"])
	}
	if got["service_version"] == "" {
		t.Error("no service_version")
	}
}

// prepare decodes, validates and plans a message body, as the worker does.
func prepare(e *Exporter, body []byte, requestedAt time.Time) (*Job, error) {
	m, err := Decode(body)
	if err != nil {
		return nil, err
	}
	return e.PrepareMessage(m, requestedAt)
}

package encode

import (
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// ndjsonEncoder writes one JSON object per line ("\n"), keys being the column headers in column
// order, values in plain typed JSON (appendJSON) or relaxed Extended JSON v2 (appendExtJSON). A
// missing field is written as null, so every line has the same keys.
type ndjsonEncoder struct {
	w     io.Writer
	m     *matcher
	slots []int
	keys  [][]byte // pre-encoded `"header":` of each column
	value func([]byte, bsoncore.Value) []byte
	line  []byte
}

func newNDJSONEncoder(w io.Writer, cols []Column, opts Options) (*ndjsonEncoder, error) {
	e := &ndjsonEncoder{w: w, line: make([]byte, 0, 1024)}
	switch opts.NDJSONMode {
	case "", NDJSONPlain:
		e.value = appendJSON
	case NDJSONRelaxedExtJSON:
		e.value = appendExtJSON
	default:
		return nil, fmt.Errorf("encode: unknown ndjson mode %q", opts.NDJSONMode)
	}
	var headers []string
	headers, e.m, e.slots = compile(cols)
	for i, h := range headers {
		var k []byte
		if i > 0 {
			k = append(k, ',')
		}
		k = appendJSONString(k, h)
		e.keys = append(e.keys, append(k, ':'))
	}
	return e, nil
}

func (e *ndjsonEncoder) Begin() error { return nil }

func (e *ndjsonEncoder) Encode(doc bson.Raw) error {
	e.m.match(doc)
	line := append(e.line[:0], '{')
	for i, slot := range e.slots {
		line = append(line, e.keys[i]...)
		line = e.value(line, e.m.value(slot))
	}
	line = append(line, '}', '\n')
	e.line = line
	if _, err := e.w.Write(line); err != nil {
		return fmt.Errorf("encode: write ndjson line: %w", err)
	}
	return nil
}

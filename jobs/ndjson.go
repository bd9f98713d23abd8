package jobs

import (
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// ndjsonEncoder writes one JSON object per line ("\n"), keys being the column headers in column
// order, values in plain typed JSON (see appendJSON). A missing field is written as null, so
// every line has the same keys.
type ndjsonEncoder struct {
	w    io.Writer
	cols []compiledColumn
	keys [][]byte // pre-encoded `"header":` of each column
	line []byte
}

func newNDJSONEncoder(w io.Writer, cols []Column) *ndjsonEncoder {
	e := &ndjsonEncoder{w: w, cols: compile(cols), line: make([]byte, 0, 1024)}
	for i, c := range e.cols {
		var k []byte
		if i > 0 {
			k = append(k, ',')
		}
		k = appendJSONString(k, c.header)
		e.keys = append(e.keys, append(k, ':'))
	}
	return e
}

func (e *ndjsonEncoder) Begin() error { return nil }

func (e *ndjsonEncoder) Encode(doc bson.Raw) error {
	e.line = append(e.line[:0], '{')
	for i := range e.cols {
		e.line = append(e.line, e.keys[i]...)
		e.line = appendJSON(e.line, e.cols[i].lookup(doc))
	}
	e.line = append(e.line, '}', '\n')
	if _, err := e.w.Write(e.line); err != nil {
		return fmt.Errorf("jobs: write ndjson line: %w", err)
	}
	return nil
}

package jobs

import (
	"fmt"
	"io"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// Format is an output format of an export.
type Format string

// The formats an export can be written in.
const (
	FormatCSV    Format = "csv"
	FormatNDJSON Format = "ndjson"
)

// ContentType is the MIME type of the (uncompressed) format.
func (f Format) ContentType() string {
	switch f {
	case FormatNDJSON:
		return "application/x-ndjson"
	default:
		return "text/csv; charset=utf-8"
	}
}

// Extension is the file name extension of the (uncompressed) format.
func (f Format) Extension() string { return string(f) }

// Column maps one output column to a dotted path in the source document.
type Column struct {
	// Header is the column's name in the CSV header row and the key in NDJSON objects.
	Header string
	// Path is the dotted path of the value in the document, for example "fan.email".
	Path string
}

// keys splits the column's path once, so that lookups do not allocate per document.
func (c Column) keys() []string { return strings.Split(c.Path, ".") }

// Encoder writes documents in one format. Encoders buffer nothing across documents beyond a
// reused line buffer; Flush is not needed, every Encode writes one complete line.
type Encoder interface {
	// Begin writes what precedes the first document (a CSV header row).
	Begin() error
	// Encode writes one document.
	Encode(doc bson.Raw) error
}

// EncoderOptions configure NewEncoder.
type EncoderOptions struct {
	// Delimiter separates CSV cells; default ','.
	Delimiter byte
	// BOM writes a UTF-8 byte order mark before the CSV header (some partners' importers need it).
	BOM bool
	// NoFormulaEscape turns off the default escaping of CSV cells that a spreadsheet would run
	// as a formula.
	NoFormulaEscape bool
}

// NewEncoder returns an encoder of format f writing columns to w.
func NewEncoder(f Format, w io.Writer, cols []Column, opts EncoderOptions) (Encoder, error) {
	switch f {
	case FormatCSV:
		return newCSVEncoder(w, cols, opts)
	case FormatNDJSON:
		return newNDJSONEncoder(w, cols), nil
	default:
		return nil, fmt.Errorf("jobs: unknown format %q", f)
	}
}

type compiledColumn struct {
	header string
	keys   []string
}

func compile(cols []Column) []compiledColumn {
	out := make([]compiledColumn, len(cols))
	for i, c := range cols {
		out[i] = compiledColumn{header: c.Header, keys: c.keys()}
	}
	return out
}

// lookup returns the value at the column's path, or a zero Value when it is missing or when a
// path element crosses something that is not a document.
func (c *compiledColumn) lookup(doc bson.Raw) bsoncore.Value {
	v, err := bsoncore.Document(doc).LookupErr(c.keys...)
	if err != nil {
		return bsoncore.Value{}
	}
	return v
}

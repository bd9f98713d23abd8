package jobs

import (
	"bytes"
	"fmt"
	"io"
	"slices"
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
	// NDJSONMode is how NDJSON values are written; empty means NDJSONPlain.
	NDJSONMode NDJSONMode
}

// NewEncoder returns an encoder of format f writing columns to w.
func NewEncoder(f Format, w io.Writer, cols []Column, opts EncoderOptions) (Encoder, error) {
	switch f {
	case FormatCSV:
		return newCSVEncoder(w, cols, opts)
	case FormatNDJSON:
		return newNDJSONEncoder(w, cols, opts)
	default:
		return nil, fmt.Errorf("jobs: unknown format %q", f)
	}
}

// compile returns the columns' headers, a matcher of their paths and each column's slot in it.
func compile(cols []Column) (headers []string, m *matcher, slots []int) {
	paths := make([]string, len(cols))
	for i, c := range cols {
		headers = append(headers, c.Header)
		paths[i] = c.Path
	}
	m, slots = newMatcher(paths)
	return headers, m, slots
}

// matcher finds the values of a set of dotted paths in a document in one pass over its
// elements, descending only into the sub-documents a path continues in, and stopping once every
// path is found. Looking each path up on its own would re-walk the document from its start for
// every column. The result is what bsoncore.Document.LookupErr would find for each path: the
// first element of a key wins, a path through a value that is neither a document nor an array
// is missing. A matcher is not safe for concurrent use; it allocates nothing per document.
type matcher struct {
	root   pathNode
	values []bsoncore.Value // by slot: one slot per distinct path
	seen   []bool           // by key id: this key was met in the current document
	left   int              // slots not found yet in the current document
}

// pathNode is one level of the path tree: the keys paths take at that level.
type pathNode struct {
	keys []pathKey
}

type pathKey struct {
	name string
	id   int       // index in matcher.seen
	slot int       // the slot of the path ending here, -1 if none
	sub  *pathNode // the paths continuing below, nil if none
}

// newMatcher compiles paths; slots[i] is the slot of paths[i].
func newMatcher(paths []string) (m *matcher, slots []int) {
	m = &matcher{}
	bySlot := map[string]int{}
	ids := 0
	for _, p := range paths {
		if s, ok := bySlot[p]; ok {
			slots = append(slots, s)
			continue
		}
		s := len(bySlot)
		bySlot[p] = s
		slots = append(slots, s)
		node := &m.root
		parts := strings.Split(p, ".")
		for i, part := range parts {
			j := slices.IndexFunc(node.keys, func(k pathKey) bool { return k.name == part })
			if j < 0 {
				node.keys = append(node.keys, pathKey{name: part, id: ids, slot: -1})
				ids++
				j = len(node.keys) - 1
			}
			k := &node.keys[j]
			if i == len(parts)-1 {
				k.slot = s
				break
			}
			if k.sub == nil {
				k.sub = &pathNode{}
			}
			node = k.sub
		}
	}
	m.values = make([]bsoncore.Value, len(bySlot))
	m.seen = make([]bool, ids)
	return m, slots
}

// match finds the values of every path in doc; value(slot) returns them until the next match.
func (m *matcher) match(doc []byte) {
	clear(m.values)
	clear(m.seen)
	m.left = len(m.values)
	m.walk(&m.root, doc)
}

func (m *matcher) value(slot int) bsoncore.Value { return m.values[slot] }

// walk visits the elements of one document (or array) at node's level.
func (m *matcher) walk(node *pathNode, doc []byte) {
	length, rem, ok := bsoncore.ReadLength(doc)
	if !ok || int(length) > len(doc) || length < 5 {
		return
	}
	rem = rem[:length-5] // the elements, without the trailing NUL
	for len(rem) > 0 && m.left > 0 {
		t := bsoncore.Type(rem[0])
		nul := bytes.IndexByte(rem[1:], 0)
		if nul < 0 {
			return
		}
		key := rem[1 : 1+nul]
		v, rest, ok := bsoncore.ReadValue(rem[2+nul:], t)
		rem = rest
		if !ok {
			return
		}
		k := node.find(key)
		if k == nil || m.seen[k.id] {
			continue
		}
		m.seen[k.id] = true
		if k.slot >= 0 {
			m.values[k.slot] = v
			m.left--
		}
		if k.sub != nil && (t == bsoncore.TypeEmbeddedDocument || t == bsoncore.TypeArray) {
			m.walk(k.sub, v.Data)
		}
	}
}

func (n *pathNode) find(key []byte) *pathKey {
	for i := range n.keys {
		if n.keys[i].name == string(key) {
			return &n.keys[i]
		}
	}
	return nil
}

package encode

import (
	"encoding/binary"
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

// NDJSONMode selects how NDJSON values are written.
type NDJSONMode string

// The NDJSON modes.
const (
	// NDJSONPlain writes plain typed JSON: dates and ObjectIds as strings (see the README).
	NDJSONPlain NDJSONMode = "plain"
	// NDJSONRelaxedExtJSON writes MongoDB relaxed Extended JSON v2: {"$oid": ...},
	// {"$date": ...}, {"$numberDecimal": ...}, so that types survive a round trip.
	NDJSONRelaxedExtJSON NDJSONMode = "relaxed_extjson"
)

// Options configure New.
type Options struct {
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

// New returns an encoder of format f writing columns to w.
func New(f Format, w io.Writer, cols []Column, opts Options) (Encoder, error) {
	switch f {
	case FormatCSV:
		return newCSVEncoder(w, cols, opts)
	case FormatNDJSON:
		return newNDJSONEncoder(w, cols, opts)
	default:
		return nil, fmt.Errorf("encode: unknown format %q", f)
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
	values []slotValue // by slot: one slot per distinct path
	gen    uint32      // counts documents: marks what belongs to the current one
	left   int         // slots not found yet in the current document
	doc    []byte      // the current document
}

// slotValue locates a value in the current document by offsets rather than by a slice:
// storing no pointer spares a write barrier per value.
type slotValue struct {
	gen        uint32 // the value is the current document's when gen == matcher.gen
	typ        bsoncore.Type
	start, end int32
}

// pathNode is one level of the path tree: the keys paths take at that level.
type pathNode struct {
	keys []pathKey
}

type pathKey struct {
	name string
	seen uint32    // == matcher.gen once met in the current document
	slot int       // the slot of the path ending here, -1 if none
	sub  *pathNode // the paths continuing below, nil if none
	// The name's first 16 bytes as two little-endian words and their masks, so that the
	// expected key is recognized in place with two loads instead of a NUL scan and a memequal.
	w0, w1, m0, m1 uint64
	// klen is len(name), -1 for a name no BSON key can have (it holds a NUL).
	klen int
}

func newPathKey(name string) pathKey {
	k := pathKey{name: name, slot: -1, klen: len(name)}
	if strings.IndexByte(name, 0) >= 0 {
		k.klen = -1
	}
	var b [16]byte
	n := copy(b[:], name)
	for i := range n {
		if i < 8 {
			k.m0 |= 0xff << (8 * i)
		} else {
			k.m1 |= 0xff << (8 * (i - 8))
		}
	}
	k.w0 = binary.LittleEndian.Uint64(b[:8])
	k.w1 = binary.LittleEndian.Uint64(b[8:])
	return k
}

// at reports whether the element key starting at doc[ks] (in a document whose elements end at
// end) is k's name.
func (k *pathKey) at(doc []byte, ks, end int) bool {
	e := ks + k.klen
	if k.klen < 0 || e >= end || doc[e] != 0 {
		return false
	}
	if ks+16 <= len(doc) {
		return binary.LittleEndian.Uint64(doc[ks:])&k.m0 == k.w0 &&
			binary.LittleEndian.Uint64(doc[ks+8:])&k.m1 == k.w1 &&
			(k.klen <= 16 || string(doc[ks+16:e]) == k.name[16:])
	}
	return string(doc[ks:e]) == k.name
}

// newMatcher compiles paths; slots[i] is the slot of paths[i].
func newMatcher(paths []string) (m *matcher, slots []int) {
	m = &matcher{}
	bySlot := map[string]int{}
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
				node.keys = append(node.keys, newPathKey(part))
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
	m.values = make([]slotValue, len(bySlot))
	return m, slots
}

// match finds the values of every path in doc; value(slot) returns them until the next match.
func (m *matcher) match(doc []byte) {
	m.gen++
	if m.gen == 0 { // wrapped: forget marks of 2^32 documents ago
		m.resetMarks(&m.root)
		clear(m.values)
		m.gen = 1
	}
	m.left = len(m.values)
	m.doc = doc
	m.walk(&m.root, doc, 0)
}

func (m *matcher) value(slot int) bsoncore.Value {
	if sv := &m.values[slot]; sv.gen == m.gen {
		return bsoncore.Value{Type: sv.typ, Data: m.doc[sv.start:sv.end]}
	}
	return bsoncore.Value{}
}

func (m *matcher) resetMarks(n *pathNode) {
	for i := range n.keys {
		n.keys[i].seen = 0
		if n.keys[i].sub != nil {
			m.resetMarks(n.keys[i].sub)
		}
	}
}

// walk visits the elements of one document (or array) at node's level; doc starts at offset
// base of the current document.
func (m *matcher) walk(node *pathNode, doc []byte, base int) {
	if len(doc) < 5 {
		return
	}
	length := int(int32(binary.LittleEndian.Uint32(doc)))
	if length < 5 || length > len(doc) {
		return
	}
	end := length - 1 // the trailing NUL
	hint := 0         // documents of a collection mostly share their keys' order
	for i := 4; i < end && m.left > 0; {
		t := bsoncore.Type(doc[i])
		ks := i + 1
		var k *pathKey
		if hint < len(node.keys) && node.keys[hint].at(doc, ks, end) {
			k = &node.keys[hint]
			hint++
			i = ks + k.klen + 1
		} else {
			i = ks
			for i < end && doc[i] != 0 {
				i++
			}
			if i >= end {
				return
			}
			key := doc[ks:i]
			i++
			for j := range node.keys {
				if node.keys[j].name == string(key) {
					if j > hint {
						// Learn the documents' order: next time this key is the hint.
						node.keys[hint], node.keys[j] = node.keys[j], node.keys[hint]
						j = hint
					}
					k = &node.keys[j]
					hint = j + 1
					break
				}
			}
		}
		n := valueSize(t, doc[i:end])
		if n < 0 {
			return
		}
		vs := i
		i += n
		if k == nil || k.seen == m.gen {
			continue
		}
		k.seen = m.gen
		if k.slot >= 0 {
			m.values[k.slot] = slotValue{gen: m.gen, typ: t, start: int32(base + vs), end: int32(base + i)}
			m.left--
		}
		if k.sub != nil && (t == bsoncore.TypeEmbeddedDocument || t == bsoncore.TypeArray) {
			m.walk(k.sub, doc[vs:i], base+vs)
		}
	}
}

// valueSize returns the length of the value of type t at the start of b, or -1 when b is too
// short or t unknown. The common types are sized here; the rest by bsoncore.
func valueSize(t bsoncore.Type, b []byte) int {
	n := -1
	switch t {
	case bsoncore.TypeDouble, bsoncore.TypeDateTime, bsoncore.TypeInt64, bsoncore.TypeTimestamp:
		n = 8
	case bsoncore.TypeInt32:
		n = 4
	case bsoncore.TypeBoolean:
		n = 1
	case bsoncore.TypeNull, bsoncore.TypeUndefined, bsoncore.TypeMinKey, bsoncore.TypeMaxKey:
		n = 0
	case bsoncore.TypeObjectID:
		n = 12
	case bsoncore.TypeDecimal128:
		n = 16
	case bsoncore.TypeString, bsoncore.TypeSymbol, bsoncore.TypeJavaScript:
		if len(b) >= 4 {
			if l := int(int32(binary.LittleEndian.Uint32(b))); l >= 1 {
				n = 4 + l
			}
		}
	case bsoncore.TypeEmbeddedDocument, bsoncore.TypeArray, bsoncore.TypeCodeWithScope:
		if len(b) >= 4 {
			if l := int(int32(binary.LittleEndian.Uint32(b))); l >= 5 {
				n = l
			}
		}
	case bsoncore.TypeBinary:
		if len(b) >= 4 {
			if l := int(int32(binary.LittleEndian.Uint32(b))); l >= 0 {
				n = 5 + l
			}
		}
	default:
		if _, rest, ok := bsoncore.ReadValue(b, t); ok {
			n = len(b) - len(rest)
		}
	}
	if n > len(b) {
		return -1
	}
	return n
}

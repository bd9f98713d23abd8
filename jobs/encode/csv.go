package encode

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
)

// csvEncoder writes RFC 4180 CSV: a header row, CRLF line ends, cells quoted when they hold the
// delimiter, a quote, CR or LF (or start with a space), quotes doubled inside quoted cells.
//
// Cells whose text comes from a document string and starts with '=', '+', '-', '@', TAB or CR are
// prefixed with a single quote, so that a spreadsheet shows them as text instead of running them
// as a formula (OWASP "CSV injection"). Numbers, dates and ids are never prefixed, nor is a
// string that is only a signed number ("+15555550123", "-4.5"): a spreadsheet reads it as a
// number, there is nothing to run, and E.164 phone numbers must reach partners intact.
//
// A row whose only cell is empty is written as `""`: an empty line is skipped by most readers
// (encoding/csv, Python's csv), which would lose the row.
type csvEncoder struct {
	w       io.Writer
	headers []string
	m       *matcher
	slots   []int // column -> matcher slot
	delim   byte
	bom     bool
	escape  bool
	special [256]bool // bytes that make a cell need quotes
	// plainSafe: the delimiter is none of plainChars.
	plainSafe bool
	dates     dateCache
	line      []byte
	cell      []byte
}

func newCSVEncoder(w io.Writer, cols []Column, opts Options) (*csvEncoder, error) {
	delim := opts.Delimiter
	if delim == 0 {
		delim = ','
	}
	// A quote would be ambiguous, CR and LF end rows, a single quote is the formula prefix
	// (which is not quoted), and a multi-byte UTF-8 rune is not a byte.
	if delim == '"' || delim == '\'' || delim == '\r' || delim == '\n' || delim >= 0x80 {
		return nil, fmt.Errorf("encode: csv delimiter %q is not allowed", delim)
	}
	e := &csvEncoder{
		w:      w,
		delim:  delim,
		bom:    opts.BOM,
		escape: !opts.NoFormulaEscape,
		line:   make([]byte, 0, 1024),
		cell:   make([]byte, 0, 256),
	}
	e.headers, e.m, e.slots = compile(cols)
	for _, c := range []byte{delim, '"', '\r', '\n'} {
		e.special[c] = true
	}
	e.plainSafe = strings.IndexByte(plainChars, delim) < 0
	return e, nil
}

func (e *csvEncoder) Begin() error {
	e.line = e.line[:0]
	if e.bom {
		e.line = append(e.line, 0xEF, 0xBB, 0xBF)
	}
	start := len(e.line)
	for i, h := range e.headers {
		if i > 0 {
			e.line = append(e.line, e.delim)
		}
		e.line = e.appendCell(e.line, append(e.cell[:0], h...), false)
	}
	if len(e.line) == start && len(e.headers) == 1 {
		e.line = append(e.line, '"', '"')
	}
	e.line = append(e.line, '\r', '\n')
	if _, err := e.w.Write(e.line); err != nil {
		return fmt.Errorf("encode: write csv header: %w", err)
	}
	return nil
}

func (e *csvEncoder) Encode(doc bson.Raw) error {
	e.m.match(doc)
	line := e.line[:0]
	for i, slot := range e.slots {
		if i > 0 {
			line = append(line, e.delim)
		}
		v := e.m.value(slot)
		switch v.Type {
		case bsoncore.TypeString:
			// Most cells: text appended as is, after one scan for what needs quotes.
			if s, ok := readStringBytes(v); ok && len(s) > 0 {
				if e.needsQuotes(s) || e.escape && isFormulaStart(s[0]) {
					line = e.appendCell(line, s, e.escape)
				} else {
					line = append(line, s...)
				}
			}
			continue
		case bsoncore.TypeDateTime:
			if ms, ok := v.DateTimeOK(); ok && e.plainSafe {
				line = e.dates.append(line, ms)
				continue
			}
		case bsoncore.TypeInt32, bsoncore.TypeInt64, bsoncore.TypeDouble, bsoncore.TypeBoolean, bsoncore.TypeObjectID,
			bsoncore.TypeDecimal128, bsoncore.TypeTimestamp, bsoncore.TypeNull, bsoncore.TypeUndefined, 0:
			if e.plainSafe {
				line, _ = appendText(line, v)
				continue
			}
		}
		// The text goes straight into the line; a cell that needs quotes or a formula prefix
		// is rewritten from a copy.
		start := len(line)
		var text bool
		line, text = appendText(line, v)
		cell := line[start:]
		if len(cell) > 0 && (e.needsQuotes(cell) || text && e.escape && isFormulaStart(cell[0])) {
			e.cell = append(e.cell[:0], cell...)
			line = e.appendCell(line[:start], e.cell, text && e.escape)
		}
	}
	if len(line) == 0 && len(e.slots) == 1 {
		line = append(line, '"', '"')
	}
	line = append(line, '\r', '\n')
	e.line = line
	if _, err := e.w.Write(line); err != nil {
		return fmt.Errorf("encode: write csv row: %w", err)
	}
	return nil
}

// plainChars are every byte the text of a number, bool, date, timestamp, ObjectId or
// decimal128 can hold. With a delimiter outside them, such cells never need quotes.
const plainChars = "0123456789abcdefABCDEF+-.:TZInfinityNaNtruefalse"

// appendCell appends one cell, quoted if needed and formula-escaped if asked.
func (e *csvEncoder) appendCell(dst, cell []byte, escapeFormula bool) []byte {
	prefix := escapeFormula && len(cell) > 0 && isFormulaStart(cell[0]) && !isSignedNumber(cell)
	if !e.needsQuotes(cell) {
		if prefix {
			dst = append(dst, '\'')
		}
		return append(dst, cell...)
	}
	dst = append(dst, '"')
	if prefix {
		dst = append(dst, '\'')
	}
	for {
		q := bytes.IndexByte(cell, '"')
		if q < 0 {
			break
		}
		dst = append(dst, cell[:q+1]...)
		dst = append(dst, '"')
		cell = cell[q+1:]
	}
	dst = append(dst, cell...)
	return append(dst, '"')
}

func (e *csvEncoder) needsQuotes(cell []byte) bool {
	if len(cell) == 0 {
		return false
	}
	// A leading space is quoted so that readers that trim spaces keep it.
	if cell[0] == ' ' {
		return true
	}
	sp := &e.special
	for len(cell) >= 4 {
		if sp[cell[0]] || sp[cell[1]] || sp[cell[2]] || sp[cell[3]] {
			return true
		}
		cell = cell[4:]
	}
	for _, c := range cell {
		if sp[c] {
			return true
		}
	}
	return false
}

func isFormulaStart(c byte) bool {
	switch c {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

// isSignedNumber reports whether cell is '+' or '-' followed by digits with at most one '.'
// between digits.
func isSignedNumber(cell []byte) bool {
	if len(cell) < 2 || (cell[0] != '+' && cell[0] != '-') {
		return false
	}
	dot := false
	for i, c := range cell[1:] {
		switch {
		case c >= '0' && c <= '9':
		case c == '.' && !dot && i > 0 && i < len(cell)-2:
			dot = true
		default:
			return false
		}
	}
	return true
}

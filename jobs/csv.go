package jobs

import (
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// csvEncoder writes RFC 4180 CSV: a header row, CRLF line ends, cells quoted when they hold the
// delimiter, a quote, CR or LF, quotes doubled inside quoted cells.
//
// Cells whose text comes from a document string and starts with '=', '+', '-', '@', TAB or CR are
// prefixed with a single quote, so that a spreadsheet shows them as text instead of running them
// as a formula (OWASP "CSV injection"). Numbers, dates and ids are never prefixed, nor is a
// string that is only a signed number ("+15555550123", "-4.5"): a spreadsheet reads it as a
// number, there is nothing to run, and E.164 phone numbers must reach partners intact.
type csvEncoder struct {
	w      io.Writer
	cols   []compiledColumn
	delim  byte
	bom    bool
	escape bool
	line   []byte
	cell   []byte
}

func newCSVEncoder(w io.Writer, cols []Column, opts EncoderOptions) (*csvEncoder, error) {
	delim := opts.Delimiter
	if delim == 0 {
		delim = ','
	}
	if delim == '"' || delim == '\r' || delim == '\n' || delim >= 0x80 {
		return nil, fmt.Errorf("jobs: csv delimiter %q is not allowed", delim)
	}
	return &csvEncoder{
		w:      w,
		cols:   compile(cols),
		delim:  delim,
		bom:    opts.BOM,
		escape: !opts.NoFormulaEscape,
		line:   make([]byte, 0, 1024),
		cell:   make([]byte, 0, 256),
	}, nil
}

func (e *csvEncoder) Begin() error {
	e.line = e.line[:0]
	if e.bom {
		e.line = append(e.line, 0xEF, 0xBB, 0xBF)
	}
	for i := range e.cols {
		if i > 0 {
			e.line = append(e.line, e.delim)
		}
		e.line = e.appendCell(e.line, []byte(e.cols[i].header), false)
	}
	e.line = append(e.line, '\r', '\n')
	if _, err := e.w.Write(e.line); err != nil {
		return fmt.Errorf("jobs: write csv header: %w", err)
	}
	return nil
}

func (e *csvEncoder) Encode(doc bson.Raw) error {
	e.line = e.line[:0]
	for i := range e.cols {
		if i > 0 {
			e.line = append(e.line, e.delim)
		}
		var text bool
		e.cell, text = appendText(e.cell[:0], e.cols[i].lookup(doc))
		e.line = e.appendCell(e.line, e.cell, text && e.escape)
	}
	e.line = append(e.line, '\r', '\n')
	if _, err := e.w.Write(e.line); err != nil {
		return fmt.Errorf("jobs: write csv row: %w", err)
	}
	return nil
}

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
	for _, c := range cell {
		if c == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, c)
	}
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
	for _, c := range cell {
		if c == e.delim || c == '"' || c == '\r' || c == '\n' {
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

// isSignedNumber reports whether cell is '+' or '-' followed by digits with at most one '.'.
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

package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/verifiedfan/export-service/internal/clip"
)

// jsonObject reads the members of one JSON object strictly, field by field, so that every
// problem names its field by its full dotted name ("params.campaign_id"). encoding/json alone
// matches keys case-insensitively, drops the field name from errors of UnmarshalJSON methods
// and of nested objects, and silently takes null as "absent"; a job message wants none of that.
//
// Structural problems (an unknown key, a wrong JSON type, null) are collected in shape; value
// problems (a pattern, an enum, a range) in invalid. Every getter reports a missing key as
// absent (ok false) and records nothing, so callers decide what is required.
type jsonObject struct {
	path    string
	members map[string]json.RawMessage
	shape   []error
	invalid []error
}

// parseJSONObject parses data as exactly one JSON object (nothing after it) whose keys must be
// among allowed (exact, case-sensitive). path is the object's own dotted name, "" for the
// message itself. A key that appears twice in any object, at any depth, is an error: parsers
// disagree on which one counts (encoding/json and most validators keep the last, others the
// first), so a body with one could mean one export to a validator upstream and another here.
func parseJSONObject(data []byte, path string, allowed ...string) (*jsonObject, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var members map[string]json.RawMessage
	if err := dec.Decode(&members); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr):
			return nil, shapeError(path, "got %s, want an object", jsonKindOf(data))
		case errors.As(err, &syntaxErr):
			return nil, fmt.Errorf("not valid JSON (at byte %d): %s", syntaxErr.Offset, strings.TrimPrefix(err.Error(), "json: "))
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return nil, errors.New("not valid JSON: empty or truncated")
		}
		return nil, fmt.Errorf("not valid JSON: %v", err)
	}
	if members == nil { // the literal null
		return nil, shapeError(path, "got null, want an object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON object")
	}
	if dups := duplicateKeys(data, path); len(dups) > 0 {
		return nil, errors.Join(dups...)
	}
	o := &jsonObject{path: path, members: members}
	keys := make([]string, 0, len(members))
	for k := range members {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			o.shape = append(o.shape, fmt.Errorf("field %q: unknown field", o.name(clip.String(k, 40))))
		}
	}
	return o, nil
}

// CheckUniqueKeys reports, in one error naming each by its dotted path under name, every key
// of the JSON value data that appears more than once in one object, at any depth: for
// producers that build a message from JSON (the enqueue command's --params) and must not keep
// one of the two silently. Invalid JSON is not its to report.
func CheckUniqueKeys(data []byte, name string) error {
	return errors.Join(duplicateKeys(data, name)...)
}

// duplicateKeys reports every key that appears more than once in one object of data, in
// objects nested at any depth and in arrays too, each once, by its full name
// ("params.campaign_id", "params.fields[2].x"). Keys are compared as decoded (so "a" and
// "\u0061" are the same key, as they are to every JSON reader). data must be valid JSON.
func duplicateKeys(data []byte, path string) []error {
	type frame struct {
		obj       bool
		path      string
		seen      map[string]int
		key       string // objects: the member being read
		expectKey bool
		index     int // arrays: the element being read
	}
	var stack []*frame
	var errs []error
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers are skipped: never parse them as floats for nothing
	// valueDone moves the innermost container past the value just read; it reports whether
	// the top-level value is complete.
	valueDone := func() bool {
		if len(stack) == 0 {
			return true
		}
		if top := stack[len(stack)-1]; top.obj {
			top.expectKey = true
		} else {
			top.index++
		}
		return false
	}
	childPath := func() string {
		if len(stack) == 0 {
			return path
		}
		top := stack[len(stack)-1]
		if top.obj {
			if top.path == "" {
				return top.key
			}
			return top.path + "." + top.key
		}
		return fmt.Sprintf("%s[%d]", top.path, top.index)
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return errs // invalid JSON is the caller's to report
		}
		if len(stack) > 0 {
			if top := stack[len(stack)-1]; top.obj && top.expectKey {
				if k, ok := tok.(string); ok {
					top.seen[k]++
					if top.seen[k] == 2 {
						top.key = clip.String(k, 40)
						errs = append(errs, fmt.Errorf("field %q: the key appears more than once (each key may appear once in an object)", childPath()))
					}
					top.key, top.expectKey = k, false
					continue
				}
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, path: childPath(), seen: map[string]int{}, expectKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{path: childPath()})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if valueDone() {
			return errs
		}
	}
}

func shapeError(path, format string, args ...any) error {
	if path == "" {
		return fmt.Errorf("not a JSON object of the expected shape: "+format, args...)
	}
	return fmt.Errorf("field %q: "+format, append([]any{path}, args...)...)
}

// name is the full dotted name of member k.
func (o *jsonObject) name(k string) string {
	if o.path == "" {
		return k
	}
	return o.path + "." + k
}

// has reports whether k is present (with any value, null included).
func (o *jsonObject) has(k string) bool {
	_, ok := o.members[k]
	return ok
}

// raw returns the member's JSON and whether it is present with the given kind; a present
// member of another kind is recorded as a shape error.
func (o *jsonObject) raw(k string, want byte, wantName string) (json.RawMessage, bool) {
	v, ok := o.members[k]
	if !ok {
		return nil, false
	}
	v = bytes.TrimSpace(v)
	if got := jsonKindByte(v); got != want {
		hint := ""
		if got == 'n' {
			hint = " (leave an optional field out rather than null)"
		}
		o.shape = append(o.shape, fmt.Errorf("field %q: got %s, want %s%s", o.name(k), jsonKindOf(v), wantName, hint))
		return nil, false
	}
	return v, true
}

// string returns a string member.
func (o *jsonObject) string(k string) (string, bool) {
	v, ok := o.raw(k, '"', "a string")
	if !ok {
		return "", false
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		o.shape = append(o.shape, fmt.Errorf("field %q: %v", o.name(k), err))
		return "", false
	}
	return s, true
}

// bool returns a true/false member.
func (o *jsonObject) bool(k string) (bool, bool) {
	v, ok := o.raw(k, 't', "true or false")
	if !ok {
		return false, false
	}
	return v[0] == 't', true
}

// number returns a number member's JSON text.
func (o *jsonObject) number(k string) (string, bool) {
	v, ok := o.raw(k, '0', "a number")
	return string(v), ok
}

// jsonNumberIsInt reports whether the JSON number text s is exactly the integer want, in any of
// its spellings (1, 1.0, 10e-1, 0.1E1), as JSON Schema's "const" compares numbers.
func jsonNumberIsInt(s string, want int64) bool {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, exp, _ := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	e := int64(0)
	if exp != "" {
		n, err := strconv.ParseInt(exp, 10, 32)
		if err != nil {
			return false // no int64 is that large or that small but zero
		}
		e = n
	}
	// value = 0.digits * 10^point
	digits := intPart + frac
	point := int64(len(intPart)) + e
	for len(digits) > 0 && digits[0] == '0' {
		digits = digits[1:]
		point--
	}
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return want == 0
	}
	if neg != (want < 0) {
		return false
	}
	w := strconv.FormatInt(want, 10)
	w = strings.TrimPrefix(w, "-")
	return point == int64(len(w)) && digits == strings.TrimRight(w, "0")
}

// object returns an object member's JSON.
func (o *jsonObject) object(k string) (json.RawMessage, bool) {
	return o.raw(k, '{', "an object")
}

// strings returns an array-of-strings member.
func (o *jsonObject) strings(k string) ([]string, bool) {
	v, ok := o.raw(k, '[', "an array of strings")
	if !ok {
		return nil, false
	}
	var items []json.RawMessage
	if err := json.Unmarshal(v, &items); err != nil {
		o.shape = append(o.shape, fmt.Errorf("field %q: %v", o.name(k), err))
		return nil, false
	}
	out := make([]string, 0, len(items))
	bad := false
	for i, it := range items {
		var s string
		if jsonKindByte(it) != '"' || json.Unmarshal(it, &s) != nil {
			o.shape = append(o.shape, fmt.Errorf("field %q: got %s, want a string", fmt.Sprintf("%s[%d]", o.name(k), i), jsonKindOf(it)))
			bad = true
			continue
		}
		out = append(out, s)
	}
	return out, !bad
}

// invalidf records a value problem of member k.
func (o *jsonObject) invalidf(k, format string, args ...any) {
	o.invalid = append(o.invalid, fmt.Errorf("field %q: "+format, append([]any{o.name(k)}, args...)...))
}

// jsonKindByte classifies a JSON value by its first byte: '"', '{', '[', 't' (true or false),
// 'n' (null) or '0' (a number).
func jsonKindByte(v []byte) byte {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return 0
	}
	switch v[0] {
	case '"', '{', '[', 'n':
		return v[0]
	case 't', 'f':
		return 't'
	}
	return '0'
}

func jsonKindOf(v []byte) string {
	switch jsonKindByte(v) {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't':
		return "a boolean"
	case 'n':
		return "null"
	case '0':
		return "a number"
	}
	return "nothing"
}

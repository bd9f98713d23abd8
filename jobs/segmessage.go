package jobs

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/verifiedfan/export-service/internal/clip"
)

// SegmentMessageType is the "type" of a segment message. A job message has no "type" field, so
// the field tells the two apart (IsSegmentMessage).
const SegmentMessageType = "export_segment"

// The number of segments an export may be split into.
const (
	MinSegments = 2
	MaxSegments = 10000
)

// SegmentMessage is version 1 of the export segment message: the worker sends one to its own
// jobs queue for each segment of an export it splits over the fleet; upstream systems never
// send it. See docs/segment-message.schema.json.
type SegmentMessage struct {
	Version int    `json:"version"`
	Type    string `json:"type"`
	// ExportID is the split export's id (the same rule as the job message's export_id).
	ExportID string `json:"export_id"`
	// Segment is the segment's 0-based index: 0 <= Segment < Segments.
	Segment int `json:"segment"`
	// Segments is the number of segments of the export, MinSegments to MaxSegments.
	Segments int `json:"segments"`
}

var segmentMessageFields = []string{"version", "type", "export_id", "segment", "segments"}

// SegmentID is the segment's ledger id: the export id, "/segment/" and the segment's index.
// An export id never contains "/", so a segment id is never an export id.
func (m SegmentMessage) SegmentID() string {
	return m.ExportID + "/segment/" + strconv.Itoa(m.Segment)
}

// IsSegmentMessage reports whether body is a segment message rather than a job message: a JSON
// object of at most MaxMessageBytes whose top-level "type" (exact, case-sensitive) is the string
// SegmentMessageType. Anything else, a body that is not JSON included, is false, and the job
// decoder reports what is wrong with it (a job message has no "type" field, so one with any
// other "type" is refused there as an unknown field).
func IsSegmentMessage(body []byte) bool { return MessageType(body) == SegmentMessageType }

// MessageType is the top-level "type" string of body, a JSON object of at most
// MaxMessageBytes, or "" when it has none (a job message) or is not such an object. A caller
// that tells several kinds of message apart reads it once (IsSegmentMessage and
// IsCancelMessage each parse the body).
func MessageType(body []byte) string {
	if len(body) > MaxMessageBytes {
		return "" // Decode refuses it with the same reason the typed decoders would
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return ""
	}
	raw, ok := top["type"]
	if !ok || jsonKindByte(raw) != '"' {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// DecodeSegment parses and validates a segment message as strictly as Decode does a job
// message: unknown fields (names are case-sensitive), wrong types, null, missing fields,
// repeated keys, trailing data, oversize messages and out-of-range values are permanent errors
// naming the field, with Decode's reasons (oversize_message, malformed_message,
// invalid_message); every problem is reported at once. The fields that could be read are
// returned with the error, the export id in particular.
func DecodeSegment(body []byte) (SegmentMessage, error) {
	var m SegmentMessage
	o, err := openMessage(body, segmentMessageFields)
	if err != nil {
		return m, err
	}
	m.Version = decodeVersion(o)
	m.Type = decodeType(o, SegmentMessageType)
	m.ExportID = decodeExportID(o)
	seg, segOK := decodeIntRange(o, "segment", 0, MaxSegments-1)
	segs, segsOK := decodeIntRange(o, "segments", MinSegments, MaxSegments)
	m.Segment, m.Segments = seg, segs
	if segOK && segsOK && seg >= segs {
		o.invalidf("segment", "%d must be less than segments (%d)", seg, segs)
	}
	return m, o.messageErr("segment")
}

// decodeType reads the required "type" of o, which must be want.
func decodeType(o *jsonObject, want string) string {
	s, ok := o.string("type")
	switch {
	case ok && s != want:
		o.invalidf("type", "%q is not %q", clip.String(s, 40), want)
	case !ok && !o.has("type"):
		o.invalidf("type", "required (%q)", want)
	}
	return s
}

// decodeExportID reads the required "export_id" of o (job and segment messages): 1-128
// characters of exportIDPattern. It returns it even when it breaks the rule.
func decodeExportID(o *jsonObject) string {
	s, ok := o.string("export_id")
	if !ok {
		if !o.has("export_id") {
			o.invalidf("export_id", "required")
		}
		return ""
	}
	if !exportIDPattern.MatchString(s) {
		o.invalidf("export_id", "%q must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit", clip.String(s, 40))
	}
	return s
}

// decodeIntRange reads the required integer member k of o, which must be from lo to hi. An
// integer may be written in any of JSON's spellings (2, 2.0, 0.2e1), as JSON Schema counts
// integers. ok is false, and the problem recorded, when it is absent, not an integer or out of
// range.
func decodeIntRange(o *jsonObject, k string, lo, hi int) (v int, ok bool) {
	n, isNum := o.number(k)
	if !isNum {
		if !o.has(k) {
			o.invalidf(k, "required (an integer from %d to %d)", lo, hi)
		}
		return 0, false
	}
	i, integral, big := jsonNumberInt(n)
	switch {
	case !integral:
		o.invalidf(k, "%s is not an integer", clip.String(n, 20))
		return 0, false
	case big || i < int64(lo) || i > int64(hi):
		o.invalidf(k, "%s is not from %d to %d", clip.String(n, 20), lo, hi)
		return 0, false
	}
	return int(i), true
}

// jsonNumberInt returns the value of the JSON number text s when it is an integer in any
// spelling (2, 2.0, 20e-1, 0.2E1); integral is false when s has a fractional part, big true
// when it is an integer of more than 18 digits (its value is then not returned).
func jsonNumberInt(s string) (v int64, integral, big bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, exp, _ := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	// value = 0.digits * 10^point
	point := int64(len(intPart)) - int64(len(intPart+frac)-len(digits))
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return 0, true, false
	}
	if exp != "" {
		e, err := strconv.ParseInt(exp, 10, 32)
		if err != nil { // an exponent beyond ±2^31: huge, or a tiny fraction
			return 0, !strings.HasPrefix(exp, "-"), !strings.HasPrefix(exp, "-")
		}
		point += e
	}
	if point < int64(len(digits)) {
		return 0, false, false
	}
	if point > 18 {
		return 0, true, true
	}
	v, err := strconv.ParseInt(digits+strings.Repeat("0", int(point)-len(digits)), 10, 64)
	if err != nil {
		return 0, true, true
	}
	if neg {
		v = -v
	}
	return v, true, false
}

// Encode validates m and returns its JSON, for the worker that splits an export. A zero Version
// or Type is taken as CurrentVersion and SegmentMessageType. The JSON is exactly what
// DecodeSegment accepts; a message it would refuse is an error (with DecodeSegment's reason).
func (m SegmentMessage) Encode() ([]byte, error) {
	if m.Version == 0 {
		m.Version = CurrentVersion
	}
	if m.Type == "" {
		m.Type = SegmentMessageType
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if _, err := DecodeSegment(b); err != nil {
		return nil, fmt.Errorf("jobs: encode segment message %s: %w", clip.String(m.SegmentID(), 80), err)
	}
	return b, nil
}

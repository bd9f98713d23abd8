package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/verifiedfan/export-service/internal/clip"
	"github.com/verifiedfan/export-service/jobs/encode"
)

// MaxMessageBytes bounds a job message. Jobs are small requests; anything larger is a mistake.
const MaxMessageBytes = 16 << 10

// CurrentVersion is the message version this service understands.
const CurrentVersion = 1

// DefaultDestination is used when a message names none.
const DefaultDestination = "internal"

// Message is version 1 of the export job message. See the README and
// docs/job-message.schema.json for each field.
type Message struct {
	Version     int             `json:"version"`
	ExportID    string          `json:"export_id"`
	Kind        string          `json:"kind"`
	Format      encode.Format   `json:"format,omitempty"`
	Destination string          `json:"destination,omitempty"`
	Params      json.RawMessage `json:"params"`
	// CSV are options of the CSV format, for partners whose importers need them.
	CSV *CSVOptions `json:"csv,omitempty"`
	// NDJSON are options of the NDJSON format.
	NDJSON *NDJSONOptions `json:"ndjson,omitempty"`
	// RequestedBy names the upstream system, for logs and the manifest.
	RequestedBy string `json:"requested_by,omitempty"`
}

// CSVOptions are the message's "csv" object.
type CSVOptions struct {
	// Delimiter is one of CSVDelimiters; default ",".
	Delimiter string `json:"delimiter,omitempty"`
	// BOM writes a UTF-8 byte order mark first (some spreadsheet importers need it).
	BOM bool `json:"bom,omitempty"`
}

// CSVDelimiters are the delimiters a message may ask for.
var CSVDelimiters = []string{",", ";", "\t", "|"}

// NDJSONOptions are the message's "ndjson" object.
type NDJSONOptions struct {
	// Mode is how values are written; default encode.NDJSONPlain.
	Mode encode.NDJSONMode `json:"mode,omitempty"`
}

// EncoderOptions are the encoder options the message asks for (its "csv" and "ndjson"
// objects), for encode.New. Decode has validated them.
func (m Message) EncoderOptions() encode.Options {
	var o encode.Options
	if m.CSV != nil {
		switch m.CSV.Delimiter {
		case "\t":
			o.Delimiter = '\t'
		case "":
		default:
			o.Delimiter = m.CSV.Delimiter[0]
		}
		o.BOM = m.CSV.BOM
	}
	if m.NDJSON != nil {
		o.NDJSONMode = m.NDJSON.Mode
	}
	return o
}

var (
	exportIDPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	namePattern        = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	requestedByPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$`)
)

var messageFields = []string{"version", "export_id", "kind", "format", "destination", "params", "csv", "ndjson", "requested_by"}

// Decode parses and validates a job message strictly: unknown fields (names are
// case-sensitive), wrong types, null, missing required fields, trailing data, oversize messages
// and out-of-range values are permanent errors naming the field; every problem is reported at
// once. The kind's parameters are decoded and validated by the kind (see Registry.Plan).
func Decode(body []byte) (Message, error) {
	var m Message
	o, err := openMessage(body, messageFields)
	if err != nil {
		return m, err
	}
	m.Version = decodeVersion(o)
	m.ExportID = decodeExportID(o)
	if s, ok := o.string("kind"); ok {
		m.Kind = s
		if !namePattern.MatchString(s) {
			o.invalidf("kind", "%q is not a kind name", clip.String(s, 40))
		}
	} else if !o.has("kind") {
		o.invalidf("kind", "required")
	}
	m.Format = encode.FormatCSV
	if s, ok := o.string("format"); ok {
		m.Format = encode.Format(s)
		if m.Format != encode.FormatCSV && m.Format != encode.FormatNDJSON {
			o.invalidf("format", "%q is not one of csv, ndjson", clip.String(s, 40))
		}
	}
	m.Destination = DefaultDestination
	if s, ok := o.string("destination"); ok {
		m.Destination = s
		if !namePattern.MatchString(s) {
			o.invalidf("destination", "%q is not a destination name", clip.String(s, 40))
		}
	}
	m.RequestedBy = decodeRequestedBy(o)
	if raw, ok := o.members["params"]; !ok || jsonKindByte(raw) == 'n' {
		o.invalidf("params", "required (an object)")
	} else if raw, ok := o.object("params"); ok {
		m.Params = raw
	}
	if raw, ok := o.object("csv"); ok {
		m.CSV = decodeCSVOptions(o, raw)
		if m.Format != encode.FormatCSV {
			o.invalidf("csv", "only with format csv")
		}
	}
	if raw, ok := o.object("ndjson"); ok {
		m.NDJSON = decodeNDJSONOptions(o, raw)
		if m.Format != encode.FormatNDJSON {
			o.invalidf("ndjson", "only with format ndjson")
		}
	}
	return m, o.messageErr("job")
}

// ValidExportID reports whether s is a valid export id.
func ValidExportID(s string) bool { return exportIDPattern.MatchString(s) }

// ValidRequestedBy reports whether s is a valid requested_by.
func ValidRequestedBy(s string) bool { return requestedByPattern.MatchString(s) }

// decodeRequestedBy reads the optional "requested_by" of o (job and cancel messages).
func decodeRequestedBy(o *jsonObject) string {
	s, ok := o.string("requested_by")
	if ok && !requestedByPattern.MatchString(s) {
		o.invalidf("requested_by", "%q must be 1-128 characters of A-Z a-z 0-9 . _ : / @ - starting with a letter or digit", clip.String(s, 40))
	}
	return s
}

// decodeCSVOptions decodes the "csv" object, recording its problems in parent.
func decodeCSVOptions(parent *jsonObject, raw json.RawMessage) *CSVOptions {
	o, err := parseJSONObject(raw, parent.name("csv"), "delimiter", "bom")
	if err != nil {
		parent.shape = append(parent.shape, err)
		return nil
	}
	var c CSVOptions
	if s, ok := o.string("delimiter"); ok {
		c.Delimiter = s
		if !slices.Contains(CSVDelimiters, s) {
			o.invalidf("delimiter", "%q is not one of \",\" \";\" \"\\t\" (tab) \"|\"", clip.String(s, 10))
		}
	}
	if b, ok := o.bool("bom"); ok {
		c.BOM = b
	}
	parent.shape = append(parent.shape, o.shape...)
	parent.invalid = append(parent.invalid, o.invalid...)
	return &c
}

// decodeNDJSONOptions decodes the "ndjson" object, recording its problems in parent.
func decodeNDJSONOptions(parent *jsonObject, raw json.RawMessage) *NDJSONOptions {
	o, err := parseJSONObject(raw, parent.name("ndjson"), "mode")
	if err != nil {
		parent.shape = append(parent.shape, err)
		return nil
	}
	var n NDJSONOptions
	if s, ok := o.string("mode"); ok {
		n.Mode = encode.NDJSONMode(s)
		if n.Mode != encode.NDJSONPlain && n.Mode != encode.NDJSONRelaxedExtJSON {
			o.invalidf("mode", "%q is not one of plain, relaxed_extjson", clip.String(s, 40))
		}
	}
	parent.shape = append(parent.shape, o.shape...)
	parent.invalid = append(parent.invalid, o.invalid...)
	return &n
}

// Encode returns the JSON of m, for producers (the enqueue command, tests).
func (m Message) Encode() ([]byte, error) {
	if m.Version == 0 {
		m.Version = CurrentVersion
	}
	return json.Marshal(m)
}

// openMessage parses a message's JSON object of the given fields (job or segment message): an
// oversize or malformed body is a permanent error.
func openMessage(body []byte, fields []string) (*jsonObject, error) {
	if len(body) > MaxMessageBytes {
		return nil, Permanentf(ReasonOversizeMessage, "message is %d bytes, more than the %d allowed", len(body), MaxMessageBytes)
	}
	o, err := parseJSONObject(body, "", fields...)
	if err != nil {
		return nil, Permanent(ReasonMalformedMessage, err)
	}
	return o, nil
}

// messageErr is the permanent error of a message (noun: "job", "segment", "cancel") whose
// object o had problems: malformed when any was of its shape, else invalid; nil when none.
func (o *jsonObject) messageErr(noun string) error {
	if len(o.shape) > 0 {
		return Permanent(ReasonMalformedMessage, fmt.Errorf("malformed %s message: %w", noun, errors.Join(o.shape...)))
	}
	if len(o.invalid) > 0 {
		return Permanent(ReasonInvalidMessage, fmt.Errorf("invalid %s message: %w", noun, errors.Join(o.invalid...)))
	}
	return nil
}

// decodeVersion reads the required "version" of o, which must be CurrentVersion.
func decodeVersion(o *jsonObject) int {
	n, ok := o.number("version")
	switch {
	case ok && jsonNumberIsInt(n, CurrentVersion):
		return CurrentVersion
	case ok:
		o.invalidf("version", "%s is not supported (want %d)", clip.String(n, 20), CurrentVersion)
	case !o.has("version"):
		o.invalidf("version", "required (%d)", CurrentVersion)
	}
	return 0
}

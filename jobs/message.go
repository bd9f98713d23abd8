package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// MaxMessageBytes bounds a job message. Jobs are small requests; anything larger is a mistake.
const MaxMessageBytes = 16 << 10

// CurrentVersion is the message version this service understands.
const CurrentVersion = 1

// DefaultDestination is used when a message names none.
const DefaultDestination = "internal"

// Message is version 1 of the export job message. See the README for each field.
type Message struct {
	Version     int             `json:"version"`
	ExportID    string          `json:"export_id"`
	Kind        string          `json:"kind"`
	Format      Format          `json:"format,omitempty"`
	Destination string          `json:"destination,omitempty"`
	Params      json.RawMessage `json:"params"`
	// RequestedBy names the upstream system, for logs and the manifest.
	RequestedBy string `json:"requested_by,omitempty"`
}

var (
	exportIDPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	namePattern        = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	requestedByPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$`)
)

// Decode parses and validates a job message strictly: unknown fields, wrong types, missing
// required fields, trailing data and oversize messages are permanent errors naming the field.
// The kind's parameters are decoded and validated by the kind (see Registry.Plan).
func Decode(body []byte) (Message, error) {
	var m Message
	if len(body) > MaxMessageBytes {
		return m, Permanentf("oversize_message", "message is %d bytes, more than the %d allowed", len(body), MaxMessageBytes)
	}
	if err := decodeStrict(body, &m); err != nil {
		return m, Permanent("malformed_message", err)
	}
	var errs []error
	if m.Version != CurrentVersion {
		if m.Version == 0 {
			errs = append(errs, errors.New(`field "version": required (1)`))
		} else {
			errs = append(errs, fmt.Errorf(`field "version": %d is not supported (want %d)`, m.Version, CurrentVersion))
		}
	}
	switch {
	case m.ExportID == "":
		errs = append(errs, errors.New(`field "export_id": required`))
	case !exportIDPattern.MatchString(m.ExportID):
		errs = append(errs, fmt.Errorf(`field "export_id": %q must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit`, truncate(m.ExportID, 40)))
	}
	switch {
	case m.Kind == "":
		errs = append(errs, errors.New(`field "kind": required`))
	case !namePattern.MatchString(m.Kind):
		errs = append(errs, fmt.Errorf(`field "kind": %q is not a kind name`, truncate(m.Kind, 40)))
	}
	if m.Format == "" {
		m.Format = FormatCSV
	} else if m.Format != FormatCSV && m.Format != FormatNDJSON {
		errs = append(errs, fmt.Errorf(`field "format": %q is not one of csv, ndjson`, truncate(string(m.Format), 40)))
	}
	if m.Destination == "" {
		m.Destination = DefaultDestination
	} else if !namePattern.MatchString(m.Destination) {
		errs = append(errs, fmt.Errorf(`field "destination": %q is not a destination name`, truncate(m.Destination, 40)))
	}
	if m.RequestedBy != "" && !requestedByPattern.MatchString(m.RequestedBy) {
		errs = append(errs, fmt.Errorf(`field "requested_by": %q has characters outside A-Z a-z 0-9 . _ : / @ -`, truncate(m.RequestedBy, 40)))
	}
	if len(bytes.TrimSpace(m.Params)) == 0 || bytes.Equal(bytes.TrimSpace(m.Params), []byte("null")) {
		errs = append(errs, errors.New(`field "params": required (an object)`))
	} else if bytes.TrimSpace(m.Params)[0] != '{' {
		errs = append(errs, errors.New(`field "params": must be an object`))
	}
	if len(errs) > 0 {
		return m, Permanent("invalid_message", fmt.Errorf("invalid job message: %w", errors.Join(errs...)))
	}
	return m, nil
}

// Encode returns the JSON of m, for producers (the enqueue command, tests).
func (m Message) Encode() ([]byte, error) {
	if m.Version == 0 {
		m.Version = CurrentVersion
	}
	return json.Marshal(m)
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and trailing data, and
// rewrites encoding/json's errors so they name the field.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

func describeJSONError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return fmt.Errorf("not a JSON object of the expected shape: got %s", typeErr.Value)
		}
		return fmt.Errorf("field %q: got %s, want %s", field, typeErr.Value, jsonTypeName(typeErr.Type.Kind().String()))
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("not valid JSON (at byte %d): %v", syntaxErr.Offset, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("not valid JSON: empty or truncated")
	}
	if s, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return fmt.Errorf("field %s: unknown field", s)
	}
	return fmt.Errorf("not valid JSON: %v", err)
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return kind
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

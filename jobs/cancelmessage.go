package jobs

import (
	"encoding/json"
	"fmt"

	"github.com/verifiedfan/export-service/internal/clip"
)

// CancelMessageType is the "type" of a cancel message.
const CancelMessageType = "cancel_export"

// MaxCancelReason bounds a cancel message's reason.
const MaxCancelReason = 500

// CancelMessage is version 1 of the cancel message: an upstream system (or the cancel command)
// sends it to the jobs queue to stop an export it enqueued. See
// docs/cancel-message.schema.json.
type CancelMessage struct {
	Version int    `json:"version"`
	Type    string `json:"type"`
	// ExportID is the export to cancel (the job message's export_id rule).
	ExportID string `json:"export_id"`
	// RequestedBy names who cancels it (the job message's requested_by rule).
	RequestedBy string `json:"requested_by,omitempty"`
	// Reason says why, for people: at most MaxCancelReason characters.
	Reason string `json:"reason,omitempty"`
}

var cancelMessageFields = []string{"version", "type", "export_id", "requested_by", "reason"}

// IsCancelMessage reports whether body is a cancel message rather than a job or segment
// message: a JSON object whose top-level "type" is the string CancelMessageType.
func IsCancelMessage(body []byte) bool { return MessageType(body) == CancelMessageType }

// DecodeCancel parses and validates a cancel message as strictly as Decode does a job message,
// with its reasons; every problem is reported at once, and the fields that could be read are
// returned with the error.
func DecodeCancel(body []byte) (CancelMessage, error) {
	var m CancelMessage
	o, err := openMessage(body, cancelMessageFields)
	if err != nil {
		return m, err
	}
	m.Version = decodeVersion(o)
	m.Type = decodeType(o, CancelMessageType)
	m.ExportID = decodeExportID(o)
	m.RequestedBy = decodeRequestedBy(o)
	if s, ok := o.string("reason"); ok {
		m.Reason = s
		if n := len([]rune(s)); n > MaxCancelReason {
			o.invalidf("reason", "is %d characters, more than %d", n, MaxCancelReason)
		}
	}
	return m, o.messageErr("cancel")
}

// Encode validates m and returns its JSON (the cancel command). A zero Version or Type is
// taken as CurrentVersion and CancelMessageType; a message DecodeCancel would refuse is an
// error.
func (m CancelMessage) Encode() ([]byte, error) {
	if m.Version == 0 {
		m.Version = CurrentVersion
	}
	if m.Type == "" {
		m.Type = CancelMessageType
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if _, err := DecodeCancel(b); err != nil {
		return nil, fmt.Errorf("jobs: encode the cancel message of export %s: %w", clip.String(m.ExportID, 80), err)
	}
	return b, nil
}

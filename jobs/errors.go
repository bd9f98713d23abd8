package jobs

import (
	"errors"
	"fmt"
)

// PermanentError marks a failure that retrying cannot fix: a malformed message, an unknown kind,
// an invalid field, a destination that is not allowed, access denied. The worker sends such
// messages to the dead-letter queue at once instead of letting them come back.
type PermanentError struct {
	// Reason is a short, stable, machine-readable cause used as a metric label and a DLQ
	// message attribute, for example "malformed_json" or "unknown_kind".
	Reason string
	Err    error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError with the given reason.
func Permanent(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Reason: reason, Err: err}
}

// Permanentf formats an error and marks it permanent.
func Permanentf(reason, format string, args ...any) error {
	return &PermanentError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// IsPermanent reports whether err, or any error it wraps, is permanent, and returns its reason.
func IsPermanent(err error) (reason string, ok bool) {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return pe.Reason, true
	}
	return "", false
}

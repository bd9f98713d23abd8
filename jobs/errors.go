package jobs

import (
	"errors"
	"fmt"
)

// Reason is a short, stable, machine-readable cause of a failure: a metric label, the "reason"
// attribute of a dead-letter message and the ledger's reason. Every reason is one of the
// constants below; the worker writes them and the commands read them.
type Reason string

// Reasons of permanent failures: the message goes to the dead-letter queue at once.
const (
	ReasonMalformedMessage   Reason = "malformed_message"
	ReasonOversizeMessage    Reason = "oversize_message"
	ReasonInvalidMessage     Reason = "invalid_message"
	ReasonInvalidParams      Reason = "invalid_params"
	ReasonUnknownKind        Reason = "unknown_kind"
	ReasonUnknownDestination Reason = "unknown_destination"
	ReasonInvalidKey         Reason = "invalid_key"
	ReasonAccessDenied       Reason = "access_denied"
	ReasonNoSuchBucket       Reason = "no_such_bucket"
	ReasonInvalidDestination Reason = "invalid_destination"
	ReasonTooLarge           Reason = "too_large"
	ReasonPanic              Reason = "panic"
	// ReasonTimeout: an attempt ran longer than MAX_EXPORT_DURATION.
	ReasonTimeout Reason = "timeout"
	// ReasonMaxAttempts: the export failed MAX_ATTEMPTS times.
	ReasonMaxAttempts Reason = "max_attempts"
)

// Reasons recorded in the ledger for outcomes that are not permanent failures, and the one
// SQS's redrive policy implies.
const (
	// ReasonRetryable: a failure that may pass; the message comes back after a backoff.
	ReasonRetryable Reason = "retryable"
	// ReasonShutdown: the attempt was released by a shutdown.
	ReasonShutdown Reason = "shutdown"
	// ReasonMaxReceives: a dead-letter message the queue's redrive policy moved (it carries no
	// reason of its own).
	ReasonMaxReceives Reason = "max_receives"
	// ReasonExportFailed: a segment stopped because its export failed in another segment.
	ReasonExportFailed Reason = "export_failed"
	// ReasonCancelled: the export was cancelled (the cancel command, a cancel message).
	ReasonCancelled Reason = "cancelled"
)

// PermanentError marks a failure that retrying cannot fix: a malformed message, an unknown kind,
// an invalid field, a destination that is not allowed, access denied. The worker sends such
// messages to the dead-letter queue at once instead of letting them come back.
type PermanentError struct {
	Reason Reason
	Err    error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError with the given reason.
func Permanent(reason Reason, err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Reason: reason, Err: err}
}

// Permanentf formats an error and marks it permanent.
func Permanentf(reason Reason, format string, args ...any) error {
	return &PermanentError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// IsPermanent reports whether err, or any error it wraps, is permanent, and returns its reason.
func IsPermanent(err error) (reason Reason, ok bool) {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return pe.Reason, true
	}
	return "", false
}

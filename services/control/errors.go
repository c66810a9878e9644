package control

import (
	"errors"
	"fmt"
)

// Code is the stable machine code of an error: the `code` of a problem+json
// answer. The HTTP transport maps each to a status in one table.
type Code string

// The codes of the public contract.
const (
	CodeInvalidArgument Code = "invalid_argument"
	// CodeUnsupportedMediaType: a body that is not application/json.
	CodeUnsupportedMediaType Code = "unsupported_media_type"
	// CodeMethodNotAllowed: a route that exists, with another method.
	CodeMethodNotAllowed Code = "method_not_allowed"
	CodeUnauthenticated  Code = "unauthenticated"
	// CodePermissionDenied extends the brief's codes: a valid admin key that
	// may not do this (a root-only operation, a key without keytrail:admin).
	CodePermissionDenied Code = "permission_denied"
	CodeNotFound         Code = "not_found"
	CodeConflict         Code = "conflict"
	// CodeIdempotencyMismatch: an Idempotency-Key used again with another
	// request (route, caller or body) within the window.
	CodeIdempotencyMismatch Code = "idempotency_mismatch"
	CodeFailedPrecondition  Code = "failed_precondition"
	CodeRateLimited         Code = "rate_limited"
	CodeUnavailable         Code = "unavailable"
	CodeInternal            Code = "internal"
)

// Error is a domain error: data, not prose. Message is safe to show to the
// caller; it never holds a secret.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

func errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err: "" for nil, its Error's code, or internal
// for anything that is not a domain error (whose text must not reach a client).
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

package adminhttp

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/keytrail/keytrail/services/control"
)

// statusOf is the one table from error codes to HTTP statuses.
var statusOf = map[control.Code]int{
	control.CodeInvalidArgument:      http.StatusBadRequest,
	control.CodeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	control.CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	control.CodeUnauthenticated:      http.StatusUnauthorized,
	control.CodePermissionDenied:     http.StatusForbidden,
	control.CodeNotFound:             http.StatusNotFound,
	control.CodeConflict:             http.StatusConflict,
	control.CodeIdempotencyMismatch:  http.StatusUnprocessableEntity,
	control.CodeFailedPrecondition:   http.StatusUnprocessableEntity,
	control.CodeRateLimited:          http.StatusTooManyRequests,
	control.CodeUnavailable:          http.StatusServiceUnavailable,
	control.CodeInternal:             http.StatusInternalServerError,
}

var titleOf = map[control.Code]string{
	control.CodeInvalidArgument:      "Invalid argument",
	control.CodeUnsupportedMediaType: "Unsupported media type",
	control.CodeMethodNotAllowed:     "Method not allowed",
	control.CodeUnauthenticated:      "Unauthenticated",
	control.CodePermissionDenied:     "Permission denied",
	control.CodeNotFound:             "Not found",
	control.CodeConflict:             "Conflict",
	control.CodeIdempotencyMismatch:  "Idempotency-Key reused with another request",
	control.CodeFailedPrecondition:   "Failed precondition",
	control.CodeRateLimited:          "Rate limited",
	control.CodeUnavailable:          "Unavailable",
	control.CodeInternal:             "Internal error",
}

// Problem is an RFC 9457 problem document with Keytrail's stable code.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Code      string `json:"code"`
	RequestID string `json:"request_id,omitempty"`
	KeyID     string `json:"key_id,omitempty"`
}

// writeError answers err as a problem. Anything that is not a domain error
// is logged and answered as a bare internal error: its text never reaches
// the client.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var de *control.Error
	if !errors.As(err, &de) {
		log.Error("internal error", "request_id", requestID(r), "method", r.Method, "path", r.URL.Path, "err", err)
		de = &control.Error{Code: control.CodeInternal, Message: "internal error"}
	}
	writeProblem(w, r, de.Code, de.Message, "")
}

func writeProblem(w http.ResponseWriter, r *http.Request, code control.Code, detail, keyID string) {
	status, ok := statusOf[code]
	if !ok {
		code, status = control.CodeInternal, http.StatusInternalServerError
	}
	p := Problem{Type: "https://keytrail.dev/problems/" + string(code), Title: titleOf[code], Status: status,
		Detail: detail, Code: string(code), RequestID: requestID(r), KeyID: keyID}
	w.Header().Set("Content-Type", "application/problem+json")
	if r.ContentLength != 0 {
		// The body may not have been read (no key, no route): close the
		// connection at once rather than the server draining a slow body.
		w.Header().Set("Connection", "close")
		http.NewResponseController(w).SetReadDeadline(time.Now())
	}
	switch code {
	case control.CodeUnauthenticated:
		w.Header().Set("WWW-Authenticate", `Bearer realm="keytrail"`)
	case control.CodeUnsupportedMediaType:
		// The one type the API accepts (RFC 9110 §15.5.16; Accept-Patch for
		// PATCH, RFC 5789).
		w.Header().Set("Accept-Post", "application/json")
		w.Header().Set("Accept-Patch", "application/json")
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

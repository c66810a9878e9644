package adminhttp

import (
	"cmp"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/keytrail/keytrail/services/control"
)

// problemInfo is what the API answers with for a code.
type problemInfo struct {
	status int
	title  string
}

// problems is the one table of the admin API's problem codes: the answers,
// the OpenAPI document's enum and docs/codes.md read it, and the client's
// constants are tested against it.
var problems = map[control.Code]problemInfo{
	control.CodeInvalidArgument:      {http.StatusBadRequest, "Invalid argument"},
	control.CodeUnsupportedMediaType: {http.StatusUnsupportedMediaType, "Unsupported media type"},
	control.CodeMethodNotAllowed:     {http.StatusMethodNotAllowed, "Method not allowed"},
	control.CodeUnauthenticated:      {http.StatusUnauthorized, "Unauthenticated"},
	control.CodePermissionDenied:     {http.StatusForbidden, "Permission denied"},
	control.CodeNotFound:             {http.StatusNotFound, "Not found"},
	control.CodeConflict:             {http.StatusConflict, "Conflict"},
	control.CodeIdempotencyMismatch:  {http.StatusUnprocessableEntity, "Idempotency-Key reused with another request"},
	control.CodeFailedPrecondition:   {http.StatusUnprocessableEntity, "Failed precondition"},
	control.CodeRateLimited:          {http.StatusTooManyRequests, "Rate limited"},
	control.CodeUnavailable:          {http.StatusServiceUnavailable, "Unavailable"},
	control.CodeInternal:             {http.StatusInternalServerError, "Internal error"},
}

// ProblemCode is one row of the admin API's problem table.
type ProblemCode struct {
	Code   control.Code
	Status int
	Title  string
}

// ProblemCodes are the admin API's problem codes, by status then code.
func ProblemCodes() []ProblemCode {
	out := make([]ProblemCode, 0, len(problems))
	for c, p := range problems {
		out = append(out, ProblemCode{c, p.status, p.title})
	}
	slices.SortFunc(out, func(a, b ProblemCode) int {
		return cmp.Or(cmp.Compare(a.Status, b.Status), cmp.Compare(a.Code, b.Code))
	})
	return out
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
	info, ok := problems[code]
	if !ok {
		code, info = control.CodeInternal, problems[control.CodeInternal]
	}
	status := info.status
	p := Problem{Type: "https://keytrail.dev/problems/" + string(code), Title: info.title, Status: status,
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

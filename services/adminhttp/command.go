package adminhttp

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
)

// reasoned is a request body that may carry a reason.
type reasoned interface{ reason() string }

func (b reasonBody) reason() string { return b.Reason }

// command registers a write route of the common shape: decode the body (an
// empty one allowed unless bodyRequired), build the meta with the body's
// reason and the request's Idempotency-Key and If-Match, run the command,
// and answer {name: view, seq} with status.
func command[B reasoned, T any](s *Server, pattern string, who access, bodyRequired bool,
	run func(ctx context.Context, r *http.Request, m control.Meta, body B, version *uint64) (T, control.Result, error),
	status func(control.Result) int, name string, view func(T) any) {
	s.handle(pattern, who, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var body B
		if err := decode(r, &body, !bodyRequired); err != nil {
			return err
		}
		m, err := s.meta(r, p, body.reason(), createsObject(pattern))
		if err != nil {
			return err
		}
		out, res, err := run(r.Context(), r, m, body, m.IfMatch)
		if err != nil {
			return err
		}
		return written(w, status(res), res, map[string]any{name: view(out)})
	})
}

// createsObject reports whether a write route creates an object: a POST to
// a collection (its last segment is not a {name} or an action on one).
func createsObject(pattern string) bool {
	switch pattern[strings.LastIndexByte(pattern, '/')+1:] {
	case "tenants", "users", "keys", "apis", "webhooks", "policies":
		return true
	}
	return false
}

// readRoute registers a read of one object: wait for Keytrail-Min-Seq, get it,
// answer {name: view}.
func readRoute[T any](s *Server, pattern, name string, get func(ctx context.Context, r *http.Request) (T, error), view func(T) any) {
	s.handle(pattern, tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		if err := s.minSeq(r); err != nil {
			return err
		}
		v, err := get(r.Context(), r)
		if err != nil {
			return err
		}
		if version, ok := versionOf(v); ok {
			// The version, as an ETag: what If-Match takes back.
			w.Header().Set("ETag", `"`+strconv.FormatUint(version, 10)+`"`)
		}
		writeJSON(w, http.StatusOK, map[string]any{name: view(v)})
		return nil
	})
}

// versionOf is the version of one object of the admin API.
func versionOf(v any) (uint64, bool) {
	switch o := v.(type) {
	case projections.Tenant:
		return o.Version, true
	case projections.User:
		return o.Version, true
	case projections.Key:
		return o.Version, true
	case projections.API:
		return o.Version, true
	case projections.Webhook:
		return o.Version, true
	case projections.Policy:
		return o.Version, true
	}
	return 0, false
}

// ok is the status of a write that changes an existing object.
func ok(control.Result) int { return http.StatusOK }

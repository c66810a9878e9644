package adminhttp

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
)

// DecisionSource searches the gateways' decision log.
type DecisionSource interface {
	// PageDecisions returns up to limit decisions q selects made between
	// since and until, after the log sequence after; next is the cursor of
	// the following page (0: none).
	PageDecisions(ctx context.Context, q events.DecisionQuery, since, until time.Time, after uint64, limit int) (page []events.LoggedDecision, next uint64, err error)
}

// decisionPage is GET /v1/tenants/{t}/decisions.
type decisionPage struct {
	Decisions  []events.LoggedDecision `json:"decisions"`
	NextCursor string                  `json:"next_cursor,omitempty"`
}

func (s *Server) decisionRoutes() {
	s.handle("GET /v1/tenants/{tenant}/decisions", tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		if s.cfg.Decisions == nil {
			return &control.Error{Code: control.CodeUnavailable, Message: "this node does not search the decision log"}
		}
		v := r.URL.Query()
		if err := onlyParams(v, "key", "user", "api", "code", "since", "until", "cursor", "limit"); err != nil {
			return err
		}
		q := events.DecisionQuery{Tenant: r.PathValue("tenant"), KeyID: v.Get("key"), User: v.Get("user"), API: v.Get("api"), Code: v.Get("code")}
		switch {
		case q.KeyID != "" && !events.ValidKeyID(q.KeyID):
			return badParam("key: %q is not a key id", clip(q.KeyID))
		case q.User != "" && !events.ValidUserID(q.User):
			return badParam("user: %q is not a user id", clip(q.User))
		case q.API != "" && !events.ValidAPIID(q.API):
			return badParam("api: %q is not an API id", clip(q.API))
		}
		if q.Code != "" {
			if _, ok := projections.OutcomeOf(projections.Code(q.Code)); !ok {
				return badParam("code: %q is not an outcome code", clip(q.Code))
			}
		}
		now := s.cfg.Now()
		since, err := timeParam(v.Get("since"), now, now.Add(-24*time.Hour))
		if err != nil {
			return badParam("since: %v", err)
		}
		until, err := timeParam(v.Get("until"), now, time.Time{})
		if err != nil {
			return badParam("until: %v", err)
		}
		if !until.IsZero() && !since.Before(until) {
			return badParam("since: must be before until")
		}
		var after uint64
		if c := v.Get("cursor"); c != "" {
			if after, err = strconv.ParseUint(c, 10, 64); err != nil || after == 0 || after == math.MaxUint64 {
				return badParam("cursor: %q is not a cursor this route gave", clip(c))
			}
		}
		limit, err := pageSize(r)
		if err != nil {
			return err
		}
		page, next, err := s.cfg.Decisions.PageDecisions(r.Context(), q, since, until, after, limit)
		if err != nil {
			return err
		}
		out := decisionPage{Decisions: page}
		if out.Decisions == nil {
			out.Decisions = []events.LoggedDecision{}
		}
		if next > 0 {
			out.NextCursor = strconv.FormatUint(next, 10)
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

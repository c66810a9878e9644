package adminhttp

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
)

// denying are the writes that can deny a request that verifies today:
// each takes ?dry_run=true (docs/policies.md).
var denying = map[string]bool{
	"POST /v1/tenants/{tenant}/suspend":                  true,
	"POST /v1/tenants/{tenant}/revoke-keys":              true,
	"POST /v1/tenants/{tenant}/users/{user}/disable":     true,
	"DELETE /v1/tenants/{tenant}/users/{user}":           true,
	"POST /v1/tenants/{tenant}/users/{user}/revoke-keys": true,
	"PATCH /v1/tenants/{tenant}/keys/{key}":              true,
	"POST /v1/tenants/{tenant}/keys/{key}/suspend":       true,
	"POST /v1/tenants/{tenant}/keys/{key}/revoke":        true,
	"POST /v1/tenants/{tenant}/keys/{key}/rotate":        true,
	"PATCH /v1/tenants/{tenant}/apis/{api}":              true,
	"POST /v1/tenants/{tenant}/apis/{api}/retire":        true,
	"PATCH /v1/tenants/{tenant}/policies/{policy}":       true,
	"POST /v1/tenants/{tenant}/policies/{policy}/retire": true,
}

// DryRunnable reports whether a route of Routes takes ?dry_run=true.
func DryRunnable(route string) bool { return denying[route] }

// dryRun reads ?dry_run: true or false (absent: false), and only on a
// write that can deny.
func dryRun(r *http.Request, pattern string) (bool, error) {
	if r.Method == http.MethodGet {
		if r.URL.Query().Has("dry_run") {
			return false, &control.Error{Code: control.CodeInvalidArgument, Message: "dry_run: a read changes nothing; dry runs are for writes that can deny"}
		}
		return false, nil
	}
	// A write whose query does not parse, or names dry_run nearly, is
	// refused: the parts that do not parse are dropped silently, and a
	// dry run asked for that way would write for real.
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return false, &control.Error{Code: control.CodeInvalidArgument, Message: "the query does not parse (" + clip(err.Error()) + "); a write takes only dry_run"}
	}
	for name := range q {
		if name != "dry_run" && strings.EqualFold(strings.ReplaceAll(name, "-", "_"), "dry_run") {
			return false, &control.Error{Code: control.CodeInvalidArgument, Message: "query: " + clip(name) + " is not a parameter; did you mean dry_run?"}
		}
	}
	if !q.Has("dry_run") {
		return false, nil
	}
	if len(q["dry_run"]) > 1 {
		// The first value would win: dry_run=false&dry_run=true would
		// write for real a request its sender meant as a dry run.
		return false, &control.Error{Code: control.CodeInvalidArgument, Message: "dry_run: given more than once"}
	}
	var dry bool
	switch v := q.Get("dry_run"); v {
	case "true", "1":
		dry = true
	case "false", "0":
	default:
		return false, &control.Error{Code: control.CodeInvalidArgument, Message: "dry_run: " + clip(v) + " is not true or false"}
	}
	if dry && !denying[pattern] {
		return false, &control.Error{Code: control.CodeInvalidArgument,
			Message: "dry_run: " + pattern + " cannot deny a request that verifies today; dry runs are for suspensions, revocations, disabling, deletion, retirement and scope changes"}
	}
	return dry, nil
}

// plannedEvent is an event a dry run would append, as the history shows
// events (the secret's hash of a rotation's new key left out).
type plannedEvent struct {
	Type      events.Type `json:"type"`
	Aggregate string      `json:"aggregate"`
	Subject   string      `json:"subject"`
	At        time.Time   `json:"at"`
	Actor     string      `json:"actor"`
	Reason    string      `json:"reason,omitempty"`
	Data      any         `json:"data"`
}

// keyImpact is a key whose decisions change, and the requests it had
// answered VALID in the last 24 hours that it would now be denied.
type keyImpact struct {
	projections.KeyImpact
	Requests24h uint64 `json:"requests_24h"`
}

// dryRun runs the write h with a plan instead of an append, then answers
// what it would append and what that would do: {"events", "impact"}.
// Nothing is appended; nothing the handler wrote reaches the client
// unless it failed.
func (s *Server) dryRun(w http.ResponseWriter, r *http.Request, p *principal, pattern string, h handler) {
	plan, rec, err := planned(r, p, h)
	if err != nil {
		writeError(w, r, s.cfg.Log, err)
		return
	}
	if rec.status >= 300 {
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.status)
		w.Write(rec.body.Bytes())
		return
	}
	if !p.root && granting[pattern] && len(plan.Events) > 0 {
		if !s.judge(w, r, p, plan) { // refused as the write would be
			return
		}
	} else if err := s.cfg.Model.WaitFor(r.Context(), plan.After, s.cfg.MinSeqWait); err != nil {
		writeProblem(w, r, control.CodeUnavailable, "this node's read model has not caught up with what the change was decided on; retry", "")
		return
	}
	tenant, now := r.PathValue("tenant"), s.cfg.Now()
	var imp projections.Impact
	s.cfg.Model.Read(func(c *projections.Catalog) { imp, err = c.Preview(tenant, plan.Events, now) })
	if err != nil {
		// The read model does not hold what the command read (it lags, or
		// another write came between): the preview would not be the write's.
		s.cfg.Log.Warn("dry run: the planned events do not apply to the read model", "err", err)
		writeProblem(w, r, control.CodeUnavailable, "this node's read model could not apply the planned events; retry", "")
		return
	}
	planned := make([]plannedEvent, len(plan.Events))
	for i, e := range plan.Events {
		subject, _ := events.SubjectOf(&e)
		planned[i] = plannedEvent{Type: e.Type, Aggregate: e.Aggregate.String(), Subject: subject, At: e.OccurredAt,
			Actor: e.Actor, Reason: e.Reason, Data: redacted(e.Data)}
	}
	keys, total := s.denied24h(tenant, imp.Keys, now)
	writeJSON(w, http.StatusOK, map[string]any{"dry_run": true, "events": planned, "impact": map[string]any{
		"keys": keys, "users": imp.Users, "apis": imp.APIs, "requests_24h": total}})
}

// denied24h counts, for each key a change denies on some API, the requests
// there it answered VALID in the 24 hours before now (from the usage
// counts; 0 on a node that keeps none).
func (s *Server) denied24h(tenant string, keys []projections.KeyImpact, now time.Time) ([]keyImpact, uint64) {
	out := make([]keyImpact, len(keys))
	var total uint64
	for i, k := range keys {
		out[i].KeyImpact = k
		if s.cfg.Usage == nil {
			continue
		}
		denied := map[string]bool{}
		for _, c := range k.Changes {
			if c.Denies() {
				denied[c.API] = true
			}
		}
		if len(denied) == 0 {
			continue
		}
		var ans projections.UsageAnswer
		s.cfg.Usage.Read(func(u *projections.Usage) {
			ans, _ = u.Query(projections.UsageQuery{Tenant: tenant, Key: k.Key, Code: string(projections.CodeValid), GroupBy: "api",
				Grain: projections.GrainHour, Since: now.Add(-24 * time.Hour), Until: now})
		})
		for _, series := range ans.Series {
			if denied[series.Group] {
				out[i].Requests24h += series.Total
			}
		}
		total += out[i].Requests24h
	}
	return out, total
}

package adminhttp

import (
	"bytes"
	"io"
	"net/http"

	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
)

// granting are the writes by which a key comes to be granted something:
// a scope, a later end, an API. A tenant admin's such write is judged on
// its own plan first (guard).
var granting = map[string]bool{
	"POST /v1/tenants/{tenant}/keys":                     true,
	"PATCH /v1/tenants/{tenant}/keys/{key}":              true,
	"POST /v1/tenants/{tenant}/keys/{key}/rotate":        true,
	"POST /v1/tenants/{tenant}/policies":                 true,
	"PATCH /v1/tenants/{tenant}/policies/{policy}":       true,
	"POST /v1/tenants/{tenant}/policies/{policy}/retire": true,
}

// guard holds a tenant admin to the one rule (projections.Exceeds): it may
// make only keys it could have issued itself. The write is decided as a
// plan (a dry run's, nothing appended), the plan applied to a copy of the
// tenant's read model, and every key whose grant it changes — scopes
// (its policies' included), end of life, APIs, rate — judged against the
// admin key's own; only then is it decided again and appended. It reports
// whether h may run for real; when not, the answer is written. Policy
// changes are appended only if no key of the tenant changed since the
// judgement (control.Confinement.AsOf): a key that came to reference the
// policy meanwhile was not judged.
func (s *Server) guard(w http.ResponseWriter, r *http.Request, p *principal, pattern string, h handler) bool {
	if p.root || !granting[pattern] {
		return true
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, r, s.cfg.Log, err)
		return false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	plan, rec, err := planned(r, p, h)
	r.Body = io.NopCloser(bytes.NewReader(body)) // for the write itself
	if err != nil {
		writeError(w, r, s.cfg.Log, err)
		return false
	}
	if rec.status >= 300 || len(plan.Events) == 0 {
		return true // refused, replayed or unchanged: the write says so itself
	}
	return s.judge(w, r, p, plan)
}

// planned runs the write h as a plan (control.Meta.Plan): decided as
// ever, nothing appended, its answer kept in a recorder.
func planned(r *http.Request, p *principal, h handler) (*control.Plan, *recorder, error) {
	plan := &control.Plan{}
	info(r).plan = plan
	defer func() { info(r).plan = nil }()
	rec := &recorder{header: http.Header{}}
	return plan, rec, h(rec, r, p)
}

// judge applies a tenant admin's plan to a copy of the read model and
// refuses it (writing the answer) when it makes a key its caller could not
// have issued; it records the read model's sequence it judged at.
func (s *Server) judge(w http.ResponseWriter, r *http.Request, p *principal, plan *control.Plan) bool {
	if err := s.cfg.Model.WaitFor(r.Context(), plan.After, s.cfg.MinSeqWait); err != nil {
		writeProblem(w, r, control.CodeUnavailable, "this node's read model has not caught up with what the change was decided on; retry", "")
		return false
	}
	var why string
	var err error
	s.cfg.Model.Read(func(c *projections.Catalog) {
		info(r).asOf = c.Seq
		why, err = c.Exceeds(r.PathValue("tenant"), plan.Events, p.keyID)
	})
	switch {
	case err != nil:
		s.cfg.Log.Warn("confinement: the planned events do not apply to the read model", "err", err)
		writeProblem(w, r, control.CodeUnavailable, "this node's read model could not judge the change; retry", "")
		return false
	case why != "":
		writeProblem(w, r, control.CodePermissionDenied, why+"; a key can grant only what it holds itself, and outlive it or reach further it may not", "")
		return false
	}
	return true
}

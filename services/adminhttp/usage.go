package adminhttp

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
)

// maxUsageBuckets bounds the buckets one usage query spans (30 days of
// minutes is 43 200: ask for hours).
const maxUsageBuckets = 10_000

// usageAnswer is GET /v1/tenants/{t}/usage: the series, and the gaps in
// the gateways' reports that overlap the range (requests no report
// counted).
type usageAnswer struct {
	projections.UsageAnswer
	Gaps []projections.UsageGap `json:"gaps"`
}

// gatewayView is a gateway as the console and operators see it: how far
// its read model is, and how stale.
type gatewayView struct {
	projections.Gateway
	// StalenessMS is how long before now the stream last confirmed the
	// gateway's model current, as of its last report (-1: never).
	StalenessMS int64 `json:"staleness_ms"`
}

func (s *Server) usageRoutes() {
	s.handle("GET /v1/gateways", tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		if s.cfg.Usage == nil {
			return &control.Error{Code: control.CodeUnavailable, Message: "this node keeps no usage counts"}
		}
		if err := onlyParams(r.URL.Query()); err != nil {
			return err
		}
		var gws []projections.Gateway
		s.cfg.Usage.Read(func(u *projections.Usage) { gws = u.Gateways() })
		now := s.cfg.Now()
		views := make([]gatewayView, len(gws))
		for i, g := range gws {
			views[i] = gatewayView{Gateway: g, StalenessMS: -1}
			if !g.Confirmed.IsZero() {
				views[i].StalenessMS = now.Sub(g.Confirmed).Milliseconds()
			}
			if !p.root {
				// A tenant's admin sees how current the gateways are, not
				// which hosts they are or how far the whole log has grown.
				views[i].Node, views[i].Boot, views[i].Applied = fmt.Sprintf("gateway %d", i+1), "", 0
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"gateways": views})
		return nil
	})
	s.handle("GET /v1/tenants/{tenant}/usage", tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		if s.cfg.Usage == nil {
			return &control.Error{Code: control.CodeUnavailable, Message: "this node keeps no usage counts"}
		}
		q, err := usageQuery(r.URL.Query(), r.PathValue("tenant"), s.cfg.Now())
		if err != nil {
			return err
		}
		var ans usageAnswer
		s.cfg.Usage.Read(func(u *projections.Usage) {
			ans.UsageAnswer, err = u.Query(q)
			for _, g := range u.Gaps() {
				if g.From.Before(q.Until) && (g.To.IsZero() || g.To.After(q.Since)) {
					ans.Gaps = append(ans.Gaps, g)
				}
			}
		})
		if err != nil {
			return &control.Error{Code: control.CodeInvalidArgument, Message: err.Error()}
		}
		if ans.Series == nil {
			ans.Series = []projections.UsageSeries{}
		}
		if ans.Gaps == nil {
			ans.Gaps = []projections.UsageGap{}
		}
		writeJSON(w, http.StatusOK, ans)
		return nil
	})
}

// usageQuery reads the usage route's parameters, naming the first that is
// wrong.
func usageQuery(v url.Values, tenant string, now time.Time) (projections.UsageQuery, error) {
	if err := onlyParams(v, "key", "user", "api", "code", "group_by", "bucket", "since", "until"); err != nil {
		return projections.UsageQuery{}, err
	}
	q := projections.UsageQuery{Tenant: tenant, Key: v.Get("key"), User: v.Get("user"), API: v.Get("api"), Code: v.Get("code"),
		GroupBy: v.Get("group_by"), Grain: projections.Grain(v.Get("bucket")), Until: now}
	switch {
	case q.Key != "" && !events.ValidKeyID(q.Key):
		return q, badParam("key: %q is not a key id", clip(q.Key))
	case q.User != "" && !events.ValidUserID(q.User):
		return q, badParam("user: %q is not a user id", clip(q.User))
	case q.API != "" && !events.ValidAPIID(q.API):
		return q, badParam("api: %q is not an API id", clip(q.API))
	case q.GroupBy != "" && !slices.Contains(projections.GroupBys, q.GroupBy):
		return q, badParam("group_by: %q; want code, key, api or user", clip(q.GroupBy))
	}
	if q.Code != "" {
		if _, ok := projections.OutcomeOf(projections.Code(q.Code)); !ok {
			return q, badParam("code: %q is not an outcome code", clip(q.Code))
		}
	}
	if q.Grain == "" {
		q.Grain = projections.GrainHour
	}
	size, ok := projections.GrainSize(q.Grain)
	if !ok {
		return q, badParam("bucket: %q; want minute, hour or day", clip(string(q.Grain)))
	}
	var err error
	if q.Since, err = timeParam(v.Get("since"), now, now.Add(-24*time.Hour)); err != nil {
		return q, badParam("since: %v", err)
	}
	if q.Until, err = timeParam(v.Get("until"), now, now); err != nil {
		return q, badParam("until: %v", err)
	}
	switch {
	case !q.Since.Before(q.Until):
		return q, badParam("since: must be before until")
	case q.Until.Sub(q.Since)/size > maxUsageBuckets:
		return q, badParam("since, until: more than %d %s buckets between them; ask for a larger bucket or a shorter range", maxUsageBuckets, q.Grain)
	}
	return q, nil
}

// timeParam is an RFC 3339 time, or a duration before now ("24h", "30d");
// def when empty.
func timeParam(s string, now, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := events.ParseDuration(s)
	if err != nil || d <= 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration before now such as 24h or 30d", clip(s))
	}
	return now.Add(-d), nil
}

// onlyParams refuses a query with a parameter the route does not take, or
// one given twice (which value would it mean?).
func onlyParams(v url.Values, names ...string) error {
	for name, vals := range v {
		switch {
		case !slices.Contains(names, name):
			return &control.Error{Code: control.CodeInvalidArgument, Message: fmt.Sprintf("%s: not a parameter of this route (%s)", clip(name), strings.Join(names, ", "))}
		case len(vals) > 1:
			return &control.Error{Code: control.CodeInvalidArgument, Message: fmt.Sprintf("%s: given %d times", name, len(vals))}
		}
	}
	return nil
}

package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keytrail/keytrail/client"
)

// Pages mirror the API's paths under /console/; actions are form POSTs to
// the matching path, with the session's CSRF token.
func (s *Server) routes() {
	s.mux.HandleFunc("GET /console/{$}", func(w http.ResponseWriter, r *http.Request) {
		if ss := s.session(r); ss != nil {
			http.Redirect(w, r, home(ss.who), http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, "/console/login", http.StatusSeeOther)
	})
	s.mux.HandleFunc("GET /console/login", s.login)
	s.mux.HandleFunc("POST /console/login", s.login)
	s.mux.HandleFunc("POST /console/logout", s.logout)
	s.mux.HandleFunc("GET /console/assets/{name}", s.asset)
	s.mux.HandleFunc("GET /console/tenants", s.signedIn(s.tenants))
	s.mux.HandleFunc("GET /console/tenants/{tenant}", s.signedIn(s.overview))
	s.mux.HandleFunc("GET /console/tenants/{tenant}/users", s.signedIn(s.users))
	s.mux.HandleFunc("POST /console/tenants/{tenant}/users/{user}/{action}", s.signedIn(s.userAction))
	s.mux.HandleFunc("GET /console/tenants/{tenant}/keys", s.signedIn(s.keys))
	s.mux.HandleFunc("POST /console/tenants/{tenant}/keys", s.signedIn(s.issueKey))
	s.mux.HandleFunc("POST /console/tenants/{tenant}/keys/find", s.signedIn(s.findKey))
	s.mux.HandleFunc("GET /console/tenants/{tenant}/keys/{key}", s.signedIn(s.key))
	s.mux.HandleFunc("POST /console/tenants/{tenant}/keys/{key}/{action}", s.signedIn(s.keyAction))
	s.mux.HandleFunc("GET /console/tenants/{tenant}/apis", s.signedIn(s.apis))
	s.mux.HandleFunc("POST /console/tenants/{tenant}/apis/{api}/{action}", s.signedIn(s.apiAction))
	s.mux.HandleFunc("GET /console/tenants/{tenant}/decisions", s.signedIn(s.decisions))
	s.mux.HandleFunc("GET /console/tenants/{tenant}/notices", s.signedIn(s.notices))
	s.mux.HandleFunc("GET /console/tenants/{tenant}/webhooks", s.signedIn(s.webhooks))
	s.mux.HandleFunc("GET /console/tenants/{tenant}/webhooks/{webhook}", s.signedIn(s.webhook))
	s.mux.HandleFunc("POST /console/tenants/{tenant}/webhooks/{webhook}/replay", s.signedIn(s.replay))
	s.mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, s.session(r), http.StatusNotFound, "no such page")
	})
}

// after is the read consistency of a page loaded after a write: ?seq= (the
// write's sequence) makes its reads wait for it.
func after(r *http.Request) *client.Call {
	seq, _ := strconv.ParseUint(r.URL.Query().Get("seq"), 10, 64)
	return &client.Call{MinSeq: seq}
}

func tenantURL(t string) string { return "/console/tenants/" + url.PathEscape(t) }

func seeAfter(path string, seq uint64) error {
	return redirectTo(path + "?seq=" + strconv.FormatUint(seq, 10))
}

func (s *Server) tenants(r *http.Request, ss *session) (page, error) {
	if !ss.who.Root {
		return page{}, redirectTo(home(ss.who))
	}
	p, err := ss.api.ListTenants(r.Context(), client.ListOptions{Cursor: r.URL.Query().Get("cursor"), Limit: 100}, after(r))
	return page{name: "tenants", title: "Tenants", data: p}, err
}

// overviewData is a tenant at a glance.
type overviewData struct {
	Tenant   client.Tenant
	Chart    chart
	Total    uint64
	Denied   uint64
	Expiring []client.Key
	Blocked  []client.Key
	Gaps     []client.UsageGap
	Gateways []client.Gateway
}

// blockedStatuses are the effective statuses of keys that fail because of
// their owner or tenant.
var blockedStatuses = []string{"user_disabled", "user_deleted", "user_unknown", "tenant_suspended"}

func (s *Server) overview(r *http.Request, ss *session) (page, error) {
	ctx, t := r.Context(), r.PathValue("tenant")
	var d overviewData
	var err error
	if d.Tenant, err = ss.api.Tenant(ctx, t, after(r)); err != nil {
		return page{}, err
	}
	u, err := ss.api.Usage(ctx, t, client.UsageQuery{GroupBy: "code", Bucket: "hour", Since: "24h"}, nil)
	if err != nil {
		return page{}, err
	}
	d.Chart, d.Total, d.Gaps = usageChart(u, s.cfg.Now()), u.Total, u.Gaps
	for _, series := range u.Series {
		if series.Group != "VALID" {
			d.Denied += series.Total
		}
	}
	exp, err := ss.api.ListKeys(ctx, t, client.KeyFilter{Status: "active", ExpiringWithin: "7d", ListOptions: client.ListOptions{Limit: 20}}, nil)
	if err != nil {
		return page{}, err
	}
	d.Expiring = exp.Keys
	for _, st := range blockedStatuses {
		b, err := ss.api.ListKeys(ctx, t, client.KeyFilter{Status: st, ListOptions: client.ListOptions{Limit: 20}}, nil)
		if err != nil {
			return page{}, err
		}
		d.Blocked = append(d.Blocked, b.Keys...)
	}
	if d.Gateways, err = ss.api.Gateways(ctx, nil); err != nil {
		return page{}, err
	}
	return page{name: "overview", title: d.Tenant.Name + " — overview", data: d}, nil
}

func (s *Server) users(r *http.Request, ss *session) (page, error) {
	p, err := ss.api.ListUsersWithKeyCounts(r.Context(), r.PathValue("tenant"), client.ListOptions{Cursor: r.URL.Query().Get("cursor"), Limit: 100}, after(r))
	return page{name: "users", title: "Users", data: p}, err
}

// confirmData is a destructive action waiting for its confirmation.
type confirmData struct {
	Action, What, Reason, Back string
	Fields                     map[string]string
	// Preview is what the action would do (its dry run); PreviewErr why
	// there is none.
	Preview    *client.Preview
	PreviewErr string
}

// confirmed reports whether a destructive action's form was confirmed;
// when it was not, the page to confirm it, which shows what the action
// would do: dry runs it (the same call with client.Call.DryRun) and lists
// the events it would append and the keys it would deny.
func confirmed(r *http.Request, what string, dry func(call *client.Call) error, fields ...string) (page, bool) {
	if r.PostFormValue("confirm") == "yes" {
		return page{}, true
	}
	// Cancel goes back to the object (a key), or to the list (users, APIs).
	back := path.Dir(r.URL.Path)
	if r.PathValue("key") == "" {
		back = path.Dir(back)
	}
	d := confirmData{Action: r.URL.Path, What: what, Reason: r.PostFormValue("reason"), Back: back, Fields: map[string]string{}}
	for _, f := range fields {
		d.Fields[f] = r.PostFormValue(f)
	}
	call := &client.Call{DryRun: &client.Preview{}}
	if err := dry(call); err != nil {
		d.PreviewErr = problemText(err)
	} else {
		d.Preview = call.DryRun
	}
	return page{name: "confirm", title: "Confirm: " + what, data: d}, false
}

func (s *Server) userAction(r *http.Request, ss *session) (page, error) {
	ctx, t, u, reason := r.Context(), r.PathValue("tenant"), r.PathValue("user"), r.PostFormValue("reason")
	var res client.UserResult
	var err error
	switch a := r.PathValue("action"); a {
	case "disable", "delete":
		if p, ok := confirmed(r, a+" user "+u+" (every key of theirs stops working)", func(call *client.Call) (err error) {
			if a == "disable" {
				_, err = ss.api.DisableUser(ctx, t, u, reason, call)
			} else {
				_, err = ss.api.DeleteUser(ctx, t, u, reason, call)
			}
			return err
		}); !ok {
			return p, nil
		}
		if a == "disable" {
			res, err = ss.api.DisableUser(ctx, t, u, reason, nil)
		} else {
			res, err = ss.api.DeleteUser(ctx, t, u, reason, nil)
		}
	case "enable":
		res, err = ss.api.EnableUser(ctx, t, u, reason, nil)
	default:
		return page{}, &client.Problem{Status: http.StatusNotFound, Detail: "no such action"}
	}
	if err != nil {
		return page{}, err
	}
	return page{}, seeAfter(tenantURL(t)+"/users", res.Seq)
}

// keysData is a page of keys and the filters that chose it.
type keysData struct {
	Page     client.KeyPage
	Filter   client.KeyFilter
	Statuses []string
	Next     string
	// Idem is this rendering's idempotency key for the issue form.
	Idem string
}

var keyStatuses = []string{"active", "revoked", "expired", "suspended", "not_yet_valid", "user_disabled", "user_deleted", "user_unknown", "tenant_suspended"}

func (s *Server) keys(r *http.Request, ss *session) (page, error) {
	q := r.URL.Query()
	if looksSecret(q.Get("q")) {
		return page{}, &client.Problem{Status: http.StatusBadRequest, Detail: "that looks like a key's secret: search by id, name or the hint's last characters, or use “Which key is this?” below, which never puts a secret in a URL"}
	}
	f := client.KeyFilter{User: q.Get("user"), Status: q.Get("status"), ExpiringWithin: q.Get("expiring_within"), UnusedFor: q.Get("unused_for"),
		Search: q.Get("q"), WithUsage: true, ListOptions: client.ListOptions{Cursor: q.Get("cursor"), Limit: 50}}
	p, err := ss.api.ListKeys(r.Context(), r.PathValue("tenant"), f, after(r))
	if err != nil {
		return page{}, err
	}
	return page{name: "keys", title: "Keys", data: keysData{Page: p, Filter: f, Statuses: keyStatuses, Next: nextPage(q, p.NextCursor), Idem: token()}}, nil
}

// nextPage is the link to the page after cursor: the same query, from
// there ("" when there is none).
func nextPage(q url.Values, cursor string) string {
	if cursor == "" {
		return ""
	}
	next := url.Values{}
	for k, v := range q {
		next[k] = v
	}
	next.Set("cursor", cursor)
	next.Del("seq")
	return "?" + next.Encode()
}

// findKey answers "which key is this?" for a secret pasted in, by POST so
// that it is never in a URL: the API verifies it for the tenant, and the
// page of the key it names follows.
func (s *Server) findKey(r *http.Request, ss *session) (page, error) {
	t := r.PathValue("tenant")
	d, err := ss.api.VerifyFor(r.Context(), client.VerifyRequest{Key: strings.TrimSpace(r.PostFormValue("secret")), Tenant: t}, nil)
	if err != nil {
		return page{}, err
	}
	if d.KeyID == "" || d.Tenant != t {
		return page{}, &client.Problem{Status: http.StatusNotFound, Detail: fmt.Sprintf("no key of %s has this secret (%s)", t, d.Code)}
	}
	return page{}, redirectTo(tenantURL(t) + "/keys/" + url.PathEscape(d.KeyID))
}

// looksSecret says whether a search is a pasted secret (kt_ and many
// characters), which must not travel in a URL.
func looksSecret(q string) bool {
	return len(q) > 20 && strings.Contains(q, "_") && !strings.HasPrefix(q, "key_")
}

// secretData is a key (or endpoint) and its secret, shown once.
type secretData struct {
	What, Link, Secret string
	Previous           string
}

func (s *Server) issueKey(r *http.Request, ss *session) (page, error) {
	t := r.PathValue("tenant")
	spec := client.KeySpec{User: r.PostFormValue("user"), Name: r.PostFormValue("name"), TTL: r.PostFormValue("ttl")}
	for _, sc := range strings.Fields(strings.ReplaceAll(r.PostFormValue("scopes"), ",", " ")) {
		spec.Scopes = append(spec.Scopes, sc)
	}
	// The form's own idempotency key: the same form sent again (reload,
	// back and forward) is the same request, and issues no second key.
	var call *client.Call
	if idem := r.PostFormValue("idem"); len(idem) == 43 && strings.Trim(idem, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == "" {
		call = &client.Call{IdempotencyKey: "console-" + idem}
	}
	k, err := ss.api.IssueKey(r.Context(), t, spec, call)
	if err != nil {
		return page{}, err
	}
	return page{name: "secret", title: "Key issued", data: secretData{What: "key " + k.Key.ID + " of " + k.Key.User,
		Link: tenantURL(t) + "/keys/" + url.PathEscape(k.Key.ID) + "?seq=" + strconv.FormatUint(k.Seq, 10), Secret: k.Secret}}, nil
}

// keyData is everything about one key.
type keyData struct {
	Key      client.Key
	User     client.User
	Tenant   client.Tenant
	UserBy   *client.HistoryEvent
	TenantBy *client.HistoryEvent
	Now      client.Decision
	Explain  *client.Decision
	// ExplainErr is why the explanation asked for could not be given.
	ExplainErr string
	At         string
	History    []client.HistoryEvent
	Chart      chart
	Recent     []client.LoggedDecision
	RecentErr  string
}

func (s *Server) key(r *http.Request, ss *session) (page, error) {
	ctx, t, id, call := r.Context(), r.PathValue("tenant"), r.PathValue("key"), after(r)
	var d keyData
	var err error
	if d.Key, err = ss.api.Key(ctx, t, id, call); err != nil {
		return page{}, err
	}
	if d.User, err = ss.api.User(ctx, t, d.Key.User, nil); err != nil {
		var pr *client.Problem
		if !asProblem(err, &pr) || pr.Status != http.StatusNotFound {
			return page{}, err
		}
		d.User = client.User{ID: d.Key.User, Status: "unknown"}
	}
	if d.Tenant, err = ss.api.Tenant(ctx, t, nil); err != nil {
		return page{}, err
	}
	if d.History, err = ss.api.KeyHistory(ctx, t, id, nil); err != nil {
		return page{}, err
	}
	for _, e := range d.History {
		switch e := e; {
		case strings.HasPrefix(e.Type, "user.") && e.Type != "user.keys-revoked-before":
			d.UserBy = &e
		case e.Type == "tenant.suspended" || e.Type == "tenant.resumed" || e.Type == "tenant.created":
			d.TenantBy = &e
		}
	}
	slices.Reverse(d.History) // newest first
	if d.Now, err = ss.api.Explain(ctx, t, id, s.cfg.Now(), nil); err != nil {
		return page{}, err
	}
	if at := strings.TrimSpace(r.URL.Query().Get("at")); at != "" {
		d.At = at
		if when, err := parseWhen(at, s.cfg.Now()); err != nil {
			d.ExplainErr = "at: " + err.Error()
		} else if e, err := ss.api.Explain(ctx, t, id, when, nil); err != nil {
			var pr *client.Problem
			if !asProblem(err, &pr) {
				return page{}, err
			}
			d.ExplainErr = pr.Detail
		} else {
			d.Explain = &e
		}
	}
	u, err := ss.api.Usage(ctx, t, client.UsageQuery{Key: id, GroupBy: "code", Bucket: "hour", Since: "24h"}, nil)
	if err != nil {
		return page{}, err
	}
	d.Chart = usageChart(u, s.cfg.Now())
	if d.Recent, _, err = newestDecisions(ctx, ss.api, t, client.DecisionQuery{Key: id, Since: "24h"}, 20); err != nil {
		d.RecentErr = problemText(err)
	}
	return page{name: "key", title: "Key " + id, data: d}, nil
}

// parseWhen reads a time as RFC 3339 (UTC when it names no zone), or a
// duration before now ("2h", "3d").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, ok := parseTime(s); ok {
		return t, nil
	}
	if d, ok := parseDuration(s); ok {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time (2026-12-07T10:00:00Z) or a duration before now (2h, 3d)", s)
}

// parseFuture reads a time as RFC 3339 (UTC when it names no zone), or a
// duration from now ("30d").
func parseFuture(s string, now time.Time) (time.Time, error) {
	if t, ok := parseTime(s); ok {
		return t, nil
	}
	if d, ok := parseDuration(s); ok {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time (2027-01-01T00:00:00Z) or a duration from now (30d)", s)
}

func parseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil && t.Year() > 1 {
			return t, true
		}
	}
	return time.Time{}, false
}

// parseDuration reads a Go duration or a number of days ("3d").
func parseDuration(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		return time.Duration(n) * 24 * time.Hour, err == nil && n >= 0 && n <= 3650
	}
	d, err := time.ParseDuration(s)
	return d, err == nil && d >= 0
}

func asProblem(err error, pr **client.Problem) bool {
	p, ok := err.(*client.Problem)
	if ok {
		*pr = p
	}
	return ok
}

func (s *Server) keyAction(r *http.Request, ss *session) (page, error) {
	ctx, t, id, reason := r.Context(), r.PathValue("tenant"), r.PathValue("key"), r.PostFormValue("reason")
	back := tenantURL(t) + "/keys/" + url.PathEscape(id)
	var res client.KeyResult
	var err error
	switch a := r.PathValue("action"); a {
	case "suspend":
		if p, ok := confirmed(r, "suspend key "+id+" (it stops working until resumed)", func(call *client.Call) error {
			_, err := ss.api.SuspendKey(ctx, t, id, reason, call)
			return err
		}); !ok {
			return p, nil
		}
		res, err = ss.api.SuspendKey(ctx, t, id, reason, nil)
	case "resume":
		res, err = ss.api.ResumeKey(ctx, t, id, reason, nil)
	case "revoke":
		if p, ok := confirmed(r, "revoke key "+id+" for good", func(call *client.Call) error {
			_, _, err := ss.api.RevokeKey(ctx, t, id, reason, call)
			return err
		}); !ok {
			return p, nil
		}
		var k client.Key
		var rr client.Result
		k, rr, err = ss.api.RevokeKey(ctx, t, id, reason, nil)
		res = client.KeyResult{Key: k, Result: rr}
	case "rotate":
		grace := "this one works for 24h more, the default grace"
		if g := strings.TrimSpace(r.PostFormValue("grace")); g != "" {
			grace = "this one works for " + g + " more"
		}
		if p, ok := confirmed(r, "rotate key "+id+" (a new key and secret; "+grace+")", func(call *client.Call) error {
			_, err := ss.api.RotateKey(ctx, t, id, r.PostFormValue("grace"), reason, call)
			return err
		}, "grace"); !ok {
			return p, nil
		}
		rot, err := ss.api.RotateKey(ctx, t, id, r.PostFormValue("grace"), reason, nil)
		if err != nil {
			return page{}, err
		}
		return page{name: "secret", title: "Key rotated", data: secretData{What: "key " + rot.Key.ID + ", the successor of " + id,
			Link: tenantURL(t) + "/keys/" + url.PathEscape(rot.Key.ID) + "?seq=" + strconv.FormatUint(rot.Seq, 10), Secret: rot.Secret, Previous: id}}, nil
	default:
		return page{}, &client.Problem{Status: http.StatusNotFound, Detail: "no such action"}
	}
	if err != nil {
		return page{}, err
	}
	return page{}, seeAfter(back, res.Seq)
}

func (s *Server) apis(r *http.Request, ss *session) (page, error) {
	p, err := ss.api.ListAPIs(r.Context(), r.PathValue("tenant"), client.ListOptions{Cursor: r.URL.Query().Get("cursor"), Limit: 100}, after(r))
	return page{name: "apis", title: "APIs", data: p}, err
}

func (s *Server) apiAction(r *http.Request, ss *session) (page, error) {
	ctx, t, id, reason := r.Context(), r.PathValue("tenant"), r.PathValue("api"), r.PostFormValue("reason")
	var res client.APIResult
	var err error
	switch r.PathValue("action") {
	case "deprecate":
		sunset, perr := parseFuture(r.PostFormValue("sunset"), s.cfg.Now())
		if perr != nil {
			return page{}, &client.Problem{Status: http.StatusBadRequest, Detail: "sunset: " + perr.Error()}
		}
		res, err = ss.api.DeprecateAPI(ctx, t, id, sunset, reason, nil)
	case "retire":
		if p, ok := confirmed(r, "retire API "+id+" for good (the gateways answer 410)", func(call *client.Call) error {
			_, err := ss.api.RetireAPI(ctx, t, id, reason, call)
			return err
		}); !ok {
			return p, nil
		}
		res, err = ss.api.RetireAPI(ctx, t, id, reason, nil)
	default:
		return page{}, &client.Problem{Status: http.StatusNotFound, Detail: "no such action"}
	}
	if err != nil {
		return page{}, err
	}
	return page{}, seeAfter(tenantURL(t)+"/apis", res.Seq)
}

// decisionsData is a search of the decision log: its newest matches.
type decisionsData struct {
	Query     client.DecisionQuery
	Decisions []client.LoggedDecision
	// More: older matches exist than those shown.
	More  bool
	Codes []string
}

// newestDecisions returns the newest n decisions q selects, newest first,
// and whether older ones exist (the API pages oldest first: the console
// reads up to 10 000 and keeps the last n).
func newestDecisions(ctx context.Context, api *client.Client, tenant string, q client.DecisionQuery, n int) ([]client.LoggedDecision, bool, error) {
	q.Limit = 1000
	var ring []client.LoggedDecision
	more := false
	for range 10 {
		p, err := api.Decisions(ctx, tenant, q, nil)
		if err != nil {
			return nil, false, err
		}
		ring = append(ring, p.Decisions...)
		if len(ring) > n {
			more = true
			ring = ring[len(ring)-n:]
		}
		if p.NextCursor == "" {
			slices.Reverse(ring)
			return ring, more, nil
		}
		q.Cursor = p.NextCursor
	}
	slices.Reverse(ring)
	return ring, true, nil
}

// problemText is what an API error says, for a page.
func problemText(err error) string {
	var pr *client.Problem
	if asProblem(err, &pr) {
		return pr.Detail
	}
	return "the decision log did not answer"
}

func (s *Server) decisions(r *http.Request, ss *session) (page, error) {
	q := r.URL.Query()
	dq := client.DecisionQuery{Key: q.Get("key"), User: q.Get("user"), API: q.Get("api"), Code: q.Get("code"), Since: q.Get("since"),
		Until: q.Get("until")}
	if dq.Since == "" {
		dq.Since = "24h"
	}
	ds, more, err := newestDecisions(r.Context(), ss.api, r.PathValue("tenant"), dq, 100)
	if err != nil {
		return page{}, err
	}
	return page{name: "decisions", title: "Decisions", data: decisionsData{Query: dq, Decisions: ds, More: more, Codes: outcomeCodes}}, nil
}

var outcomeCodes = []string{"VALID", "MISSING", "MALFORMED", "NOT_FOUND", "REVOKED", "EXPIRED", "NOT_YET_VALID", "SUSPENDED",
	"USER_DISABLED", "USER_DELETED", "USER_UNKNOWN", "TENANT_SUSPENDED", "TENANT_MISMATCH", "INSUFFICIENT_SCOPE", "RATE_LIMITED", "STALE"}

// noticesData are a tenant's notices, newest first, and the type chosen.
type noticesData struct {
	Notices []client.Notice
	Type    string
	Types   []string
}

var noticeTypes = []string{"key.expiring", "key.expired", "keys.blocked", "key.denials-started", "key.rotation-stalled", "key.unused", "webhook.disabled"}

func (s *Server) notices(r *http.Request, ss *session) (page, error) {
	typ := r.URL.Query().Get("type")
	ns, err := ss.api.Notices(r.Context(), r.PathValue("tenant"), typ, "30d", 200, nil)
	if err != nil {
		return page{}, err
	}
	slices.Reverse(ns)
	return page{name: "notices", title: "Notices", data: noticesData{Notices: ns, Type: typ, Types: noticeTypes}}, nil
}

func (s *Server) webhooks(r *http.Request, ss *session) (page, error) {
	ws, err := ss.api.ListWebhooks(r.Context(), r.PathValue("tenant"), after(r))
	return page{name: "webhooks", title: "Webhooks", data: ws}, err
}

// webhookData is an endpoint and its delivery attempts.
type webhookData struct {
	Webhook  client.Webhook
	Attempts []client.Attempt
	Queued   string
}

func (s *Server) webhook(r *http.Request, ss *session) (page, error) {
	ctx, t, id := r.Context(), r.PathValue("tenant"), r.PathValue("webhook")
	var d webhookData
	var err error
	if d.Webhook, err = ss.api.Webhook(ctx, t, id, after(r)); err != nil {
		return page{}, err
	}
	if d.Attempts, err = ss.api.WebhookAttempts(ctx, t, id, client.AttemptQuery{Limit: 100}, nil); err != nil {
		return page{}, err
	}
	slices.Reverse(d.Attempts)
	if n, err := strconv.Atoi(r.URL.Query().Get("queued")); err == nil && n >= 0 {
		d.Queued = strconv.Itoa(n)
	}
	return page{name: "webhook", title: "Webhook " + id, data: d}, nil
}

func (s *Server) replay(r *http.Request, ss *session) (page, error) {
	ctx, t, id := r.Context(), r.PathValue("tenant"), r.PathValue("webhook")
	var since *time.Time
	if v := strings.TrimSpace(r.PostFormValue("since")); v != "" {
		when, err := parseWhen(v, s.cfg.Now())
		if err != nil {
			return page{}, &client.Problem{Status: http.StatusBadRequest, Detail: "since: " + err.Error()}
		}
		since = &when
	}
	x, err := ss.api.ReplayWebhook(ctx, t, id, r.PostFormValue("msg_id"), since, nil)
	if err != nil {
		return page{}, err
	}
	return page{}, redirectTo(tenantURL(t) + "/webhooks/" + url.PathEscape(id) + "?queued=" + strconv.Itoa(x.Queued))
}

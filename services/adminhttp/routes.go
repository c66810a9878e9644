package adminhttp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
)

// Route lists every route the API serves; the OpenAPI document and its test
// are checked against it.
var Routes = []string{
	"POST /v1/tenants",
	"GET /v1/tenants",
	"GET /v1/tenants/{tenant}/users",
	"GET /v1/tenants/{tenant}/apis",
	"GET /v1/tenants/{tenant}",
	"POST /v1/tenants/{tenant}/suspend",
	"POST /v1/tenants/{tenant}/resume",
	"POST /v1/tenants/{tenant}/revoke-keys",
	"POST /v1/tenants/{tenant}/notice-settings",
	"POST /v1/tenants/{tenant}/users",
	"GET /v1/tenants/{tenant}/users/{user}",
	"POST /v1/tenants/{tenant}/users/{user}/disable",
	"POST /v1/tenants/{tenant}/users/{user}/enable",
	"DELETE /v1/tenants/{tenant}/users/{user}",
	"POST /v1/tenants/{tenant}/users/{user}/revoke-keys",
	"POST /v1/tenants/{tenant}/keys",
	"GET /v1/tenants/{tenant}/keys",
	"GET /v1/tenants/{tenant}/keys/{key}",
	"PATCH /v1/tenants/{tenant}/keys/{key}",
	"POST /v1/tenants/{tenant}/keys/{key}/suspend",
	"POST /v1/tenants/{tenant}/keys/{key}/resume",
	"POST /v1/tenants/{tenant}/keys/{key}/revoke",
	"POST /v1/tenants/{tenant}/keys/{key}/rotate",
	"GET /v1/tenants/{tenant}/keys/{key}/history",
	"GET /v1/tenants/{tenant}/keys/{key}/explain",
	"GET /v1/tenants/{tenant}/usage",
	"GET /v1/tenants/{tenant}/decisions",
	"POST /v1/tenants/{tenant}/apis",
	"GET /v1/tenants/{tenant}/apis/{api}",
	"PATCH /v1/tenants/{tenant}/apis/{api}",
	"POST /v1/tenants/{tenant}/apis/{api}/deprecate",
	"POST /v1/tenants/{tenant}/apis/{api}/retire",
	"POST /v1/tenants/{tenant}/webhooks",
	"GET /v1/tenants/{tenant}/webhooks",
	"GET /v1/tenants/{tenant}/webhooks/{webhook}",
	"PATCH /v1/tenants/{tenant}/webhooks/{webhook}",
	"DELETE /v1/tenants/{tenant}/webhooks/{webhook}",
	"POST /v1/tenants/{tenant}/webhooks/{webhook}/disable",
	"POST /v1/tenants/{tenant}/webhooks/{webhook}/enable",
	"POST /v1/tenants/{tenant}/webhooks/{webhook}/rotate-secret",
	"GET /v1/tenants/{tenant}/webhooks/{webhook}/deliveries",
	"POST /v1/tenants/{tenant}/webhooks/{webhook}/replay",
	"GET /v1/tenants/{tenant}/notices",
	"POST /v1/tenants/{tenant}/policies",
	"GET /v1/tenants/{tenant}/policies",
	"GET /v1/tenants/{tenant}/policies/{policy}",
	"PATCH /v1/tenants/{tenant}/policies/{policy}",
	"POST /v1/tenants/{tenant}/policies/{policy}/retire",
	"GET /v1/tenants/{tenant}/reports/orphaned-keys",
	"GET /v1/tenants/{tenant}/reports/retired-policy-keys",
	"GET /v1/tenants/{tenant}/reports/unneeded-scopes",
	"GET /v1/gateways",
	"POST /v1/verify",
	"GET /healthz",
	"GET /readyz",
	"GET /openapi.json",
	"GET /metrics",
}

// Request bodies of the tenant and user routes.
type (
	createBody struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	revokeKeysBody struct {
		Before *time.Time `json:"before"`
		Reason string     `json:"reason"`
	}
	noticesBody struct {
		ExpiryBefore []string `json:"expiry_before"`
		UnusedAfter  string   `json:"unused_after"`
		Reason       string   `json:"reason"`
	}
)

func (b noticesBody) reason() string { return b.Reason }

func (createBody) reason() string       { return "" }
func (b revokeKeysBody) reason() string { return b.Reason }

func tenantAny(t projections.Tenant) any { return tenantOf(t) }
func userAny(u projections.User) any     { return userOf(u) }

func (s *Server) routes() {
	c := s.cfg.Control
	command(s, "POST /v1/tenants", rootOnly, true,
		func(ctx context.Context, _ *http.Request, m control.Meta, b createBody, _ *uint64) (projections.Tenant, control.Result, error) {
			return c.CreateTenant(ctx, m, b.ID, b.Name)
		}, created, "tenant", tenantAny)
	readRoute(s, "GET /v1/tenants/{tenant}", "tenant", func(ctx context.Context, r *http.Request) (projections.Tenant, error) {
		return c.Tenant(ctx, r.PathValue("tenant"))
	}, tenantAny)
	for verb, op := range map[string]func(context.Context, control.Meta, string) (projections.Tenant, control.Result, error){
		"suspend": c.SuspendTenant, "resume": c.ResumeTenant,
	} {
		command(s, "POST /v1/tenants/{tenant}/"+verb, rootOnly, false,
			func(ctx context.Context, r *http.Request, m control.Meta, _ reasonBody, _ *uint64) (projections.Tenant, control.Result, error) {
				return op(ctx, m, r.PathValue("tenant"))
			}, ok, "tenant", tenantAny)
	}

	command(s, "POST /v1/tenants/{tenant}/revoke-keys", tenantAdmin, false,
		func(ctx context.Context, r *http.Request, m control.Meta, b revokeKeysBody, _ *uint64) (projections.Tenant, control.Result, error) {
			return c.RevokeTenantKeys(ctx, m, r.PathValue("tenant"), b.Before)
		}, ok, "tenant", tenantAny)

	command(s, "POST /v1/tenants/{tenant}/notice-settings", tenantAdmin, false,
		func(ctx context.Context, r *http.Request, m control.Meta, b noticesBody, _ *uint64) (projections.Tenant, control.Result, error) {
			return c.ConfigureNotices(ctx, m, r.PathValue("tenant"), events.TenantNoticesConfiguredV1{ExpiryBefore: b.ExpiryBefore, UnusedAfter: b.UnusedAfter})
		}, ok, "tenant", tenantAny)

	command(s, "POST /v1/tenants/{tenant}/users", tenantAdmin, true,
		func(ctx context.Context, r *http.Request, m control.Meta, b createBody, _ *uint64) (projections.User, control.Result, error) {
			if err := s.quota(r.PathValue("tenant"), "users"); err != nil {
				return projections.User{}, control.Result{}, err
			}
			return c.CreateUser(ctx, m, r.PathValue("tenant"), b.ID, b.Name)
		}, created, "user", userAny)
	readRoute(s, "GET /v1/tenants/{tenant}/users/{user}", "user", func(ctx context.Context, r *http.Request) (projections.User, error) {
		return c.User(ctx, r.PathValue("tenant"), r.PathValue("user"))
	}, userAny)
	for pattern, op := range map[string]func(context.Context, control.Meta, string, string) (projections.User, control.Result, error){
		"POST /v1/tenants/{tenant}/users/{user}/disable": c.DisableUser,
		"POST /v1/tenants/{tenant}/users/{user}/enable":  c.EnableUser,
		"DELETE /v1/tenants/{tenant}/users/{user}":       c.DeleteUser,
	} {
		command(s, pattern, tenantAdmin, false,
			func(ctx context.Context, r *http.Request, m control.Meta, _ reasonBody, _ *uint64) (projections.User, control.Result, error) {
				return op(ctx, m, r.PathValue("tenant"), r.PathValue("user"))
			}, ok, "user", userAny)
	}
	command(s, "POST /v1/tenants/{tenant}/users/{user}/revoke-keys", tenantAdmin, false,
		func(ctx context.Context, r *http.Request, m control.Meta, b revokeKeysBody, _ *uint64) (projections.User, control.Result, error) {
			return c.RevokeUserKeys(ctx, m, r.PathValue("tenant"), r.PathValue("user"), b.Before)
		}, ok, "user", userAny)
	s.keyRoutes()
	s.usageRoutes()
	s.decisionRoutes()
	s.apiRoutes()
	s.webhookRoutes()
	s.noticeRoutes()
	s.policyRoutes()
	s.reportRoutes()
	s.listRoutes()
	s.verifyRoutes()
	s.route("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	s.route("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Model.Refused() != nil {
			writeProblem(w, r, control.CodeUnavailable, "this node refuses the event stream: it is not the history the node saw (see the node's log)", "")
			return
		}
		if !s.cfg.Model.Ready() {
			writeProblem(w, r, control.CodeUnavailable, "the read model is catching up with the event log", "")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "seq": s.cfg.Model.Applied()})
	})
	s.route("GET /metrics", s.metrics.handler().ServeHTTP)
	doc := OpenAPI()
	s.route("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, doc)
	})
	s.mount()
	// Not a route: what answers everything else (404, or 405 with Allow).
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := s.allowed(r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeProblem(w, r, control.CodeMethodNotAllowed, r.Method+" is not a method of this route; it takes "+strings.Join(allow, ", "), "")
			return
		}
		writeProblem(w, r, control.CodeNotFound, "no such route", "")
	})
}

// created is 201 for a new object and 200 for a replayed request.
func created(res control.Result) int {
	if res.Replayed {
		return http.StatusOK
	}
	return http.StatusCreated
}

// pageSize reads ?limit= (default 100, at most 1000).
// listRoute registers a paged list: ?cursor= (the last id of the previous
// page, valid by valid) and ?limit=, answering {name: [...], next_cursor?}
// from the read model (Keytrail-Min-Seq honoured).
func listRoute[T any](s *Server, pattern string, who access, name string, valid func(string) bool,
	list func(c *projections.Catalog, r *http.Request, after string, limit int) ([]T, bool), id func(T) string,
	view func(c *projections.Catalog, r *http.Request) (func(T) any, error)) {
	s.handle(pattern, who, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		if err := s.minSeq(r); err != nil {
			return err
		}
		limit, err := pageSize(r)
		if err != nil {
			return err
		}
		after := r.URL.Query().Get("cursor")
		if after != "" && !valid(after) {
			return &control.Error{Code: control.CodeInvalidArgument, Message: "cursor: not an id of this list"}
		}
		var page []T
		var more bool
		var views []any
		s.cfg.Model.Read(func(c *projections.Catalog) {
			var of func(T) any
			if of, err = view(c, r); err != nil {
				return
			}
			page, more = list(c, r, after, limit)
			views = make([]any, len(page))
			for i, v := range page {
				views[i] = of(v)
			}
		})
		if err != nil {
			return err
		}
		body := map[string]any{name: views}
		if more {
			body["next_cursor"] = id(page[len(page)-1])
		}
		writeJSON(w, http.StatusOK, body)
		return nil
	})
}

// plain is the view of a list whose items are shown as they are.
func plain[T any](view func(T) any) func(*projections.Catalog, *http.Request) (func(T) any, error) {
	return func(*projections.Catalog, *http.Request) (func(T) any, error) { return view, nil }
}

func (s *Server) listRoutes() {
	listRoute(s, "GET /v1/tenants", rootOnly, "tenants", events.ValidTenantID,
		func(c *projections.Catalog, _ *http.Request, after string, limit int) ([]projections.Tenant, bool) {
			return c.Tenants(after, limit)
		}, func(t projections.Tenant) string { return t.ID }, plain(tenantAny))
	listRoute(s, "GET /v1/tenants/{tenant}/users", tenantAdmin, "users", events.ValidUserID,
		func(c *projections.Catalog, r *http.Request, after string, limit int) ([]projections.User, bool) {
			return c.Users(r.PathValue("tenant"), after, limit)
		}, func(u projections.User) string { return u.ID },
		func(c *projections.Catalog, r *http.Request) (func(projections.User) any, error) {
			switch with := r.URL.Query().Get("with"); with {
			case "":
				return userAny, nil
			case "key_counts":
				counts := c.KeyCounts(r.PathValue("tenant"), s.cfg.Now())
				return func(u projections.User) any {
					v, n := userOf(u), counts[u.ID]
					v.Keys = &n
					return v
				}, nil
			default:
				return nil, &control.Error{Code: control.CodeInvalidArgument, Message: fmt.Sprintf("with: %q; the one value is key_counts", clip(with))}
			}
		})
	listRoute(s, "GET /v1/tenants/{tenant}/apis", tenantAdmin, "apis", events.ValidAPIID,
		func(c *projections.Catalog, r *http.Request, after string, limit int) ([]projections.API, bool) {
			return c.APIs(r.PathValue("tenant"), after, limit)
		}, func(a projections.API) string { return a.ID }, plain(apiAny))
}

func pageSize(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, &control.Error{Code: control.CodeInvalidArgument, Message: "limit must be 1 to 1000"}
	}
	return n, nil
}

// reasonBody is the body of the state changes: an optional reason.
type reasonBody struct {
	Reason string `json:"reason"`
}

// duration is a Go duration in JSON ("24h", "90m").
// allowed lists the methods a route answers to, for a request with another:
// the answer is 405 with Allow rather than 404.
func (s *Server) allowed(r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	return allow
}

type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// parseDuration is events.ParseDuration, failing as an invalid argument.
func parseDuration(s string) (time.Duration, error) {
	v, err := events.ParseDuration(s)
	if err != nil {
		return 0, &control.Error{Code: control.CodeInvalidArgument, Message: err.Error()}
	}
	return v, nil
}

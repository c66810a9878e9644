package adminhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
)

// Request bodies of the policy routes.
type (
	createPolicyBody struct {
		ID        string            `json:"id"`
		Name      string            `json:"name"`
		Scopes    []string          `json:"scopes"`
		RateLimit *events.RateLimit `json:"rate_limit"`
		MaxTTL    string            `json:"max_ttl"`
		APIs      []string          `json:"apis"`
	}
	// patchPolicyBody: a member left out stays as it is; rate_limit and
	// max_ttl given as null remove the limit.
	patchPolicyBody struct {
		Name      nullable[string]           `json:"name"`
		Scopes    nullable[[]string]         `json:"scopes"`
		RateLimit nullable[events.RateLimit] `json:"rate_limit"`
		MaxTTL    nullable[string]           `json:"max_ttl"`
		APIs      nullable[[]string]         `json:"apis"`
		Reason    string                     `json:"reason"`
	}
)

func (createPolicyBody) reason() string  { return "" }
func (b patchPolicyBody) reason() string { return b.Reason }

// nullable is a member that may be absent (Set false), null (Set, Value
// nil) or a value.
type nullable[T any] struct {
	Set   bool
	Value *T
}

func (*nullable[T]) acceptsNull() {}

func (n *nullable[T]) UnmarshalJSON(b []byte) error {
	n.Set = true
	if bytes.Equal(b, []byte("null")) {
		n.Value = nil
		return nil
	}
	n.Value = new(T)
	return json.Unmarshal(b, n.Value)
}

type policyView struct {
	ID        string            `json:"id"`
	Tenant    string            `json:"tenant"`
	Name      string            `json:"name,omitempty"`
	Scopes    []string          `json:"scopes"`
	RateLimit *events.RateLimit `json:"rate_limit"`
	MaxTTL    string            `json:"max_ttl,omitempty"`
	APIs      []string          `json:"apis"`
	Status    string            `json:"status"`
	Revision  int               `json:"revision"`
	CreatedAt time.Time         `json:"created_at"`
	Version   uint64            `json:"version"`
	// Keys counts the keys (revoked ones aside) that reference it (lists).
	Keys *int `json:"keys,omitempty"`
}

func policyOf(p projections.Policy) policyView {
	v := policyView{ID: p.ID, Tenant: p.Tenant, Name: p.Name, Scopes: p.Scopes, RateLimit: p.RateLimit, MaxTTL: events.FormatTTL(p.MaxTTL),
		APIs: p.APIs, Status: string(p.Status), Revision: p.Revision, CreatedAt: p.CreatedAt, Version: p.Version}
	if v.Scopes == nil {
		v.Scopes = []string{}
	}
	if v.APIs == nil {
		v.APIs = []string{}
	}
	return v
}

func policyAny(p projections.Policy) any { return policyOf(p) }

func (s *Server) policyRoutes() {
	c := s.cfg.Control
	command(s, "POST /v1/tenants/{tenant}/policies", tenantAdmin, true,
		func(ctx context.Context, r *http.Request, m control.Meta, b createPolicyBody, _ *uint64) (projections.Policy, control.Result, error) {
			if err := s.quota(r.PathValue("tenant"), "policies"); err != nil {
				return projections.Policy{}, control.Result{}, err
			}
			return c.CreatePolicy(ctx, m, r.PathValue("tenant"), control.PolicySpec{ID: b.ID, Name: b.Name, Scopes: b.Scopes,
				RateLimit: b.RateLimit, MaxTTL: b.MaxTTL, APIs: b.APIs})
		}, created, "policy", policyAny)
	readRoute(s, "GET /v1/tenants/{tenant}/policies/{policy}", "policy", func(ctx context.Context, r *http.Request) (projections.Policy, error) {
		return c.Policy(ctx, r.PathValue("tenant"), r.PathValue("policy"))
	}, policyAny)
	command(s, "PATCH /v1/tenants/{tenant}/policies/{policy}", tenantAdmin, true,
		func(ctx context.Context, r *http.Request, m control.Meta, b patchPolicyBody, v *uint64) (projections.Policy, control.Result, error) {
			for name, n := range map[string]bool{"name": b.Name.Set && b.Name.Value == nil,
				"scopes": b.Scopes.Set && b.Scopes.Value == nil, "apis": b.APIs.Set && b.APIs.Value == nil} {
				if n {
					return projections.Policy{}, control.Result{}, &control.Error{Code: control.CodeInvalidArgument,
						Message: name + `: null is not a value here; give "" or [] for none, or leave the member out`}
				}
			}
			patch := control.PolicyPatch{Name: b.Name.Value, Scopes: b.Scopes.Value, APIs: b.APIs.Value}
			if b.RateLimit.Set {
				patch.RateLimit = &b.RateLimit.Value
			}
			if b.MaxTTL.Set {
				ttl := ""
				if b.MaxTTL.Value != nil {
					ttl = *b.MaxTTL.Value
				}
				patch.MaxTTL = &ttl
			}
			return c.UpdatePolicy(ctx, m, r.PathValue("tenant"), r.PathValue("policy"), patch, v)
		}, ok, "policy", policyAny)
	command(s, "POST /v1/tenants/{tenant}/policies/{policy}/retire", tenantAdmin, false,
		func(ctx context.Context, r *http.Request, m control.Meta, _ reasonBody, v *uint64) (projections.Policy, control.Result, error) {
			return c.RetirePolicy(ctx, m, r.PathValue("tenant"), r.PathValue("policy"), v)
		}, ok, "policy", policyAny)
	listRoute(s, "GET /v1/tenants/{tenant}/policies", tenantAdmin, "policies", events.ValidPolicyID,
		func(c *projections.Catalog, r *http.Request, after string, limit int) ([]projections.Policy, bool) {
			return c.Policies(r.PathValue("tenant"), after, limit)
		}, func(p projections.Policy) string { return p.ID },
		func(c *projections.Catalog, r *http.Request) (func(projections.Policy) any, error) {
			counts := c.PolicyKeys(r.PathValue("tenant"))
			return func(p projections.Policy) any {
				v, n := policyOf(p), counts[p.ID]
				v.Keys = &n
				return v
			}, nil
		})
}

// Reports: what a tenant admin should look at (docs/policies.md).
func (s *Server) reportRoutes() {
	report := func(name string, rows func(c *projections.Catalog, tenant string) any) {
		s.handle("GET /v1/tenants/{tenant}/reports/"+name, tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
			if err := s.minSeq(r); err != nil {
				return err
			}
			var out any
			var exists bool
			s.cfg.Model.Read(func(c *projections.Catalog) {
				if _, exists = c.Tenant(r.PathValue("tenant")); exists {
					out = rows(c, r.PathValue("tenant"))
				}
			})
			if !exists {
				return &control.Error{Code: control.CodeNotFound, Message: "no tenant " + clip(r.PathValue("tenant"))}
			}
			writeJSON(w, http.StatusOK, map[string]any{"report": name, "keys": out})
			return nil
		})
	}
	report("orphaned-keys", func(c *projections.Catalog, t string) any { return c.OrphanedKeys(t) })
	report("retired-policy-keys", func(c *projections.Catalog, t string) any { return c.RetiredPolicyKeys(t) })
	report("unneeded-scopes", func(c *projections.Catalog, t string) any { return c.UnneededScopes(t) })
}

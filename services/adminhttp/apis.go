package adminhttp

import (
	"context"
	"net/http"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
)

// Request bodies of the API routes.
type (
	createAPIBody struct {
		ID         string            `json:"id"`
		Name       string            `json:"name"`
		PathPrefix string            `json:"path_prefix"`
		Upstreams  []string          `json:"upstreams"`
		Scopes     []string          `json:"scopes"`
		RateLimit  *events.RateLimit `json:"rate_limit"`
	}
	patchAPIBody struct {
		Name       *string           `json:"name"`
		PathPrefix *string           `json:"path_prefix"`
		Upstreams  *[]string         `json:"upstreams"`
		Scopes     *[]string         `json:"scopes"`
		RateLimit  *events.RateLimit `json:"rate_limit"`
	}
	deprecateBody struct {
		Sunset *time.Time `json:"sunset"`
		Reason string     `json:"reason"`
	}
)

func (createAPIBody) reason() string   { return "" }
func (patchAPIBody) reason() string    { return "" }
func (b deprecateBody) reason() string { return b.Reason }

func apiAny(a projections.API) any { return apiOf(a) }

func (s *Server) apiRoutes() {
	c := s.cfg.Control
	command(s, "POST /v1/tenants/{tenant}/apis", tenantAdmin, true,
		func(ctx context.Context, r *http.Request, m control.Meta, b createAPIBody, _ *uint64) (projections.API, control.Result, error) {
			if err := s.quota(r.PathValue("tenant"), "apis"); err != nil {
				return projections.API{}, control.Result{}, err
			}
			return c.CreateAPI(ctx, m, r.PathValue("tenant"), control.APISpec{ID: b.ID, Name: b.Name,
				PathPrefix: b.PathPrefix, Upstreams: b.Upstreams, Scopes: b.Scopes, RateLimit: b.RateLimit})
		}, created, "api", apiAny)
	readRoute(s, "GET /v1/tenants/{tenant}/apis/{api}", "api", func(ctx context.Context, r *http.Request) (projections.API, error) {
		return c.API(ctx, r.PathValue("tenant"), r.PathValue("api"))
	}, apiAny)
	command(s, "PATCH /v1/tenants/{tenant}/apis/{api}", tenantAdmin, true,
		func(ctx context.Context, r *http.Request, m control.Meta, b patchAPIBody, v *uint64) (projections.API, control.Result, error) {
			return c.UpdateAPI(ctx, m, r.PathValue("tenant"), r.PathValue("api"), control.APIPatch{Name: b.Name,
				PathPrefix: b.PathPrefix, Upstreams: b.Upstreams, Scopes: b.Scopes, RateLimit: b.RateLimit}, v)
		}, ok, "api", apiAny)
	command(s, "POST /v1/tenants/{tenant}/apis/{api}/deprecate", tenantAdmin, true,
		func(ctx context.Context, r *http.Request, m control.Meta, b deprecateBody, _ *uint64) (projections.API, control.Result, error) {
			if b.Sunset == nil {
				return projections.API{}, control.Result{}, &control.Error{Code: control.CodeInvalidArgument, Message: "sunset is required (RFC 3339)"}
			}
			return c.DeprecateAPI(ctx, m, r.PathValue("tenant"), r.PathValue("api"), *b.Sunset)
		}, ok, "api", apiAny)
	command(s, "POST /v1/tenants/{tenant}/apis/{api}/retire", tenantAdmin, false,
		func(ctx context.Context, r *http.Request, m control.Meta, _ reasonBody, _ *uint64) (projections.API, control.Result, error) {
			return c.RetireAPI(ctx, m, r.PathValue("tenant"), r.PathValue("api"))
		}, ok, "api", apiAny)
}

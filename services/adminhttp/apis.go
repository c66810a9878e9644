package adminhttp

import (
	"net/http"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/services/control"
)

func (s *Server) apiRoutes() {
	c := s.cfg.Control
	s.handle("POST /v1/tenants/{tenant}/apis", tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var body struct {
			ID         string            `json:"id"`
			Name       string            `json:"name"`
			PathPrefix string            `json:"path_prefix"`
			Upstreams  []string          `json:"upstreams"`
			Scopes     []string          `json:"scopes"`
			RateLimit  *events.RateLimit `json:"rate_limit"`
		}
		if err := decode(r, &body, false); err != nil {
			return err
		}
		m, err := meta(r, p, "")
		if err != nil {
			return err
		}
		a, res, err := c.CreateAPI(r.Context(), m, r.PathValue("tenant"), control.APISpec{ID: body.ID, Name: body.Name,
			PathPrefix: body.PathPrefix, Upstreams: body.Upstreams, Scopes: body.Scopes, RateLimit: body.RateLimit})
		if err != nil {
			return err
		}
		return written(w, created(res), res, map[string]any{"api": apiOf(a)})
	})
	s.handle("GET /v1/tenants/{tenant}/apis/{api}", tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		if err := s.minSeq(r); err != nil {
			return err
		}
		a, err := c.API(r.Context(), r.PathValue("tenant"), r.PathValue("api"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"api": apiOf(a)})
		return nil
	})
	s.handle("PATCH /v1/tenants/{tenant}/apis/{api}", tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var body struct {
			Name       *string           `json:"name"`
			PathPrefix *string           `json:"path_prefix"`
			Upstreams  *[]string         `json:"upstreams"`
			Scopes     *[]string         `json:"scopes"`
			RateLimit  *events.RateLimit `json:"rate_limit"`
		}
		if err := decode(r, &body, false); err != nil {
			return err
		}
		m, err := meta(r, p, "")
		if err != nil {
			return err
		}
		v, err := ifMatch(r)
		if err != nil {
			return err
		}
		a, res, err := c.UpdateAPI(r.Context(), m, r.PathValue("tenant"), r.PathValue("api"), control.APIPatch{Name: body.Name,
			PathPrefix: body.PathPrefix, Upstreams: body.Upstreams, Scopes: body.Scopes, RateLimit: body.RateLimit}, v)
		if err != nil {
			return err
		}
		return written(w, http.StatusOK, res, map[string]any{"api": apiOf(a)})
	})
	s.handle("POST /v1/tenants/{tenant}/apis/{api}/deprecate", tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var body struct {
			Sunset *time.Time `json:"sunset"`
			Reason string     `json:"reason"`
		}
		if err := decode(r, &body, false); err != nil {
			return err
		}
		if body.Sunset == nil {
			return &control.Error{Code: control.CodeInvalidArgument, Message: "sunset is required (RFC 3339)"}
		}
		m, err := meta(r, p, body.Reason)
		if err != nil {
			return err
		}
		a, res, err := c.DeprecateAPI(r.Context(), m, r.PathValue("tenant"), r.PathValue("api"), *body.Sunset)
		if err != nil {
			return err
		}
		return written(w, http.StatusOK, res, map[string]any{"api": apiOf(a)})
	})
	s.handle("POST /v1/tenants/{tenant}/apis/{api}/retire", tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var body reasonBody
		if err := decode(r, &body, true); err != nil {
			return err
		}
		m, err := meta(r, p, body.Reason)
		if err != nil {
			return err
		}
		a, res, err := c.RetireAPI(r.Context(), m, r.PathValue("tenant"), r.PathValue("api"))
		if err != nil {
			return err
		}
		return written(w, http.StatusOK, res, map[string]any{"api": apiOf(a)})
	})
}

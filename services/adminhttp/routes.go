package adminhttp

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
)

// Route lists every route the API serves; the OpenAPI document and its test
// are checked against it.
var Routes = []string{
	"POST /v1/tenants",
	"GET /v1/tenants/{tenant}",
	"POST /v1/tenants/{tenant}/suspend",
	"POST /v1/tenants/{tenant}/resume",
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
	"POST /v1/tenants/{tenant}/apis",
	"GET /v1/tenants/{tenant}/apis/{api}",
	"PATCH /v1/tenants/{tenant}/apis/{api}",
	"POST /v1/tenants/{tenant}/apis/{api}/deprecate",
	"POST /v1/tenants/{tenant}/apis/{api}/retire",
	"GET /healthz",
	"GET /readyz",
	"GET /openapi.json",
	"GET /metrics",
}

func (s *Server) routes() {
	c := s.cfg.Control
	s.handle("POST /v1/tenants", rootOnly, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var body struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		if err := decode(r, &body, false); err != nil {
			return err
		}
		m, err := meta(r, p, "")
		if err != nil {
			return err
		}
		t, res, err := c.CreateTenant(r.Context(), m, body.ID, body.Name)
		if err != nil {
			return err
		}
		return written(w, created(res), res, map[string]any{"tenant": tenantOf(t)})
	})
	s.handle("GET /v1/tenants/{tenant}", tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		if err := s.minSeq(r); err != nil {
			return err
		}
		t, err := c.Tenant(r.Context(), r.PathValue("tenant"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"tenant": tenantOf(t)})
		return nil
	})
	tenantOp := func(op func(ctx context.Context, m control.Meta, id string) (projections.Tenant, control.Result, error), reasonRequired bool) handler {
		return func(w http.ResponseWriter, r *http.Request, p *principal) error {
			var body reasonBody
			if err := decode(r, &body, !reasonRequired); err != nil {
				return err
			}
			m, err := meta(r, p, body.Reason)
			if err != nil {
				return err
			}
			t, res, err := op(r.Context(), m, r.PathValue("tenant"))
			if err != nil {
				return err
			}
			return written(w, http.StatusOK, res, map[string]any{"tenant": tenantOf(t)})
		}
	}
	s.handle("POST /v1/tenants/{tenant}/suspend", rootOnly, tenantOp(c.SuspendTenant, false))
	s.handle("POST /v1/tenants/{tenant}/resume", rootOnly, tenantOp(c.ResumeTenant, false))

	s.handle("POST /v1/tenants/{tenant}/users", tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var body struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		if err := decode(r, &body, false); err != nil {
			return err
		}
		m, err := meta(r, p, "")
		if err != nil {
			return err
		}
		u, res, err := c.CreateUser(r.Context(), m, r.PathValue("tenant"), body.ID, body.Name)
		if err != nil {
			return err
		}
		return written(w, created(res), res, map[string]any{"user": userOf(u)})
	})
	s.handle("GET /v1/tenants/{tenant}/users/{user}", tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		if err := s.minSeq(r); err != nil {
			return err
		}
		u, err := c.User(r.Context(), r.PathValue("tenant"), r.PathValue("user"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"user": userOf(u)})
		return nil
	})
	userOp := func(op func(ctx context.Context, m control.Meta, tenant, id string) (projections.User, control.Result, error)) handler {
		return func(w http.ResponseWriter, r *http.Request, p *principal) error {
			var body reasonBody
			if err := decode(r, &body, true); err != nil {
				return err
			}
			m, err := meta(r, p, body.Reason)
			if err != nil {
				return err
			}
			u, res, err := op(r.Context(), m, r.PathValue("tenant"), r.PathValue("user"))
			if err != nil {
				return err
			}
			return written(w, http.StatusOK, res, map[string]any{"user": userOf(u)})
		}
	}
	s.handle("POST /v1/tenants/{tenant}/users/{user}/disable", tenantAdmin, userOp(c.DisableUser))
	s.handle("POST /v1/tenants/{tenant}/users/{user}/enable", tenantAdmin, userOp(c.EnableUser))
	s.handle("DELETE /v1/tenants/{tenant}/users/{user}", tenantAdmin, userOp(c.DeleteUser))
	s.handle("POST /v1/tenants/{tenant}/users/{user}/revoke-keys", tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var body struct {
			Before *time.Time `json:"before"`
			Reason string     `json:"reason"`
		}
		if err := decode(r, &body, true); err != nil {
			return err
		}
		m, err := meta(r, p, body.Reason)
		if err != nil {
			return err
		}
		u, res, err := c.RevokeUserKeys(r.Context(), m, r.PathValue("tenant"), r.PathValue("user"), body.Before)
		if err != nil {
			return err
		}
		return written(w, http.StatusOK, res, map[string]any{"user": userOf(u)})
	})
	s.keyRoutes()
	s.apiRoutes()
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !s.cfg.Model.Ready() {
			writeProblem(w, r, control.CodeUnavailable, "the read model is catching up with the event log", "")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "seq": s.cfg.Model.Applied()})
	})
	s.mux.Handle("GET /metrics", s.metrics.handler())
	doc := OpenAPI()
	s.mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, doc)
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
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
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &control.Error{Code: control.CodeInvalidArgument, Message: "durations look like \"24h\" or \"90m\""}
	}
	*d = duration(v)
	return nil
}

var _ = events.RateLimit{}

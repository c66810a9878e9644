package adminhttp

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
)

func (s *Server) keyRoutes() {
	c := s.cfg.Control
	s.handle("POST /v1/tenants/{tenant}/keys", tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var body struct {
			User      string            `json:"user"`
			Name      string            `json:"name"`
			Scopes    []string          `json:"scopes"`
			ExpiresAt *time.Time        `json:"expires_at"`
			TTL       *duration         `json:"ttl"`
			NotBefore *time.Time        `json:"not_before"`
			RateLimit *events.RateLimit `json:"rate_limit"`
			Metadata  map[string]string `json:"metadata"`
			Policies  []string          `json:"policies"`
		}
		if err := decode(r, &body, false); err != nil {
			return err
		}
		m, err := s.meta(r, p, "", true)
		if err != nil {
			return err
		}
		spec := control.KeySpec{User: body.User, Name: body.Name, Scopes: body.Scopes, ExpiresAt: body.ExpiresAt,
			NotBefore: body.NotBefore, RateLimit: body.RateLimit, Metadata: body.Metadata, Policies: body.Policies}
		if body.TTL != nil {
			if spec.TTL = time.Duration(*body.TTL); spec.TTL <= 0 {
				return &control.Error{Code: control.CodeInvalidArgument, Message: "ttl must be positive"}
			}
		}
		if err := s.metadataQuota(spec.Metadata); err != nil {
			return err
		}
		if err := s.quota(r.PathValue("tenant"), "keys"); err != nil {
			return err
		}
		k, sec, res, err := c.IssueKey(r.Context(), m, r.PathValue("tenant"), spec)
		if err != nil {
			return err
		}
		s.settle(r, res.Seq)
		if res.Replayed {
			writeProblem(w, r, control.CodeConflict, "this Idempotency-Key already issued a key; its secret was returned to that request and is never returned again", k.ID)
			return nil
		}
		return written(w, http.StatusCreated, res, map[string]any{"key": s.keyView(k), "secret": sec.Reveal()})
	})
	s.handle("GET /v1/tenants/{tenant}/keys", tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		if err := s.minSeq(r); err != nil {
			return err
		}
		q := r.URL.Query()
		limit, err := pageSize(r)
		if err != nil {
			return err
		}
		f := projections.KeyFilter{User: q.Get("user"), Status: projections.KeyStatus(q.Get("status")), After: q.Get("cursor"),
			Limit: limit, Now: s.cfg.Now(), Search: strings.TrimSpace(q.Get("q"))}
		if len(f.Search) > 128 {
			return &control.Error{Code: control.CodeInvalidArgument, Message: "q: at most 128 characters"}
		}
		if f.Status != "" && !slices.Contains(projections.EffectiveStatuses(), f.Status) {
			return &control.Error{Code: control.CodeInvalidArgument, Message: fmt.Sprintf("status: %q is not a status; statuses are %v", f.Status, projections.EffectiveStatuses())}
		}
		if f.User != "" && !events.ValidUserID(f.User) {
			return &control.Error{Code: control.CodeInvalidArgument, Message: "invalid user id"}
		}
		if f.After != "" && !events.ValidKeyID(f.After) {
			return &control.Error{Code: control.CodeInvalidArgument, Message: "invalid cursor"}
		}
		if v := q.Get("expiring_within"); v != "" {
			d, err := events.ParseDuration(v)
			if err != nil || d <= 0 {
				return &control.Error{Code: control.CodeInvalidArgument, Message: "expiring_within must be a positive duration such as 72h or 30d"}
			}
			f.ExpiringWithin = d
		}
		withUsage := false
		switch w := q.Get("with"); w {
		case "":
		case "usage":
			withUsage = true
		default:
			return &control.Error{Code: control.CodeInvalidArgument, Message: fmt.Sprintf("with: %q; the one value is usage", w)}
		}
		if v := q.Get("unused_for"); v != "" {
			d, err := events.ParseDuration(v)
			if err != nil || d <= 0 {
				return &control.Error{Code: control.CodeInvalidArgument, Message: "unused_for must be a positive duration such as 90d"}
			}
			if s.cfg.Usage == nil {
				return &control.Error{Code: control.CodeUnavailable, Message: "this node keeps no usage counts"}
			}
			since := f.Now.Add(-d)
			f.Keep = func(tenant, keyID string) bool {
				var ku projections.KeyUse
				s.cfg.Usage.Read(func(u *projections.Usage) { ku = u.KeyUse(tenant, keyID, f.Now) })
				return !ku.Used || ku.At.Before(since)
			}
		}
		var page []projections.Key
		var more bool
		s.cfg.Model.Read(func(c *projections.Catalog) { page, more = c.Keys(r.PathValue("tenant"), f) })
		views := make([]keyView, len(page))
		for i, k := range page {
			views[i] = s.keyViewWith(k, withUsage)
		}
		body := map[string]any{"keys": views}
		if more {
			body["next_cursor"] = page[len(page)-1].ID
		}
		writeJSON(w, http.StatusOK, body)
		return nil
	})
	readRoute(s, "GET /v1/tenants/{tenant}/keys/{key}", "key", func(ctx context.Context, r *http.Request) (projections.Key, error) {
		return c.Key(ctx, r.PathValue("tenant"), r.PathValue("key"))
	}, func(k projections.Key) any { return s.keyView(k) })
	s.handle("PATCH /v1/tenants/{tenant}/keys/{key}", tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var body struct {
			Name      *string            `json:"name"`
			Scopes    *[]string          `json:"scopes"`
			ExpiresAt *time.Time         `json:"expires_at"`
			RateLimit *events.RateLimit  `json:"rate_limit"`
			Metadata  *map[string]string `json:"metadata"`
			Policies  *[]string          `json:"policies"`
			Reason    string             `json:"reason"`
		}
		if err := decode(r, &body, false); err != nil {
			return err
		}
		if body.Metadata != nil {
			if err := s.metadataQuota(*body.Metadata); err != nil {
				return err
			}
		}
		return s.keyWrite(w, r, p, body.Reason, func(ctx context.Context, m control.Meta, tenant, key string, v *uint64) (projections.Key, control.Result, error) {
			return c.UpdateKey(ctx, m, tenant, key, control.KeyPatch{Name: body.Name, Scopes: body.Scopes,
				ExpiresAt: body.ExpiresAt, RateLimit: body.RateLimit, Metadata: body.Metadata, Policies: body.Policies}, v)
		})
	})
	for verb, op := range map[string]func(context.Context, control.Meta, string, string, *uint64) (projections.Key, control.Result, error){
		"suspend": c.SuspendKey, "resume": c.ResumeKey, "revoke": c.RevokeKey,
	} {
		s.handle("POST /v1/tenants/{tenant}/keys/{key}/"+verb, tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
			var body reasonBody
			if err := decode(r, &body, true); err != nil {
				return err
			}
			return s.keyWrite(w, r, p, body.Reason, op)
		})
	}
	s.handle("POST /v1/tenants/{tenant}/keys/{key}/rotate", tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var body struct {
			Grace  *duration `json:"grace"`
			Reason string    `json:"reason"`
		}
		if err := decode(r, &body, true); err != nil {
			return err
		}
		grace := 24 * time.Hour
		if body.Grace != nil {
			grace = time.Duration(*body.Grace)
		}
		m, err := s.meta(r, p, body.Reason, false)
		if err != nil {
			return err
		}
		rot, res, err := c.RotateKey(r.Context(), m, r.PathValue("tenant"), r.PathValue("key"), grace, m.IfMatch)
		if err != nil {
			return err
		}
		s.settle(r, res.Seq)
		if res.Replayed {
			writeProblem(w, r, control.CodeConflict, "this Idempotency-Key already rotated the key; the new secret was returned to that request and is never returned again", rot.New.ID)
			return nil
		}
		return written(w, http.StatusCreated, res, map[string]any{"key": s.keyView(rot.New), "secret": rot.Secret.Reveal(), "previous": s.keyView(rot.Previous)})
	})
}

// keyWrite runs a key command with the request's meta and If-Match.
func (s *Server) keyWrite(w http.ResponseWriter, r *http.Request, p *principal, reason string,
	op func(context.Context, control.Meta, string, string, *uint64) (projections.Key, control.Result, error)) error {
	m, err := s.meta(r, p, reason, false)
	if err != nil {
		return err
	}
	k, res, err := op(r.Context(), m, r.PathValue("tenant"), r.PathValue("key"), m.IfMatch)
	if err != nil {
		return err
	}
	s.settle(r, res.Seq)
	return written(w, http.StatusOK, res, map[string]any{"key": s.keyView(k)})
}

// settle waits, briefly, for the read model to apply a write's sequence:
// a key's answer tells its effective status and end from the read model,
// which must hold the write (and the policies it references) first. On a
// slow model the answer is the model's, as a read without Min-Seq.
func (s *Server) settle(r *http.Request, seq uint64) {
	if seq != 0 {
		s.cfg.Model.WaitFor(r.Context(), seq, s.cfg.MinSeqWait)
	}
}

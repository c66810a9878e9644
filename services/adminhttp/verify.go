package adminhttp

import (
	"net/http"
	"strconv"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
	"strings"
)

// VerifyScope is the scope of keys that may only ask for decisions.
const VerifyScope = "keytrail:verify"

type evidenceView struct {
	Seq    uint64      `json:"seq"`
	Type   events.Type `json:"type"`
	At     time.Time   `json:"at"`
	Actor  string      `json:"actor"`
	Reason string      `json:"reason,omitempty"`
}

type decisionView struct {
	Code     projections.Code   `json:"code"`
	Also     []projections.Code `json:"also"`
	KeyID    string             `json:"key_id,omitempty"`
	Tenant   string             `json:"tenant,omitempty"`
	User     string             `json:"user,omitempty"`
	API      string             `json:"api,omitempty"`
	Now      time.Time          `json:"now"`
	Seq      uint64             `json:"seq"`
	Evidence []evidenceView     `json:"evidence"`
	// Detail says which check a MALFORMED key failed (prefix, length,
	// alphabet, checksum): the key is the caller's own, so nothing leaks.
	Detail string `json:"detail,omitempty"`
	// Policies are the policies the key references; Because says what they
	// had to do with the decision (explain).
	Policies []string `json:"policies,omitempty"`
	Because  []string `json:"because,omitempty"`
}

// decisionOf renders a decision with its evidence read from the log.
func (s *Server) decisionOf(r *http.Request, d projections.Decision) (decisionView, error) {
	v := decisionView{Code: d.Code, Also: append([]projections.Code{}, d.Also()...), KeyID: d.KeyID, Tenant: d.Tenant,
		User: d.User, API: d.API, Now: d.Now, Seq: d.Seq, Evidence: []evidenceView{}, Policies: d.Policies()}
	recs, err := s.cfg.Control.Evidence(r.Context(), &d)
	if err != nil {
		return v, err
	}
	for _, e := range recs {
		v.Evidence = append(v.Evidence, evidenceView{Seq: e.Seq, Type: e.Type, At: e.OccurredAt, Actor: e.Actor, Reason: e.Reason})
	}
	return v, nil
}

type historyEvent struct {
	Seq    uint64      `json:"seq"`
	Type   events.Type `json:"type"`
	At     time.Time   `json:"at"`
	Actor  string      `json:"actor"`
	Reason string      `json:"reason,omitempty"`
	Data   any         `json:"data"`
}

// keyIssuedView is key.issued as the admin API shows it: without the
// secret's hash, which the API never shows, in history either.
type keyIssuedView struct {
	Name        string            `json:"name"`
	Hint        string            `json:"hint"`
	Scopes      []string          `json:"scopes"`
	NotBefore   *time.Time        `json:"not_before,omitempty"`
	ExpiresAt   *time.Time        `json:"expires_at,omitempty"`
	RateLimit   *events.RateLimit `json:"rate_limit,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	RotatedFrom string            `json:"rotated_from,omitempty"`
	Policies    []string          `json:"policies,omitempty"`
}

func redacted(p events.Payload) any {
	if ki, ok := p.(events.KeyIssuedV1); ok {
		return keyIssuedView{ki.Name, ki.Hint, ki.Scopes, ki.NotBefore, ki.ExpiresAt, ki.RateLimit, ki.Metadata, ki.RotatedFrom, ki.Policies}
	}
	return p
}

func (s *Server) verifyRoutes() {
	c := s.cfg.Control
	s.handleScoped("POST /v1/verify", tenantAdmin, []string{AdminScope, VerifyScope}, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var body struct {
			Key    string   `json:"key"`
			Tenant string   `json:"tenant"`
			Scopes []string `json:"scopes"`
		}
		if err := decode(r, &body, false); err != nil {
			return err
		}
		if err := s.minSeq(r); err != nil {
			return err
		}
		var d projections.Decision
		now := s.cfg.Now()
		s.cfg.Model.Read(func(cat *projections.Catalog) {
			d = cat.Verify(projections.Request{Secret: body.Key, Prefix: s.cfg.SecretPrefix, Tenant: body.Tenant, Scopes: body.Scopes}, now)
		})
		if !p.root && d.Tenant != "" && d.Tenant != p.tenant {
			// Another tenant's key: as if it did not exist.
			d = projections.Decision{Code: projections.CodeNotFound, Now: d.Now, Seq: d.Seq}
		}
		v, err := s.decisionOf(r, d)
		if err != nil {
			return err
		}
		if d.Code == projections.CodeMalformed {
			if _, err := secret.Parse(body.Key, s.cfg.SecretPrefix); err != nil {
				v.Detail = strings.TrimPrefix(err.Error(), secret.ErrMalformed.Error()+": ")
			}
		}
		writeJSON(w, http.StatusOK, v)
		return nil
	})
	s.handle("GET /v1/tenants/{tenant}/keys/{key}/history", tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		history, err := c.KeyHistory(r.Context(), r.PathValue("tenant"), r.PathValue("key"))
		if err != nil {
			return err
		}
		history = projections.AffectingKey(history, r.PathValue("key"))
		out := make([]historyEvent, len(history))
		for i, e := range history {
			out[i] = historyEvent{Seq: e.Seq, Type: e.Type, At: e.OccurredAt, Actor: e.Actor, Reason: e.Reason, Data: redacted(e.Data)}
		}
		writeJSON(w, http.StatusOK, map[string]any{"events": out})
		return nil
	})
	s.handle("GET /v1/tenants/{tenant}/keys/{key}/explain", tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		q := r.URL.Query()
		var as control.ExplainAt
		if v := q.Get("at"); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return &control.Error{Code: control.CodeInvalidArgument, Message: "at must be an RFC 3339 time"}
			}
			as.At = t
		}
		if v := q.Get("seq"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || n == 0 {
				return &control.Error{Code: control.CodeInvalidArgument, Message: "seq must be a positive sequence number"}
			}
			as.Seq = n
		}
		if as.At.IsZero() && as.Seq == 0 {
			return &control.Error{Code: control.CodeInvalidArgument, Message: "give at (RFC 3339) or seq"}
		}
		if len(q["api"]) > 1 {
			return &control.Error{Code: control.CodeInvalidArgument, Message: "api: given more than once; a request is for one API"}
		}
		as.API = q.Get("api")
		for _, sc := range q["scope"] {
			if !events.ValidScope(sc) {
				return &control.Error{Code: control.CodeInvalidArgument, Message: "invalid scope"}
			}
			as.Scopes = append(as.Scopes, sc)
		}
		x, err := c.Explain(r.Context(), r.PathValue("tenant"), r.PathValue("key"), as)
		if err != nil {
			return err
		}
		v, err := s.decisionOf(r, x.Decision)
		if err != nil {
			return err
		}
		v.Because = x.Because
		writeJSON(w, http.StatusOK, v)
		return nil
	})
}

package adminhttp

import (
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
)

// The JSON shapes of the admin API. A key never shows its secret or its
// secret's hash.

type tenantView struct {
	ID                string     `json:"id"`
	Name              string     `json:"name"`
	Status            string     `json:"status"`
	KeysRevokedBefore *time.Time `json:"keys_revoked_before,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	Version           uint64     `json:"version"`
	// Notices are the tenant's notice settings, absent while the defaults.
	Notices *noticesView `json:"notices,omitempty"`
}

type noticesView struct {
	ExpiryBefore []string `json:"expiry_before"`
	UnusedAfter  string   `json:"unused_after,omitempty"`
}

func tenantOf(t projections.Tenant) tenantView {
	v := tenantView{ID: t.ID, Name: t.Name, Status: string(t.Status), CreatedAt: t.CreatedAt, Version: t.Version}
	if n := t.Notices; len(n.ExpiryBefore) > 0 || n.UnusedAfter != "" {
		v.Notices = &noticesView{ExpiryBefore: n.ExpiryBefore, UnusedAfter: n.UnusedAfter}
		if v.Notices.ExpiryBefore == nil {
			v.Notices.ExpiryBefore = []string{}
		}
	}
	if !t.KeysRevokedBefore.IsZero() {
		v.KeysRevokedBefore = &t.KeysRevokedBefore
	}
	return v
}

type userView struct {
	ID                string     `json:"id"`
	Tenant            string     `json:"tenant"`
	Name              string     `json:"name"`
	Status            string     `json:"status"`
	KeysRevokedBefore *time.Time `json:"keys_revoked_before,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	Version           uint64     `json:"version"`
	// Keys counts the user's keys (lists with ?with=key_counts).
	Keys *projections.KeyCount `json:"keys,omitempty"`
}

func userOf(u projections.User) userView {
	v := userView{ID: u.ID, Tenant: u.Tenant, Name: u.Name, Status: string(u.Status), CreatedAt: u.CreatedAt, Version: u.Version}
	if !u.KeysRevokedBefore.IsZero() {
		t := u.KeysRevokedBefore
		v.KeysRevokedBefore = &t
	}
	return v
}

type keyView struct {
	ID     string   `json:"id"`
	Tenant string   `json:"tenant"`
	User   string   `json:"user"`
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	// Status is the effective status (the owner's state and expiry
	// included); OwnStatus the key's own lifecycle state.
	Status      string            `json:"status"`
	OwnStatus   string            `json:"own_status"`
	Hint        string            `json:"hint"`
	CreatedAt   time.Time         `json:"created_at"`
	NotBefore   *time.Time        `json:"not_before"`
	ExpiresAt   *time.Time        `json:"expires_at"`
	RateLimit   *events.RateLimit `json:"rate_limit"`
	Metadata    map[string]string `json:"metadata"`
	RotatedFrom string            `json:"rotated_from,omitempty"`
	RotatedTo   string            `json:"rotated_to,omitempty"`
	GraceUntil  *time.Time        `json:"grace_until,omitempty"`
	// Policies are the access policies the key references; its effective
	// scopes and limits are resolved from them when it is verified.
	Policies []string `json:"policies"`
	// EndsAt is when the key stops verifying by time alone: the earliest of
	// its own expiry, a rotation's grace and its policies' lifetime bounds
	// (null: nothing bounds it).
	EndsAt  *time.Time `json:"ends_at"`
	Version uint64     `json:"version"`
	// LastUsedAt is the last request that presented the key, as the
	// gateways' usage reports tell it (null: none reported); LastUsed says
	// through which gateway, for which API and with which outcome.
	LastUsedAt *time.Time    `json:"last_used_at"`
	LastUsed   *lastUsedView `json:"last_used,omitempty"`
	Usage      *keyUsageView `json:"usage,omitempty"`
}

type lastUsedView struct {
	Gateway string     `json:"gateway"`
	API     string     `json:"api,omitempty"`
	Code    string     `json:"code"`
	ValidAt *time.Time `json:"last_valid_at"`
}

// keyUsageView is a key's requests over the last 24 hours and 30 days
// (?with=usage).
type keyUsageView struct {
	Requests24h uint64 `json:"requests_24h"`
	Requests30d uint64 `json:"requests_30d"`
}

// keyView is k as the API shows it, with its effective status now and its
// last use.
func (s *Server) keyView(k projections.Key) keyView {
	return s.keyViewWith(k, false)
}

// keyViewWith is keyView, with the key's recent request counts when
// withUsage.
func (s *Server) keyViewWith(k projections.Key, withUsage bool) keyView {
	v := keyOf(k)
	now := s.cfg.Now()
	v.EndsAt = k.ExpiresAt
	if k.GraceUntil != nil && (v.EndsAt == nil || k.GraceUntil.Before(*v.EndsAt)) {
		v.EndsAt = k.GraceUntil
	}
	s.cfg.Model.Read(func(c *projections.Catalog) {
		v.Status = string(c.EffectiveStatus(k, now))
		if end := c.KeyEnd(k.Tenant, k.ID); end != nil && (v.EndsAt == nil || end.Before(*v.EndsAt)) {
			v.EndsAt = end
		}
	})
	if s.cfg.Usage == nil {
		return v
	}
	var ku projections.KeyUse
	s.cfg.Usage.Read(func(u *projections.Usage) { ku = u.KeyUse(k.Tenant, k.ID, now) })
	if ku.Used {
		at := ku.At
		v.LastUsedAt = &at
		v.LastUsed = &lastUsedView{Gateway: ku.Node, API: ku.API, Code: ku.Code}
		if !ku.ValidAt.IsZero() {
			va := ku.ValidAt
			v.LastUsed.ValidAt = &va
		}
	}
	if withUsage {
		v.Usage = &keyUsageView{Requests24h: ku.Last24h, Requests30d: ku.Last30d}
	}
	return v
}

func keyOf(k projections.Key) keyView {
	scopes := k.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	md := k.Metadata
	if md == nil {
		md = map[string]string{}
	}
	policies := k.Policies
	if policies == nil {
		policies = []string{}
	}
	return keyView{ID: k.ID, Tenant: k.Tenant, User: k.User, Name: k.Name, Scopes: scopes, Status: string(k.Status), OwnStatus: string(k.Status), Policies: policies,
		Hint: k.Hint, CreatedAt: k.CreatedAt, NotBefore: k.NotBefore, ExpiresAt: k.ExpiresAt, RateLimit: k.RateLimit,
		Metadata: md, RotatedFrom: k.RotatedFrom, RotatedTo: k.RotatedTo, GraceUntil: k.GraceUntil, Version: k.Version}
}

type apiView struct {
	ID         string            `json:"id"`
	Tenant     string            `json:"tenant"`
	Name       string            `json:"name,omitempty"`
	PathPrefix string            `json:"path_prefix"`
	Upstreams  []string          `json:"upstreams"`
	Scopes     []string          `json:"scopes"`
	RateLimit  *events.RateLimit `json:"rate_limit"`
	Status     string            `json:"status"`
	Sunset     *time.Time        `json:"sunset,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	Version    uint64            `json:"version"`
}

func apiOf(a projections.API) apiView {
	scopes := a.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return apiView{ID: a.ID, Tenant: a.Tenant, Name: a.Name, PathPrefix: a.PathPrefix, Upstreams: a.Upstreams, Scopes: scopes,
		RateLimit: a.RateLimit, Status: string(a.Status), Sunset: a.Sunset, CreatedAt: a.CreatedAt, Version: a.Version}
}

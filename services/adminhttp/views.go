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
}

func tenantOf(t projections.Tenant) tenantView {
	v := tenantView{ID: t.ID, Name: t.Name, Status: string(t.Status), CreatedAt: t.CreatedAt, Version: t.Version}
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
	Version     uint64            `json:"version"`
}

// keyView is k as the API shows it, with its effective status now.
func (s *Server) keyView(k projections.Key) keyView {
	v := keyOf(k)
	s.cfg.Model.Read(func(c *projections.Catalog) { v.Status = string(c.EffectiveStatus(k, s.cfg.Now())) })
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
	return keyView{ID: k.ID, Tenant: k.Tenant, User: k.User, Name: k.Name, Scopes: scopes, Status: string(k.Status), OwnStatus: string(k.Status),
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

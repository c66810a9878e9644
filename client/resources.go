package client

import (
	"context"
	"net/url"
	"strconv"
	"time"
)

// ListOptions page through a list: Cursor is the last id of the previous
// page (NextCursor), Limit the page size (0: the server's default).
type ListOptions struct {
	Cursor string
	Limit  int
}

func (o ListOptions) query(q url.Values) string {
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// TenantPage is one page of tenants; NextCursor is empty on the last.
type TenantPage struct {
	Tenants    []Tenant `json:"tenants"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

// UserPage is one page of users.
type UserPage struct {
	Users      []User `json:"users"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// KeyPage is one page of keys.
type KeyPage struct {
	Keys       []Key  `json:"keys"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// APIPage is one page of APIs.
type APIPage struct {
	APIs       []API  `json:"apis"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// KeyFilter selects the keys a list returns.
type KeyFilter struct {
	// User: only this user's keys.
	User string
	// Status: an effective status (active, revoked, expired, user_disabled,
	// user_deleted, user_unknown, tenant_suspended, suspended, not_yet_valid).
	Status string
	// ExpiringWithin: only keys expiring within this duration ("72h", "30d").
	ExpiringWithin string
	// UnusedFor: only keys no request presented for this long ("90d"),
	// or never.
	UnusedFor string
	// WithUsage adds each key's requests over 24 hours and 30 days.
	WithUsage bool
	// Search keeps keys whose id, name or hint contains it.
	Search string
	ListOptions
}

// KeyPatch changes a key's attributes; nil fields stay as they are.
type KeyPatch struct {
	Name      *string           `json:"name,omitempty"`
	Scopes    *[]string         `json:"scopes,omitempty"`
	ExpiresAt *time.Time        `json:"expires_at,omitempty"`
	RateLimit *RateLimit        `json:"rate_limit,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	// Policies replaces the key's policies (an empty list: none).
	Policies *[]string `json:"policies,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// APIPatch changes an API; nil fields stay as they are.
type APIPatch struct {
	Name       *string    `json:"name,omitempty"`
	PathPrefix *string    `json:"path_prefix,omitempty"`
	Upstreams  []string   `json:"upstreams,omitempty"`
	Scopes     *[]string  `json:"scopes,omitempty"`
	RateLimit  *RateLimit `json:"rate_limit,omitempty"`
}

// Rotation is a rotated key: the new key and its secret (shown once), and
// the previous key, which works until its grace ends.
type Rotation struct {
	Key      Key    `json:"key"`
	Secret   string `json:"secret"`
	Previous Key    `json:"previous"`
	Seq      uint64 `json:"seq"`
}

// VerifyRequest is a question for POST /v1/verify.
type VerifyRequest struct {
	Key string `json:"key"`
	// Tenant, when set, is the tenant the request is for
	// (TENANT_MISMATCH otherwise).
	Tenant string   `json:"tenant,omitempty"`
	Scopes []string `json:"scopes,omitempty"`
}

// The answers of writes: the object and the write's sequence.
type (
	TenantResult struct {
		Tenant Tenant `json:"tenant"`
		Result
	}
	UserResult struct {
		User User `json:"user"`
		Result
	}
	KeyResult struct {
		Key Key `json:"key"`
		Result
	}
	APIResult struct {
		API API `json:"api"`
		Result
	}
)

type reasonBody struct {
	Reason string `json:"reason,omitempty"`
}

func tenantPath(t string) string  { return "/v1/tenants/" + esc(t) }
func userPath(t, u string) string { return tenantPath(t) + "/users/" + esc(u) }
func keyPath(t, k string) string  { return tenantPath(t) + "/keys/" + esc(k) }
func apiPath(t, a string) string  { return tenantPath(t) + "/apis/" + esc(a) }
func (c *Client) tenantWrite(ctx context.Context, method, path string, body any, call *Call) (TenantResult, error) {
	var out TenantResult
	_, err := c.Do(ctx, method, path, body, call, &out)
	return out, err
}
func (c *Client) userWrite(ctx context.Context, method, path string, body any, call *Call) (UserResult, error) {
	var out UserResult
	_, err := c.Do(ctx, method, path, body, call, &out)
	return out, err
}
func (c *Client) keyWrite(ctx context.Context, method, path string, body any, call *Call) (KeyResult, error) {
	var out KeyResult
	_, err := c.Do(ctx, method, path, body, call, &out)
	return out, err
}
func (c *Client) apiWrite(ctx context.Context, method, path string, body any, call *Call) (APIResult, error) {
	var out APIResult
	_, err := c.Do(ctx, method, path, body, call, &out)
	return out, err
}

// ListTenants lists tenants (root key only).
func (c *Client) ListTenants(ctx context.Context, o ListOptions, call *Call) (TenantPage, error) {
	var out TenantPage
	_, err := c.Do(ctx, "GET", "/v1/tenants"+o.query(url.Values{}), nil, call, &out)
	return out, err
}

// Tenant returns a tenant.
func (c *Client) Tenant(ctx context.Context, id string, call *Call) (Tenant, error) {
	out, err := c.tenantWrite(ctx, "GET", tenantPath(id), nil, call)
	return out.Tenant, err
}

// SuspendTenant suspends a tenant: its keys fail with TENANT_SUSPENDED.
func (c *Client) SuspendTenant(ctx context.Context, id, reason string, call *Call) (TenantResult, error) {
	return c.tenantWrite(ctx, "POST", tenantPath(id)+"/suspend", reasonBody{reason}, call)
}

// ResumeTenant resumes a suspended tenant.
func (c *Client) ResumeTenant(ctx context.Context, id, reason string, call *Call) (TenantResult, error) {
	return c.tenantWrite(ctx, "POST", tenantPath(id)+"/resume", reasonBody{reason}, call)
}

// ConfigureNotices sets the tenant's notice settings.
func (c *Client) ConfigureNotices(ctx context.Context, tenant string, n NoticeSettings, reason string, call *Call) (TenantResult, error) {
	body := struct {
		NoticeSettings
		Reason string `json:"reason,omitempty"`
	}{n, reason}
	return c.tenantWrite(ctx, "POST", tenantPath(tenant)+"/notice-settings", body, call)
}

// ListUsers lists a tenant's users.
func (c *Client) ListUsers(ctx context.Context, tenant string, o ListOptions, call *Call) (UserPage, error) {
	var out UserPage
	_, err := c.Do(ctx, "GET", tenantPath(tenant)+"/users"+o.query(url.Values{}), nil, call, &out)
	return out, err
}

// ListUsersWithKeyCounts lists a tenant's users with how many keys each
// holds and how many of them verify now.
func (c *Client) ListUsersWithKeyCounts(ctx context.Context, tenant string, o ListOptions, call *Call) (UserPage, error) {
	var out UserPage
	_, err := c.Do(ctx, "GET", tenantPath(tenant)+"/users"+o.query(url.Values{"with": {"key_counts"}}), nil, call, &out)
	return out, err
}

// User returns a user.
func (c *Client) User(ctx context.Context, tenant, id string, call *Call) (User, error) {
	out, err := c.userWrite(ctx, "GET", userPath(tenant, id), nil, call)
	return out.User, err
}

// DisableUser disables a user: their keys fail with USER_DISABLED.
func (c *Client) DisableUser(ctx context.Context, tenant, id, reason string, call *Call) (UserResult, error) {
	return c.userWrite(ctx, "POST", userPath(tenant, id)+"/disable", reasonBody{reason}, call)
}

// EnableUser enables a disabled user.
func (c *Client) EnableUser(ctx context.Context, tenant, id, reason string, call *Call) (UserResult, error) {
	return c.userWrite(ctx, "POST", userPath(tenant, id)+"/enable", reasonBody{reason}, call)
}

// DeleteUser deletes a user, for good.
func (c *Client) DeleteUser(ctx context.Context, tenant, id, reason string, call *Call) (UserResult, error) {
	return c.userWrite(ctx, "DELETE", userPath(tenant, id), reasonBody{reason}, call)
}

// ListKeys lists a tenant's keys that f selects.
func (c *Client) ListKeys(ctx context.Context, tenant string, f KeyFilter, call *Call) (KeyPage, error) {
	q := url.Values{}
	for k, v := range map[string]string{"user": f.User, "status": f.Status, "expiring_within": f.ExpiringWithin, "unused_for": f.UnusedFor,
		"q": f.Search} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.WithUsage {
		q.Set("with", "usage")
	}
	var out KeyPage
	_, err := c.Do(ctx, "GET", tenantPath(tenant)+"/keys"+f.query(q), nil, call, &out)
	return out, err
}

// UpdateKey changes a key's attributes.
func (c *Client) UpdateKey(ctx context.Context, tenant, id string, p KeyPatch, call *Call) (KeyResult, error) {
	return c.keyWrite(ctx, "PATCH", keyPath(tenant, id), p, call)
}

// SuspendKey suspends a key until it is resumed.
func (c *Client) SuspendKey(ctx context.Context, tenant, id, reason string, call *Call) (KeyResult, error) {
	return c.keyWrite(ctx, "POST", keyPath(tenant, id)+"/suspend", reasonBody{reason}, call)
}

// ResumeKey resumes a suspended key.
func (c *Client) ResumeKey(ctx context.Context, tenant, id, reason string, call *Call) (KeyResult, error) {
	return c.keyWrite(ctx, "POST", keyPath(tenant, id)+"/resume", reasonBody{reason}, call)
}

// RotateKey issues a key's successor; the old key works for grace ("24h",
// "7d"; empty: the server's default).
func (c *Client) RotateKey(ctx context.Context, tenant, id, grace, reason string, call *Call) (Rotation, error) {
	var out Rotation
	body := struct {
		Grace  string `json:"grace,omitempty"`
		Reason string `json:"reason,omitempty"`
	}{grace, reason}
	_, err := c.Do(ctx, "POST", keyPath(tenant, id)+"/rotate", body, call, &out)
	return out, err
}

// ListAPIs lists a tenant's APIs.
func (c *Client) ListAPIs(ctx context.Context, tenant string, o ListOptions, call *Call) (APIPage, error) {
	var out APIPage
	_, err := c.Do(ctx, "GET", tenantPath(tenant)+"/apis"+o.query(url.Values{}), nil, call, &out)
	return out, err
}

// API returns an API.
func (c *Client) API(ctx context.Context, tenant, id string, call *Call) (API, error) {
	out, err := c.apiWrite(ctx, "GET", apiPath(tenant, id), nil, call)
	return out.API, err
}

// UpdateAPI changes an API.
func (c *Client) UpdateAPI(ctx context.Context, tenant, id string, p APIPatch, call *Call) (APIResult, error) {
	return c.apiWrite(ctx, "PATCH", apiPath(tenant, id), p, call)
}

// DeprecateAPI deprecates an API until sunset.
func (c *Client) DeprecateAPI(ctx context.Context, tenant, id string, sunset time.Time, reason string, call *Call) (APIResult, error) {
	body := struct {
		Sunset time.Time `json:"sunset"`
		Reason string    `json:"reason,omitempty"`
	}{sunset, reason}
	return c.apiWrite(ctx, "POST", apiPath(tenant, id)+"/deprecate", body, call)
}

// RetireAPI retires an API, for good: gateways answer 410.
func (c *Client) RetireAPI(ctx context.Context, tenant, id, reason string, call *Call) (APIResult, error) {
	return c.apiWrite(ctx, "POST", apiPath(tenant, id)+"/retire", reasonBody{reason}, call)
}

// VerifyFor asks for a decision on r.Key for r's tenant and scopes.
func (c *Client) VerifyFor(ctx context.Context, r VerifyRequest, call *Call) (Decision, error) {
	var out Decision
	_, err := c.Do(ctx, "POST", "/v1/verify", r, call, &out)
	return out, err
}

// UsageQuery asks for a tenant's request counts: filters (empty: any),
// GroupBy (code, key, api or user), Bucket (minute, hour or day), and the
// range (RFC 3339, or a duration before now such as "24h"; empty: the
// last 24 hours).
type UsageQuery struct {
	Key, User, API, Code string
	GroupBy, Bucket      string
	Since, Until         string
}

// UsagePoint is one bucket's count (only buckets with requests are
// listed).
type UsagePoint struct {
	Start time.Time `json:"start"`
	N     uint64    `json:"n"`
}

// UsageSeries is one group's counts.
type UsageSeries struct {
	Group   string       `json:"group,omitempty"`
	Total   uint64       `json:"total"`
	Buckets []UsagePoint `json:"buckets"`
}

// UsageGap is a stretch of a gateway's requests no report covers.
type UsageGap struct {
	Node         string    `json:"node"`
	Boot         string    `json:"boot"`
	From         time.Time `json:"from"`
	To           time.Time `json:"to"`
	Why          string    `json:"why"`
	MissingParts int       `json:"missing_parts,omitempty"`
}

// Usage is a tenant's request counts over a range.
type Usage struct {
	Bucket string        `json:"bucket"`
	Since  time.Time     `json:"since"`
	Until  time.Time     `json:"until"`
	Total  uint64        `json:"total"`
	Series []UsageSeries `json:"series"`
	Gaps   []UsageGap    `json:"gaps"`
}

// Usage returns a tenant's request counts as the gateways reported them.
func (c *Client) Usage(ctx context.Context, tenant string, q UsageQuery, call *Call) (Usage, error) {
	v := url.Values{}
	for k, s := range map[string]string{"key": q.Key, "user": q.User, "api": q.API, "code": q.Code, "group_by": q.GroupBy,
		"bucket": q.Bucket, "since": q.Since, "until": q.Until} {
		if s != "" {
			v.Set(k, s)
		}
	}
	var out Usage
	_, err := c.Do(ctx, "GET", tenantPath(tenant)+"/usage"+ListOptions{}.query(v), nil, call, &out)
	return out, err
}

package client

import (
	"context"
	"encoding/json"
	"net/url"
	"time"
)

// Policy is an access policy: scopes granted to the keys that reference it,
// and limits on them (docs/policies.md).
type Policy struct {
	ID        string     `json:"id"`
	Tenant    string     `json:"tenant"`
	Name      string     `json:"name,omitempty"`
	Scopes    []string   `json:"scopes"`
	RateLimit *RateLimit `json:"rate_limit"`
	MaxTTL    string     `json:"max_ttl,omitempty"`
	APIs      []string   `json:"apis"`
	Status    string     `json:"status"`
	Revision  int        `json:"revision"`
	CreatedAt time.Time  `json:"created_at"`
	Version   uint64     `json:"version"`
	// Keys counts the keys that reference it (lists only).
	Keys *int `json:"keys,omitempty"`
}

// PolicySpec is what CreatePolicy needs.
type PolicySpec struct {
	ID        string     `json:"id"`
	Name      string     `json:"name,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	MaxTTL    string     `json:"max_ttl,omitempty"`
	APIs      []string   `json:"apis,omitempty"`
}

// PolicyPatch changes a policy; nil fields stay as they are. Set
// NoRateLimit or NoMaxTTL to remove those limits.
type PolicyPatch struct {
	Name        *string
	Scopes      *[]string
	RateLimit   *RateLimit
	NoRateLimit bool
	MaxTTL      *string
	NoMaxTTL    bool
	APIs        *[]string
	Reason      string
}

// MarshalJSON writes the patch as the API takes it: null removes a limit.
func (p PolicyPatch) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	if p.Name != nil {
		m["name"] = *p.Name
	}
	if p.Scopes != nil {
		m["scopes"] = *p.Scopes
	}
	if p.APIs != nil {
		m["apis"] = *p.APIs
	}
	switch {
	case p.NoRateLimit:
		m["rate_limit"] = nil
	case p.RateLimit != nil:
		m["rate_limit"] = p.RateLimit
	}
	switch {
	case p.NoMaxTTL:
		m["max_ttl"] = nil
	case p.MaxTTL != nil:
		m["max_ttl"] = *p.MaxTTL
	}
	if p.Reason != "" {
		m["reason"] = p.Reason
	}
	return json.Marshal(m)
}

// PolicyResult is a policy and the sequence of the write that made it so.
type PolicyResult struct {
	Policy Policy `json:"policy"`
	Result
}

// PolicyPage is one page of policies.
type PolicyPage struct {
	Policies   []Policy `json:"policies"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

func policyPath(t, p string) string { return tenantPath(t) + "/policies/" + esc(p) }

func (c *Client) policyWrite(ctx context.Context, method, path string, body any, call *Call) (PolicyResult, error) {
	var out PolicyResult
	_, err := c.Do(ctx, method, path, body, call, &out)
	return out, err
}

// CreatePolicy defines a policy of tenant.
func (c *Client) CreatePolicy(ctx context.Context, tenant string, spec PolicySpec, call *Call) (PolicyResult, error) {
	return c.policyWrite(ctx, "POST", tenantPath(tenant)+"/policies", spec, call)
}

// Policy returns a policy.
func (c *Client) Policy(ctx context.Context, tenant, id string, call *Call) (Policy, error) {
	out, err := c.policyWrite(ctx, "GET", policyPath(tenant, id), nil, call)
	return out.Policy, err
}

// ListPolicies lists a tenant's policies, each with how many keys
// reference it.
func (c *Client) ListPolicies(ctx context.Context, tenant string, o ListOptions, call *Call) (PolicyPage, error) {
	var out PolicyPage
	_, err := c.Do(ctx, "GET", tenantPath(tenant)+"/policies"+o.query(url.Values{}), nil, call, &out)
	return out, err
}

// UpdatePolicy changes a policy: every key that references it verifies
// under the change at once.
func (c *Client) UpdatePolicy(ctx context.Context, tenant, id string, p PolicyPatch, call *Call) (PolicyResult, error) {
	return c.policyWrite(ctx, "PATCH", policyPath(tenant, id), p, call)
}

// RetirePolicy retires a policy, for good.
func (c *Client) RetirePolicy(ctx context.Context, tenant, id, reason string, call *Call) (PolicyResult, error) {
	return c.policyWrite(ctx, "POST", policyPath(tenant, id)+"/retire", reasonBody{reason}, call)
}

// Preview is what a dry run says a write would do: the events it would
// append, and the keys, users and APIs whose verification would change.
type Preview struct {
	DryRun bool           `json:"dry_run"`
	Events []PlannedEvent `json:"events"`
	Impact Impact         `json:"impact"`
}

// PlannedEvent is an event a dry run would append.
type PlannedEvent struct {
	Type      string          `json:"type"`
	Aggregate string          `json:"aggregate"`
	Subject   string          `json:"subject"`
	At        time.Time       `json:"at"`
	Actor     string          `json:"actor"`
	Reason    string          `json:"reason,omitempty"`
	Data      json.RawMessage `json:"data"`
}

// Impact is what a write would change: keys with their decisions before
// and after per API ("" for requests without one), the users and APIs
// concerned, and the requests of the last 24 hours that were VALID and
// would be denied.
type Impact struct {
	Keys        []KeyImpact `json:"keys"`
	Users       []string    `json:"users"`
	APIs        []string    `json:"apis"`
	Requests24h uint64      `json:"requests_24h"`
}

// KeyImpact is one key's changes.
type KeyImpact struct {
	Key         string        `json:"key"`
	User        string        `json:"user"`
	Changes     []ProbeChange `json:"changes"`
	Requests24h uint64        `json:"requests_24h"`
}

// ProbeChange is how the decision on a key's requests to one API changes
// (API "": requests without one, asking for Scope when it is set).
type ProbeChange struct {
	API    string  `json:"api"`
	Scope  string  `json:"scope,omitempty"`
	Before Outcome `json:"before"`
	After  Outcome `json:"after"`
}

// Report rows (GET …/reports/{report}).
type (
	OrphanedKey struct {
		Key   string `json:"key"`
		Name  string `json:"name,omitempty"`
		User  string `json:"user"`
		Owner string `json:"owner"`
		Seq   uint64 `json:"seq,omitempty"`
	}
	RetiredPolicyKey struct {
		Key    string `json:"key"`
		Name   string `json:"name,omitempty"`
		User   string `json:"user"`
		Policy string `json:"policy"`
		Seq    uint64 `json:"seq"`
	}
	UnneededScopes struct {
		Key    string   `json:"key"`
		Name   string   `json:"name,omitempty"`
		User   string   `json:"user"`
		Scopes []string `json:"scopes"`
		Own    []string `json:"own"`
	}
)

// report reads one report's rows into rows.
func (c *Client) report(ctx context.Context, tenant, name string, call *Call, rows any) error {
	out := struct {
		Keys any `json:"keys"`
	}{rows}
	_, err := c.Do(ctx, "GET", tenantPath(tenant)+"/reports/"+name, nil, call, &out)
	return err
}

// OrphanedKeys are keys (not revoked) whose user is disabled, deleted or
// unknown.
func (c *Client) OrphanedKeys(ctx context.Context, tenant string, call *Call) ([]OrphanedKey, error) {
	var rows []OrphanedKey
	return rows, c.report(ctx, tenant, "orphaned-keys", call, &rows)
}

// RetiredPolicyKeys are keys (not revoked) that reference a retired policy.
func (c *Client) RetiredPolicyKeys(ctx context.Context, tenant string, call *Call) ([]RetiredPolicyKey, error) {
	var rows []RetiredPolicyKey
	return rows, c.report(ctx, tenant, "retired-policy-keys", call, &rows)
}

// UnneededScopes are keys (not revoked) holding scopes no API of the
// tenant requires.
func (c *Client) UnneededScopes(ctx context.Context, tenant string, call *Call) ([]UnneededScopes, error) {
	var rows []UnneededScopes
	return rows, c.report(ctx, tenant, "unneeded-scopes", call, &rows)
}

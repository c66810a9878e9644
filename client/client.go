// Package client is the Go client of Keytrail's admin API (HTTP) and of its
// NATS revocation path, for services that manage keys or revoke them. Every
// error Keytrail answers is a *Problem carrying its stable code; compare with
// errors.Is against ErrNotFound, ErrConflict and the others.
//
// It depends on the standard library and nats.go only: nothing of Keytrail's
// server side.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Code is a problem's stable code.
type Code string

// The problem codes of the admin API (ProblemCodes lists them; a test holds
// the list to the server's table).
const (
	CodeInvalidArgument      Code = "invalid_argument"
	CodeUnsupportedMediaType Code = "unsupported_media_type"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodeUnauthenticated      Code = "unauthenticated"
	CodePermissionDenied     Code = "permission_denied"
	CodeNotFound             Code = "not_found"
	CodeConflict             Code = "conflict"
	CodeIdempotencyMismatch  Code = "idempotency_mismatch"
	CodeFailedPrecondition   Code = "failed_precondition"
	CodeRateLimited          Code = "rate_limited"
	CodeUnavailable          Code = "unavailable"
	CodeInternal             Code = "internal"
)

// ProblemCodes are every problem code the admin API answers with.
var ProblemCodes = []Code{CodeInvalidArgument, CodeUnsupportedMediaType, CodeMethodNotAllowed, CodeUnauthenticated,
	CodePermissionDenied, CodeNotFound, CodeConflict, CodeIdempotencyMismatch, CodeFailedPrecondition, CodeRateLimited,
	CodeUnavailable, CodeInternal}

// Outcome is a verification's outcome code (Decision.Code).
type Outcome = string

// The outcome codes, in the precedence of the product brief (Outcomes
// lists them; a test holds the list to the server's table).
const (
	OutcomeMissing           Outcome = "MISSING"
	OutcomeMalformed         Outcome = "MALFORMED"
	OutcomeNotFound          Outcome = "NOT_FOUND"
	OutcomeRevoked           Outcome = "REVOKED"
	OutcomeExpired           Outcome = "EXPIRED"
	OutcomeUserDeleted       Outcome = "USER_DELETED"
	OutcomeUserUnknown       Outcome = "USER_UNKNOWN"
	OutcomeTenantSuspended   Outcome = "TENANT_SUSPENDED"
	OutcomeUserDisabled      Outcome = "USER_DISABLED"
	OutcomeSuspended         Outcome = "SUSPENDED"
	OutcomeNotYetValid       Outcome = "NOT_YET_VALID"
	OutcomeTenantMismatch    Outcome = "TENANT_MISMATCH"
	OutcomeInsufficientScope Outcome = "INSUFFICIENT_SCOPE"
	OutcomeRateLimited       Outcome = "RATE_LIMITED"
	OutcomeStale             Outcome = "STALE"
	OutcomeValid             Outcome = "VALID"
)

// Outcomes are the outcome codes in precedence order.
var Outcomes = []Outcome{OutcomeMissing, OutcomeMalformed, OutcomeNotFound, OutcomeRevoked, OutcomeExpired, OutcomeUserDeleted,
	OutcomeUserUnknown, OutcomeTenantSuspended, OutcomeUserDisabled, OutcomeSuspended, OutcomeNotYetValid, OutcomeTenantMismatch,
	OutcomeInsufficientScope, OutcomeRateLimited, OutcomeStale, OutcomeValid}

// Problem is an error answered by Keytrail (RFC 9457).
type Problem struct {
	Status    int    `json:"status"`
	Code      Code   `json:"code"`
	Title     string `json:"title"`
	Detail    string `json:"detail,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	KeyID     string `json:"key_id,omitempty"`
}

func (p *Problem) Error() string {
	msg := fmt.Sprintf("keytrail: %d %s", p.Status, p.Code)
	if p.Detail != "" {
		msg += ": " + p.Detail
	}
	return msg
}

// Is matches a problem against the Err… sentinels by code.
func (p *Problem) Is(target error) bool {
	t, ok := target.(*Problem)
	return ok && t.Code == p.Code
}

// Sentinels for errors.Is.
var (
	ErrInvalidArgument    = &Problem{Code: CodeInvalidArgument}
	ErrUnauthenticated    = &Problem{Code: CodeUnauthenticated}
	ErrPermissionDenied   = &Problem{Code: CodePermissionDenied}
	ErrNotFound           = &Problem{Code: CodeNotFound}
	ErrConflict           = &Problem{Code: CodeConflict}
	ErrFailedPrecondition = &Problem{Code: CodeFailedPrecondition}
	ErrRateLimited        = &Problem{Code: CodeRateLimited}
	ErrUnavailable        = &Problem{Code: CodeUnavailable}
	ErrInternal           = &Problem{Code: CodeInternal}
)

// Client calls the admin API with one admin key.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client of the admin API at baseURL (http://127.0.0.1:7400)
// using token, the root key or a tenant's admin key. hc nil: a client with a
// 30 s timeout.
func New(baseURL, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), token: token, http: hc}
}

// Call shapes one request.
type Call struct {
	// IdempotencyKey makes a write safe to retry: the same key gets the
	// same outcome.
	IdempotencyKey string
	// IfMatch is the version a write expects its object to be at.
	IfMatch uint64
	// MinSeq makes a read wait until the server has applied this sequence
	// (a Seq from an earlier write).
	MinSeq uint64
	// DryRun, when set, makes a write that can deny a dry run
	// (?dry_run=true): nothing is appended, what the write would append
	// and deny is decoded into it, and the method's own result stays zero.
	DryRun *Preview
}

// Result is what a write returns besides its object: the stream sequence of
// its event (pass it as MinSeq to read your own write anywhere).
type Result struct {
	Seq uint64 `json:"seq"`
}

// Do sends method path with body (JSON, nil for none) and decodes a
// successful answer into out (nil: discarded). It returns the answer's
// Keytrail-Seq, 0 when it has none. Do is what every typed method uses; it
// is exported for routes they do not cover.
func (c *Client) Do(ctx context.Context, method, path string, body any, call *Call, out any) (uint64, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, fmt.Errorf("keytrail: encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	if call != nil && call.DryRun != nil {
		path += "?dry_run=true"
		out = call.DryRun
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("keytrail: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if call != nil {
		if call.IdempotencyKey != "" {
			req.Header.Set("Idempotency-Key", call.IdempotencyKey)
		}
		if call.IfMatch != 0 {
			req.Header.Set("If-Match", strconv.FormatUint(call.IfMatch, 10))
		}
		if call.MinSeq != 0 {
			req.Header.Set("Keytrail-Min-Seq", strconv.FormatUint(call.MinSeq, 10))
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("keytrail: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("keytrail: %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		return 0, problemOf(resp.StatusCode, raw)
	}
	seq, _ := strconv.ParseUint(resp.Header.Get("Keytrail-Seq"), 10, 64)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return seq, fmt.Errorf("keytrail: %s %s: answer is not JSON: %w", method, path, err)
		}
	}
	return seq, nil
}

// problemOf reads a problem answer; anything else becomes one with the
// status alone.
func problemOf(status int, raw []byte) *Problem {
	var p Problem
	if json.Unmarshal(raw, &p) != nil || p.Code == "" {
		p = Problem{Code: codeOfStatus(status), Title: http.StatusText(status)}
	}
	p.Status = status
	return &p
}

func codeOfStatus(status int) Code {
	switch status {
	case 400:
		return CodeInvalidArgument
	case 401:
		return CodeUnauthenticated
	case 403:
		return CodePermissionDenied
	case 404:
		return CodeNotFound
	case 409:
		return CodeConflict
	case 422:
		return CodeFailedPrecondition
	case 429:
		return CodeRateLimited
	case 502, 503, 504:
		return CodeUnavailable
	}
	return CodeInternal
}

func esc(s string) string { return url.PathEscape(s) }

// Tenant is a tenant as the admin API shows it.
type Tenant struct {
	ID                string     `json:"id"`
	Name              string     `json:"name"`
	Status            string     `json:"status"`
	KeysRevokedBefore *time.Time `json:"keys_revoked_before,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	Version           uint64     `json:"version"`
	// Notices are the tenant's notice settings; nil while the defaults.
	Notices *NoticeSettings `json:"notices,omitempty"`
}

// NoticeSettings say how long before a key stops working its tenant is
// told (ExpiryBefore, such as "30d"; empty: 30d, 7d, 1d), and after how
// long without a request a key is told unused (UnusedAfter; empty: 90d).
type NoticeSettings struct {
	ExpiryBefore []string `json:"expiry_before"`
	UnusedAfter  string   `json:"unused_after,omitempty"`
}

// User is a user.
type User struct {
	ID                string     `json:"id"`
	Tenant            string     `json:"tenant"`
	Name              string     `json:"name"`
	Status            string     `json:"status"`
	KeysRevokedBefore *time.Time `json:"keys_revoked_before,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	Version           uint64     `json:"version"`
	// Keys counts the user's keys (ListUsersWithKeyCounts).
	Keys *KeyCount `json:"keys,omitempty"`
}

// KeyCount is how many keys a user holds, and how many verify now.
type KeyCount struct {
	Total  int `json:"total"`
	Active int `json:"active"`
}

// RateLimit is requests per second and a burst.
type RateLimit struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// Key is a key, never its secret.
type Key struct {
	ID          string            `json:"id"`
	Tenant      string            `json:"tenant"`
	User        string            `json:"user"`
	Name        string            `json:"name"`
	Scopes      []string          `json:"scopes"`
	Status      string            `json:"status"`
	Hint        string            `json:"hint"`
	CreatedAt   time.Time         `json:"created_at"`
	NotBefore   *time.Time        `json:"not_before"`
	ExpiresAt   *time.Time        `json:"expires_at"`
	RateLimit   *RateLimit        `json:"rate_limit"`
	Metadata    map[string]string `json:"metadata"`
	RotatedFrom string            `json:"rotated_from,omitempty"`
	RotatedTo   string            `json:"rotated_to,omitempty"`
	GraceUntil  *time.Time        `json:"grace_until,omitempty"`
	Policies    []string          `json:"policies"`
	// EndsAt is when the key stops verifying by time alone: its own expiry,
	// a rotation's grace or a policy's lifetime bound, whichever is first.
	EndsAt  *time.Time `json:"ends_at"`
	Version uint64     `json:"version"`
	// LastUsedAt is the last request that presented the key, as the
	// gateways reported it (nil: none); LastUsed says where and how.
	LastUsedAt *time.Time `json:"last_used_at"`
	LastUsed   *LastUsed  `json:"last_used,omitempty"`
	// Usage is the key's recent requests (lists with KeyFilter.WithUsage).
	Usage *KeyUsage `json:"usage,omitempty"`
}

// LastUsed is the last request that presented a key.
type LastUsed struct {
	Gateway     string     `json:"gateway"`
	API         string     `json:"api,omitempty"`
	Code        Outcome    `json:"code"`
	LastValidAt *time.Time `json:"last_valid_at"`
}

// KeyUsage is a key's requests over the last 24 hours and 30 days.
type KeyUsage struct {
	Requests24h uint64 `json:"requests_24h"`
	Requests30d uint64 `json:"requests_30d"`
}

// KeySpec is what a new key gets.
type KeySpec struct {
	User      string     `json:"user"`
	Name      string     `json:"name,omitempty"`
	Scopes    []string   `json:"scopes,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// TTL is a lifetime from now ("720h", "30d"), instead of ExpiresAt.
	TTL       string            `json:"ttl,omitempty"`
	NotBefore *time.Time        `json:"not_before,omitempty"`
	RateLimit *RateLimit        `json:"rate_limit,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	// Policies are the tenant's policies the key takes scopes and limits
	// from (resolved when it is verified, never copied into it).
	Policies []string `json:"policies,omitempty"`
}

// IssuedKey is a new key and its secret, which Keytrail never shows again.
type IssuedKey struct {
	Key    Key    `json:"key"`
	Secret string `json:"secret"`
	Seq    uint64 `json:"seq"`
}

// API is an API definition.
type API struct {
	ID         string     `json:"id"`
	Tenant     string     `json:"tenant"`
	Name       string     `json:"name,omitempty"`
	PathPrefix string     `json:"path_prefix"`
	Upstreams  []string   `json:"upstreams"`
	Scopes     []string   `json:"scopes"`
	RateLimit  *RateLimit `json:"rate_limit"`
	Status     string     `json:"status"`
	Sunset     *time.Time `json:"sunset,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	Version    uint64     `json:"version"`
}

// APISpec is what a new API gets.
type APISpec struct {
	ID         string     `json:"id"`
	Name       string     `json:"name,omitempty"`
	PathPrefix string     `json:"path_prefix"`
	Upstreams  []string   `json:"upstreams"`
	Scopes     []string   `json:"scopes,omitempty"`
	RateLimit  *RateLimit `json:"rate_limit,omitempty"`
}

// Evidence is an event a decision rests on.
type Evidence struct {
	Seq    uint64    `json:"seq"`
	Type   string    `json:"type"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Reason string    `json:"reason,omitempty"`
}

// Decision is a verification's outcome and what it rests on.
type Decision struct {
	Code     Outcome    `json:"code"`
	Also     []Outcome  `json:"also"`
	KeyID    string     `json:"key_id,omitempty"`
	Tenant   string     `json:"tenant,omitempty"`
	User     string     `json:"user,omitempty"`
	API      string     `json:"api,omitempty"`
	Now      time.Time  `json:"now"`
	Seq      uint64     `json:"seq"`
	Evidence []Evidence `json:"evidence"`
	// Detail says which check a MALFORMED key failed.
	Detail string `json:"detail,omitempty"`
}

// CreateTenant creates a tenant (root key only).
func (c *Client) CreateTenant(ctx context.Context, id, name string, call *Call) (Tenant, Result, error) {
	var out struct {
		Tenant Tenant `json:"tenant"`
		Result
	}
	_, err := c.Do(ctx, "POST", "/v1/tenants", map[string]string{"id": id, "name": name}, call, &out)
	return out.Tenant, out.Result, err
}

// CreateUser creates a user of a tenant.
func (c *Client) CreateUser(ctx context.Context, tenant, id, name string, call *Call) (User, Result, error) {
	var out struct {
		User User `json:"user"`
		Result
	}
	_, err := c.Do(ctx, "POST", "/v1/tenants/"+esc(tenant)+"/users", map[string]string{"id": id, "name": name}, call, &out)
	return out.User, out.Result, err
}

// CreateAPI publishes an API.
func (c *Client) CreateAPI(ctx context.Context, tenant string, spec APISpec, call *Call) (API, Result, error) {
	var out struct {
		API API `json:"api"`
		Result
	}
	_, err := c.Do(ctx, "POST", "/v1/tenants/"+esc(tenant)+"/apis", spec, call, &out)
	return out.API, out.Result, err
}

// IssueKey issues a key; its secret is in the answer and never again.
func (c *Client) IssueKey(ctx context.Context, tenant string, spec KeySpec, call *Call) (IssuedKey, error) {
	var out IssuedKey
	_, err := c.Do(ctx, "POST", "/v1/tenants/"+esc(tenant)+"/keys", spec, call, &out)
	return out, err
}

// Key returns a key.
func (c *Client) Key(ctx context.Context, tenant, keyID string, call *Call) (Key, error) {
	var out struct {
		Key Key `json:"key"`
	}
	_, err := c.Do(ctx, "GET", "/v1/tenants/"+esc(tenant)+"/keys/"+esc(keyID), nil, call, &out)
	return out.Key, err
}

// RevokeKey revokes a key, for good.
func (c *Client) RevokeKey(ctx context.Context, tenant, keyID, reason string, call *Call) (Key, Result, error) {
	var out struct {
		Key Key `json:"key"`
		Result
	}
	_, err := c.Do(ctx, "POST", "/v1/tenants/"+esc(tenant)+"/keys/"+esc(keyID)+"/revoke", map[string]string{"reason": reason}, call, &out)
	return out.Key, out.Result, err
}

// RevokeUserKeys revokes every key of a user issued before before (now when
// nil).
func (c *Client) RevokeUserKeys(ctx context.Context, tenant, user string, before *time.Time, reason string, call *Call) (User, Result, error) {
	var out struct {
		User User `json:"user"`
		Result
	}
	_, err := c.Do(ctx, "POST", "/v1/tenants/"+esc(tenant)+"/users/"+esc(user)+"/revoke-keys", revokeBody{before, reason}, call, &out)
	return out.User, out.Result, err
}

// RevokeTenantKeys revokes every key of a tenant issued before before (now
// when nil).
func (c *Client) RevokeTenantKeys(ctx context.Context, tenant string, before *time.Time, reason string, call *Call) (Tenant, Result, error) {
	var out struct {
		Tenant Tenant `json:"tenant"`
		Result
	}
	_, err := c.Do(ctx, "POST", "/v1/tenants/"+esc(tenant)+"/revoke-keys", revokeBody{before, reason}, call, &out)
	return out.Tenant, out.Result, err
}

type revokeBody struct {
	Before *time.Time `json:"before,omitempty"`
	Reason string     `json:"reason,omitempty"`
}

// Verify asks for a decision on a secret, with the scopes the caller needs.
func (c *Client) Verify(ctx context.Context, secret string, scopes []string, call *Call) (Decision, error) {
	return c.VerifyFor(ctx, VerifyRequest{Key: secret, Scopes: scopes}, call)
}

// errNoReply wraps a NATS failure to reach any control node.
var errNoReply = errors.New("keytrail: no control node answered")

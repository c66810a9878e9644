package client

import (
	"context"
	"net/url"
	"strconv"
	"time"
)

// Webhook is an endpoint a tenant's notices are delivered to (never its
// secret).
type Webhook struct {
	ID     string   `json:"id"`
	Tenant string   `json:"tenant"`
	URL    string   `json:"url"`
	Types  []string `json:"types"`
	Status string   `json:"status"`
	// PreviousSecretUntil: deliveries are also signed with the secret a
	// rotation replaced, until then.
	PreviousSecretUntil *time.Time `json:"previous_secret_until,omitempty"`
	StatusSeq           uint64     `json:"status_seq"`
	StatusBy            string     `json:"status_by"`
	CreatedAt           time.Time  `json:"created_at"`
	Version             uint64     `json:"version"`
}

// WebhookSpec is what a new endpoint gets: its URL and the notice types it
// wants (none: all).
type WebhookSpec struct {
	URL    string   `json:"url"`
	Types  []string `json:"types,omitempty"`
	Reason string   `json:"reason,omitempty"`
}

// WebhookPatch changes an endpoint; nil fields stay as they are.
type WebhookPatch struct {
	URL    *string   `json:"url,omitempty"`
	Types  *[]string `json:"types,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

// WebhookResult is the answer of a write to an endpoint.
type WebhookResult struct {
	Webhook Webhook `json:"webhook"`
	Result
}

// CreatedWebhook is an endpoint with its signing secret (whsec_…): the
// only answer that holds it.
type CreatedWebhook struct {
	Webhook Webhook `json:"webhook"`
	Secret  string  `json:"secret"`
	Result
}

// Attempt is one try to deliver a message to an endpoint.
type Attempt struct {
	MsgID        string     `json:"msg_id"`
	NoticeID     string     `json:"notice_id"`
	Type         string     `json:"type"`
	Attempt      int        `json:"attempt"`
	At           time.Time  `json:"at"`
	Status       int        `json:"status,omitempty"`
	LatencyMS    float64    `json:"latency_ms"`
	Response     string     `json:"response,omitempty"`
	Error        string     `json:"error,omitempty"`
	Outcome      string     `json:"outcome"`
	NextAt       *time.Time `json:"next_at,omitempty"`
	FailingSince *time.Time `json:"failing_since,omitempty"`
	Replay       bool       `json:"replay,omitempty"`
	// EndpointSeq is the event that last enabled the endpoint or set its
	// URL, as of the attempt.
	EndpointSeq uint64 `json:"endpoint_seq,omitempty"`
}

// AttemptQuery selects an endpoint's attempts: Since (RFC 3339 or a
// duration before now; empty: 7 days), one message, at most Limit.
type AttemptQuery struct {
	Since string
	MsgID string
	Limit int
}

// Replayed is how many messages a replay queued, and whether there were
// more than one replay takes.
type Replayed struct {
	Queued int  `json:"queued"`
	More   bool `json:"more,omitempty"`
}

func webhookPath(t, w string) string { return tenantPath(t) + "/webhooks/" + esc(w) }

func (c *Client) webhookWrite(ctx context.Context, method, path string, body any, call *Call) (WebhookResult, error) {
	var out WebhookResult
	_, err := c.Do(ctx, method, path, body, call, &out)
	return out, err
}

// CreateWebhook adds an endpoint; the answer holds its secret, once.
func (c *Client) CreateWebhook(ctx context.Context, tenant string, s WebhookSpec, call *Call) (CreatedWebhook, error) {
	var out CreatedWebhook
	_, err := c.Do(ctx, "POST", tenantPath(tenant)+"/webhooks", s, call, &out)
	return out, err
}

// ListWebhooks lists a tenant's endpoints.
func (c *Client) ListWebhooks(ctx context.Context, tenant string, call *Call) ([]Webhook, error) {
	var out struct {
		Webhooks []Webhook `json:"webhooks"`
	}
	_, err := c.Do(ctx, "GET", tenantPath(tenant)+"/webhooks", nil, call, &out)
	return out.Webhooks, err
}

// Webhook returns an endpoint.
func (c *Client) Webhook(ctx context.Context, tenant, id string, call *Call) (Webhook, error) {
	out, err := c.webhookWrite(ctx, "GET", webhookPath(tenant, id), nil, call)
	return out.Webhook, err
}

// UpdateWebhook changes an endpoint's URL or types.
func (c *Client) UpdateWebhook(ctx context.Context, tenant, id string, p WebhookPatch, call *Call) (WebhookResult, error) {
	return c.webhookWrite(ctx, "PATCH", webhookPath(tenant, id), p, call)
}

// DisableWebhook stops deliveries to an endpoint.
func (c *Client) DisableWebhook(ctx context.Context, tenant, id, reason string, call *Call) (WebhookResult, error) {
	return c.webhookWrite(ctx, "POST", webhookPath(tenant, id)+"/disable", reasonBody{reason}, call)
}

// EnableWebhook resumes deliveries to an endpoint.
func (c *Client) EnableWebhook(ctx context.Context, tenant, id, reason string, call *Call) (WebhookResult, error) {
	return c.webhookWrite(ctx, "POST", webhookPath(tenant, id)+"/enable", reasonBody{reason}, call)
}

// DeleteWebhook deletes an endpoint for good.
func (c *Client) DeleteWebhook(ctx context.Context, tenant, id, reason string, call *Call) (WebhookResult, error) {
	return c.webhookWrite(ctx, "DELETE", webhookPath(tenant, id), reasonBody{reason}, call)
}

// RotateWebhookSecret gives an endpoint a new secret (in the answer, once);
// the old one signs too for overlap ("24h" when empty).
func (c *Client) RotateWebhookSecret(ctx context.Context, tenant, id, overlap, reason string, call *Call) (CreatedWebhook, error) {
	body := struct {
		Overlap string `json:"overlap,omitempty"`
		Reason  string `json:"reason,omitempty"`
	}{overlap, reason}
	var out CreatedWebhook
	_, err := c.Do(ctx, "POST", webhookPath(tenant, id)+"/rotate-secret", body, call, &out)
	return out, err
}

// WebhookAttempts reads an endpoint's delivery attempts, oldest first.
func (c *Client) WebhookAttempts(ctx context.Context, tenant, id string, q AttemptQuery, call *Call) ([]Attempt, error) {
	v := url.Values{}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.MsgID != "" {
		v.Set("msg_id", q.MsgID)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := webhookPath(tenant, id) + "/deliveries"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out struct {
		Attempts []Attempt `json:"attempts"`
	}
	_, err := c.Do(ctx, "GET", path, nil, call, &out)
	return out.Attempts, err
}

// ReplayWebhook delivers again one message (msgID) or every notice since a
// time the endpoint wants.
func (c *Client) ReplayWebhook(ctx context.Context, tenant, id, msgID string, since *time.Time, call *Call) (Replayed, error) {
	body := struct {
		MsgID string     `json:"msg_id,omitempty"`
		Since *time.Time `json:"since,omitempty"`
	}{msgID, since}
	var out Replayed
	_, err := c.Do(ctx, "POST", webhookPath(tenant, id)+"/replay", body, call, &out)
	return out, err
}

// Notice is something a tenant was told (key.expiring, keys.blocked, …).
type Notice struct {
	ID          string     `json:"id"`
	Type        string     `json:"type"`
	Tenant      string     `json:"tenant"`
	User        string     `json:"user,omitempty"`
	KeyID       string     `json:"key_id,omitempty"`
	Webhook     string     `json:"webhook,omitempty"`
	At          time.Time  `json:"at"`
	Seq         uint64     `json:"seq"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	Before      string     `json:"before,omitempty"`
	Code        string     `json:"code,omitempty"`
	CauseSeq    uint64     `json:"cause_seq,omitempty"`
	CauseType   string     `json:"cause_type,omitempty"`
	CauseActor  string     `json:"cause_actor,omitempty"`
	CauseReason string     `json:"cause_reason,omitempty"`
	Keys        int        `json:"keys,omitempty"`
	LastUsedAt  *time.Time `json:"last_used_at,omitempty"`
	Text        string     `json:"text"`
}

// Notices reads the tenant's notices since (RFC 3339 or a duration before
// now; empty: 7 days), of one type when typ is set, oldest first.
func (c *Client) Notices(ctx context.Context, tenant, typ, since string, limit int, call *Call) ([]Notice, error) {
	v := url.Values{}
	if typ != "" {
		v.Set("type", typ)
	}
	if since != "" {
		v.Set("since", since)
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	path := tenantPath(tenant) + "/notices"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out struct {
		Notices []Notice `json:"notices"`
	}
	_, err := c.Do(ctx, "GET", path, nil, call, &out)
	return out.Notices, err
}

package client

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"time"
)

// HistoryEvent is one event that bears on a key: its own, its user's or
// its tenant's.
type HistoryEvent struct {
	Seq    uint64          `json:"seq"`
	Type   string          `json:"type"`
	At     time.Time       `json:"at"`
	Actor  string          `json:"actor"`
	Reason string          `json:"reason,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// KeyHistory is every event that bears on a key, oldest first.
func (c *Client) KeyHistory(ctx context.Context, tenant, key string, call *Call) ([]HistoryEvent, error) {
	var out struct {
		Events []HistoryEvent `json:"events"`
	}
	_, err := c.Do(ctx, "GET", keyPath(tenant, key)+"/history", nil, call, &out)
	return out.Events, err
}

// Explain is the decision a key would have received at a time, with the
// events it rests on.
func (c *Client) Explain(ctx context.Context, tenant, key string, at time.Time, call *Call) (Decision, error) {
	path := keyPath(tenant, key) + "/explain?at=" + url.QueryEscape(at.UTC().Format(time.RFC3339Nano))
	var out Decision
	_, err := c.Do(ctx, "GET", path, nil, call, &out)
	return out, err
}

// LoggedDecision is a decision a gateway logged.
type LoggedDecision struct {
	LogSeq    uint64    `json:"log_seq"`
	Code      Outcome   `json:"code"`
	Also      []Outcome `json:"also"`
	KeyID     string    `json:"key_id,omitempty"`
	Tenant    string    `json:"tenant,omitempty"`
	User      string    `json:"user,omitempty"`
	API       string    `json:"api,omitempty"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Node      string    `json:"node"`
	RequestID string    `json:"request_id"`
	Now       time.Time `json:"now"`
	Seq       uint64    `json:"seq"`
}

// DecisionQuery selects a tenant's logged decisions (empty: any).
type DecisionQuery struct {
	Key, User, API, Code string
	// Since and Until are RFC 3339 or a duration before now ("24h").
	Since, Until string
	Cursor       string
	Limit        int
}

// DecisionPage is a page of decisions, oldest first.
type DecisionPage struct {
	Decisions  []LoggedDecision `json:"decisions"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

// Decisions searches the gateways' decision log for the tenant.
func (c *Client) Decisions(ctx context.Context, tenant string, q DecisionQuery, call *Call) (DecisionPage, error) {
	v := url.Values{}
	for name, val := range map[string]string{"key": q.Key, "user": q.User, "api": q.API, "code": q.Code, "since": q.Since,
		"until": q.Until, "cursor": q.Cursor} {
		if val != "" {
			v.Set(name, val)
		}
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := tenantPath(tenant) + "/decisions"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out DecisionPage
	_, err := c.Do(ctx, "GET", path, nil, call, &out)
	return out, err
}

// Gateway is a gateway process as its usage reports tell it.
type Gateway struct {
	Node        string    `json:"node"`
	Boot        string    `json:"boot"`
	Applied     uint64    `json:"applied"`
	Lag         uint64    `json:"lag"`
	Confirmed   time.Time `json:"confirmed,omitempty"`
	Reported    time.Time `json:"reported"`
	Stopped     bool      `json:"stopped"`
	Silent      bool      `json:"silent"`
	StalenessMS int64     `json:"staleness_ms"`
}

// Gateways lists the gateway processes that report usage, the latest of
// each node.
func (c *Client) Gateways(ctx context.Context, call *Call) ([]Gateway, error) {
	var out struct {
		Gateways []Gateway `json:"gateways"`
	}
	_, err := c.Do(ctx, "GET", "/v1/gateways", nil, call, &out)
	return out.Gateways, err
}

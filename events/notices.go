package events

import (
	"fmt"
	"time"
)

// The notice stream: what Keytrail tells tenants before, or at the moment,
// a key stops working — derived from the event log and a clock by control
// nodes, never written into the event log (docs/notifications.md).
const (
	NoticeStream = "KEYTRAIL_NOTICES"
	// NoticeSubjectPrefix is followed by the tenant, the notice type and
	// the key (or user) it is about: keytrail.ntc.<tenant>.<type>.<about>.
	NoticeSubjectPrefix = "keytrail.ntc."
	NoticeSubjects      = NoticeSubjectPrefix + ">"
)

// The notice types.
const (
	NoticeKeyExpiring     = "key.expiring"
	NoticeKeyExpired      = "key.expired"
	NoticeKeysBlocked     = "keys.blocked"
	NoticeDenialsStarted  = "key.denials-started"
	NoticeRotationStalled = "key.rotation-stalled"
	NoticeKeyUnused       = "key.unused"
	// NoticeWebhookDisabled: Keytrail disabled one of the tenant's webhook
	// endpoints (it answered 410, or failed for days).
	NoticeWebhookDisabled = "webhook.disabled"
)

// NoticeTypes lists every notice type (what an endpoint may ask for).
func NoticeTypes() []string {
	return []string{NoticeKeyExpiring, NoticeKeyExpired, NoticeKeysBlocked, NoticeDenialsStarted,
		NoticeRotationStalled, NoticeKeyUnused, NoticeWebhookDisabled}
}

// Notice is one thing a tenant is told. ID is the same on every control
// node that derives it (the notice's Msg-Id): a notice appears once.
type Notice struct {
	ID     string    `json:"id"`
	Type   string    `json:"type"`
	Tenant string    `json:"tenant"`
	User   string    `json:"user,omitempty"`
	KeyID  string    `json:"key_id,omitempty"`
	At     time.Time `json:"at"`
	// Seq is the event-log sequence the notice was derived at.
	Seq uint64 `json:"seq"`
	// ExpiresAt is when the key stops working (its expiry, or the end of
	// its rotation's grace); Before the threshold reached ("7d").
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Before    string     `json:"before,omitempty"`
	// Code is the outcome requests now get; CauseSeq and CauseType the
	// event that causes it (the key's, its user's or its tenant's).
	Code      string `json:"code,omitempty"`
	CauseSeq  uint64 `json:"cause_seq,omitempty"`
	CauseType string `json:"cause_type,omitempty"`
	// CauseActor and CauseReason are who caused it and why, as the event
	// says.
	CauseActor  string `json:"cause_actor,omitempty"`
	CauseReason string `json:"cause_reason,omitempty"`
	// Webhook is the endpoint a webhook.disabled notice is about.
	Webhook string `json:"webhook,omitempty"`
	// Keys is how many keys a keys.blocked notice is about; LastUsedAt
	// when the key (or the last of them) was last used.
	Keys       int        `json:"keys,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	// Text says it for people.
	Text string `json:"text"`
}

// NoticeSubject is where n goes.
func NoticeSubject(n *Notice) string {
	about := n.KeyID
	if about == "" {
		about = n.User
	}
	if about == "" {
		about = n.Webhook
	}
	return fmt.Sprintf("%s%s.%s.%s", NoticeSubjectPrefix, decisionToken(n.Tenant), n.Type, decisionToken(about))
}

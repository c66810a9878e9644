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
	NoticeKeyExpiring = "key.expiring"
	NoticeKeyExpired  = "key.expired"
)

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
	// Text says it for people.
	Text string `json:"text"`
}

// NoticeSubject is where n goes.
func NoticeSubject(n *Notice) string {
	about := n.KeyID
	if about == "" {
		about = n.User
	}
	return fmt.Sprintf("%s%s.%s.%s", NoticeSubjectPrefix, decisionToken(n.Tenant), n.Type, decisionToken(about))
}

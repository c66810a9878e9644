package events

import (
	"crypto/sha256"
	"fmt"
	"time"
)

// Aggregate identifies the thing an event changes. Events of one aggregate
// form a hash chain and share one NATS subject.
type Aggregate struct {
	Kind Kind   `json:"kind"`
	ID   string `json:"id"`
	// User is set for keys only: the user the key belongs to, for ever. It is
	// part of the key's subject so that a user and all their keys share the
	// subject prefix keytrail.evt.<tenant>.u.<user>.
	User string `json:"user,omitempty"`
}

// TenantAggregate names the tenant aggregate of tenant t.
func TenantAggregate(t string) Aggregate { return Aggregate{Kind: KindTenant, ID: t} }

// UserAggregate names the aggregate of user u.
func UserAggregate(u string) Aggregate { return Aggregate{Kind: KindUser, ID: u} }

// KeyAggregate names the aggregate of key k, which belongs to user u.
func KeyAggregate(u, k string) Aggregate { return Aggregate{Kind: KindKey, ID: k, User: u} }

// APIAggregate names the aggregate of API a.
func APIAggregate(a string) Aggregate { return Aggregate{Kind: KindAPI, ID: a} }

// WebhookAggregate names the aggregate of webhook endpoint w.
func WebhookAggregate(w string) Aggregate { return Aggregate{Kind: KindWebhook, ID: w} }

// TrustAggregate names the system aggregate of trusted signers.
func TrustAggregate() Aggregate { return Aggregate{Kind: KindTrust, ID: TrustID} }

// PolicyAggregate names the aggregate of access policy p.
func PolicyAggregate(p string) Aggregate { return Aggregate{Kind: KindPolicy, ID: p} }

// String returns "kind/id" (or "key/user/id").
func (a Aggregate) String() string {
	if a.User != "" {
		return fmt.Sprintf("%s/%s/%s", a.Kind, a.User, a.ID)
	}
	return fmt.Sprintf("%s/%s", a.Kind, a.ID)
}

// validate checks the aggregate against the tenant that owns it.
func (a Aggregate) validate(tenant string) error {
	switch a.Kind {
	case KindTenant:
		if a.ID != tenant || a.User != "" {
			return fmt.Errorf("tenant aggregate id must equal the tenant")
		}
	case KindUser:
		if !ValidUserID(a.ID) || a.User != "" {
			return fmt.Errorf("invalid user aggregate id")
		}
	case KindKey:
		if !ValidKeyID(a.ID) || !ValidUserID(a.User) {
			return fmt.Errorf("invalid key aggregate id or user")
		}
	case KindAPI:
		if !ValidAPIID(a.ID) || a.User != "" {
			return fmt.Errorf("invalid api aggregate id")
		}
	case KindWebhook:
		if !ValidWebhookID(a.ID) || a.User != "" {
			return fmt.Errorf("invalid webhook aggregate id")
		}
	case KindPolicy:
		if !ValidPolicyID(a.ID) || a.User != "" {
			return fmt.Errorf("invalid policy aggregate id")
		}
	case KindTrust:
		if a.ID != TrustID || a.User != "" || tenant != SystemTenant {
			return fmt.Errorf("the trust aggregate is %s/%s", SystemTenant, TrustID)
		}
	default:
		return fmt.Errorf("unknown aggregate kind %q", a.Kind)
	}
	return nil
}

// Event is the envelope every change travels in.
type Event struct {
	// ID is a ULID, unique per event.
	ID string
	// Type and Version name the payload's schema. Version is the version the
	// event was written with; Data is always the current version (upcast).
	Type    Type
	Version int
	// Tenant owns the aggregate.
	Tenant    string
	Aggregate Aggregate
	// Actor is who caused the change (an admin key id, "root", a service).
	Actor string
	// Reason is the free-text why, as given by the actor.
	Reason string
	// OccurredAt is when the command was decided, from the injected clock.
	OccurredAt time.Time
	// CommandID makes appends idempotent: a retried command carries the same id.
	CommandID string
	// CorrelationID ties together the events of one request or workflow.
	CorrelationID string
	// PrevHash is the Hash of the previous event of the same aggregate; zero
	// for the first.
	PrevHash Hash
	// Data is the typed payload.
	Data Payload
}

// Validate checks the envelope and its payload: everything Encode and Decode
// insist on.
func (e *Event) Validate() error {
	if !ValidEventID(e.ID) {
		return fmt.Errorf("id must be a ULID")
	}
	s, ok := schemaOf(e.Type)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownType, e.Type)
	}
	if !ValidTenantID(e.Tenant) {
		return fmt.Errorf("invalid tenant")
	}
	if e.Aggregate.Kind != s.kind {
		return fmt.Errorf("event type %s belongs to a %s aggregate, not %s", e.Type, s.kind, e.Aggregate.Kind)
	}
	if err := e.Aggregate.validate(e.Tenant); err != nil {
		return err
	}
	if !ValidActor(e.Actor) {
		return fmt.Errorf("actor is required, at most %d printable characters", MaxActorLen)
	}
	if !ValidReason(e.Reason) {
		return fmt.Errorf("reason must be at most %d printable characters", MaxReasonLen)
	}
	if e.OccurredAt.IsZero() {
		return fmt.Errorf("occurred_at is required")
	}
	if !ValidCommandID(e.CommandID) {
		return fmt.Errorf("invalid command id")
	}
	if e.CorrelationID != "" && !ValidCommandID(e.CorrelationID) {
		return fmt.Errorf("invalid correlation id")
	}
	if e.Data == nil {
		return fmt.Errorf("data is required")
	}
	if e.Data.EventType() != e.Type {
		return fmt.Errorf("payload is %s, envelope says %s", e.Data.EventType(), e.Type)
	}
	return e.Data.validate()
}

// HashOf returns the hash of an encoded event: what the next event of the
// same aggregate carries as PrevHash.
func HashOf(encoded []byte) Hash { return sha256.Sum256(encoded) }

// Recorded is an event as read back from the store.
type Recorded struct {
	// Seq is the stream sequence: global order, and the version of the
	// aggregate after this event.
	Seq uint64
	// Subject is the NATS subject it was stored under.
	Subject string
	// Hash is HashOf the stored bytes.
	Hash Hash
	Event
	// Seal is the event's signature (Signed false when it has none).
	Seal Seal
}

package events

import (
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Type names an event: "<aggregate>.<past-tense verb>". Types are stable wire
// data: never rename one, add a new type instead.
type Type string

// Every event type Keytrail records.
const (
	TenantCreated Type = "tenant.created"
	// TenantNoticesConfigured: the tenant's notice settings changed.
	TenantNoticesConfigured Type = "tenant.notices-configured"
	TenantSuspended         Type = "tenant.suspended"
	TenantResumed           Type = "tenant.resumed"
	// TenantKeysRevokedBefore was added after the first eighteen: types are
	// appended to the catalogue (Types), never inserted.
	TenantKeysRevokedBefore Type = "tenant.keys-revoked-before"

	UserCreated           Type = "user.created"
	UserDisabled          Type = "user.disabled"
	UserEnabled           Type = "user.enabled"
	UserDeleted           Type = "user.deleted"
	UserKeysRevokedBefore Type = "user.keys-revoked-before"
	KeyIssued             Type = "key.issued"
	KeyUpdated            Type = "key.updated"
	KeySuspended          Type = "key.suspended"
	KeyResumed            Type = "key.resumed"
	KeyRevoked            Type = "key.revoked"
	KeyRotated            Type = "key.rotated"
	APICreated            Type = "api.created"
	APIUpdated            Type = "api.updated"
	APIDeprecated         Type = "api.deprecated"
	APIRetired            Type = "api.retired"

	// Webhook endpoints (docs/notifications.md): where a tenant's notices
	// are delivered.
	WebhookCreated       Type = "webhook.created"
	WebhookUpdated       Type = "webhook.updated"
	WebhookSecretRotated Type = "webhook.secret-rotated"
	WebhookDisabled      Type = "webhook.disabled"
	WebhookEnabled       Type = "webhook.enabled"
	WebhookDeleted       Type = "webhook.deleted"

	// The signers whose signatures readers trust (docs/signing.md), on
	// the system aggregate; each such event is signed by the root key.
	SignerAdded   Type = "signer.added"
	SignerRemoved Type = "signer.removed"

	// Access policies (docs/policies.md): scopes and limits shared by the
	// keys that reference them, resolved when a key is verified.
	PolicyCreated Type = "policy.created"
	PolicyUpdated Type = "policy.updated"
	PolicyRetired Type = "policy.retired"
)

// Kind is the kind of aggregate an event belongs to.
type Kind string

// The aggregate kinds.
const (
	KindTenant Kind = "tenant"
	KindUser   Kind = "user"
	KindKey    Kind = "key"
	KindAPI    Kind = "api"
	// KindWebhook: a tenant's webhook endpoint.
	KindWebhook Kind = "webhook"
	// KindTrust: the system aggregate of trusted signers (tenant
	// SystemTenant, id TrustID).
	KindTrust Kind = "trust"
	// KindPolicy: a tenant's access policy.
	KindPolicy Kind = "policy"
)

// SystemTenant owns the system aggregates; no tenant may be created with
// its id.
const SystemTenant = "keytrail-system"

// TrustID is the id of the signer set's aggregate.
const TrustID = "signers"

// Payload is the typed body of an event. Each implementation is one event type
// at its current schema version.
type Payload interface {
	EventType() Type
	validate() error
}

// schema describes the current version of an event type.
type schema struct {
	kind    Kind
	version int
	new     func() Payload
}

// schemaOf is the catalogue: every type, its aggregate kind, its current
// version and a constructor for its payload. Adding a type means a case here,
// a golden file and a line in docs/events.md.
func schemaOf(t Type) (schema, bool) {
	switch t {
	case TenantCreated:
		return schema{KindTenant, 1, func() Payload { return new(TenantCreatedV1) }}, true
	case TenantSuspended:
		return schema{KindTenant, 1, func() Payload { return new(TenantSuspendedV1) }}, true
	case TenantResumed:
		return schema{KindTenant, 1, func() Payload { return new(TenantResumedV1) }}, true
	case TenantKeysRevokedBefore:
		return schema{KindTenant, 1, func() Payload { return new(TenantKeysRevokedBeforeV1) }}, true
	case TenantNoticesConfigured:
		return schema{KindTenant, 1, func() Payload { return new(TenantNoticesConfiguredV1) }}, true
	case UserCreated:
		return schema{KindUser, 1, func() Payload { return new(UserCreatedV1) }}, true
	case UserDisabled:
		return schema{KindUser, 1, func() Payload { return new(UserDisabledV1) }}, true
	case UserEnabled:
		return schema{KindUser, 1, func() Payload { return new(UserEnabledV1) }}, true
	case UserDeleted:
		return schema{KindUser, 1, func() Payload { return new(UserDeletedV1) }}, true
	case UserKeysRevokedBefore:
		return schema{KindUser, 1, func() Payload { return new(UserKeysRevokedBeforeV1) }}, true
	case KeyIssued:
		return schema{KindKey, 1, func() Payload { return new(KeyIssuedV1) }}, true
	case KeyUpdated:
		return schema{KindKey, 1, func() Payload { return new(KeyUpdatedV1) }}, true
	case KeySuspended:
		return schema{KindKey, 1, func() Payload { return new(KeySuspendedV1) }}, true
	case KeyResumed:
		return schema{KindKey, 1, func() Payload { return new(KeyResumedV1) }}, true
	case KeyRevoked:
		return schema{KindKey, 1, func() Payload { return new(KeyRevokedV1) }}, true
	case KeyRotated:
		return schema{KindKey, 1, func() Payload { return new(KeyRotatedV1) }}, true
	case APICreated:
		return schema{KindAPI, 1, func() Payload { return new(APICreatedV1) }}, true
	case APIUpdated:
		return schema{KindAPI, 1, func() Payload { return new(APIUpdatedV1) }}, true
	case APIDeprecated:
		return schema{KindAPI, 1, func() Payload { return new(APIDeprecatedV1) }}, true
	case APIRetired:
		return schema{KindAPI, 1, func() Payload { return new(APIRetiredV1) }}, true
	case WebhookCreated:
		return schema{KindWebhook, 1, func() Payload { return new(WebhookCreatedV1) }}, true
	case WebhookUpdated:
		return schema{KindWebhook, 1, func() Payload { return new(WebhookUpdatedV1) }}, true
	case WebhookSecretRotated:
		return schema{KindWebhook, 1, func() Payload { return new(WebhookSecretRotatedV1) }}, true
	case WebhookDisabled:
		return schema{KindWebhook, 1, func() Payload { return new(WebhookDisabledV1) }}, true
	case WebhookEnabled:
		return schema{KindWebhook, 1, func() Payload { return new(WebhookEnabledV1) }}, true
	case WebhookDeleted:
		return schema{KindWebhook, 1, func() Payload { return new(WebhookDeletedV1) }}, true
	case SignerAdded:
		return schema{KindTrust, 1, func() Payload { return new(SignerAddedV1) }}, true
	case SignerRemoved:
		return schema{KindTrust, 1, func() Payload { return new(SignerRemovedV1) }}, true
	case PolicyCreated:
		return schema{KindPolicy, 1, func() Payload { return new(PolicyCreatedV1) }}, true
	case PolicyUpdated:
		return schema{KindPolicy, 1, func() Payload { return new(PolicyUpdatedV1) }}, true
	case PolicyRetired:
		return schema{KindPolicy, 1, func() Payload { return new(PolicyRetiredV1) }}, true
	}
	return schema{}, false
}

// Types lists every event type, in catalogue order.
func Types() []Type {
	return []Type{
		TenantCreated, TenantSuspended, TenantResumed,
		UserCreated, UserDisabled, UserEnabled, UserDeleted, UserKeysRevokedBefore,
		KeyIssued, KeyUpdated, KeySuspended, KeyResumed, KeyRevoked, KeyRotated,
		APICreated, APIUpdated, APIDeprecated, APIRetired,
		TenantKeysRevokedBefore, // appended: read models index types by their place here
		TenantNoticesConfigured,
		WebhookCreated, WebhookUpdated, WebhookSecretRotated, WebhookDisabled, WebhookEnabled, WebhookDeleted,
		SignerAdded, SignerRemoved,
		PolicyCreated, PolicyUpdated, PolicyRetired,
	}
}

// KindOf returns the aggregate kind of an event type and its current schema
// version; ok is false for an unknown type.
func KindOf(t Type) (kind Kind, version int, ok bool) {
	s, ok := schemaOf(t)
	return s.kind, s.version, ok
}

// Limits on payload contents. They bound what one event can hold so that a
// decoder of the stream never allocates without bound.
const (
	MaxNameLen       = 200
	MaxScopes        = 64
	MaxScopeLen      = 128
	MaxMetadata      = 32
	MaxMetadataKey   = 64
	MaxMetadataValue = 512
	MaxUpstreams     = 16
	MaxURLLen        = 2048
	MaxPathPrefixLen = 256
	MaxHintLen       = 40
	MaxWebhookTypes  = 16
	// MaxKeyPolicies bounds the policies one key references; MaxPolicyAPIs
	// the APIs one policy allows.
	MaxKeyPolicies = 8
	MaxPolicyAPIs  = 32
)

// SecretHash is the SHA-256 of a key's secret: the only form in which a secret
// is ever stored. It encodes as 64 lower-case hex characters.
type SecretHash [32]byte

// MarshalText implements encoding.TextMarshaler.
func (h SecretHash) MarshalText() ([]byte, error) { return hexText(h[:]), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *SecretHash) UnmarshalText(b []byte) error { return unhexText(h[:], b, "secret hash") }

// String prints the hash; it is not secret, but it is not the secret either.
func (h SecretHash) String() string { return string(hexText(h[:])) }

// Hash is the SHA-256 of an event's encoded bytes; events carry the hash of
// the previous event of their aggregate to form a chain.
type Hash [32]byte

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return hexText(h[:]), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hash) UnmarshalText(b []byte) error { return unhexText(h[:], b, "hash") }

// String returns the hash in hex.
func (h Hash) String() string { return string(hexText(h[:])) }

// IsZero reports whether h is the zero hash (no previous event).
func (h Hash) IsZero() bool { return h == Hash{} }

func hexText(b []byte) []byte {
	out := make([]byte, hex.EncodedLen(len(b)))
	hex.Encode(out, b)
	return out
}

// unhex maps a lower-case hex digit to its value and anything else to 0xff.
var unhex = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c - 'a' + 10)
	}
	return t
}()

func unhexText(dst, src []byte, what string) error {
	if len(src) != hex.EncodedLen(len(dst)) {
		return fmt.Errorf("%s: want %d hex characters", what, hex.EncodedLen(len(dst)))
	}
	for i := range dst {
		hi, lo := unhex[src[2*i]], unhex[src[2*i+1]]
		if hi > 15 || lo > 15 {
			return fmt.Errorf("%s: not lower-case hex", what)
		}
		dst[i] = hi<<4 | lo
	}
	return nil
}

// RateLimit is a token bucket: a sustained rate and a burst.
type RateLimit struct {
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
}

// MaxRate bounds PerSecond and Burst.
const MaxRate = 1_000_000

func (r *RateLimit) validate() error {
	if r == nil {
		return nil
	}
	// PerSecond is a float so that "1 request a minute" can be said; NaN and
	// infinities are refused by the JSON decoder and by this range check.
	if !(r.PerSecond > 0 && r.PerSecond <= MaxRate) {
		return fmt.Errorf("rate_limit.per_second must be in (0, %d]", MaxRate)
	}
	if r.Burst < 1 || r.Burst > MaxRate {
		return fmt.Errorf("rate_limit.burst must be in [1, %d]", MaxRate)
	}
	return nil
}

// ValidScope reports whether s is a scope: 1..128 of [A-Za-z0-9:._/-], starting
// with a letter or digit (e.g. "orders:read").
func ValidScope(s string) bool {
	if len(s) == 0 || len(s) > MaxScopeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || (c != ':' && c != '.' && c != '_' && c != '/' && c != '-')) {
			return false
		}
	}
	return true
}

func validateScopes(scopes []string) error {
	if len(scopes) > MaxScopes {
		return fmt.Errorf("at most %d scopes", MaxScopes)
	}
	for i, s := range scopes {
		if !ValidScope(s) {
			return fmt.Errorf("invalid scope %q", s)
		}
		// Quadratic, but over at most MaxScopes short strings and without
		// the allocation of a set: every decoded key event runs this.
		for _, earlier := range scopes[:i] {
			if earlier == s {
				return fmt.Errorf("duplicate scope %q", s)
			}
		}
	}
	return nil
}

func validateMetadata(md map[string]string) error {
	if len(md) > MaxMetadata {
		return fmt.Errorf("at most %d metadata entries", MaxMetadata)
	}
	for k, v := range md {
		if k == "" || !validText(k, MaxMetadataKey) {
			return fmt.Errorf("invalid metadata key %q", k)
		}
		if !validText(v, MaxMetadataValue) {
			return fmt.Errorf("invalid metadata value for %q", k)
		}
	}
	return nil
}

func validateName(name string, required bool) error {
	if required && name == "" {
		return fmt.Errorf("name is required")
	}
	if !validText(name, MaxNameLen) {
		return fmt.Errorf("name must be at most %d printable characters", MaxNameLen)
	}
	return nil
}

// ValidPathPrefix reports whether p can be an API's path prefix: it starts
// with '/', is not under the gateway's reserved "/_keytrail/", and holds only
// unreserved URL path characters.
func ValidPathPrefix(p string) bool {
	if len(p) == 0 || len(p) > MaxPathPrefixLen || p[0] != '/' {
		return false
	}
	if p == "/_keytrail" || len(p) >= 10 && p[:10] == "/_keytrail" {
		return false
	}
	for i := 1; i < len(p); i++ {
		c := p[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '/' || c == '-' || c == '_' || c == '.' || c == '~'
		if !ok || (c == '/' && p[i-1] == '/') {
			return false
		}
	}
	return true
}

// ValidUpstream reports whether u is an absolute http(s) URL with a host and
// no user info, query or fragment.
func ValidUpstream(u string) bool {
	if len(u) == 0 || len(u) > MaxURLLen {
		return false
	}
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	return (p.Scheme == "http" || p.Scheme == "https") && p.Host != "" && p.User == nil &&
		p.RawQuery == "" && p.Fragment == "" && !p.ForceQuery
}

func validateUpstreams(us []string) error {
	if len(us) == 0 || len(us) > MaxUpstreams {
		return fmt.Errorf("between 1 and %d upstreams", MaxUpstreams)
	}
	for _, u := range us {
		if !ValidUpstream(u) {
			return fmt.Errorf("invalid upstream %q", u)
		}
	}
	return nil
}

func requireTime(name string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("%s is required", name)
	}
	return nil
}

// Tenant events.

// TenantCreatedV1: a tenant came into being.
type TenantCreatedV1 struct {
	Name string `json:"name"`
}

// TenantSuspendedV1: every key of the tenant stops verifying (TENANT_SUSPENDED)
// until it is resumed. The reason is the envelope's.
type TenantSuspendedV1 struct{}

// TenantResumedV1: a suspended tenant is active again.
type TenantResumedV1 struct{}

// TenantNoticesConfiguredV1: how long before a key stops working its
// tenant is told (ExpiryBefore, durations such as "30d"; none: the
// defaults), and after how long without a request a key is told unused
// (UnusedAfter; empty: the default).
type TenantNoticesConfiguredV1 struct {
	ExpiryBefore []string `json:"expiry_before"`
	UnusedAfter  string   `json:"unused_after,omitempty"`
}

// MaxExpiryThresholds bounds how many expiry notices a key gets.
const MaxExpiryThresholds = 10

// Durations are the settings as durations.
func (p TenantNoticesConfiguredV1) Durations() (expiry []time.Duration, unused time.Duration) {
	for _, s := range p.ExpiryBefore {
		d, _ := ParseDuration(s)
		expiry = append(expiry, d)
	}
	unused, _ = ParseDuration(p.UnusedAfter)
	return expiry, unused
}

// TenantKeysRevokedBeforeV1: every key of the tenant issued before Before is
// revoked (REVOKED), whatever its own state: the incident response for a
// leak of unknown extent.
type TenantKeysRevokedBeforeV1 struct {
	Before time.Time `json:"before"`
}

// User events.

// UserCreatedV1: a user of a tenant came into being.
type UserCreatedV1 struct {
	Name string `json:"name"`
}

// UserDisabledV1: the user's keys stop verifying (USER_DISABLED) until enabled.
type UserDisabledV1 struct{}

// UserEnabledV1: a disabled user is active again.
type UserEnabledV1 struct{}

// UserDeletedV1: the user is gone for good (USER_DELETED); final.
type UserDeletedV1 struct{}

// UserKeysRevokedBeforeV1: every key of the user issued before Before is
// revoked (REVOKED), whatever its own state.
type UserKeysRevokedBeforeV1 struct {
	Before time.Time `json:"before"`
}

// Key events.

// KeyIssuedV1: a key was issued. Only the SHA-256 of its secret is recorded;
// Hint is the secret's prefix and last four characters, all of them public
// (the last four belong to the checksum), so a person can tell keys apart.
type KeyIssuedV1 struct {
	Name        string            `json:"name"`
	SecretHash  SecretHash        `json:"secret_sha256"`
	Hint        string            `json:"hint"`
	Scopes      []string          `json:"scopes"`
	NotBefore   *time.Time        `json:"not_before,omitempty"`
	ExpiresAt   *time.Time        `json:"expires_at,omitempty"`
	RateLimit   *RateLimit        `json:"rate_limit,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	RotatedFrom string            `json:"rotated_from,omitempty"`
	// Policies are the ids of the tenant's policies the key takes its
	// scopes and limits from besides its own (added to v1: absent in
	// events written before policies existed, which decode as none).
	Policies []string `json:"policies,omitempty"`
}

// KeyUpdatedV1: the key's mutable attributes after the update, all of them,
// so that a fold never has to merge partial changes or guess what null meant.
type KeyUpdatedV1 struct {
	Name      string            `json:"name"`
	Scopes    []string          `json:"scopes"`
	ExpiresAt *time.Time        `json:"expires_at,omitempty"`
	RateLimit *RateLimit        `json:"rate_limit,omitempty"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Policies  []string          `json:"policies,omitempty"`
}

// KeySuspendedV1: the key stops verifying (SUSPENDED) until resumed.
type KeySuspendedV1 struct{}

// KeyResumedV1: a suspended key verifies again.
type KeyResumedV1 struct{}

// KeyRevokedV1: the key is revoked for good (REVOKED); final.
type KeyRevokedV1 struct{}

// KeyRotatedV1: the key was replaced by Successor; it keeps verifying until
// GraceUntil, then it is EXPIRED. GraceUntil never extends its expiry.
type KeyRotatedV1 struct {
	Successor  string    `json:"successor"`
	GraceUntil time.Time `json:"grace_until"`
}

// API events.

// APICreatedV1: a tenant published an API under PathPrefix.
type APICreatedV1 struct {
	Name       string     `json:"name,omitempty"`
	PathPrefix string     `json:"path_prefix"`
	Upstreams  []string   `json:"upstreams"`
	Scopes     []string   `json:"scopes"`
	RateLimit  *RateLimit `json:"rate_limit,omitempty"`
}

// APIUpdatedV1: the API's attributes after the update, all of them.
type APIUpdatedV1 struct {
	Name       string     `json:"name,omitempty"`
	PathPrefix string     `json:"path_prefix"`
	Upstreams  []string   `json:"upstreams"`
	Scopes     []string   `json:"scopes"`
	RateLimit  *RateLimit `json:"rate_limit,omitempty"`
}

// APIDeprecatedV1: the API is deprecated and will be retired at Sunset.
type APIDeprecatedV1 struct {
	Sunset time.Time `json:"sunset"`
}

// APIRetiredV1: the API answers 410 from now on; final.
type APIRetiredV1 struct{}

// Signer events.

// SignerAddedV1: what this key signs counts from the next sequence on.
// Role is what it signs: events and checkpoints of the event log (a
// control node's, the default, written as no role), or checkpoints of the
// decisions a gateway wrote (SignerRoleDecisions) — never events.
type SignerAddedV1 struct {
	ID        string `json:"id"`
	PublicKey []byte `json:"public_key"`
	Name      string `json:"name,omitempty"`
	Role      string `json:"role,omitempty"`
}

// The roles of a signer.
const (
	SignerRoleEvents    = "events"
	SignerRoleDecisions = "decisions"
)

// SignerRole is the signer's role, SignerRoleEvents when none is written.
func (p SignerAddedV1) SignerRole() string {
	if p.Role == "" {
		return SignerRoleEvents
	}
	return p.Role
}

// SignerRemovedV1: events signed by this key after this one do not count
// (those before stay valid).
type SignerRemovedV1 struct {
	ID string `json:"id"`
}

func (SignerAddedV1) EventType() Type   { return SignerAdded }
func (SignerRemovedV1) EventType() Type { return SignerRemoved }

func (p SignerAddedV1) validate() error {
	if len(p.PublicKey) != 32 || SignerID(p.PublicKey) != p.ID {
		return fmt.Errorf("a signer is a 32-byte Ed25519 public_key and its id")
	}
	if p.Role != "" && p.Role != SignerRoleDecisions {
		return fmt.Errorf("role must be absent (events) or %q", SignerRoleDecisions)
	}
	return validateName(p.Name, false)
}

func (p SignerRemovedV1) validate() error {
	if !ValidSignerID(p.ID) {
		return fmt.Errorf("id must be a signer id (16 hex)")
	}
	return nil
}

// Webhook events.

// WebhookCreatedV1: a tenant added an endpoint its notices are delivered
// to. Types are the notice types it wants (none: all). SecretID names the
// signing secret, which is kept encrypted outside the event log (never in
// an event).
type WebhookCreatedV1 struct {
	URL      string   `json:"url"`
	Types    []string `json:"types,omitempty"`
	SecretID string   `json:"secret_id"`
}

// WebhookUpdatedV1: the endpoint's attributes after the update, all of them.
type WebhookUpdatedV1 struct {
	URL   string   `json:"url"`
	Types []string `json:"types,omitempty"`
}

// WebhookSecretRotatedV1: deliveries are signed with the secret SecretID
// from now on, and also with the one it replaces until PreviousUntil.
type WebhookSecretRotatedV1 struct {
	SecretID      string    `json:"secret_id"`
	PreviousUntil time.Time `json:"previous_until"`
}

// WebhookDisabledV1: nothing is delivered to the endpoint until enabled
// (by an admin, or by Keytrail after it failed for days or answered 410).
type WebhookDisabledV1 struct{}

// WebhookEnabledV1: a disabled endpoint gets deliveries again.
type WebhookEnabledV1 struct{}

// WebhookDeletedV1: the endpoint is gone for good; final.
type WebhookDeletedV1 struct{}

func (WebhookCreatedV1) EventType() Type       { return WebhookCreated }
func (WebhookUpdatedV1) EventType() Type       { return WebhookUpdated }
func (WebhookSecretRotatedV1) EventType() Type { return WebhookSecretRotated }
func (WebhookDisabledV1) EventType() Type      { return WebhookDisabled }
func (WebhookEnabledV1) EventType() Type       { return WebhookEnabled }
func (WebhookDeletedV1) EventType() Type       { return WebhookDeleted }

func (p WebhookCreatedV1) validate() error {
	if !ValidEventID(p.SecretID) {
		return fmt.Errorf("secret_id must be a ULID")
	}
	return validateWebhook(p.URL, p.Types)
}
func (p WebhookUpdatedV1) validate() error { return validateWebhook(p.URL, p.Types) }
func (p WebhookSecretRotatedV1) validate() error {
	if !ValidEventID(p.SecretID) {
		return fmt.Errorf("secret_id must be a ULID")
	}
	return requireTime("previous_until", p.PreviousUntil)
}
func (WebhookDisabledV1) validate() error { return nil }
func (WebhookEnabledV1) validate() error  { return nil }
func (WebhookDeletedV1) validate() error  { return nil }

// validateWebhook checks an endpoint's URL and the notice types it wants.
func validateWebhook(raw string, types []string) error {
	if err := ValidWebhookURL(raw); err != nil {
		return err
	}
	if len(types) > MaxWebhookTypes {
		return fmt.Errorf("types: at most %d", MaxWebhookTypes)
	}
	for i, t := range types {
		if !slices.Contains(NoticeTypes(), t) || slices.Contains(types[:i], t) {
			return fmt.Errorf("types: %q is not a notice type given once (one of %s)", t, strings.Join(NoticeTypes(), ", "))
		}
	}
	return nil
}

// ValidWebhookURL says what is wrong with an endpoint URL: it must be an
// absolute http or https URL with a host, without credentials or a
// fragment, at most MaxURLLen bytes of printable ASCII.
func ValidWebhookURL(raw string) error {
	if raw == "" || len(raw) > MaxURLLen || !allIn(raw, clsPrint) || strings.ContainsRune(raw, ' ') {
		return fmt.Errorf("url: an absolute http(s) URL of at most %d printable characters is required", MaxURLLen)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("url: %q is not an absolute http or https URL with a host", raw)
	case u.User != nil:
		return fmt.Errorf("url: credentials in a webhook URL are refused (the URL is stored in the event log)")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("url: a webhook URL has no fragment")
	}
	return nil
}

func (TenantCreatedV1) EventType() Type   { return TenantCreated }
func (TenantSuspendedV1) EventType() Type { return TenantSuspended }
func (TenantResumedV1) EventType() Type   { return TenantResumed }
func (TenantNoticesConfiguredV1) EventType() Type {
	return TenantNoticesConfigured
}
func (TenantKeysRevokedBeforeV1) EventType() Type {
	return TenantKeysRevokedBefore
}
func (UserCreatedV1) EventType() Type           { return UserCreated }
func (UserDisabledV1) EventType() Type          { return UserDisabled }
func (UserEnabledV1) EventType() Type           { return UserEnabled }
func (UserDeletedV1) EventType() Type           { return UserDeleted }
func (UserKeysRevokedBeforeV1) EventType() Type { return UserKeysRevokedBefore }
func (KeyIssuedV1) EventType() Type             { return KeyIssued }
func (KeyUpdatedV1) EventType() Type            { return KeyUpdated }
func (KeySuspendedV1) EventType() Type          { return KeySuspended }
func (KeyResumedV1) EventType() Type            { return KeyResumed }
func (KeyRevokedV1) EventType() Type            { return KeyRevoked }
func (KeyRotatedV1) EventType() Type            { return KeyRotated }
func (APICreatedV1) EventType() Type            { return APICreated }
func (APIUpdatedV1) EventType() Type            { return APIUpdated }
func (APIDeprecatedV1) EventType() Type         { return APIDeprecated }
func (APIRetiredV1) EventType() Type            { return APIRetired }

func (p TenantCreatedV1) validate() error { return validateName(p.Name, true) }
func (TenantSuspendedV1) validate() error { return nil }
func (TenantResumedV1) validate() error   { return nil }

// Validate says which setting is out of bounds, nil when none.
func (p TenantNoticesConfiguredV1) Validate() error { return p.validate() }

func (p TenantNoticesConfiguredV1) validate() error {
	if len(p.ExpiryBefore) > MaxExpiryThresholds {
		return fmt.Errorf("expiry_before: at most %d thresholds", MaxExpiryThresholds)
	}
	seen := map[time.Duration]bool{}
	for _, s := range p.ExpiryBefore {
		d, err := ParseDuration(s)
		if err != nil || d < time.Hour || d > 365*24*time.Hour || seen[d] {
			return fmt.Errorf("expiry_before: %q is not a duration from 1h to 365d given once", s)
		}
		seen[d] = true
	}
	if p.UnusedAfter != "" {
		if d, err := ParseDuration(p.UnusedAfter); err != nil || d < 24*time.Hour || d > 3*365*24*time.Hour {
			return fmt.Errorf("unused_after: %q is not a duration from 1d to 3 years", p.UnusedAfter)
		}
	}
	return nil
}
func (p TenantKeysRevokedBeforeV1) validate() error {
	return requireTime("before", p.Before)
}
func (p UserCreatedV1) validate() error { return validateName(p.Name, false) }
func (UserDisabledV1) validate() error  { return nil }
func (UserEnabledV1) validate() error   { return nil }
func (UserDeletedV1) validate() error   { return nil }
func (p UserKeysRevokedBeforeV1) validate() error {
	return requireTime("before", p.Before)
}

func (p KeyIssuedV1) validate() error {
	if err := validateName(p.Name, false); err != nil {
		return err
	}
	if p.SecretHash == (SecretHash{}) {
		return fmt.Errorf("secret_sha256 is required")
	}
	if p.Hint == "" || !validText(p.Hint, MaxHintLen) {
		return fmt.Errorf("hint is required, at most %d characters", MaxHintLen)
	}
	if p.RotatedFrom != "" && !ValidKeyID(p.RotatedFrom) {
		return fmt.Errorf("invalid rotated_from")
	}
	if p.NotBefore != nil && p.ExpiresAt != nil && !p.ExpiresAt.After(*p.NotBefore) {
		return fmt.Errorf("expires_at must be after not_before")
	}
	return validateKeyAttrs(p.Scopes, p.RateLimit, p.Metadata, p.Policies)
}

func (p KeyUpdatedV1) validate() error {
	if err := validateName(p.Name, false); err != nil {
		return err
	}
	return validateKeyAttrs(p.Scopes, p.RateLimit, p.Metadata, p.Policies)
}

func validateKeyAttrs(scopes []string, rl *RateLimit, md map[string]string, policies []string) error {
	if err := validateScopes(scopes); err != nil {
		return err
	}
	if err := validateIDs("policies", policies, MaxKeyPolicies, ValidPolicyID); err != nil {
		return err
	}
	if err := rl.validate(); err != nil {
		return err
	}
	return validateMetadata(md)
}

func (KeySuspendedV1) validate() error { return nil }
func (KeyResumedV1) validate() error   { return nil }
func (KeyRevokedV1) validate() error   { return nil }
func (p KeyRotatedV1) validate() error {
	if !ValidKeyID(p.Successor) {
		return fmt.Errorf("invalid successor")
	}
	return requireTime("grace_until", p.GraceUntil)
}

func (p APICreatedV1) validate() error {
	return validateAPIAttrs(p.Name, p.PathPrefix, p.Upstreams, p.Scopes, p.RateLimit)
}

func (p APIUpdatedV1) validate() error {
	return validateAPIAttrs(p.Name, p.PathPrefix, p.Upstreams, p.Scopes, p.RateLimit)
}

func validateAPIAttrs(name, prefix string, upstreams, scopes []string, rl *RateLimit) error {
	if err := validateName(name, false); err != nil {
		return err
	}
	if !ValidPathPrefix(prefix) {
		return fmt.Errorf("invalid path_prefix")
	}
	if err := validateUpstreams(upstreams); err != nil {
		return err
	}
	if err := validateScopes(scopes); err != nil {
		return err
	}
	return rl.validate()
}

func (p APIDeprecatedV1) validate() error { return requireTime("sunset", p.Sunset) }
func (APIRetiredV1) validate() error      { return nil }

// Equal compares two secret hashes in constant time: the differences of the
// four words are OR-ed together, with no early exit, then tested once.
func (h SecretHash) Equal(o SecretHash) bool {
	le := binary.LittleEndian
	// In Go ^ and | bind alike, left to right: the parentheses matter.
	x := (le.Uint64(h[0:]) ^ le.Uint64(o[0:])) | (le.Uint64(h[8:]) ^ le.Uint64(o[8:])) |
		(le.Uint64(h[16:]) ^ le.Uint64(o[16:])) | (le.Uint64(h[24:]) ^ le.Uint64(o[24:]))
	return subtle.ConstantTimeEq(int32(uint32(x>>32)|uint32(x)), 0) == 1
}

// ValidatePayload checks a payload against the same rules Encode and Decode
// apply, so that commands can refuse bad input with the codec's own words.
func ValidatePayload(p Payload) error { return p.validate() }

// validateIDs checks a list of ids: at most most, each valid and given once.
func validateIDs(field string, ids []string, most int, valid func(string) bool) error {
	if len(ids) > most {
		return fmt.Errorf("%s: at most %d", field, most)
	}
	for i, id := range ids {
		if !valid(id) {
			return fmt.Errorf("%s: %q is not an id (^[a-z0-9][a-z0-9-]{0,62}$)", field, id)
		}
		if slices.Contains(ids[:i], id) {
			return fmt.Errorf("%s: %q is given twice", field, id)
		}
	}
	return nil
}

// KeyPolicies are the policies a key event sets (nil for one that sets
// none, or is not a key.issued or key.updated).
func KeyPolicies(p Payload) []string {
	switch v := p.(type) {
	case KeyIssuedV1:
		return v.Policies
	case KeyUpdatedV1:
		return v.Policies
	}
	return nil
}

// Policy events.

// PolicyCreatedV1: a tenant defined an access policy. Scopes are granted
// to every key that references it; RateLimit, MaxTTL (a duration such as
// "90d": how long after its issue a key may verify) and APIs (the only
// APIs its keys may be used on; none: any) limit them. docs/policies.md
// says how a key's own values and its policies' combine.
type PolicyCreatedV1 struct {
	Name      string     `json:"name,omitempty"`
	Scopes    []string   `json:"scopes"`
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	MaxTTL    string     `json:"max_ttl,omitempty"`
	APIs      []string   `json:"apis,omitempty"`
}

// PolicyUpdatedV1: the policy's attributes after the update, all of them.
type PolicyUpdatedV1 struct {
	Name      string     `json:"name,omitempty"`
	Scopes    []string   `json:"scopes"`
	RateLimit *RateLimit `json:"rate_limit,omitempty"`
	MaxTTL    string     `json:"max_ttl,omitempty"`
	APIs      []string   `json:"apis,omitempty"`
}

// PolicyRetiredV1: the policy grants nothing and limits nothing from now
// on; final. Keys that reference it keep their own scopes.
type PolicyRetiredV1 struct{}

func (PolicyCreatedV1) EventType() Type { return PolicyCreated }
func (PolicyUpdatedV1) EventType() Type { return PolicyUpdated }
func (PolicyRetiredV1) EventType() Type { return PolicyRetired }

// Bounds of a policy's max_ttl.
const (
	MinPolicyTTL = time.Minute
	MaxPolicyTTL = 10 * 365 * 24 * time.Hour
)

// FormatTTL writes a lifetime as a policy's max_ttl is given: whole days
// as "90d", whole hours as "12h", whole minutes as "90m", anything else as
// a Go duration ("" for 0).
func FormatTTL(d time.Duration) string {
	switch {
	case d == 0:
		return ""
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// PolicyTTL is a max_ttl as a duration (0: none). It must be valid.
func PolicyTTL(s string) time.Duration {
	d, _ := ParseDuration(s)
	return d
}

func validatePolicy(name string, scopes []string, rl *RateLimit, maxTTL string, apis []string) error {
	if err := validateName(name, false); err != nil {
		return err
	}
	if err := validateScopes(scopes); err != nil {
		return err
	}
	if err := rl.validate(); err != nil {
		return err
	}
	if maxTTL != "" {
		d, err := ParseDuration(maxTTL)
		if err != nil || d < MinPolicyTTL || d > MaxPolicyTTL {
			return fmt.Errorf("max_ttl: %q is not a duration from 1m to 3650d", maxTTL)
		}
	}
	return validateIDs("apis", apis, MaxPolicyAPIs, ValidAPIID)
}

func (p PolicyCreatedV1) validate() error {
	return validatePolicy(p.Name, p.Scopes, p.RateLimit, p.MaxTTL, p.APIs)
}
func (p PolicyUpdatedV1) validate() error {
	return validatePolicy(p.Name, p.Scopes, p.RateLimit, p.MaxTTL, p.APIs)
}
func (PolicyRetiredV1) validate() error { return nil }

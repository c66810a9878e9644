package events

import (
	"crypto/ed25519"
	"time"
)

// Fixed values so that golden files are stable.
var (
	t0      = time.Date(2026, 11, 29, 14, 3, 0, 123456789, time.UTC)
	keyID   = "key_01JDQ8Z6W4M2N9V3X5C7B1A0ZY"
	keyID2  = "key_01JDQ8ZB0000000000000000AB"
	someSHA = SecretHash{0xde, 0xad, 0xbe, 0xef, 31: 0x01}
)

func ptr[T any](v T) *T { return &v }

// samplePub is a fixed Ed25519 public key.
var samplePub = ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)

// sample returns a fully populated event of type t: every optional field set,
// so that the golden file shows the whole wire shape.
func sample(t Type) Event {
	e := Event{
		ID: "01JDQ8Z6W4M2N9V3X5C7B1A0ZZ", Type: t, Version: 1, Tenant: "acme",
		Actor: "key_01JDQ8Z6W4M2N9V3X5C7B1A0ZA", Reason: "quarterly review",
		OccurredAt: t0, CommandID: "cmd-7f3a", CorrelationID: "req-01",
		PrevHash: HashOf([]byte("previous")),
	}
	switch kind, _, _ := KindOf(t); kind {
	case KindTenant:
		e.Aggregate = TenantAggregate("acme")
	case KindUser:
		e.Aggregate = UserAggregate("alice_01")
	case KindKey:
		e.Aggregate = KeyAggregate("alice_01", keyID)
	case KindAPI:
		e.Aggregate = APIAggregate("orders")
	case KindWebhook:
		e.Aggregate = WebhookAggregate("whk_01JDQ8Z6W4M2N9V3X5C7B1A0ZW")
	case KindPolicy:
		e.Aggregate = PolicyAggregate("billing-ro")
	case KindTrust:
		e.Tenant, e.Aggregate = SystemTenant, TrustAggregate()
	}
	rl := &RateLimit{PerSecond: 12.5, Burst: 20}
	md := map[string]string{"team": "billing", "env": "prod"}
	switch t {
	case TenantCreated:
		e.Data = TenantCreatedV1{Name: "Acme Corp"}
	case TenantSuspended:
		e.Data = TenantSuspendedV1{}
	case TenantResumed:
		e.Data = TenantResumedV1{}
	case UserCreated:
		e.Data = UserCreatedV1{Name: "Alice"}
	case UserDisabled:
		e.Data = UserDisabledV1{}
	case UserEnabled:
		e.Data = UserEnabledV1{}
	case UserDeleted:
		e.Data = UserDeletedV1{}
	case UserKeysRevokedBefore:
		e.Data = UserKeysRevokedBeforeV1{Before: t0.Add(-time.Hour)}
	case TenantKeysRevokedBefore:
		e.Data = TenantKeysRevokedBeforeV1{Before: t0.Add(-2 * time.Hour)}
	case TenantNoticesConfigured:
		e.Data = TenantNoticesConfiguredV1{ExpiryBefore: []string{"14d", "2d"}, UnusedAfter: "60d"}
	case KeyIssued:
		e.Data = KeyIssuedV1{Name: "ci", SecretHash: someSHA, Hint: "kt_…x9Qz", Scopes: []string{"orders:read", "orders:write"},
			NotBefore: ptr(t0), ExpiresAt: ptr(t0.Add(90 * 24 * time.Hour)), RateLimit: rl, Metadata: md, RotatedFrom: keyID2}
	case KeyUpdated:
		e.Data = KeyUpdatedV1{Name: "ci-2", Scopes: []string{"orders:read"}, ExpiresAt: ptr(t0.Add(time.Hour)), RateLimit: rl, Metadata: md}
	case KeySuspended:
		e.Data = KeySuspendedV1{}
	case KeyResumed:
		e.Data = KeyResumedV1{}
	case KeyRevoked:
		e.Data = KeyRevokedV1{}
	case KeyRotated:
		e.Data = KeyRotatedV1{Successor: keyID2, GraceUntil: t0.Add(24 * time.Hour)}
	case APICreated:
		e.Data = APICreatedV1{Name: "Orders", PathPrefix: "/orders", Upstreams: []string{"http://127.0.0.1:9001", "http://127.0.0.1:9002"},
			Scopes: []string{"orders:read"}, RateLimit: rl}
	case APIUpdated:
		e.Data = APIUpdatedV1{Name: "Orders v2", PathPrefix: "/orders", Upstreams: []string{"http://127.0.0.1:9003"}, Scopes: []string{"orders:read"}}
	case APIDeprecated:
		e.Data = APIDeprecatedV1{Sunset: t0.Add(30 * 24 * time.Hour)}
	case APIRetired:
		e.Data = APIRetiredV1{}
	case WebhookCreated:
		e.Data = WebhookCreatedV1{URL: "https://hooks.acme.example/keytrail?team=billing", Types: []string{"key.expiring", "keys.blocked"},
			SecretID: "01JDQ8Z6W4M2N9V3X5C7B1A0ZS"}
	case WebhookUpdated:
		e.Data = WebhookUpdatedV1{URL: "https://hooks.acme.example/keytrail/v2", Types: []string{"key.denials-started"}}
	case WebhookSecretRotated:
		e.Data = WebhookSecretRotatedV1{SecretID: "01JDQ8ZB0000000000000000ST", PreviousUntil: t0.Add(24 * time.Hour)}
	case WebhookDisabled:
		e.Data = WebhookDisabledV1{}
	case WebhookEnabled:
		e.Data = WebhookEnabledV1{}
	case WebhookDeleted:
		e.Data = WebhookDeletedV1{}
	case PolicyCreated:
		e.Data = PolicyCreatedV1{Name: "Billing, read-only", Scopes: []string{"orders:read", "invoices:read"}, RateLimit: rl,
			MaxTTL: "90d", APIs: []string{"orders", "billing"}}
	case PolicyUpdated:
		e.Data = PolicyUpdatedV1{Name: "Billing, read-only", Scopes: []string{"orders:read"}, MaxTTL: "30d"}
	case PolicyRetired:
		e.Data = PolicyRetiredV1{}
	case SignerAdded:
		e.Data = SignerAddedV1{ID: SignerID(samplePub), PublicKey: samplePub, Name: "control-1"}
	case SignerRemoved:
		e.Data = SignerRemovedV1{ID: SignerID(samplePub)}
	}
	return e
}

package projections

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
)

// ErrTransition: an event that cannot apply to its aggregate's state (an
// event before its aggregate's creation, a change after a final state). The
// fold leaves the state as it was and reports the event.
var ErrTransition = errors.New("projections: impossible transition")

func impossible(r events.Recorded, why string) error {
	return fmt.Errorf("%w: seq %d %s: %s", ErrTransition, r.Seq, r.Type, why)
}

// Evidence points at the event that set part of a state: the sequence and
// type of the event, which explain decisions made on it. Times, actors and
// reasons are read from the log by sequence when someone asks. It packs
// both into one word (a state holds several, for every key).
type Evidence uint64

const evidenceSeqBits = 56 // sequences below 2^56; the type's index above

// eventTypes is the catalogue's order of types, which Evidence indexes.
var eventTypes = events.Types()

// NewEvidence points at the event at seq of type t.
func NewEvidence(seq uint64, t events.Type) Evidence {
	i := slices.Index(eventTypes, t) + 1 // 0: none
	return Evidence(seq&(1<<evidenceSeqBits-1) | uint64(i)<<evidenceSeqBits)
}

func evidence(r events.Recorded) Evidence { return NewEvidence(r.Seq, r.Type) }

// Seq is the event's stream sequence (0: no event).
func (e Evidence) Seq() uint64 { return uint64(e) & (1<<evidenceSeqBits - 1) }

// Type is the event's type.
func (e Evidence) Type() events.Type {
	if i := int(uint64(e) >> evidenceSeqBits); i > 0 && i <= len(eventTypes) {
		return eventTypes[i-1]
	}
	return ""
}

// String prints seq/type.
func (e Evidence) String() string { return fmt.Sprintf("%d/%s", e.Seq(), e.Type()) }

// TenantStatus is a tenant's lifecycle state.
type TenantStatus string

// Tenant states.
const (
	TenantActive    TenantStatus = "active"
	TenantSuspended TenantStatus = "suspended"
)

// Tenant is the state of a tenant aggregate.
type Tenant struct {
	ID        string
	Name      string
	Status    TenantStatus
	CreatedAt time.Time
	// KeysRevokedBefore: every key of the tenant issued before it is revoked.
	KeysRevokedBefore time.Time
	// Version is the stream sequence of the last event applied.
	Version uint64
	// Notices are the tenant's notice settings (the zero value: the
	// defaults): how long before a key stops working it is told, and after
	// how long without a request a key is told unused.
	Notices events.TenantNoticesConfiguredV1
	// Created, StatusBy and RevokedBy are the events that created the
	// tenant, last changed its status, and last revoked its keys issued
	// before a time.
	Created, StatusBy, RevokedBy Evidence
	// Head is the hash of the aggregate's last event in the chain, kept by
	// the Catalog (which checks that the next event links to it).
	Head events.Hash
}

// Exists reports whether the tenant was created.
func (t Tenant) Exists() bool { return t.Version != 0 }

// Apply returns the tenant after r, or the tenant unchanged and an error
// wrapping ErrTransition.
func (t Tenant) Apply(r events.Recorded) (Tenant, error) {
	if r.Aggregate.Kind != events.KindTenant {
		return t, impossible(r, "not a tenant event")
	}
	switch p := r.Data.(type) {
	case events.TenantCreatedV1:
		if t.Exists() {
			return t, impossible(r, "tenant exists")
		}
		t = Tenant{ID: r.Tenant, Name: p.Name, Status: TenantActive, CreatedAt: r.OccurredAt, Created: evidence(r)}
	case events.TenantSuspendedV1:
		if !t.Exists() {
			return t, impossible(r, "no such tenant")
		}
		t.Status, t.StatusBy = TenantSuspended, evidence(r)
	case events.TenantResumedV1:
		if !t.Exists() {
			return t, impossible(r, "no such tenant")
		}
		t.Status, t.StatusBy = TenantActive, evidence(r)
	case events.TenantNoticesConfiguredV1:
		if !t.Exists() {
			return t, impossible(r, "no such tenant")
		}
		t.Notices = p
	case events.TenantKeysRevokedBeforeV1:
		if !t.Exists() {
			return t, impossible(r, "no such tenant")
		}
		if p.Before.After(t.KeysRevokedBefore) {
			t.KeysRevokedBefore, t.RevokedBy = p.Before, evidence(r)
		}
	default:
		return t, impossible(r, "unknown tenant event")
	}
	t.Version = r.Seq
	return t, nil
}

// UserStatus is a user's lifecycle state.
type UserStatus string

// User states. Deleted is final.
const (
	UserActive   UserStatus = "active"
	UserDisabled UserStatus = "disabled"
	UserDeleted  UserStatus = "deleted"
)

// User is the state of a user aggregate.
type User struct {
	Tenant string
	ID     string
	Name   string
	Status UserStatus
	// KeysRevokedBefore: every key of the user issued before it is revoked.
	KeysRevokedBefore time.Time
	CreatedAt         time.Time
	Version           uint64
	// The events that created the user, last changed its status, and last
	// revoked its keys issued before a time.
	Created, StatusBy, RevokedBy Evidence
	// Head: see Tenant.Head.
	Head events.Hash
}

// Exists reports whether the user was created (deleted users exist).
func (u User) Exists() bool { return u.Version != 0 }

// Apply returns the user after r, or the user unchanged and an error
// wrapping ErrTransition.
func (u User) Apply(r events.Recorded) (User, error) {
	if r.Aggregate.Kind != events.KindUser {
		return u, impossible(r, "not a user event")
	}
	if _, created := r.Data.(events.UserCreatedV1); !created {
		if !u.Exists() {
			return u, impossible(r, "no such user")
		}
		if u.Status == UserDeleted {
			return u, impossible(r, "the user is deleted")
		}
	}
	switch p := r.Data.(type) {
	case events.UserCreatedV1:
		if u.Exists() {
			return u, impossible(r, "user exists")
		}
		u = User{Tenant: r.Tenant, ID: r.Aggregate.ID, Name: p.Name, Status: UserActive, CreatedAt: r.OccurredAt, Created: evidence(r)}
	case events.UserDisabledV1:
		u.Status, u.StatusBy = UserDisabled, evidence(r)
	case events.UserEnabledV1:
		u.Status, u.StatusBy = UserActive, evidence(r)
	case events.UserDeletedV1:
		u.Status, u.StatusBy = UserDeleted, evidence(r)
	case events.UserKeysRevokedBeforeV1:
		if p.Before.After(u.KeysRevokedBefore) {
			u.KeysRevokedBefore, u.RevokedBy = p.Before, evidence(r)
		}
	default:
		return u, impossible(r, "unknown user event")
	}
	u.Version = r.Seq
	return u, nil
}

// KeyStatus is a key's own lifecycle state (expiry, rotation and its user's
// and tenant's states are separate: verification combines them).
type KeyStatus string

// Key states. Revoked is final.
const (
	KeyActive    KeyStatus = "active"
	KeySuspended KeyStatus = "suspended"
	KeyRevoked   KeyStatus = "revoked"
)

// Key is the state of a key aggregate. It holds the SHA-256 of the secret,
// never the secret.
type Key struct {
	Tenant      string
	User        string
	ID          string
	Name        string
	Scopes      []string
	Status      KeyStatus
	SecretHash  events.SecretHash
	Hint        string
	NotBefore   *time.Time
	ExpiresAt   *time.Time
	RateLimit   *events.RateLimit
	Metadata    map[string]string
	RotatedFrom string
	RotatedTo   string
	// GraceUntil is set once the key was rotated: it is EXPIRED after it.
	GraceUntil *time.Time
	// Policies are the ids of the access policies the key references.
	Policies  []string
	CreatedAt time.Time
	Version   uint64
	// The events that issued the key, last set its attributes (scopes,
	// expiry: the issue or the last update), last changed its status, and
	// rotated it.
	Issued, AttrsBy, StatusBy, RotatedBy Evidence
	// Head: see Tenant.Head.
	Head events.Hash
}

// Exists reports whether the key was issued.
func (k Key) Exists() bool { return k.Version != 0 }

// Apply returns the key after r, or the key unchanged and an error wrapping
// ErrTransition.
func (k Key) Apply(r events.Recorded) (Key, error) {
	if r.Aggregate.Kind != events.KindKey {
		return k, impossible(r, "not a key event")
	}
	if _, issued := r.Data.(events.KeyIssuedV1); !issued {
		if !k.Exists() {
			return k, impossible(r, "no such key")
		}
		if k.Status == KeyRevoked {
			return k, impossible(r, "the key is revoked")
		}
	}
	switch p := r.Data.(type) {
	case events.KeyIssuedV1:
		if k.Exists() {
			return k, impossible(r, "key exists")
		}
		k = Key{Tenant: r.Tenant, User: r.Aggregate.User, ID: r.Aggregate.ID, Name: p.Name, Scopes: p.Scopes,
			Status: KeyActive, SecretHash: p.SecretHash, Hint: p.Hint, NotBefore: p.NotBefore, ExpiresAt: p.ExpiresAt,
			RateLimit: p.RateLimit, Metadata: p.Metadata, RotatedFrom: p.RotatedFrom, CreatedAt: r.OccurredAt,
			Policies: p.Policies, Issued: evidence(r), AttrsBy: evidence(r)}
	case events.KeyUpdatedV1:
		k.Name, k.Scopes, k.ExpiresAt, k.RateLimit, k.Metadata = p.Name, p.Scopes, p.ExpiresAt, p.RateLimit, p.Metadata
		k.Policies = p.Policies
		k.AttrsBy = evidence(r)
	case events.KeySuspendedV1:
		k.Status, k.StatusBy = KeySuspended, evidence(r)
	case events.KeyResumedV1:
		k.Status, k.StatusBy = KeyActive, evidence(r)
	case events.KeyRevokedV1:
		k.Status, k.StatusBy = KeyRevoked, evidence(r)
	case events.KeyRotatedV1:
		if k.GraceUntil != nil {
			return k, impossible(r, "the key was rotated already")
		}
		grace := p.GraceUntil
		k.RotatedTo, k.GraceUntil, k.RotatedBy = p.Successor, &grace, evidence(r)
	default:
		return k, impossible(r, "unknown key event")
	}
	k.Version = r.Seq
	return k, nil
}

// APIStatus is an API's lifecycle state.
type APIStatus string

// API states. Retired is final.
const (
	APIPublished  APIStatus = "published"
	APIDeprecated APIStatus = "deprecated"
	APIRetired    APIStatus = "retired"
)

// API is the state of an API aggregate.
type API struct {
	Tenant     string
	ID         string
	Name       string
	PathPrefix string
	Upstreams  []string
	Scopes     []string
	RateLimit  *events.RateLimit
	Status     APIStatus
	Sunset     *time.Time
	// DeprecatedAt is when the API was deprecated (the Deprecation header).
	DeprecatedAt time.Time
	CreatedAt    time.Time
	Version      uint64
	// The events that last set the API's attributes (its scopes) and status.
	AttrsBy, StatusBy Evidence
	// Head: see Tenant.Head.
	Head events.Hash
}

// Exists reports whether the API was created.
func (a API) Exists() bool { return a.Version != 0 }

// Apply returns the API after r, or the API unchanged and an error wrapping
// ErrTransition.
func (a API) Apply(r events.Recorded) (API, error) {
	if r.Aggregate.Kind != events.KindAPI {
		return a, impossible(r, "not an API event")
	}
	if _, created := r.Data.(events.APICreatedV1); !created {
		if !a.Exists() {
			return a, impossible(r, "no such API")
		}
		if a.Status == APIRetired {
			return a, impossible(r, "the API is retired")
		}
	}
	switch p := r.Data.(type) {
	case events.APICreatedV1:
		if a.Exists() {
			return a, impossible(r, "API exists")
		}
		a = API{Tenant: r.Tenant, ID: r.Aggregate.ID, Name: p.Name, PathPrefix: p.PathPrefix, Upstreams: p.Upstreams,
			Scopes: p.Scopes, RateLimit: p.RateLimit, Status: APIPublished, CreatedAt: r.OccurredAt, AttrsBy: evidence(r)}
	case events.APIUpdatedV1:
		a.Name, a.PathPrefix, a.Upstreams, a.Scopes, a.RateLimit = p.Name, p.PathPrefix, p.Upstreams, p.Scopes, p.RateLimit
		a.AttrsBy = evidence(r)
	case events.APIDeprecatedV1:
		sunset := p.Sunset
		a.Status, a.Sunset, a.DeprecatedAt, a.StatusBy = APIDeprecated, &sunset, r.OccurredAt, evidence(r)
	case events.APIRetiredV1:
		a.Status, a.StatusBy = APIRetired, evidence(r)
	default:
		return a, impossible(r, "unknown API event")
	}
	a.Version = r.Seq
	return a, nil
}

// Fold applies a history to the zero state of its aggregate, skipping (and
// returning) the events that cannot apply.
func Fold[T interface {
	Apply(events.Recorded) (T, error)
}](history []events.Recorded) (state T, skipped []error) {
	for _, r := range history {
		next, err := state.Apply(r)
		if err != nil {
			skipped = append(skipped, err)
			continue
		}
		state = next
	}
	return state, skipped
}

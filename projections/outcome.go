package projections

import (
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
)

// Code is a verification outcome, in the precedence of the product brief:
// the first failing check wins.
type Code string

// Outcome codes. MISSING, MALFORMED, RATE_LIMITED and STALE are decided by
// whoever holds the request and the node's freshness, not by the catalog.
const (
	CodeMissing           Code = "MISSING"
	CodeMalformed         Code = "MALFORMED"
	CodeNotFound          Code = "NOT_FOUND"
	CodeRevoked           Code = "REVOKED"
	CodeExpired           Code = "EXPIRED"
	CodeUserDeleted       Code = "USER_DELETED"
	CodeUserUnknown       Code = "USER_UNKNOWN"
	CodeTenantSuspended   Code = "TENANT_SUSPENDED"
	CodeUserDisabled      Code = "USER_DISABLED"
	CodeSuspended         Code = "SUSPENDED"
	CodeNotYetValid       Code = "NOT_YET_VALID"
	CodeTenantMismatch    Code = "TENANT_MISMATCH"
	CodeInsufficientScope Code = "INSUFFICIENT_SCOPE"
	CodeRateLimited       Code = "RATE_LIMITED"
	CodeStale             Code = "STALE"
	CodeValid             Code = "VALID"
)

// KeyCheck is what Check needs besides the key's hash.
type KeyCheck struct {
	Now time.Time
	// Tenant, when set, is the tenant the request is for.
	Tenant string
	// Scopes the key must all hold.
	Scopes []string
}

// Check decides a key's standing from the catalog: the first failing check
// in the brief's precedence, or VALID. It allocates nothing.
func (c *Catalog) Check(h events.SecretHash, q KeyCheck) (Key, Code) {
	k, ok := c.byHash[h]
	if !ok || !k.SecretHash.Equal(h) {
		return Key{}, CodeNotFound
	}
	u, userKnown := c.User(k.Tenant, k.User)
	t, _ := c.Tenant(k.Tenant)
	switch {
	case k.Status == KeyRevoked, userKnown && k.CreatedAt.Before(u.KeysRevokedBefore):
		return *k, CodeRevoked
	case k.ExpiresAt != nil && !q.Now.Before(*k.ExpiresAt), k.GraceUntil != nil && !q.Now.Before(*k.GraceUntil):
		return *k, CodeExpired
	case userKnown && u.Status == UserDeleted:
		return *k, CodeUserDeleted
	case !userKnown:
		return *k, CodeUserUnknown
	case t.Status != TenantActive:
		return *k, CodeTenantSuspended
	case u.Status == UserDisabled:
		return *k, CodeUserDisabled
	case k.Status == KeySuspended:
		return *k, CodeSuspended
	case k.NotBefore != nil && q.Now.Before(*k.NotBefore):
		return *k, CodeNotYetValid
	case q.Tenant != "" && q.Tenant != k.Tenant:
		return *k, CodeTenantMismatch
	}
	for _, s := range q.Scopes {
		if !slices.Contains(k.Scopes, s) {
			return *k, CodeInsufficientScope
		}
	}
	return *k, CodeValid
}

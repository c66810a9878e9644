package projections

import (
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
)

// Code is a verification outcome, in the precedence of the product brief:
// the first failing check wins.
type Code string

// Outcome codes. RATE_LIMITED and STALE are decided by whoever holds the
// traffic and the node's freshness, not by the catalog.
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

// Request is what a verification is asked.
type Request struct {
	// Secret is the key as presented; empty when none was (MISSING).
	Secret string
	// Prefix is the deployment's secret prefix.
	Prefix string
	// Tenant, when set, is the tenant the request is for.
	Tenant string
	// APITenant and API, when set, name the API the request is for: the key
	// must belong to its tenant and hold its scopes.
	APITenant, API string
	// Scopes the request itself needs, beyond the API's.
	Scopes []string
}

const maxEvidence = 4

// Decision is the outcome of a verification and what it rests on. It is a
// value with fixed-size arrays inside, so that deciding VALID allocates
// nothing; Also and Evidence slice them.
type Decision struct {
	Code Code
	// KeyID, Tenant and User identify the key (never its secret).
	KeyID, Tenant, User string
	// API is the API the request was for, if any.
	API string
	// Now is the time the decision used; Seq the sequence of the last event
	// the catalog had applied.
	Now       time.Time
	Seq       uint64
	also      uint16 // bit i: precedence[i] failed too
	evidence  [maxEvidence]Evidence
	nEvidence int
}

// precedence is the order of the checks the catalog makes.
var precedence = [...]Code{CodeRevoked, CodeExpired, CodeUserDeleted, CodeUserUnknown, CodeTenantSuspended,
	CodeUserDisabled, CodeSuspended, CodeNotYetValid, CodeTenantMismatch, CodeInsufficientScope}

// Also lists every failing check after the first, in precedence order.
func (d *Decision) Also() []Code {
	if d.also == 0 {
		return nil
	}
	var out []Code
	for i, c := range precedence {
		if d.also&(1<<i) != 0 {
			out = append(out, c)
		}
	}
	return out
}

// Evidence lists the events that determined the code.
func (d *Decision) Evidence() []Evidence { return d.evidence[:d.nEvidence] }

// fail records a failing check: the first is the code and its evidence,
// the rest go to Also.
func (d *Decision) fail(code Code, ev ...Evidence) {
	if d.Code == "" {
		d.Code = code
		for _, e := range ev {
			d.addEvidence(e)
		}
		return
	}
	if code != d.Code {
		for i, c := range precedence {
			if c == code {
				d.also |= 1 << i
			}
		}
	}
}

func (d *Decision) addEvidence(e Evidence) {
	if e.Seq() == 0 || d.nEvidence == maxEvidence || slices.Contains(d.evidence[:d.nEvidence], e) {
		return
	}
	d.evidence[d.nEvidence] = e
	d.nEvidence++
}

// Verify decides a request against the catalog at now: every check of the
// brief in its precedence (RATE_LIMITED and STALE are the caller's, who
// holds the traffic and the node's freshness). Re-folding the log up to the
// decision's Seq and verifying at its Now gives the same decision.
func (c *Catalog) Verify(q Request, now time.Time) Decision {
	d := Decision{Now: now, Seq: c.Seq, API: q.API}
	if q.Secret == "" {
		d.Code = CodeMissing
		return d
	}
	sec, err := secret.Parse(q.Secret, q.Prefix)
	if err != nil {
		d.Code = CodeMalformed
		return d
	}
	c.verifyHash(&d, sec.Hash(), &q, now)
	return d
}

// VerifyHash is Verify for a key known by its secret's hash (explain: the
// decision a key would have received, without its secret).
func (c *Catalog) VerifyHash(h events.SecretHash, q Request, now time.Time) Decision {
	d := Decision{Now: now, Seq: c.Seq, API: q.API}
	c.verifyHash(&d, h, &q, now)
	return d
}

// verifyHash fills d; pointers, not copies, on the verify path.
func (c *Catalog) verifyHash(d *Decision, h events.SecretHash, q *Request, now time.Time) {
	ref, ok := c.byHash[h]
	if !ok || !ref.key.SecretHash.Equal(h) {
		d.Code = CodeNotFound
		return
	}
	k, te, u := ref.key, ref.tenant, ref.user
	d.KeyID, d.Tenant, d.User = k.ID, k.Tenant, k.User
	if !u.Exists() {
		u = nil // the key names a user with no events (yet)
	}
	switch {
	case k.Status == KeyRevoked:
		d.fail(CodeRevoked, k.StatusBy)
		if u != nil && k.CreatedAt.Before(u.KeysRevokedBefore) {
			d.addEvidence(u.RevokedBy)
		}
	case u != nil && k.CreatedAt.Before(u.KeysRevokedBefore):
		d.fail(CodeRevoked, u.RevokedBy)
	}
	if k.ExpiresAt != nil && !now.Before(*k.ExpiresAt) {
		d.fail(CodeExpired, k.AttrsBy)
	}
	if k.GraceUntil != nil && !now.Before(*k.GraceUntil) {
		d.fail(CodeExpired, k.RotatedBy)
	}
	switch {
	case u == nil:
		d.fail(CodeUserUnknown, k.Issued)
	case u.Status == UserDeleted:
		d.fail(CodeUserDeleted, u.StatusBy)
	}
	if !te.Exists() || te.Status != TenantActive {
		d.fail(CodeTenantSuspended, te.StatusBy)
	}
	if u != nil && u.Status == UserDisabled {
		d.fail(CodeUserDisabled, u.StatusBy)
	}
	if k.Status == KeySuspended {
		d.fail(CodeSuspended, k.StatusBy)
	}
	if k.NotBefore != nil && now.Before(*k.NotBefore) {
		d.fail(CodeNotYetValid, k.Issued)
	}
	var api *API
	if q.API != "" {
		if at := c.tenants[q.APITenant]; at != nil {
			if a := at.apis[q.API]; a != nil && a.Exists() {
				api = a
			}
		}
	}
	if (q.Tenant != "" && q.Tenant != k.Tenant) || (q.APITenant != "" && q.APITenant != k.Tenant) {
		d.fail(CodeTenantMismatch, k.Issued)
	}
	if missing(k.Scopes, q.Scopes) || (api != nil && missing(k.Scopes, api.Scopes)) {
		var apiEv Evidence
		if api != nil {
			apiEv = api.AttrsBy
		}
		d.fail(CodeInsufficientScope, k.AttrsBy, apiEv)
	}
	if d.Code == "" {
		d.Code = CodeValid
		d.addEvidence(k.Issued)
		d.addEvidence(k.AttrsBy)
	}
}

// missing reports whether have lacks one of need.
func missing(have, need []string) bool {
	for _, s := range need {
		if !slices.Contains(have, s) {
			return true
		}
	}
	return false
}

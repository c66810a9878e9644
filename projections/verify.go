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
	Now    time.Time
	Seq    uint64
	also   uint16 // bit i: precedence[i] failed too
	scopes []string
	// policyIDs and policyScopes are the key's policies' ids and their
	// live ones' scopes as they were when the decision was made (the
	// catalog's, never changed: the decision may be kept after the catalog
	// is released and changes).
	policyIDs, policyScopes []string
	rate                    *events.RateLimit
	// rateV, when rateMerged, is the key's limit and its policies' met:
	// the lowest rate and the lowest burst of them.
	rateV      events.RateLimit
	rateMerged bool
	evidence   [maxEvidence]Evidence
	nEvidence  int
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

// KeyScopes are the key's own scopes (shared with the catalog: read, never
// change); EffectiveScopes adds its policies'.
func (d *Decision) KeyScopes() []string { return d.scopes }

// meetRate folds a live policy's limit r into the key's: the first limit
// is taken as it is (shared with the catalog), and each further one is met
// in the decision's own copy — the lowest rate, the lowest burst.
func (d *Decision) meetRate(r *events.RateLimit) {
	switch {
	case r == nil:
	case d.rate == nil && !d.rateMerged:
		d.rate = r
	default:
		if !d.rateMerged {
			d.rateV, d.rateMerged = *d.rate, true
		}
		d.rateV.PerSecond, d.rateV.Burst = min(d.rateV.PerSecond, r.PerSecond), min(d.rateV.Burst, r.Burst)
	}
}

// KeyRateLimit is the rate limit the key verifies under — its own and its
// live policies' met: the lowest rate and the lowest burst — nil when none
// (shared with the catalog or the decision: read, never change).
func (d *Decision) KeyRateLimit() *events.RateLimit {
	if d.rateMerged {
		return &d.rateV
	}
	return d.rate
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
func (c *Catalog) Verify(q Request, now time.Time) (d Decision) {
	d.Now, d.Seq, d.API = now, c.Seq, q.API
	if q.Secret == "" {
		d.Code = CodeMissing
		return d
	}
	sec, err := secret.ParseShape(q.Secret, q.Prefix)
	if err != nil {
		d.Code = CodeMalformed
		return d
	}
	c.verifyHash(&d, sec.Hash(), &q, now)
	if d.Code == CodeNotFound && !sec.ChecksumOK() {
		// Checked only now: a secret whose hash the catalog holds has a
		// valid checksum (it was checked when the secret was generated).
		d.Code = CodeMalformed
	}
	return d
}

// VerifyHash is Verify for a key known by its secret's hash (explain: the
// decision a key would have received, without its secret).
func (c *Catalog) VerifyHash(h events.SecretHash, q Request, now time.Time) (d Decision) {
	d.Now, d.Seq, d.API = now, c.Seq, q.API
	c.verifyHash(&d, h, &q, now)
	return d
}

// verifyHash fills d; pointers, not copies, on the verify path.
func (c *Catalog) verifyHash(d *Decision, h events.SecretHash, q *Request, now time.Time) {
	k := c.byHash.find(&h)
	if k == nil {
		d.Code = CodeNotFound
		return
	}
	te, u := k.tenant, k.user
	d.KeyID, d.Tenant, d.User = k.id, te.id, u.ID
	// The key's live policies, in one pass: their rate limits met with the
	// key's, the earliest end of life, and whether they let the key on
	// q.API (allowedAPIs, without building the list).
	pols := k.policyList()
	end, endBy, confined, allowed := never, (*Policy)(nil), false, false
	d.rate = k.rate
	for _, p := range pols {
		if !p.Live() {
			continue
		}
		d.meetRate(p.RateLimit)
		if p.MaxTTL > 0 {
			if e := addInstant(k.created, p.MaxTTL); e < end {
				end, endBy = e, p
			}
		}
		if len(p.APIs) == 0 || slices.Contains(p.APIs, q.API) {
			allowed = true
		} else {
			confined = true
		}
	}
	d.scopes = k.scopeList()
	if l := k.policies; l != nil {
		d.policyIDs, d.policyScopes = l.ids, l.scopes
	}
	if !u.Exists() {
		u = nil // the key names a user with no events (yet)
	}
	at := instantOf(now)
	// A key is revoked by its own revocation, and by its user's or its
	// tenant's "revoke keys issued before T"; every one that applies is
	// evidence.
	var revokedBy [3]Evidence
	if k.status == keyRevoked {
		revokedBy[0] = k.statusBy
	}
	if u != nil && !u.KeysRevokedBefore.IsZero() && k.created < instantOf(u.KeysRevokedBefore) {
		revokedBy[1] = u.RevokedBy
	}
	if !te.KeysRevokedBefore.IsZero() && k.created < instantOf(te.KeysRevokedBefore) {
		revokedBy[2] = te.RevokedBy
	}
	if revokedBy != [3]Evidence{} {
		d.fail(CodeRevoked, revokedBy[:]...)
	}
	if at >= k.expiresAt {
		d.fail(CodeExpired, k.attrsBy)
	}
	if at >= k.graceUntil {
		d.fail(CodeExpired, k.rotatedBy)
	}
	// A policy bounds a key's life; it never extends it: the earlier of
	// the key's own expiry and its policies' bound holds.
	if endBy != nil && at >= end {
		d.fail(CodeExpired, endBy.evidence())
	}
	switch {
	case u == nil:
		d.fail(CodeUserUnknown, k.issued)
	case u.Status == UserDeleted:
		d.fail(CodeUserDeleted, u.StatusBy)
	}
	if !te.Exists() || te.Status != TenantActive {
		d.fail(CodeTenantSuspended, te.StatusBy)
	}
	if u != nil && u.Status == UserDisabled {
		d.fail(CodeUserDisabled, u.StatusBy)
	}
	if k.status == keySuspended {
		d.fail(CodeSuspended, k.statusBy)
	}
	if at < k.notBefore {
		d.fail(CodeNotYetValid, k.issued)
	}
	var api *API
	if q.API != "" {
		at := te // the API is most often the key's own tenant's: one lookup saved
		if q.APITenant != te.id {
			at = c.tenants[q.APITenant]
		}
		if at != nil {
			if a := at.apis[q.API]; a != nil && a.Exists() {
				api = a
			}
		}
	}
	if (q.Tenant != "" && q.Tenant != te.id) || (q.APITenant != "" && q.APITenant != te.id) {
		d.fail(CodeTenantMismatch, k.issued)
	}
	scopes := k.scopeList()
	if lacks(scopes, pols, q.Scopes) || (api != nil && (lacks(scopes, pols, api.Scopes) || (confined && !allowed))) {
		// The evidence: the key's attributes, the API's, and the policies
		// that had a say (a scope removed from one, one retired).
		var ev [maxEvidence]Evidence
		ev[0] = k.attrsBy
		n := 1
		if api != nil {
			ev[1] = api.AttrsBy
			n++
		}
		for _, p := range pols {
			if n < len(ev) && p.Exists() {
				ev[n] = p.evidence()
				n++
			}
		}
		d.fail(CodeInsufficientScope, ev[:n]...)
	}
	if d.Code == "" {
		d.Code = CodeValid
		d.addEvidence(k.issued)
		d.addEvidence(k.attrsBy)
		for _, p := range pols {
			if p.Exists() {
				d.addEvidence(p.evidence())
			}
		}
	}
}

// ExplainKey re-derives the decision a key would have received as of then:
// history (the events that bear on the key: its own, its user's, its
// tenant's) folded up to seq (all when 0) and up to those that occurred at
// or before at (all when zero), verified at at — or, without at, at the time
// of the last event folded. ok is false when the key did not exist then.
//
// api, when set, is an API of tenant the request is for: its events must be
// in history.
func ExplainKey(history []events.Recorded, tenant, keyID string, seq uint64, at time.Time, scopes []string, api string) (d Decision, ok bool) {
	c := NewCatalog()
	var last time.Time
	for _, r := range history {
		if (seq != 0 && r.Seq > seq) || (!at.IsZero() && r.OccurredAt.After(at)) {
			continue
		}
		if c.Apply(r) == nil {
			last = r.OccurredAt
		}
	}
	now := at
	if now.IsZero() {
		now = last
	}
	k, ok := c.Key(tenant, keyID)
	if !ok {
		return Decision{}, false
	}
	q := Request{Scopes: scopes}
	if api != "" {
		q.APITenant, q.API = tenant, api
	}
	return c.VerifyHash(k.SecretHash, q, now), true
}

// effectiveStatuses names what each outcome of a request with no API and no
// scope says of a key: its effective status, the owner's state included, in
// the outcomes' precedence.
var effectiveStatuses = [...]struct {
	code   Code
	status KeyStatus
}{
	{CodeRevoked, KeyRevoked}, {CodeExpired, "expired"}, {CodeUserDeleted, "user_deleted"},
	{CodeUserUnknown, "user_unknown"}, {CodeTenantSuspended, "tenant_suspended"},
	{CodeUserDisabled, "user_disabled"}, {CodeSuspended, KeySuspended}, {CodeNotYetValid, "not_yet_valid"},
	{CodeValid, KeyActive},
}

// EffectiveStatuses are the values an effective status takes, in
// precedence order.
func EffectiveStatuses() []KeyStatus {
	out := make([]KeyStatus, len(effectiveStatuses))
	for i, e := range effectiveStatuses {
		out[i] = e.status
	}
	return out
}

func effectiveOf(code Code) (KeyStatus, int) {
	for i, e := range effectiveStatuses {
		if e.code == code {
			return e.status, i
		}
	}
	return KeyActive, len(effectiveStatuses) - 1
}

// EffectiveStatus is what k is at now, its user's and tenant's state
// included: what a request with k would be told, as a status. k may be
// newer or older than the catalog (read from the log): the worse of what
// the catalog says and what k's own state says wins.
func (c *Catalog) EffectiveStatus(k Key, now time.Time) KeyStatus {
	own := CodeValid
	switch {
	case k.Status == KeyRevoked:
		own = CodeRevoked
	case k.ExpiresAt != nil && !now.Before(*k.ExpiresAt), k.GraceUntil != nil && !now.Before(*k.GraceUntil):
		own = CodeExpired
	case k.Status == KeySuspended:
		own = CodeSuspended
	case k.NotBefore != nil && now.Before(*k.NotBefore):
		own = CodeNotYetValid
	}
	status, rank := effectiveOf(own)
	if d := c.VerifyHash(k.SecretHash, Request{}, now); d.KeyID == k.ID {
		if s, r := effectiveOf(d.Code); r < rank {
			status = s
		}
	}
	return status
}

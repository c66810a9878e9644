package projections

import (
	"slices"
	"strings"
	"time"

	"github.com/keytrail/keytrail/events"
)

// PolicyStatus is an access policy's lifecycle state.
type PolicyStatus string

// Policy states. Retired is final.
const (
	PolicyActive  PolicyStatus = "active"
	PolicyRetired PolicyStatus = "retired"
)

// Policy is the state of an access policy aggregate: scopes granted to the
// keys that reference it, and limits on them (docs/policies.md). Keys hold
// a reference, never a copy: verification resolves a key's policies from
// the catalog, so a change reaches every key at once.
type Policy struct {
	Tenant, ID string
	Name       string
	Scopes     []string
	RateLimit  *events.RateLimit
	// MaxTTL is how long after its issue a key may verify (0: no bound).
	MaxTTL time.Duration
	// APIs are the only APIs its keys may be used on (none: any).
	APIs   []string
	Status PolicyStatus
	// Revision counts the policy's events: 1 once created, one more with
	// each update and the retirement ("billing-ro v3").
	Revision  int
	CreatedAt time.Time
	// Version is the stream sequence of the last event applied.
	Version uint64
	// Created, AttrsBy and StatusBy are the events that created the
	// policy, last set its attributes, and retired it.
	Created, AttrsBy, StatusBy Evidence
	// Head: see Tenant.Head.
	Head events.Hash
}

// Exists reports whether the policy was created (retired ones exist).
func (p *Policy) Exists() bool { return p.Version != 0 }

// Live reports whether the policy grants and limits: created, not retired.
func (p *Policy) Live() bool { return p.Status == PolicyActive }

// evidence is the event a key's decision rests on when the policy bears on
// it: its retirement, or the last change of its attributes.
func (p *Policy) evidence() Evidence {
	if p.Status == PolicyRetired {
		return p.StatusBy
	}
	return p.AttrsBy
}

// Apply returns the policy after r, or the policy unchanged and an error
// wrapping ErrTransition.
func (p Policy) Apply(r events.Recorded) (Policy, error) {
	if r.Aggregate.Kind != events.KindPolicy {
		return p, impossible(r, "not a policy event")
	}
	if _, created := r.Data.(events.PolicyCreatedV1); !created {
		if !p.Exists() {
			return p, impossible(r, "no such policy")
		}
		if p.Status == PolicyRetired {
			return p, impossible(r, "the policy is retired")
		}
	}
	switch d := r.Data.(type) {
	case events.PolicyCreatedV1:
		if p.Exists() {
			return p, impossible(r, "policy exists")
		}
		p = Policy{Tenant: r.Tenant, ID: r.Aggregate.ID, Name: d.Name, Scopes: d.Scopes, RateLimit: d.RateLimit,
			MaxTTL: events.PolicyTTL(d.MaxTTL), APIs: d.APIs, Status: PolicyActive, CreatedAt: r.OccurredAt,
			Created: evidence(r), AttrsBy: evidence(r)}
	case events.PolicyUpdatedV1:
		p.Name, p.Scopes, p.RateLimit, p.MaxTTL, p.APIs = d.Name, d.Scopes, d.RateLimit, events.PolicyTTL(d.MaxTTL), d.APIs
		p.AttrsBy = evidence(r)
	case events.PolicyRetiredV1:
		p.Status, p.StatusBy = PolicyRetired, evidence(r)
	default:
		return p, impossible(r, "unknown policy event")
	}
	p.Revision++
	p.Version = r.Seq
	return p, nil
}

// policyEntry is entry for policies: a policy's state knows its id before
// the policy exists, for the keys that reference it.
func policyEntry(t *tenantEntry, id string) *Policy {
	p := entry(t.policies, id)
	if p.ID == "" {
		p.ID, p.Tenant = id, t.id
	}
	return p
}

// policyList is a list of policies keys reference, interned: keys that
// reference the same policies share one.
type policyList struct {
	// states are the policies' states in the catalog, changed in place as
	// their events apply: read them only while the catalog is held.
	states []*Policy
	// ids are the policies' ids, and scopes their live ones' scopes in
	// order without repeats: never changed once made (a change of one of
	// the policies replaces scopes), so that a Decision keeps them.
	ids    []string
	scopes []string
}

// internPolicies returns the catalog's list of the tenant's policy states
// ids name (placeholders for those without events yet).
func (c *Catalog) internPolicies(t *tenantEntry, ids []string) *policyList {
	if len(ids) == 0 {
		return nil
	}
	joined := t.id + "\x00" + strings.Join(ids, "\x00")
	if l, ok := c.policyLists[joined]; ok {
		return l
	}
	l := &policyList{states: make([]*Policy, len(ids)), ids: slices.Clone(ids)}
	if t.listsOf == nil {
		t.listsOf = map[string][]*policyList{}
	}
	for i, id := range ids {
		l.states[i] = policyEntry(t, id)
		if !slices.Contains(t.listsOf[id], l) { // a list may name a policy twice
			t.listsOf[id] = append(t.listsOf[id], l)
		}
	}
	l.scopes = liveScopes(l.states)
	c.policyLists[joined] = l
	return l
}

// policyChanged makes the scopes of the lists that hold policy id anew,
// after an event of it applied.
func (t *tenantEntry) policyChanged(id string) {
	for _, l := range t.listsOf[id] {
		l.scopes = liveScopes(l.states)
	}
}

// liveScopes are the scopes of the live policies of states, in order,
// without repeats (nil when none).
func liveScopes(states []*Policy) []string {
	var out []string
	for _, p := range states {
		if !p.Live() {
			continue
		}
		for _, s := range p.Scopes {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

func (k *keyState) policyList() []*Policy {
	if k.policies == nil {
		return nil
	}
	return k.policies.states
}

// policyIDs are the ids of the policies k references (the interned list's:
// read, never change).
func (k *keyState) policyIDs() []string {
	if k.policies == nil {
		return nil
	}
	return k.policies.ids
}

// grants reports whether a key with scopes and policies holds scope s: its
// own, or one of a live policy's.
func grants(scopes []string, policies []*Policy, s string) bool {
	if slices.Contains(scopes, s) {
		return true
	}
	for _, p := range policies {
		if p.Live() && slices.Contains(p.Scopes, s) {
			return true
		}
	}
	return false
}

// lacks reports whether a key with scopes and policies lacks one of need.
func lacks(scopes []string, policies []*Policy, need []string) bool {
	for _, s := range need {
		if !grants(scopes, policies, s) {
			return true
		}
	}
	return false
}

// addInstant is i+d, saturated at never.
func addInstant(i instant, d time.Duration) instant {
	if i > never-instant(d) {
		return never
	}
	return i + instant(d)
}

// EffectiveScopes appends to dst the scopes the decision's key held when
// it was made: its own, then its live policies' not among them. With a nil
// dst and no policy scopes it returns the key's own list, shared with the
// catalog (read, never change); give a dst to change the result.
func (d *Decision) EffectiveScopes(dst []string) []string {
	return effectiveScopes(dst, d.scopes, d.policyScopes)
}

func effectiveScopes(dst, own, policies []string) []string {
	if len(policies) == 0 {
		if dst == nil {
			return own
		}
		return append(dst, own...)
	}
	dst = append(dst, own...)
	for _, s := range policies {
		if !slices.Contains(own, s) {
			dst = append(dst, s)
		}
	}
	return dst
}

// Policies are the ids of the policies the decision's key references.
func (d *Decision) Policies() []string { return slices.Clone(d.policyIDs) }

// Policy returns a policy of a tenant (a retired one too).
func (c *Catalog) Policy(tenant, id string) (Policy, bool) {
	if t, ok := c.tenants[tenant]; ok {
		if p, ok := t.policies[id]; ok && p.Exists() {
			return *p, true
		}
	}
	return Policy{}, false
}

// Policies lists a tenant's policies in id order after the cursor.
func (c *Catalog) Policies(tenant, after string, limit int) ([]Policy, bool) {
	t, ok := c.tenants[tenant]
	if !ok {
		return nil, false
	}
	return pageOf(t.policies, after, limit, (*Policy).Exists)
}

// PolicyKeys counts the keys of a tenant that reference each policy
// (revoked keys aside).
func (c *Catalog) PolicyKeys(tenant string) map[string]int {
	out := map[string]int{}
	if t, ok := c.tenants[tenant]; ok {
		for _, k := range t.keys {
			if k.exists() && k.status != keyRevoked {
				for _, p := range k.policyList() {
					out[p.ID]++
				}
			}
		}
	}
	return out
}

// LivePolicies counts a tenant's policies that are not retired.
func (c *Catalog) LivePolicies(tenant string) int {
	n := 0
	if t, ok := c.tenants[tenant]; ok {
		for _, p := range t.policies {
			if p.Live() {
				n++
			}
		}
	}
	return n
}

// KeyScopes are the scopes a key of tenant holds now: its own and its
// live policies' (nil for no such key).
func (c *Catalog) KeyScopes(tenant, id string) []string {
	k := c.keyState(tenant, id)
	if k == nil {
		return nil
	}
	return k.effectiveScopes(make([]string, 0, 8))
}

// effectiveScopes appends to dst the scopes k holds: its own and its live
// policies' (Decision.EffectiveScopes).
func (k *keyState) effectiveScopes(dst []string) []string {
	var policies []string
	if k.policies != nil {
		policies = k.policies.scopes
	}
	return effectiveScopes(dst, k.scopeList(), policies)
}

// end is when k stops verifying by time alone: the earliest of its own
// expiry, the end of a rotation's grace and its live policies' lifetime
// bound (never when none).
func (k *keyState) end() instant {
	end := min(k.expiresAt, k.graceUntil)
	for _, p := range k.policyList() {
		if p.Live() && p.MaxTTL > 0 {
			end = min(end, addInstant(k.created, p.MaxTTL))
		}
	}
	return end
}

// KeyEnd is when a key of tenant stops verifying by time alone — its own
// expiry, a rotation's grace, its live policies' lifetime bounds — nil
// when nothing bounds it (or there is no such key).
func (c *Catalog) KeyEnd(tenant, id string) *time.Time {
	k := c.keyState(tenant, id)
	if k == nil {
		return nil
	}
	return k.end().timeOr(never)
}

func (c *Catalog) keyState(tenant, id string) *keyState {
	if t, ok := c.tenants[tenant]; ok {
		if k, ok := t.keys[id]; ok && k.exists() {
			return k
		}
	}
	return nil
}

package projections

import (
	"cmp"
	"slices"
	"strings"
)

// OrphanedKey is a key whose owner makes it fail: disabled, deleted, or
// a user with no events.
type OrphanedKey struct {
	Key   string `json:"key"`
	Name  string `json:"name,omitempty"`
	User  string `json:"user"`
	Owner string `json:"owner"` // "disabled", "deleted" or "unknown"
	// Seq is the event that made the owner so (0: unknown, no event).
	Seq uint64 `json:"seq,omitempty"`
}

// RetiredPolicyKey is a key that references a retired policy.
type RetiredPolicyKey struct {
	Key    string `json:"key"`
	Name   string `json:"name,omitempty"`
	User   string `json:"user"`
	Policy string `json:"policy"`
	// Seq is the policy's retirement.
	Seq uint64 `json:"seq"`
}

// UnneededScopes is a key holding scopes no API of its tenant requires.
type UnneededScopes struct {
	Key    string   `json:"key"`
	Name   string   `json:"name,omitempty"`
	User   string   `json:"user"`
	Scopes []string `json:"scopes"`
	// Own are those of Scopes the key holds itself (the rest come from
	// its policies).
	Own []string `json:"own"`
}

// reportKeys calls fn with every issued, unrevoked key of tenant, in id
// order.
func (c *Catalog) reportKeys(tenant string, fn func(k *keyState)) {
	t, ok := c.tenants[tenant]
	if !ok {
		return
	}
	ks := make([]*keyState, 0, len(t.keys))
	for _, k := range t.keys {
		if k.exists() && k.status != keyRevoked {
			ks = append(ks, k)
		}
	}
	slices.SortFunc(ks, func(a, b *keyState) int { return cmp.Compare(a.id, b.id) })
	for _, k := range ks {
		fn(k)
	}
}

func (k *keyState) name() string {
	if k.admin == nil {
		return ""
	}
	return k.admin.name
}

// OrphanedKeys lists a tenant's keys (revoked ones aside) whose user is
// disabled, deleted or unknown.
func (c *Catalog) OrphanedKeys(tenant string) []OrphanedKey {
	out := []OrphanedKey{}
	c.reportKeys(tenant, func(k *keyState) {
		u := k.user
		row := OrphanedKey{Key: k.id, Name: k.name(), User: u.ID}
		switch {
		case !u.Exists():
			row.Owner = "unknown"
		case u.Status == UserDisabled:
			row.Owner, row.Seq = "disabled", u.StatusBy.Seq()
		case u.Status == UserDeleted:
			row.Owner, row.Seq = "deleted", u.StatusBy.Seq()
		default:
			return
		}
		out = append(out, row)
	})
	return out
}

// RetiredPolicyKeys lists a tenant's keys (revoked ones aside) that
// reference a retired policy, one row per such reference.
func (c *Catalog) RetiredPolicyKeys(tenant string) []RetiredPolicyKey {
	out := []RetiredPolicyKey{}
	c.reportKeys(tenant, func(k *keyState) {
		for _, p := range k.policyList() {
			if p.Status == PolicyRetired {
				out = append(out, RetiredPolicyKey{Key: k.id, Name: k.name(), User: k.user.ID, Policy: p.ID, Seq: p.StatusBy.Seq()})
			}
		}
	})
	return out
}

// UnneededScopes lists a tenant's keys (revoked ones aside) holding scopes
// — their own or their live policies' — that none of the tenant's APIs
// (retired ones aside) requires. Keytrail's own scopes (keytrail:…), which
// the admin API requires, are not counted.
func (c *Catalog) UnneededScopes(tenant string) []UnneededScopes {
	out := []UnneededScopes{}
	t, ok := c.tenants[tenant]
	if !ok {
		return out
	}
	required := map[string]bool{}
	for _, a := range t.apis {
		if a.Exists() && a.Status != APIRetired {
			for _, s := range a.Scopes {
				required[s] = true
			}
		}
	}
	c.reportKeys(tenant, func(k *keyState) {
		row := UnneededScopes{Key: k.id, Name: k.name(), User: k.user.ID, Scopes: []string{}, Own: []string{}}
		for _, s := range k.effectiveScopes(nil) {
			if required[s] || strings.HasPrefix(s, "keytrail:") {
				continue
			}
			row.Scopes = append(row.Scopes, s)
			if slices.Contains(k.scopeList(), s) {
				row.Own = append(row.Own, s)
			}
		}
		if len(row.Scopes) > 0 {
			out = append(out, row)
		}
	})
	return out
}

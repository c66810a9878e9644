package projections

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
)

// grant is what a key is granted: its effective scopes, when it stops
// verifying by time, the APIs it may be used on (nil: any) and its rate
// limit.
type grant struct {
	scopes []string
	end    instant
	apis   []string
	rate   *events.RateLimit
}

func (k *keyState) grant() grant {
	g := grant{scopes: k.effectiveScopes(make([]string, 0, 8)), end: k.end(), apis: allowedAPIs(k.policyList())}
	d := Decision{rate: k.rate}
	for _, p := range k.policyList() {
		if p.Live() {
			d.meetRate(p.RateLimit)
		}
	}
	if r := d.KeyRateLimit(); r != nil {
		v := *r
		g.rate = &v
	}
	slices.Sort(g.scopes)
	slices.Sort(g.apis)
	return g
}

func (g grant) equal(o grant) bool {
	sameRate := (g.rate == nil) == (o.rate == nil) && (g.rate == nil || *g.rate == *o.rate)
	return slices.Equal(g.scopes, o.scopes) && g.end == o.end && (g.apis == nil) == (o.apis == nil) && slices.Equal(g.apis, o.apis) && sameRate
}

// allowedAPIs are the APIs a key's live policies let it be used on: nil
// (any) unless every live one names the APIs it allows.
func allowedAPIs(policies []*Policy) []string {
	var out []string
	for _, p := range policies {
		if !p.Live() {
			continue
		}
		if len(p.APIs) == 0 {
			return nil
		}
		for _, a := range p.APIs {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// Exceeds says how planned events (a confined caller's write, not yet in
// the log) would leave a key of tenant granted more than the caller's own
// key, admin, is granted now: a scope it lacks, a later end, an API it may
// not be used on. Only keys whose grant the events change are judged — a
// key issued, updated, rotated, or referencing a policy changed or
// retired — each against the whole of the caller's grant; "" when none
// exceeds it. This is the one rule a tenant admin is held to: it may make
// only keys it could have issued itself.
func (c *Catalog) Exceeds(tenant string, planned []events.Event, admin string) (string, error) {
	self := c.keyState(tenant, admin)
	if self == nil {
		return "", fmt.Errorf("projections: no key %s", admin)
	}
	bound := self.grant()
	after, err := c.after(tenant, planned)
	if err != nil {
		return "", err
	}
	te, ta := c.tenants[tenant], after.tenants[tenant]
	if ta == nil {
		return "", nil
	}
	for _, id := range slices.Sorted(maps.Keys(ta.keys)) {
		ka := ta.keys[id]
		if !ka.exists() || ka.status == keyRevoked {
			continue
		}
		g := ka.grant()
		if te != nil {
			if kb := te.keys[id]; kb != nil && kb.exists() && kb.grant().equal(g) {
				continue // unchanged
			}
		}
		for _, s := range g.scopes {
			if !slices.Contains(bound.scopes, s) {
				return fmt.Sprintf("scopes: key %s would hold %q, which the key making this request (%s) does not", id, s, admin), nil
			}
		}
		if g.end > bound.end {
			end := "never"
			if t := g.end.timeOr(never); t != nil {
				end = t.Format(time.RFC3339)
			}
			return fmt.Sprintf("expires_at: key %s would stop working %s, after %s, when the key making this request (%s) does",
				id, end, bound.end.timeOr(never).Format(time.RFC3339), admin), nil
		}
		if bound.apis != nil {
			if g.apis == nil {
				return fmt.Sprintf("policies: key %s could be used on any API; the key making this request (%s) only on %v", id, admin, bound.apis), nil
			}
			for _, a := range g.apis {
				if !slices.Contains(bound.apis, a) {
					return fmt.Sprintf("policies: key %s could be used on API %s, which the key making this request (%s) may not", id, a, admin), nil
				}
			}
		}
	}
	return "", nil
}

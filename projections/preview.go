package projections

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
)

// CodeAPIRetired is what a preview says of a request to a retired API: the
// gateway answers it 410 before any key is looked at. It is not an outcome
// code of verification.
const CodeAPIRetired Code = "API_RETIRED"

// ProbeChange is how the decision for a key's requests to one API changes
// — or, with API "", for requests without one (POST /v1/verify), asking
// for Scope ("": none).
type ProbeChange struct {
	API    string `json:"api"`
	Scope  string `json:"scope,omitempty"`
	Before Code   `json:"before"`
	After  Code   `json:"after"`
}

// KeyImpact is a key whose decisions a change would change.
type KeyImpact struct {
	Key     string        `json:"key"`
	User    string        `json:"user"`
	Changes []ProbeChange `json:"changes"`
}

// Impact is what a change would do to a tenant's verification: every key
// whose decision changes for a request with no API or to one of the
// tenant's APIs, and the users and APIs those keys and requests belong to.
type Impact struct {
	Keys  []KeyImpact `json:"keys"`
	Users []string    `json:"users"`
	APIs  []string    `json:"apis"`
}

// Denies reports whether the change takes away a decision that was VALID.
func (c ProbeChange) Denies() bool { return c.Before == CodeValid && c.After != CodeValid }

// Preview applies planned events (a dry run's: not yet in the log) to a
// copy of tenant's part of the catalog and compares, key by key, the
// decisions at now before and after: on each of the tenant's APIs, without
// an API, and without an API for each scope the key holds before or after.
// The catalog is not changed; the copy is the tenant's only, so a preview
// costs what the tenant holds.
func (c *Catalog) Preview(tenant string, planned []events.Event, now time.Time) (Impact, error) {
	after, err := c.after(tenant, planned)
	if err != nil {
		return Impact{}, err
	}
	imp := Impact{Keys: []KeyImpact{}, Users: []string{}, APIs: []string{}}
	te, ta := c.tenants[tenant], after.tenants[tenant]
	if ta == nil {
		return imp, nil
	}
	apis := []string{""}
	for id, a := range ta.apis {
		if a.Exists() {
			apis = append(apis, id)
		}
	}
	slices.Sort(apis)
	users, touched := map[string]bool{}, map[string]bool{}
	for _, id := range slices.Sorted(maps.Keys(ta.keys)) {
		ka := ta.keys[id]
		if !ka.exists() {
			continue
		}
		var kb *keyState
		if te != nil {
			if k := te.keys[id]; k != nil && k.exists() {
				kb = k
			}
		}
		var changes []ProbeChange
		change := func(api, scope string) {
			b, a := CodeNotFound, after.probe(ka, tenant, api, scope, now)
			if kb != nil {
				b = c.probe(kb, tenant, api, scope, now)
			}
			if b != a {
				changes = append(changes, ProbeChange{API: api, Scope: scope, Before: b, After: a})
				if api != "" {
					touched[api] = true
				}
			}
		}
		for _, api := range apis {
			change(api, "")
		}
		held := ka.effectiveScopes(make([]string, 0, 8)) // a copy: sorted below
		if kb != nil {
			for _, s := range kb.effectiveScopes(nil) {
				if !slices.Contains(held, s) {
					held = append(held, s)
				}
			}
		}
		slices.Sort(held)
		for _, scope := range held {
			change("", scope)
		}
		if changes != nil {
			imp.Keys = append(imp.Keys, KeyImpact{Key: id, User: ka.user.ID, Changes: changes})
			users[ka.user.ID] = true
		}
	}
	imp.Users = append(imp.Users, slices.Sorted(maps.Keys(users))...)
	imp.APIs = append(imp.APIs, slices.Sorted(maps.Keys(touched))...)
	return imp, nil
}

// after is a copy of tenant's part of the catalog with planned events
// applied.
func (c *Catalog) after(tenant string, planned []events.Event) (*Catalog, error) {
	after := c.fork(tenant)
	for _, e := range planned {
		if e.Tenant != tenant {
			return nil, fmt.Errorf("projections: a planned event of tenant %s in a preview of %s", e.Tenant, tenant)
		}
		if err := after.applyPlanned(e); err != nil {
			return nil, err
		}
	}
	return after, nil
}

// probe is the decision a request with key k to API api of tenant gets at
// now ("": a request without an API, asking for scope unless it is ""),
// CodeAPIRetired for a retired API.
func (c *Catalog) probe(k *keyState, tenant, api, scope string, now time.Time) Code {
	q := Request{}
	if scope != "" {
		q.Scopes = []string{scope}
	}
	if api != "" {
		if a := c.tenants[tenant].apis[api]; a == nil || !a.Exists() {
			return CodeNotFound
		} else if a.Status == APIRetired {
			return CodeAPIRetired
		}
		q.APITenant, q.API = tenant, api
	}
	var d Decision
	c.verifyHash(&d, k.hash, &q, now)
	return d.Code
}

// fork copies tenant's part of the catalog: its states, its keys (indexed
// by hash), its policies; other tenants are left out, and so is trust (a
// preview's events are not signed).
func (c *Catalog) fork(tenant string) *Catalog {
	f := NewCatalog()
	f.verifyOnly, f.Seq = c.verifyOnly, c.Seq
	t := c.tenants[tenant]
	if t == nil {
		return f
	}
	nt := f.tenant(tenant)
	nt.Tenant = t.Tenant
	for id, u := range t.users {
		cp := *u
		nt.users[id] = &cp
	}
	for id, a := range t.apis {
		cp := *a
		nt.apis[id] = &cp
		if a.Exists() && c.prefix[a.PathPrefix] == a {
			f.setPrefix(a.PathPrefix, &cp)
		}
	}
	for id, p := range t.policies {
		cp := *p
		nt.policies[id] = &cp
	}
	for id, w := range t.webhooks {
		cp := *w
		nt.webhooks[id] = &cp
	}
	block := make([]keyState, len(t.keys))
	i := 0
	for id, k := range t.keys {
		nk := &block[i]
		i++
		*nk = *k
		nt.keys[id] = nk
		if !k.exists() {
			continue
		}
		nk.tenant, nk.user = nt, userEntry(nt, k.user.ID)
		nk.policies = f.internPolicies(nt, k.policyIDs())
		f.byHash.add(nk)
	}
	return f
}

// applyPlanned applies an event that is not in the log yet: it is given
// the next sequence and linked to its aggregate's head.
func (c *Catalog) applyPlanned(e events.Event) error {
	subject, err := events.SubjectOf(&e)
	if err != nil {
		return err
	}
	e.PrevHash = c.head(e.Tenant, e.Aggregate)
	r := events.Recorded{Seq: c.Seq + 1, Subject: subject, Hash: events.HashOf([]byte(subject + "#" + e.ID)), Event: e}
	return c.Apply(r)
}

// head is the chain head of an aggregate (zero when it has none).
func (c *Catalog) head(tenant string, a events.Aggregate) events.Hash {
	t := c.tenants[tenant]
	if t == nil {
		return events.Hash{}
	}
	switch a.Kind {
	case events.KindTenant:
		return t.Head
	case events.KindUser:
		if u := t.users[a.ID]; u != nil {
			return u.Head
		}
	case events.KindKey:
		if k := t.keys[a.ID]; k != nil {
			return k.head
		}
	case events.KindAPI:
		if x := t.apis[a.ID]; x != nil {
			return x.Head
		}
	case events.KindPolicy:
		if p := t.policies[a.ID]; p != nil {
			return p.Head
		}
	case events.KindWebhook:
		if w := t.webhooks[a.ID]; w != nil {
			return w.Head
		}
	}
	return events.Hash{}
}

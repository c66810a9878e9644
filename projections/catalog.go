package projections

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keytrail/keytrail/events"
)

// Catalog is the whole log folded: every tenant, user, key and API, with the
// indexes the admin API lists by and verification looks keys up by. It is
// not safe for concurrent use: one applier owns it; readers go through
// whoever wraps it.
type Catalog struct {
	// Seq is the stream sequence of the last message applied or skipped.
	Seq     uint64
	tenants map[string]*tenantEntry
	byHash  map[events.SecretHash]keyRef
	prefix  map[string]*API
	// scopes interns scope lists: most keys share a few, and a key's scopes
	// are never changed in place (an update replaces the list).
	scopes map[string][]string
	// Skipped counts messages that did not apply (undecodable, unlinked,
	// impossible transitions); Problems keeps the latest of them.
	Skipped  uint64
	Problems []Problem
}

// Problem is a message the catalog did not apply, and why.
type Problem struct {
	Seq uint64
	Err error
}

const maxProblems = 100

// keyRef is what a lookup by secret hash finds: the key, and its tenant's
// and user's states, so that verifying looks nothing else up. The user's
// state exists from the key's issue on, empty (Exists false) while the user
// has no events.
type keyRef struct {
	key    *Key
	tenant *tenantEntry
	user   *User
}

type tenantEntry struct {
	Tenant
	users map[string]*User
	keys  map[string]*Key
	apis  map[string]*API
}

// NewCatalog returns an empty catalog.
func NewCatalog() *Catalog {
	return &Catalog{tenants: map[string]*tenantEntry{}, byHash: map[events.SecretHash]keyRef{},
		prefix: map[string]*API{}, scopes: map[string][]string{}}
}

// ErrUnlinked: an event whose prev_hash is not its aggregate's last hash.
var ErrUnlinked = errors.New("projections: event does not link to its aggregate's previous event")

// Skip records a message at seq that is not a valid event (decodeErr).
func (c *Catalog) Skip(seq uint64, err error) {
	c.Seq = max(c.Seq, seq)
	c.problem(seq, err)
}

func (c *Catalog) problem(seq uint64, err error) {
	c.Skipped++
	c.Problems = append(c.Problems, Problem{Seq: seq, Err: err})
	if len(c.Problems) > maxProblems {
		c.Problems = slices.Delete(c.Problems, 0, len(c.Problems)-maxProblems)
	}
}

// Apply folds one recorded event. An event that does not link to its
// aggregate's previous event is skipped and reported (the error is returned
// too). An event that links but cannot apply (an impossible transition) is
// reported and not applied, yet it is part of the chain, as the store sees
// it: the next event links to it.
func (c *Catalog) Apply(r events.Recorded) error {
	c.Seq = max(c.Seq, r.Seq)
	t := c.tenant(r.Tenant)
	head := c.head(t, r.Aggregate)
	if r.PrevHash != *head {
		err := fmt.Errorf("%w: seq %d on %s", ErrUnlinked, r.Seq, r.Subject)
		c.problem(r.Seq, err)
		return err
	}
	*head = r.Hash
	if err := c.apply(t, r); err != nil {
		c.problem(r.Seq, err)
		return err
	}
	return nil
}

// head is where the chain head of an aggregate is kept: in its state, which
// is created empty (Exists false) by the aggregate's first event, even one
// that does not apply, so that the chain can go on from it.
func (c *Catalog) head(t *tenantEntry, a events.Aggregate) *events.Hash {
	switch a.Kind {
	case events.KindTenant:
		return &t.Head
	case events.KindUser:
		return &entry(t.users, a.ID).Head
	case events.KindKey:
		return &entry(t.keys, a.ID).Head
	case events.KindAPI:
		return &entry(t.apis, a.ID).Head
	}
	return new(events.Hash)
}

// entry returns m[id], creating it empty (Exists false) if it is missing.
func entry[T any](m map[string]*T, id string) *T {
	v := m[id]
	if v == nil {
		v = new(T)
		m[id] = v
	}
	return v
}

func (c *Catalog) tenant(id string) *tenantEntry {
	t := c.tenants[id]
	if t == nil {
		t = &tenantEntry{users: map[string]*User{}, keys: map[string]*Key{}, apis: map[string]*API{}}
		c.tenants[id] = t
	}
	return t
}

// apply applies r to the state head found (which exists by now), keeping
// the chain head, which Apply of a creation event would reset.
func (c *Catalog) apply(t *tenantEntry, r events.Recorded) error {
	switch r.Aggregate.Kind {
	case events.KindTenant:
		next, err := t.Tenant.Apply(r)
		if err == nil {
			next.Head = r.Hash
			t.Tenant = next
		}
		return err
	case events.KindUser:
		u := t.users[r.Aggregate.ID]
		next, err := u.Apply(r)
		if err == nil {
			next.Head = r.Hash
			*u = next
		}
		return err
	case events.KindKey:
		k := t.keys[r.Aggregate.ID]
		next, err := k.Apply(r)
		if err != nil {
			return err
		}
		if _, issued := r.Data.(events.KeyIssuedV1); issued {
			if _, dup := c.byHash[next.SecretHash]; dup {
				return impossible(r, "another key has this secret hash")
			}
			c.byHash[next.SecretHash] = keyRef{key: k, tenant: t, user: entry(t.users, r.Aggregate.User)}
		}
		next.Head = r.Hash
		c.share(t, &next)
		*k = next
		return nil
	case events.KindAPI:
		a := t.apis[r.Aggregate.ID]
		old := a.PathPrefix
		next, err := a.Apply(r)
		if err != nil {
			return err
		}
		if next.PathPrefix != old {
			if other, taken := c.prefix[next.PathPrefix]; taken && other != a {
				return impossible(r, "another API holds this path prefix")
			}
			if old != "" {
				delete(c.prefix, old)
			}
			c.prefix[next.PathPrefix] = a
		}
		next.Head = r.Hash
		*a = next
		return nil
	}
	return impossible(r, "unknown aggregate kind")
}

// share makes a key's tenant, user and scopes point at strings the catalog
// already holds, so that a million keys do not hold a million copies.
func (c *Catalog) share(t *tenantEntry, k *Key) {
	if t.Exists() && t.ID == k.Tenant {
		k.Tenant = t.ID
	}
	if u := t.users[k.User]; u != nil && u.Exists() && u.ID == k.User {
		k.User = u.ID
	}
	if len(k.Scopes) > 0 {
		id := strings.Join(k.Scopes, "\x00")
		if s, ok := c.scopes[id]; ok {
			k.Scopes = s
		} else {
			c.scopes[id] = k.Scopes
		}
	}
}

// Tenant returns a tenant.
func (c *Catalog) Tenant(id string) (Tenant, bool) {
	t, ok := c.tenants[id]
	if !ok || !t.Exists() {
		return Tenant{}, false
	}
	return t.Tenant, true
}

// User returns a user of a tenant.
func (c *Catalog) User(tenant, id string) (User, bool) {
	if t, ok := c.tenants[tenant]; ok {
		if u, ok := t.users[id]; ok && u.Exists() {
			return *u, true
		}
	}
	return User{}, false
}

// Key returns a key of a tenant.
func (c *Catalog) Key(tenant, id string) (Key, bool) {
	if t, ok := c.tenants[tenant]; ok {
		if k, ok := t.keys[id]; ok && k.Exists() {
			return *k, true
		}
	}
	return Key{}, false
}

// API returns an API of a tenant.
func (c *Catalog) API(tenant, id string) (API, bool) {
	if t, ok := c.tenants[tenant]; ok {
		if a, ok := t.apis[id]; ok && a.Exists() {
			return *a, true
		}
	}
	return API{}, false
}

// KeyFilter selects keys of one tenant for a list.
type KeyFilter struct {
	User   string
	Status KeyStatus
	// ExpiringWithin selects keys whose expiry (or end of rotation grace)
	// falls between Now and Now+ExpiringWithin.
	ExpiringWithin time.Duration
	Now            time.Time
	// After is the cursor: the last key id of the previous page.
	After string
	Limit int
}

// Keys lists a tenant's keys in key id order (the order they were issued),
// returning the page and whether more follow.
func (c *Catalog) Keys(tenant string, f KeyFilter) (page []Key, more bool) {
	t, ok := c.tenants[tenant]
	if !ok {
		return nil, false
	}
	var all []*Key
	for _, k := range t.keys {
		if !k.Exists() || k.ID <= f.After || (f.User != "" && k.User != f.User) || (f.Status != "" && k.Status != f.Status) {
			continue
		}
		if f.ExpiringWithin > 0 {
			end := k.ExpiresAt
			if k.GraceUntil != nil && (end == nil || k.GraceUntil.Before(*end)) {
				end = k.GraceUntil
			}
			if end == nil || end.Before(f.Now) || end.After(f.Now.Add(f.ExpiringWithin)) {
				continue
			}
		}
		all = append(all, k)
	}
	slices.SortFunc(all, func(a, b *Key) int { return cmp.Compare(a.ID, b.ID) })
	if f.Limit > 0 && len(all) > f.Limit {
		all, more = all[:f.Limit], true
	}
	page = make([]Key, len(all))
	for i, k := range all {
		page[i] = *k
	}
	return page, more
}

package projections

import (
	"cmp"
	"crypto/ed25519"
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
	Seq uint64
	// Chain is the global chain (docs/signing.md) at Seq, folded by Take
	// over every message in stream order; chainGap says a sequence was
	// missing (a reader of some subjects only), and Chain means nothing.
	Chain    events.Hash
	chainGap bool
	// vouch, while set, is a verified checkpoint whose judgement of
	// signatures TrustedAt takes for the messages it covers (catch-up).
	vouch   *events.Checkpoint
	tenants map[string]*tenantEntry
	byHash  keyTable
	prefix  map[string]*API
	// folded counts the prefixes of prefix by their lower-case form: a path
	// that matches one only when case is ignored is ambiguous, never routed
	// to a shorter prefix.
	folded map[string]int
	scopes map[string]*[]string // interned scope lists, by their joined form
	rates  map[events.RateLimit]*events.RateLimit
	// policyLists are the interned lists of policies keys reference, by
	// tenant and joined ids.
	policyLists map[string]*policyList
	// keyBlock is where newKey takes key states from.
	keyBlock []keyState
	// verifyOnly: keep what verification reads, not the keys' admin-only
	// attributes (NewVerificationCatalog).
	verifyOnly bool
	// Skipped counts messages that did not apply (undecodable, unlinked,
	// impossible transitions); Problems keeps the latest of them.
	Skipped  uint64
	Problems []Problem
	// trust, when set, is the pinned root public key: every event must
	// then be signed — the signer set's by it, the others by a signer it
	// added (docs/signing.md).
	trust ed25519.PublicKey
	// signers are every signer the set ever held, with when it was added
	// and removed; trustHead the chain head of their aggregate.
	signers   map[string]*signerSpan
	trustHead events.Hash
	// signedFrom is the sequence of the first signer added: the history
	// before it was written before signing began, and counts unsigned (it
	// cannot be added to: the log is append-only).
	signedFrom uint64
}

// signerSpan is a signer, what it signs (events.SignerRoleEvents or
// SignerRoleDecisions) and the sequences it was added and removed at (0:
// still trusted).
type signerSpan struct {
	pub            ed25519.PublicKey
	role           string
	added, removed uint64
}

// ErrUnsigned: an event without a signature a trusted signer made.
var ErrUnsigned = errors.New("projections: not signed by a trusted signer")

// SetTrust pins the root public key: from then on the catalog applies only
// events signed by the signers it added (and the signer set's own events
// signed by it).
func (c *Catalog) SetTrust(root ed25519.PublicKey) { c.trust = root }

// Signers are the ids of the signers trusted now, sorted.
func (c *Catalog) Signers() []string {
	var out []string
	for id, s := range c.signers {
		if s.removed == 0 {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// SignersAfter are the signers of role trusted once the log holds seq
// (added at or before it, not removed at or before it): who may sign a
// checkpoint of seq — the signer added by the event at seq included.
func (c *Catalog) SignersAfter(seq uint64, role string) map[string]ed25519.PublicKey {
	out := map[string]ed25519.PublicKey{}
	for id, s := range c.signers {
		if s.role == role && s.added <= seq && (s.removed == 0 || s.removed > seq) {
			out[id] = s.pub
		}
	}
	return out
}

// SignerSpan is a signer of a role as the log holds it: its public key,
// the sequence that added it and the one that removed it (0: trusted).
type SignerSpan struct {
	Public         ed25519.PublicKey
	Added, Removed uint64
}

// SignerSpans are every signer of role the set ever held, by id.
func (c *Catalog) SignerSpans(role string) map[string]SignerSpan {
	out := map[string]SignerSpan{}
	for id, s := range c.signers {
		if s.role == role {
			out[id] = SignerSpan{Public: s.pub, Added: s.added, Removed: s.removed}
		}
	}
	return out
}

// TrustedAt says whether r is signed as the pinned root requires: the
// signer set's events by the root key, any other by a signer trusted as of
// the sequence before r's (added before it, not removed before it). The
// one judgement of the readers' fold, of verify-chain and of a control
// node's own reads; nil also when no root is pinned.
func (c *Catalog) TrustedAt(r *events.Recorded) error {
	switch {
	case c.trust == nil:
		return nil
	case !r.Seal.Signed() && (c.signedFrom == 0 || r.Seq < c.signedFrom) && r.Aggregate.Kind != events.KindTrust:
		return nil // history from before signing began
	case !r.Seal.Signed():
		return fmt.Errorf("%w: seq %d %s has no signature", ErrUnsigned, r.Seq, r.Type)
	case r.Aggregate.Kind == events.KindTrust:
		if !c.verified(r, c.trust) {
			return fmt.Errorf("%w: seq %d %s is not signed by the root key", ErrUnsigned, r.Seq, r.Type)
		}
		return nil
	}
	s, ok := c.signers[r.Seal.Signer]
	switch {
	case !ok || s.added >= r.Seq:
		return fmt.Errorf("%w: seq %d %s is signed by %s, not a trusted signer", ErrUnsigned, r.Seq, r.Type, r.Seal.Signer)
	case s.removed != 0 && s.removed < r.Seq:
		return fmt.Errorf("%w: seq %d %s is signed by %s, removed at seq %d", ErrUnsigned, r.Seq, r.Type, r.Seal.Signer, s.removed)
	case s.role != events.SignerRoleEvents:
		return fmt.Errorf("%w: seq %d %s is signed by %s, a %s signer, which signs no events", ErrUnsigned, r.Seq, r.Type, r.Seal.Signer, s.role)
	case !c.verified(r, s.pub):
		return fmt.Errorf("%w: seq %d %s: the signature of %s does not verify", ErrUnsigned, r.Seq, r.Type, r.Seal.Signer)
	}
	return nil
}

// verified checks r's signature by pub — or, when a checkpoint vouches for
// r's sequence (Vouch), takes its signer's judgement of it.
func (c *Catalog) verified(r *events.Recorded, pub ed25519.PublicKey) bool {
	if v := c.vouch; v != nil && v.Vouches(r.Seq) {
		return !v.IsRefused(r.Seq)
	}
	return r.Seal.Verify(pub)
}

// Vouch makes TrustedAt take cp's judgement of signatures for the messages
// it covers instead of verifying each (nil: verify each again). The caller
// has verified cp's signature and checked its chain against the messages
// (a reader catching up: services/readmodel).
func (c *Catalog) Vouch(cp *events.Checkpoint) { c.vouch = cp }

// ChainKnown reports whether Chain is the global chain at Seq: the catalog
// took every message from the first.
func (c *Catalog) ChainKnown() bool { return !c.chainGap }

// applyTrust folds an event of the signer set.
func (c *Catalog) applyTrust(r *events.Recorded) error {
	if err := link(r, &c.trustHead); err != nil {
		return err
	}
	switch p := r.Data.(type) {
	case events.SignerAddedV1:
		if c.signedFrom == 0 {
			c.signedFrom = r.Seq
		}
		if s := c.signers[p.ID]; s == nil || s.removed != 0 {
			c.signers[p.ID] = &signerSpan{pub: ed25519.PublicKey(p.PublicKey), role: p.SignerRole(), added: r.Seq}
		}
	case events.SignerRemovedV1:
		if s := c.signers[p.ID]; s != nil && s.removed == 0 {
			s.removed = r.Seq
		}
	default:
		return impossible(*r, "not a signer event")
	}
	return nil
}

// Problem is a message the catalog did not apply, and why.
type Problem struct {
	Seq uint64
	Err error
}

const maxProblems = 100

type tenantEntry struct {
	Tenant
	id    string
	users map[string]*User
	keys  map[string]*keyState
	apis  map[string]*API
	// webhooks are the tenant's webhook endpoints (few: no index).
	webhooks map[string]*Webhook
	// policies are the tenant's access policies, and placeholders for
	// those keys reference before they have events.
	policies map[string]*Policy
	// listsOf are the interned policy lists that hold a policy, by its id
	// (policyChanged).
	listsOf map[string][]*policyList
}

// NewCatalog returns an empty catalog that keeps everything: the admin
// side's.
func NewCatalog() *Catalog {
	return &Catalog{tenants: map[string]*tenantEntry{}, prefix: map[string]*API{}, folded: map[string]int{}, scopes: map[string]*[]string{},
		rates: map[events.RateLimit]*events.RateLimit{}, signers: map[string]*signerSpan{}, policyLists: map[string]*policyList{}}
}

// NewVerificationCatalog returns an empty catalog that keeps what
// verification reads and drops the keys' names, hints, metadata, rotation
// links and exact times (Key returns them empty, its times to the
// nanosecond within years 1678–2262): a gateway's.
func NewVerificationCatalog() *Catalog {
	c := NewCatalog()
	c.verifyOnly = true
	return c
}

// VerifyOnly reports whether the catalog is a verification-only one.
func (c *Catalog) VerifyOnly() bool { return c.verifyOnly }

// ErrUnlinked: an event whose prev_hash is not its aggregate's last hash.
var ErrUnlinked = errors.New("projections: event does not link to its aggregate's previous event")

// Take folds the message at seq as every reader of the log does — the read
// models and the audit's verify-chain alike: a message that is not a valid
// event (decodeErr) is skipped, an event is applied; the error says why it
// did not count (nil when it did).
//
// raw is the SHA-256 of the message's stored bytes: Take folds it into the
// global chain (Chain).
func (c *Catalog) Take(seq uint64, raw events.Hash, r events.Recorded, decodeErr error) error {
	if seq != c.Seq+1 {
		return c.TakeChained(seq, events.Hash{}, r, decodeErr)
	}
	return c.TakeChained(seq, events.ChainNext(c.Chain, seq, raw), r, decodeErr)
}

// TakeChained is Take for a message whose global chain value (Chain once
// seq is taken) the caller has folded already — a reader that checked a
// span against its checkpoint.
func (c *Catalog) TakeChained(seq uint64, chain events.Hash, r events.Recorded, decodeErr error) error {
	switch {
	case seq == c.Seq+1:
		c.Chain = chain
	case seq > c.Seq:
		c.chainGap = true
	}
	if decodeErr != nil {
		c.Skip(seq, decodeErr)
		return decodeErr
	}
	return c.Apply(r)
}

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
//
// The chain head of an aggregate is kept in its state, which is created
// empty (Exists false) by the aggregate's first event, even one that does
// not apply, so that the chain can go on from it.
func (c *Catalog) Apply(r events.Recorded) error {
	c.Seq = max(c.Seq, r.Seq)
	if err := c.TrustedAt(&r); err != nil {
		c.problem(r.Seq, err)
		return err
	}
	if r.Aggregate.Kind == events.KindTrust {
		err := c.applyTrust(&r)
		if err != nil {
			c.problem(r.Seq, err)
		}
		return err
	}
	t := c.tenant(r.Tenant)
	var err error
	switch id := r.Aggregate.ID; r.Aggregate.Kind {
	case events.KindTenant:
		if err = link(&r, &t.Head); err == nil {
			err = applyState(&t.Tenant, &r, func(s *Tenant) { s.Head = r.Hash })
		}
	case events.KindUser:
		u := userEntry(t, id)
		if err = link(&r, &u.Head); err == nil {
			err = applyState(u, &r, func(s *User) { s.Head = r.Hash })
		}
	case events.KindKey:
		k := t.keys[id]
		if k == nil {
			k = c.newKey()
			t.keys[id] = k
		}
		if err = link(&r, &k.head); err == nil {
			err = c.applyKey(t, k, &r)
		}
	case events.KindAPI:
		a := entry(t.apis, id)
		if err = link(&r, &a.Head); err == nil {
			err = c.applyAPI(a, &r)
		}
	case events.KindWebhook:
		w := entry(t.webhooks, id)
		if err = link(&r, &w.Head); err == nil {
			err = applyState(w, &r, func(s *Webhook) { s.Head = r.Hash })
		}
	case events.KindPolicy:
		p := policyEntry(t, id)
		if err = link(&r, &p.Head); err == nil {
			if err = applyState(p, &r, func(s *Policy) { s.Head = r.Hash }); err == nil {
				t.policyChanged(id)
			}
		}
	default:
		err = impossible(r, "unknown aggregate kind")
	}
	if err != nil {
		c.problem(r.Seq, err)
	}
	return err
}

// link checks that r links to its aggregate's chain head and moves the head
// to r.
func link(r *events.Recorded, head *events.Hash) error {
	if r.PrevHash != *head {
		return fmt.Errorf("%w: seq %d on %s", ErrUnlinked, r.Seq, r.Subject)
	}
	*head = r.Hash
	return nil
}

// applyState applies r to a tenant's or user's state, keeping the chain
// head (keep), which Apply of a creation event would reset.
func applyState[T interface {
	Apply(events.Recorded) (T, error)
}](s *T, r *events.Recorded, keep func(*T)) error {
	next, err := (*s).Apply(*r)
	if err != nil {
		return err
	}
	keep(&next)
	*s = next
	return nil
}

func (c *Catalog) applyKey(t *tenantEntry, k *keyState, r *events.Recorded) error {
	cur := k.expand()
	next, err := cur.Apply(*r)
	if err != nil {
		return err
	}
	if _, issued := r.Data.(events.KeyIssuedV1); issued {
		placeholder := *k
		k.id, k.tenant, k.user = r.Aggregate.ID, t, userEntry(t, r.Aggregate.User)
		c.set(k, &next)
		if !c.byHash.add(k) {
			*k = placeholder
			return impossible(*r, "another key has this secret hash")
		}
		return nil
	}
	c.set(k, &next)
	return nil
}

func (c *Catalog) applyAPI(a *API, r *events.Recorded) error {
	old := a.PathPrefix
	next, err := a.Apply(*r)
	if err != nil {
		return err
	}
	if next.PathPrefix != old {
		other, taken := c.prefix[next.PathPrefix]
		if taken && other != a && other.Status != APIRetired {
			return impossible(*r, "another API holds this path prefix")
		}
		if old != "" && c.prefix[old] == a {
			c.unsetPrefix(old)
		}
		if taken && other != a {
			c.unsetPrefix(next.PathPrefix) // a retired API's prefix, reclaimed
		}
		c.setPrefix(next.PathPrefix, a)
	}
	next.Head = r.Hash
	*a = next
	return nil
}

// newKey returns an empty key state from the catalog's current block of
// them: keys come by the million, and one allocation per key would be a
// million objects for the allocator.
func (c *Catalog) newKey() *keyState {
	if len(c.keyBlock) == 0 {
		c.keyBlock = make([]keyState, 256)
	}
	k := &c.keyBlock[0]
	c.keyBlock = c.keyBlock[1:]
	return k
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

// userEntry is entry for users: a user's state knows its id before the
// user exists, for the keys that point at it.
func userEntry(t *tenantEntry, id string) *User {
	u := entry(t.users, id)
	if u.ID == "" {
		u.ID = id
	}
	return u
}

func (c *Catalog) tenant(id string) *tenantEntry {
	t := c.tenants[id]
	if t == nil {
		t = &tenantEntry{id: id, users: map[string]*User{}, keys: map[string]*keyState{}, apis: map[string]*API{},
			webhooks: map[string]*Webhook{}, policies: map[string]*Policy{}}
		c.tenants[id] = t
	}
	return t
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
		if k, ok := t.keys[id]; ok && k.exists() {
			return k.expand(), true
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
	User string
	// Status is an effective status (EffectiveStatuses): the owner's state
	// and expiry included.
	Status KeyStatus
	// ExpiringWithin selects keys whose expiry (or end of rotation grace)
	// falls between Now and Now+ExpiringWithin.
	ExpiringWithin time.Duration
	Now            time.Time
	// After is the cursor: the last key id of the previous page.
	After string
	Limit int
	// Keep, when set, is one more condition a key must meet (the admin
	// API's unused_for, answered from the usage rollups).
	Keep func(tenant, keyID string) bool
	// Search, when set, keeps keys whose id, name or hint contains it,
	// ignoring case.
	Search string
}

// matches reports whether the key's id, name or hint contains q (lower
// case).
func (k *keyState) matches(q string) bool {
	if strings.Contains(strings.ToLower(k.id), q) {
		return true
	}
	return k.admin != nil && (strings.Contains(strings.ToLower(k.admin.name), q) || strings.Contains(strings.ToLower(k.admin.hint), q))
}

// Keys lists a tenant's keys in key id order (the order they were issued),
// returning the page and whether more follow.
func (c *Catalog) Keys(tenant string, f KeyFilter) (page []Key, more bool) {
	t, ok := c.tenants[tenant]
	if !ok {
		return nil, false
	}
	var all []*keyState
	from, until := instantOf(f.Now), instantOf(f.Now.Add(f.ExpiringWithin))
	search := strings.ToLower(f.Search)
	for _, k := range t.keys {
		if !k.exists() || k.id <= f.After || (f.User != "" && k.user.ID != f.User) || (search != "" && !k.matches(search)) {
			continue
		}
		if f.Status != "" {
			if s, _ := effectiveOf(c.VerifyHash(k.hash, Request{}, f.Now).Code); s != f.Status {
				continue
			}
		}
		if f.ExpiringWithin > 0 {
			end := k.end() // a policy's lifetime bound included
			if end == never || end < from || end > until {
				continue
			}
		}
		if f.Keep != nil && !f.Keep(tenant, k.id) {
			continue
		}
		all = append(all, k)
	}
	slices.SortFunc(all, func(a, b *keyState) int { return cmp.Compare(a.id, b.id) })
	if f.Limit > 0 && len(all) > f.Limit {
		all, more = all[:f.Limit], true
	}
	page = make([]Key, len(all))
	for i, k := range all {
		page[i] = k.expand()
	}
	return page, more
}

// setPrefix and unsetPrefix keep the prefix index and its folded count.
func (c *Catalog) setPrefix(p string, a *API) {
	c.prefix[p] = a
	c.folded[strings.ToLower(p)]++
}

func (c *Catalog) unsetPrefix(p string) {
	delete(c.prefix, p)
	f := strings.ToLower(p)
	if c.folded[f]--; c.folded[f] <= 0 {
		delete(c.folded, f)
	}
}

// Routing is what routing a path found.
type Routing int

// What Route finds.
const (
	// NoRoute: no API's prefix covers the path.
	NoRoute Routing = iota
	// Routed: the API with the longest prefix covering the path.
	Routed
	// Ambiguous: a longer prefix than any that covers the path matches it
	// when case is ignored (/orders/Admin with /orders/admin published):
	// the path is refused rather than routed to the shorter, looser prefix.
	Ambiguous
)

// Route returns the API a request path is for: the one with the longest
// path prefix that the path falls under. A prefix covers a path equal to
// it, below it when it ends in '/', or followed in the path by '/'
// ("/orders" covers "/orders" and "/orders/1", not "/orders-v2"). Only the
// first events.MaxPathPrefixLen bytes can hold a prefix, so routing costs
// the same for any longer path.
func (c *Catalog) Route(path string) (API, Routing) {
	var lower [events.MaxPathPrefixLen]byte
	for i := min(len(path), len(lower)); i > 0; i-- {
		if i < len(path) && path[i] != '/' && path[i-1] != '/' {
			continue
		}
		if a, ok := c.prefix[path[:i]]; ok && a.Exists() {
			return *a, Routed
		}
		for j := range i {
			b := path[j]
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			lower[j] = b
		}
		if c.folded[string(lower[:i])] > 0 {
			return API{}, Ambiguous
		}
	}
	return API{}, NoRoute
}

// EachHead calls fn with every aggregate the catalog holds a chain head
// for (a key only once issued), and that head: what a node checks a
// snapshot against the log with before it trusts it.
func (c *Catalog) EachHead(fn func(tenant string, a events.Aggregate, head events.Hash)) {
	if !c.trustHead.IsZero() {
		fn(events.SystemTenant, events.TrustAggregate(), c.trustHead)
	}
	for tid, t := range c.tenants {
		fn(tid, events.TenantAggregate(tid), t.Head)
		for uid, u := range t.users {
			fn(tid, events.UserAggregate(uid), u.Head)
		}
		for kid, k := range t.keys {
			if k.exists() {
				fn(tid, events.KeyAggregate(k.user.ID, kid), k.head)
			}
		}
		for aid, a := range t.apis {
			fn(tid, events.APIAggregate(aid), a.Head)
		}
		for wid, w := range t.webhooks {
			fn(tid, events.WebhookAggregate(wid), w.Head)
		}
		for pid, p := range t.policies {
			if !p.Head.IsZero() {
				fn(tid, events.PolicyAggregate(pid), p.Head)
			}
		}
	}
}

// pageOf returns the existing values of m after the cursor, in id order, at
// most limit (0: all), and whether more follow.
func pageOf[T any](m map[string]*T, after string, limit int, exists func(*T) bool) (page []T, more bool) {
	ids := make([]string, 0, len(m))
	for id, v := range m {
		if id > after && exists(v) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if limit > 0 && len(ids) > limit {
		ids, more = ids[:limit], true
	}
	page = make([]T, len(ids))
	for i, id := range ids {
		page[i] = *m[id]
	}
	return page, more
}

// Tenants lists the tenants in id order after the cursor.
func (c *Catalog) Tenants(after string, limit int) ([]Tenant, bool) {
	entries, more := pageOf(c.tenants, after, limit, func(t *tenantEntry) bool { return t.Exists() })
	page := make([]Tenant, len(entries))
	for i, t := range entries {
		page[i] = t.Tenant
	}
	return page, more
}

// Users lists a tenant's users in id order after the cursor.
func (c *Catalog) Users(tenant, after string, limit int) ([]User, bool) {
	t, ok := c.tenants[tenant]
	if !ok {
		return nil, false
	}
	return pageOf(t.users, after, limit, func(u *User) bool { return u.Exists() })
}

// APIs lists a tenant's APIs in id order after the cursor.
func (c *Catalog) APIs(tenant, after string, limit int) ([]API, bool) {
	t, ok := c.tenants[tenant]
	if !ok {
		return nil, false
	}
	return pageOf(t.apis, after, limit, func(a *API) bool { return a.Exists() })
}

// KeyCount is how many keys a user holds, and how many of them verify now
// (their effective status is active).
type KeyCount struct {
	Total  int `json:"total"`
	Active int `json:"active"`
}

// KeyCounts counts each user's keys of a tenant as of now.
func (c *Catalog) KeyCounts(tenant string, now time.Time) map[string]KeyCount {
	out := map[string]KeyCount{}
	t, ok := c.tenants[tenant]
	if !ok {
		return out
	}
	for _, k := range t.keys {
		if !k.exists() {
			continue
		}
		n := out[k.user.ID]
		n.Total++
		if c.VerifyHash(k.hash, Request{}, now).Code == CodeValid {
			n.Active++
		}
		out[k.user.ID] = n
	}
	return out
}

// Webhook returns a webhook endpoint of a tenant (a deleted one too).
func (c *Catalog) Webhook(tenant, id string) (Webhook, bool) {
	if t, ok := c.tenants[tenant]; ok {
		if w, ok := t.webhooks[id]; ok && w.Exists() {
			return *w, true
		}
	}
	return Webhook{}, false
}

// Webhooks lists a tenant's webhook endpoints that are not deleted, in id
// order.
func (c *Catalog) Webhooks(tenant string) []Webhook {
	t, ok := c.tenants[tenant]
	if !ok {
		return nil
	}
	page, _ := pageOf(t.webhooks, "", len(t.webhooks)+1, func(w *Webhook) bool { return w.Exists() && w.Status != WebhookDeleted })
	return page
}

// AllWebhooks calls fn with every endpoint of every tenant, deleted ones
// included.
func (c *Catalog) AllWebhooks(fn func(w *Webhook)) {
	for _, t := range c.tenants {
		for _, w := range t.webhooks {
			if w.Exists() {
				fn(w)
			}
		}
	}
}

// Counts is how many users, keys (not revoked) and APIs (not retired) a
// tenant holds: what its quotas are checked against.
func (c *Catalog) Counts(tenant string) (users, keys, apis int) {
	t, ok := c.tenants[tenant]
	if !ok {
		return 0, 0, 0
	}
	for _, u := range t.users {
		if u.Exists() {
			users++
		}
	}
	for _, k := range t.keys {
		if k.exists() && k.status != keyStatusOf(KeyRevoked) {
			keys++
		}
	}
	for _, a := range t.apis {
		if a.Exists() && a.Status != APIRetired {
			apis++
		}
	}
	return users, keys, apis
}

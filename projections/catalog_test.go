package projections

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
)

// chain gives a history of events proper seqs, hashes and links, as the
// store would record them.
type chain struct {
	seq   uint64
	heads map[string]events.Hash
	out   []events.Recorded
}

func (c *chain) add(tenant string, agg events.Aggregate, at time.Time, p events.Payload) events.Recorded {
	if c.heads == nil {
		c.heads = map[string]events.Hash{}
	}
	subject, err := events.Subject(tenant, agg)
	if err != nil {
		panic(err)
	}
	c.seq++
	r := events.Recorded{Seq: c.seq, Subject: subject, Hash: events.HashOf([]byte(fmt.Sprint(c.seq))), Event: events.Event{
		Type: p.EventType(), Tenant: tenant, Aggregate: agg, OccurredAt: at, PrevHash: c.heads[subject], Data: p}}
	c.heads[subject] = r.Hash
	c.out = append(c.out, r)
	return r
}

// typo changes the first character after the prefix: the checksum no
// longer matches.
func typo(s string) string {
	b := []byte(s)
	i := len(secret.DefaultPrefix)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func keyID(i int) string { return fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5C7B1%04d", i) }

func TestCatalog(t *testing.T) {
	var h chain
	h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"})
	h.add("acme", events.UserAggregate("bob"), t0, events.UserCreatedV1{})
	h.add("acme", events.UserAggregate("eve"), t0, events.UserCreatedV1{})
	for i := range 10 {
		user := "bob"
		if i%2 == 1 {
			user = "eve"
		}
		exp := t0.Add(time.Duration(i+1) * time.Hour)
		h.add("acme", events.KeyAggregate(user, keyID(i)), t0, events.KeyIssuedV1{SecretHash: events.SecretHash{byte(i + 1)}, Hint: "h", ExpiresAt: &exp})
	}
	h.add("acme", events.KeyAggregate("bob", keyID(0)), t0, events.KeyRevokedV1{})
	h.add("acme", events.APIAggregate("orders"), t0, events.APICreatedV1{PathPrefix: "/orders", Upstreams: []string{"http://127.0.0.1:1"}})
	c := NewCatalog()
	for _, r := range h.out {
		if err := c.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	if c.Seq != h.seq {
		t.Fatalf("seq %d, want %d", c.Seq, h.seq)
	}
	if d := c.VerifyHash(events.SecretHash{3}, Request{}, t0); d.Code == CodeNotFound || d.KeyID != keyID(2) {
		t.Fatalf("lookup by hash: %v %v", d.KeyID, d.Code)
	}
	if d := c.VerifyHash(events.SecretHash{99}, Request{}, t0); d.Code != CodeNotFound {
		t.Fatal("found a key that does not exist")
	}
	if a, ok := c.API("acme", "orders"); !ok || a.PathPrefix != "/orders" {
		t.Fatal("API")
	}
	bob, _ := c.Keys("acme", KeyFilter{User: "bob"})
	revoked, _ := c.Keys("acme", KeyFilter{Status: KeyRevoked})
	soon, _ := c.Keys("acme", KeyFilter{ExpiringWithin: 3 * time.Hour, Now: t0})
	if len(bob) != 5 || len(revoked) != 1 || len(soon) != 3 {
		t.Fatalf("bob %d, revoked %d, expiring %d", len(bob), len(revoked), len(soon))
	}
	// Pages follow key id order and end.
	var all []string
	after := ""
	for {
		page, more := c.Keys("acme", KeyFilter{After: after, Limit: 3})
		for _, k := range page {
			all = append(all, k.ID)
		}
		if !more {
			break
		}
		after = page[len(page)-1].ID
	}
	if len(all) != 10 || all[0] != keyID(0) || all[9] != keyID(9) {
		t.Fatalf("pages: %v", all)
	}
	if keys, _ := c.Keys("other", KeyFilter{}); len(keys) != 0 {
		t.Fatal("another tenant sees keys")
	}

	// A forged event that does not link is skipped and reported.
	forged := events.Recorded{Seq: h.seq + 1, Subject: h.out[1].Subject, Hash: events.Hash{7}, Event: events.Event{
		Type: events.UserDeleted, Tenant: "acme", Aggregate: events.UserAggregate("bob"), OccurredAt: t0, Data: events.UserDeletedV1{}}}
	if err := c.Apply(forged); !errors.Is(err, ErrUnlinked) {
		t.Fatalf("forged: %v", err)
	}
	if u, _ := c.User("acme", "bob"); u.Status != UserActive || c.Skipped != 1 || c.Seq != h.seq+1 {
		t.Fatalf("the forgery applied: %+v", u)
	}
	// A second key with an existing secret hash is refused.
	dup := h.add("acme", events.KeyAggregate("bob", keyID(50)), t0, events.KeyIssuedV1{SecretHash: events.SecretHash{3}, Hint: "h"})
	if err := c.Apply(dup); !errors.Is(err, ErrTransition) {
		t.Fatalf("duplicate hash: %v", err)
	}
}

// TestVerify is the Given/When/Then table of every code: given these
// events, when this request arrives at this time, then this code, these
// also-failing checks and this evidence.
func TestVerify(t *testing.T) {
	sec, err := secret.Generate(secret.DefaultPrefix, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	exp := t0.Add(time.Hour)
	nb := t0.Add(-time.Hour)
	key := events.KeyAggregate("bob", keyID(1))
	user := events.UserAggregate("bob")
	tenant := events.TenantAggregate("acme")
	// given: seq 1 tenant, 2 user, 3 key, 4 API; then the case's events from 5.
	given := func(h *chain) {
		h.add("acme", tenant, t0, events.TenantCreatedV1{Name: "A"})
		h.add("acme", user, t0, events.UserCreatedV1{})
		h.add("acme", key, t0, events.KeyIssuedV1{SecretHash: sec.Hash(), Hint: sec.Hint(),
			Scopes: []string{"a"}, ExpiresAt: &exp, NotBefore: &nb})
		h.add("acme", events.APIAggregate("orders"), t0, events.APICreatedV1{PathPrefix: "/orders",
			Upstreams: []string{"http://127.0.0.1:1"}, Scopes: []string{"orders:read"}})
	}
	ev := NewEvidence
	ask := Request{Secret: sec.Reveal(), Prefix: secret.DefaultPrefix}
	with := func(f func(*Request)) Request { q := ask; f(&q); return q }
	cases := []struct {
		name     string
		then     []func(h *chain)
		req      Request
		at       time.Time
		want     Code
		also     []Code
		evidence []Evidence
	}{
		{"valid", nil, ask, t0, CodeValid, nil, []Evidence{ev(3, events.KeyIssued)}},
		{"missing", nil, Request{Prefix: secret.DefaultPrefix}, t0, CodeMissing, nil, nil},
		{"malformed", nil, with(func(q *Request) { q.Secret = sec.Reveal()[:20] }), t0, CodeMalformed, nil, nil},
		{"other prefix", nil, with(func(q *Request) { q.Prefix = "sk_" }), t0, CodeMalformed, nil, nil},
		{"checksum typo", nil, with(func(q *Request) { q.Secret = typo(sec.Reveal()) }), t0, CodeMalformed, nil, nil},
		{"not found", nil, Request{Secret: mustSecret(t).Reveal(), Prefix: secret.DefaultPrefix}, t0, CodeNotFound, nil, nil},
		{"request scope", nil, with(func(q *Request) { q.Scopes = []string{"b"} }), t0, CodeInsufficientScope, nil, []Evidence{ev(3, events.KeyIssued)}},
		{"API scope", nil, with(func(q *Request) { q.APITenant, q.API = "acme", "orders" }), t0, CodeInsufficientScope, nil,
			[]Evidence{ev(3, events.KeyIssued), ev(4, events.APICreated)}},
		{"tenant mismatch", nil, with(func(q *Request) { q.Tenant = "globex" }), t0, CodeTenantMismatch, nil, []Evidence{ev(3, events.KeyIssued)}},
		{"not yet valid", nil, ask, t0.Add(-2 * time.Hour), CodeNotYetValid, nil, []Evidence{ev(3, events.KeyIssued)}},
		{"expired", nil, ask, exp, CodeExpired, nil, []Evidence{ev(3, events.KeyIssued)}},
		{"suspended", []func(*chain){func(h *chain) { h.add("acme", key, t0, events.KeySuspendedV1{}) }}, ask, t0, CodeSuspended, nil,
			[]Evidence{ev(5, events.KeySuspended)}},
		{"user disabled, key suspended", []func(*chain){
			func(h *chain) { h.add("acme", key, t0, events.KeySuspendedV1{}) },
			func(h *chain) { h.add("acme", user, t0, events.UserDisabledV1{}) },
		}, ask, t0, CodeUserDisabled, []Code{CodeSuspended}, []Evidence{ev(6, events.UserDisabled)}},
		{"tenant suspended, user disabled", []func(*chain){
			func(h *chain) { h.add("acme", user, t0, events.UserDisabledV1{}) },
			func(h *chain) { h.add("acme", tenant, t0, events.TenantSuspendedV1{}) },
		}, ask, t0, CodeTenantSuspended, []Code{CodeUserDisabled}, []Evidence{ev(6, events.TenantSuspended)}},
		{"user deleted", []func(*chain){func(h *chain) { h.add("acme", user, t0, events.UserDeletedV1{}) }}, ask, t0, CodeUserDeleted, nil,
			[]Evidence{ev(5, events.UserDeleted)}},
		{"expired and deleted", []func(*chain){func(h *chain) { h.add("acme", user, t0, events.UserDeletedV1{}) }}, ask, exp, CodeExpired,
			[]Code{CodeUserDeleted}, []Evidence{ev(3, events.KeyIssued)}},
		{"revoked, expired, scope", []func(*chain){func(h *chain) { h.add("acme", key, t0, events.KeyRevokedV1{}) }},
			with(func(q *Request) { q.Scopes = []string{"b"} }), exp, CodeRevoked, []Code{CodeExpired, CodeInsufficientScope},
			[]Evidence{ev(5, events.KeyRevoked)}},
		{"revoked before", []func(*chain){func(h *chain) {
			h.add("acme", user, t0, events.UserKeysRevokedBeforeV1{Before: t0.Add(time.Second)})
		}}, ask, t0, CodeRevoked, nil, []Evidence{ev(5, events.UserKeysRevokedBefore)}},
		{"tenant revoked before", []func(*chain){func(h *chain) {
			h.add("acme", tenant, t0, events.TenantKeysRevokedBeforeV1{Before: t0.Add(time.Second)})
		}}, ask, t0, CodeRevoked, nil, []Evidence{ev(5, events.TenantKeysRevokedBefore)}},
		{"tenant revoked before the key's issue: no effect", []func(*chain){func(h *chain) {
			h.add("acme", tenant, t0, events.TenantKeysRevokedBeforeV1{Before: t0.Add(-time.Second)})
		}}, ask, t0, CodeValid, nil, []Evidence{ev(3, events.KeyIssued)}},
		{"revoked three ways", []func(*chain){
			func(h *chain) { h.add("acme", key, t0, events.KeyRevokedV1{}) },
			func(h *chain) { h.add("acme", user, t0, events.UserKeysRevokedBeforeV1{Before: t0.Add(time.Second)}) },
			func(h *chain) {
				h.add("acme", tenant, t0, events.TenantKeysRevokedBeforeV1{Before: t0.Add(time.Second)})
			},
		}, ask, t0, CodeRevoked, nil, []Evidence{ev(5, events.KeyRevoked), ev(6, events.UserKeysRevokedBefore), ev(7, events.TenantKeysRevokedBefore)}},
		{"updated expiry", []func(*chain){func(h *chain) {
			short := t0.Add(time.Minute)
			h.add("acme", key, t0, events.KeyUpdatedV1{Scopes: []string{"a"}, ExpiresAt: &short})
		}}, ask, t0.Add(time.Minute), CodeExpired, nil, []Evidence{ev(5, events.KeyUpdated)}},
		{"grace over", []func(*chain){func(h *chain) {
			h.add("acme", key, t0, events.KeyRotatedV1{Successor: keyID(2), GraceUntil: t0.Add(time.Minute)})
		}}, ask, t0.Add(time.Minute), CodeExpired, nil, []Evidence{ev(5, events.KeyRotated)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h chain
			given(&h)
			for _, f := range c.then {
				f(&h)
			}
			cat := NewCatalog()
			for _, r := range h.out {
				cat.Apply(r)
			}
			d := cat.Verify(c.req, c.at)
			if d.Code != c.want || !slices.Equal(d.Also(), c.also) || !slices.Equal(d.Evidence(), c.evidence) {
				t.Fatalf("got %s also %v evidence %v; want %s also %v evidence %v", d.Code, d.Also(), d.Evidence(), c.want, c.also, c.evidence)
			}
			if d.Seq != h.seq || !d.Now.Equal(c.at) {
				t.Fatalf("seq %d now %v", d.Seq, d.Now)
			}
			if c.want != CodeMissing && c.want != CodeMalformed && c.want != CodeNotFound && (d.KeyID != keyID(1) || d.User != "bob" || d.Tenant != "acme") {
				t.Fatalf("decision does not name the key: %+v", d)
			}
		})
	}
	// A key whose user has no events.
	var h chain
	h.add("acme", tenant, t0, events.TenantCreatedV1{Name: "A"})
	h.add("acme", events.KeyAggregate("ghost", keyID(1)), t0, events.KeyIssuedV1{SecretHash: sec.Hash(), Hint: "h"})
	cat := NewCatalog()
	for _, r := range h.out {
		cat.Apply(r)
	}
	if d := cat.Verify(ask, t0); d.Code != CodeUserUnknown {
		t.Fatal(d.Code)
	}
}

func mustSecret(t testing.TB) secret.Secret {
	s, err := secret.Generate(secret.DefaultPrefix, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzReadSnapshot: a damaged snapshot is an error, never a panic.
func FuzzReadSnapshot(f *testing.F) {
	for _, kind := range kinds {
		c := kind.new()
		for _, r := range richHistory(f) {
			c.Apply(r)
		}
		var b bytes.Buffer
		if err := c.WriteSnapshot(&b); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		if c, err := ReadSnapshot(bytes.NewReader(in)); err == nil {
			c.Digest()
		}
	})
}

// TestImpossibleEventsStayInTheChain: an event that links but cannot apply
// is reported and not applied, and the next event, which links to it as the
// store chained it, applies.
func TestImpossibleEventsStayInTheChain(t *testing.T) {
	var h chain
	h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"})
	h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "again"})
	h.add("acme", events.TenantAggregate("acme"), t0, events.TenantSuspendedV1{})
	c := NewCatalog()
	var errs []error
	for _, r := range h.out {
		errs = append(errs, c.Apply(r))
	}
	if errs[0] != nil || !errors.Is(errs[1], ErrTransition) || errs[2] != nil {
		t.Fatalf("errors %v", errs)
	}
	if ten, _ := c.Tenant("acme"); ten.Status != TenantSuspended || ten.Name != "A" {
		t.Fatalf("%+v", ten)
	}
}

// TestSnapshotKeepsStatesWithoutIDs: states that exist only to hold a chain
// head (an aggregate whose first event did not apply) or to be pointed at
// (the user of a key issued before the user existed) survive a snapshot
// under their ids, so the tail after it links and applies as it would have.
func TestSnapshotKeepsStatesWithoutIDs(t *testing.T) {
	sec := mustSecret(t)
	var h chain
	h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"})
	h.add("acme", events.KeyAggregate("later", keyID(1)), t0, events.KeyIssuedV1{SecretHash: sec.Hash(), Hint: "h"})
	h.add("acme", events.UserAggregate("odd"), t0, events.UserDisabledV1{}) // before its creation: not applied
	cut := len(h.out)
	h.add("acme", events.UserAggregate("later"), t0, events.UserCreatedV1{})
	h.add("acme", events.UserAggregate("odd"), t0, events.UserCreatedV1{}) // links to the one that did not apply
	full := NewCatalog()
	for _, r := range h.out {
		full.Apply(r)
	}
	head := NewCatalog()
	for _, r := range h.out[:cut] {
		head.Apply(r)
	}
	var b bytes.Buffer
	if err := head.WriteSnapshot(&b); err != nil {
		t.Fatal(err)
	}
	restored, err := ReadSnapshot(&b)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range h.out[cut:] {
		if err := restored.Apply(r); err != nil {
			t.Fatalf("after the snapshot, seq %d: %v", r.Seq, err)
		}
	}
	if restored.Digest() != full.Digest() {
		t.Fatal("snapshot + tail differs from the full fold")
	}
	q := Request{Secret: sec.Reveal(), Prefix: secret.DefaultPrefix}
	if d := restored.Verify(q, t0); d.Code != CodeValid {
		t.Fatalf("the key's user exists now: %s", d.Code)
	}
	if _, ok := restored.User("acme", "odd"); !ok {
		t.Fatal("user odd missing")
	}
}

// richHistory has every kind of state and attribute a snapshot must keep:
// keys with names, hints, metadata, rate limits, times, rotations and every
// status, users with revocations, APIs deprecated and retired.
func richHistory(t testing.TB) []events.Recorded {
	var h chain
	nb, exp, far := t0.Add(-time.Hour), t0.Add(72*time.Hour+123), time.Date(2400, 1, 1, 0, 0, 0, 5, time.UTC)
	rl := &events.RateLimit{PerSecond: 2.5, Burst: 7}
	h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"})
	h.add("acme", events.UserAggregate("bob"), t0, events.UserCreatedV1{Name: "Bob"})
	h.add("acme", events.UserAggregate("bob"), t0.Add(time.Minute), events.UserKeysRevokedBeforeV1{Before: t0.Add(time.Second)})
	h.add("acme", events.KeyAggregate("bob", keyID(1)), t0, events.KeyIssuedV1{Name: "ci", SecretHash: events.SecretHash{1}, Hint: "kt_…abcd",
		Scopes: []string{"a", "b"}, NotBefore: &nb, ExpiresAt: &exp, RateLimit: rl, Metadata: map[string]string{"team": "x", "env": "prod"}})
	h.add("acme", events.KeyAggregate("bob", keyID(2)), t0, events.KeyIssuedV1{SecretHash: events.SecretHash{2}, Hint: "h", ExpiresAt: &far, RotatedFrom: keyID(1)})
	h.add("acme", events.KeyAggregate("bob", keyID(1)), t0, events.KeyRotatedV1{Successor: keyID(2), GraceUntil: exp})
	h.add("acme", events.KeyAggregate("bob", keyID(2)), t0, events.KeySuspendedV1{})
	h.add("acme", events.KeyAggregate("ghost", keyID(3)), t0, events.KeyIssuedV1{SecretHash: events.SecretHash{3}, Hint: "h", Scopes: []string{"a", "b"}})
	h.add("acme", events.KeyAggregate("ghost", keyID(3)), t0, events.KeyRevokedV1{})
	h.add("acme", events.KeyAggregate("ghost", keyID(4)), t0, events.KeyRevokedV1{}) // before its issue: a placeholder
	h.add("acme", events.APIAggregate("orders"), t0, events.APICreatedV1{Name: "O", PathPrefix: "/orders", Upstreams: []string{"http://127.0.0.1:1"}, Scopes: []string{"a"}, RateLimit: rl})
	h.add("acme", events.APIAggregate("orders"), t0, events.APIDeprecatedV1{Sunset: exp})
	h.add("acme", events.APIAggregate("old"), t0, events.APICreatedV1{Name: "X", PathPrefix: "/old/", Upstreams: []string{"http://127.0.0.1:2"}})
	h.add("acme", events.APIAggregate("old"), t0, events.APIRetiredV1{})
	h.add("beta", events.TenantAggregate("beta"), t0, events.TenantCreatedV1{Name: "B"})
	h.add("beta", events.TenantAggregate("beta"), t0, events.TenantSuspendedV1{})
	h.add("beta", events.TenantAggregate("beta"), t0, events.TenantKeysRevokedBeforeV1{Before: t0})
	wh := events.WebhookAggregate("whk_01JDQ8Z6W4M2N9V3X5C7B1A0ZW")
	h.add("acme", wh, t0, events.WebhookCreatedV1{URL: "https://hooks.example/k", Types: []string{"key.expiring"}, SecretID: "01JDQ8Z6W4M2N9V3X5C7B1A0ZS"})
	h.add("acme", wh, t0, events.WebhookSecretRotatedV1{SecretID: "01JDQ8Z6W4M2N9V3X5C7B1A0ZT", PreviousUntil: exp})
	h.add("acme", wh, t0, events.WebhookDisabledV1{})
	h.add("acme", events.PolicyAggregate("billing-ro"), t0, events.PolicyCreatedV1{Name: "B", Scopes: []string{"c"}, RateLimit: &events.RateLimit{PerSecond: 1, Burst: 2},
		MaxTTL: "90d", APIs: []string{"orders"}})
	h.add("acme", events.PolicyAggregate("gone"), t0, events.PolicyCreatedV1{Scopes: []string{"d"}})
	h.add("acme", events.PolicyAggregate("gone"), t0, events.PolicyRetiredV1{})
	h.add("acme", events.KeyAggregate("bob", keyID(1)), t0, events.KeyUpdatedV1{Name: "ci", Scopes: []string{"a", "b"}, ExpiresAt: &exp, RateLimit: rl,
		Metadata: map[string]string{"team": "x", "env": "prod"}, Policies: []string{"billing-ro", "gone", "later"}})
	return h.out
}

// TestSnapshotRoundTrip: both kinds of catalog restore to the same digest,
// the same keys (every admin attribute and exact time in the full kind) and
// the same decisions.
func TestSnapshotRoundTrip(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind.name, func(t *testing.T) {
			c := kind.new()
			for _, r := range richHistory(t) {
				c.Apply(r)
			}
			var b bytes.Buffer
			if err := c.WriteSnapshot(&b); err != nil {
				t.Fatal(err)
			}
			r, err := ReadSnapshot(&b)
			if err != nil {
				t.Fatal(err)
			}
			if r.Digest() != c.Digest() || r.VerifyOnly() != c.VerifyOnly() || r.Seq != c.Seq || r.Skipped != c.Skipped {
				t.Fatal("restored catalog differs")
			}
			for i := 1; i <= 3; i++ {
				want, _ := c.Key("acme", keyID(i))
				got, ok := r.Key("acme", keyID(i))
				if !ok || !reflect.DeepEqual(got, want) {
					t.Fatalf("key %d:\n got %+v\nwant %+v", i, got, want)
				}
				for _, at := range []time.Time{t0, t0.Add(100 * time.Hour)} {
					d1 := c.VerifyHash(events.SecretHash{byte(i)}, Request{}, at)
					d2 := r.VerifyHash(events.SecretHash{byte(i)}, Request{}, at)
					if !reflect.DeepEqual(d1, d2) {
						t.Fatalf("decisions differ: %+v vs %+v", d1, d2)
					}
				}
			}
			if w, _ := r.Webhook("acme", "whk_01JDQ8Z6W4M2N9V3X5C7B1A0ZW"); w.Status != WebhookDisabled || w.PreviousSecretID != "01JDQ8Z6W4M2N9V3X5C7B1A0ZS" ||
				!w.PreviousUntil.Equal(t0.Add(72*time.Hour+123)) || len(w.SecretIDs(t0)) != 2 || !w.Wants("key.expiring") || w.Wants("key.unused") {
				t.Fatalf("webhook not restored: %+v", w)
			}
			if p, ok := r.Policy("acme", "billing-ro"); !ok || p.MaxTTL != 90*24*time.Hour || p.Revision != 1 || !slices.Equal(p.APIs, []string{"orders"}) {
				t.Fatalf("policy not restored: %+v", p)
			}
			if k, _ := r.Key("acme", keyID(1)); !slices.Equal(k.Policies, []string{"billing-ro", "gone", "later"}) {
				t.Fatalf("key's policies not restored: %v", k.Policies)
			}
			if full, _ := c.Key("acme", keyID(1)); !c.VerifyOnly() && (full.Name != "ci" || full.Metadata["team"] != "x" || full.RotatedTo != keyID(2)) {
				t.Fatalf("admin attributes lost: %+v", full)
			}
		})
	}
}

func TestRoute(t *testing.T) {
	var h chain
	h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"})
	for id, prefix := range map[string]string{"root": "/", "orders": "/orders", "v2": "/orders/v2/", "static": "/static/"} {
		h.add("acme", events.APIAggregate(id), t0, events.APICreatedV1{Name: id, PathPrefix: prefix, Upstreams: []string{"http://127.0.0.1:1"}})
	}
	c := NewCatalog()
	for _, r := range h.out {
		c.Apply(r)
	}
	for path, want := range map[string]string{
		"/": "root", "/x": "root", "/orders": "orders", "/orders/": "orders", "/orders/1": "orders",
		"/orders-v2": "root", "/ordersx/1": "root", "/orders/v2/": "v2", "/orders/v2/a/b": "v2",
		"/orders/v2": "orders", "/static/": "static", "/static/a.css": "static", "/static": "root",
	} {
		if a, r := c.Route(path); r != Routed || a.ID != want {
			t.Errorf("%s: routed to %q, want %q", path, a.ID, want)
		}
	}
	if _, r := NewCatalog().Route("/orders"); r != NoRoute {
		t.Fatal("routed in an empty catalog")
	}
	// A path that matches a longer prefix but for case is refused, not
	// routed to the shorter one.
	for _, path := range []string{"/Orders/V2/x", "/ORDERS/v2/", "/Static/a.css"} {
		if a, r := c.Route(path); r != Ambiguous {
			t.Errorf("%s: %v to %q, want ambiguous", path, r, a.ID)
		}
	}
	// Routing looks at most at the first MaxPathPrefixLen bytes.
	long := "/orders/" + strings.Repeat("a/", 100_000)
	if a, r := c.Route(long); r != Routed || a.ID != "orders" {
		t.Fatalf("a long path: %v %q", r, a.ID)
	}
}

// TestVerificationSnapshotFromFullCatalog: the verification snapshot a
// control node writes from its full catalog is, byte for byte, the snapshot
// of the verification catalog folded from the same events.
func TestVerificationSnapshotFromFullCatalog(t *testing.T) {
	full, verify := NewCatalog(), NewVerificationCatalog()
	for _, r := range richHistory(t) {
		full.Apply(r)
		verify.Apply(r)
	}
	var derived, folded bytes.Buffer
	if err := full.WriteVerificationSnapshot(&derived); err != nil {
		t.Fatal(err)
	}
	if err := verify.WriteSnapshot(&folded); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(derived.Bytes(), folded.Bytes()) {
		t.Fatal("the verification snapshot of the full catalog differs from the verification catalog's")
	}
	r, err := ReadSnapshot(&derived)
	if err != nil || !r.VerifyOnly() || r.Digest() != verify.Digest() {
		t.Fatalf("restored: verifyOnly %v, err %v", r != nil && r.VerifyOnly(), err)
	}
}

// TestEachHead: every aggregate with events, with its chain head.
func TestEachHead(t *testing.T) {
	c := NewCatalog()
	heads := map[string]events.Hash{}
	for _, r := range richHistory(t) {
		c.Apply(r)
		heads[r.Subject] = r.Hash
	}
	got := map[string]events.Hash{}
	c.EachHead(func(tenant string, a events.Aggregate, head events.Hash) {
		subj, err := events.Subject(tenant, a)
		if err != nil {
			t.Fatal(err)
		}
		if head != (events.Hash{}) {
			got[subj] = head
		}
	})
	delete(heads, "keytrail.evt.acme.u.ghost.k."+keyID(4)) // never issued: no key to check
	if !reflect.DeepEqual(got, heads) {
		t.Fatalf("heads:\n got %v\nwant %v", got, heads)
	}
}

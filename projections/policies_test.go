package projections

import (
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
)

// policyWorld is a tenant with a user, two APIs and keys, folded as events
// are added: Given/When/Then over the catalog the readers keep.
type policyWorld struct {
	t    *testing.T
	h    chain
	c    *Catalog
	keys map[string]secret.Secret
}

func newPolicyWorld(t *testing.T) *policyWorld {
	w := &policyWorld{t: t, c: NewCatalog(), keys: map[string]secret.Secret{}}
	w.add("acme", events.TenantAggregate("acme"), events.TenantCreatedV1{Name: "Acme"})
	w.add("acme", events.UserAggregate("bob"), events.UserCreatedV1{})
	w.add("acme", events.APIAggregate("orders"), events.APICreatedV1{PathPrefix: "/orders",
		Upstreams: []string{"http://127.0.0.1:1"}, Scopes: []string{"orders:read"}})
	w.add("acme", events.APIAggregate("billing"), events.APICreatedV1{PathPrefix: "/billing",
		Upstreams: []string{"http://127.0.0.1:1"}})
	return w
}

func (w *policyWorld) add(tenant string, agg events.Aggregate, p events.Payload) events.Recorded {
	w.t.Helper()
	r := w.h.add(tenant, agg, t0, p)
	if err := w.c.Apply(r); err != nil {
		w.t.Fatal(err)
	}
	return r
}

func (w *policyWorld) policy(id string, p events.Payload) uint64 {
	return w.add("acme", events.PolicyAggregate(id), p).Seq
}

// key issues key i of tenant to bob at t0.
func (w *policyWorld) key(tenant string, i int, p events.KeyIssuedV1) {
	sec := mustSecret(w.t)
	p.SecretHash, p.Hint = sec.Hash(), sec.Hint()
	w.keys[keyID(i)] = sec
	w.add(tenant, events.KeyAggregate("bob", keyID(i)), p)
}

func (w *policyWorld) verify(i int, api string, at time.Time, scopes ...string) Decision {
	q := Request{Secret: w.keys[keyID(i)].Reveal(), Prefix: secret.DefaultPrefix, Scopes: scopes}
	if api != "" {
		q.APITenant, q.API = "acme", api
	}
	return w.c.Verify(q, at)
}

func (w *policyWorld) expect(d Decision, code Code, evidence ...uint64) {
	w.t.Helper()
	if d.Code != code {
		w.t.Fatalf("code %s, want %s (evidence %v)", d.Code, code, d.Evidence())
	}
	for _, seq := range evidence {
		if !slices.ContainsFunc(d.Evidence(), func(e Evidence) bool { return e.Seq() == seq }) {
			w.t.Fatalf("%s: evidence %v does not name seq %d", code, d.Evidence(), seq)
		}
	}
}

func TestPolicyScopesAreResolvedAtVerification(t *testing.T) {
	w := newPolicyWorld(t)
	// Given a policy granting orders:read and a key with no scope of its own
	// that references it,
	created := w.policy("readers", events.PolicyCreatedV1{Scopes: []string{"orders:read"}})
	w.key("acme", 1, events.KeyIssuedV1{Policies: []string{"readers"}})
	// then the key holds the scope on the API that requires it, the policy
	// in its evidence,
	w.expect(w.verify(1, "orders", t0), CodeValid, created)
	// when the policy loses the scope (the key already used),
	updated := w.policy("readers", events.PolicyUpdatedV1{Scopes: []string{"invoices:read"}})
	// then the next verification of the same key is denied, naming the
	// policy's update;
	w.expect(w.verify(1, "orders", t0), CodeInsufficientScope, updated)
	// when it gets it back, the key verifies again;
	w.policy("readers", events.PolicyUpdatedV1{Scopes: []string{"invoices:read", "orders:read"}})
	w.expect(w.verify(1, "orders", t0), CodeValid)
	if p, _ := w.c.Policy("acme", "readers"); p.Revision != 3 {
		t.Fatalf("revision %d after two updates, want 3", p.Revision)
	}
	// when the policy is retired, it grants nothing: the denial names the
	// retirement.
	retired := w.policy("readers", events.PolicyRetiredV1{})
	w.expect(w.verify(1, "orders", t0), CodeInsufficientScope, retired)
	w.expect(w.verify(1, "", t0), CodeValid)
}

func TestPolicyPrecedence(t *testing.T) {
	t.Run("scopes are the union of the key's own and its live policies'", func(t *testing.T) {
		w := newPolicyWorld(t)
		w.policy("p1", events.PolicyCreatedV1{Scopes: []string{"b"}})
		w.policy("p2", events.PolicyCreatedV1{Scopes: []string{"c"}})
		w.key("acme", 1, events.KeyIssuedV1{Scopes: []string{"a"}, Policies: []string{"p1", "p2"}})
		d := w.verify(1, "", t0, "a", "b", "c")
		w.expect(d, CodeValid)
		if got := d.EffectiveScopes(nil); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("effective scopes %v", got)
		}
		w.expect(w.verify(1, "", t0, "d"), CodeInsufficientScope)
		w.policy("p2", events.PolicyRetiredV1{})
		w.expect(w.verify(1, "", t0, "c"), CodeInsufficientScope)
		if d := w.verify(1, "", t0); !slices.Equal(d.EffectiveScopes(nil), []string{"a", "b"}) {
			t.Fatalf("effective scopes after a retirement %v", d.EffectiveScopes(nil))
		}
	})
	t.Run("the lowest rate and the lowest burst apply", func(t *testing.T) {
		w := newPolicyWorld(t)
		loose, tight := &events.RateLimit{PerSecond: 100, Burst: 100}, &events.RateLimit{PerSecond: 5, Burst: 10}
		w.policy("loose", events.PolicyCreatedV1{RateLimit: loose})
		w.policy("tight", events.PolicyCreatedV1{RateLimit: tight})
		w.key("acme", 1, events.KeyIssuedV1{Policies: []string{"loose"}})                         // none of its own: the policy's
		w.key("acme", 2, events.KeyIssuedV1{RateLimit: loose, Policies: []string{"tight"}})       // the policy's, stricter
		w.key("acme", 3, events.KeyIssuedV1{RateLimit: tight, Policies: []string{"loose"}})       // its own, stricter
		w.key("acme", 4, events.KeyIssuedV1{Policies: []string{"loose", "tight"}})                // the stricter policy's
		w.key("acme", 5, events.KeyIssuedV1{RateLimit: &events.RateLimit{PerSecond: 5, Burst: 3}, // same rate, smaller burst
			Policies: []string{"tight"}})
		w.key("acme", 6, events.KeyIssuedV1{RateLimit: &events.RateLimit{PerSecond: 1, Burst: 20}, Policies: []string{"tight"}}) // each the lower
		for i, want := range map[int]events.RateLimit{1: *loose, 2: *tight, 3: *tight, 4: *tight, 5: {PerSecond: 5, Burst: 3}, 6: {PerSecond: 1, Burst: 10}} {
			d := w.verify(i, "", t0)
			if got := d.KeyRateLimit(); got == nil || *got != want {
				t.Errorf("key %d: rate limit %+v, want %+v", i, got, want)
			}
		}
		w.policy("tight", events.PolicyRetiredV1{})
		d := w.verify(2, "", t0)
		if got := d.KeyRateLimit(); *got != *loose {
			t.Errorf("a retired policy still limits: %+v", got)
		}
	})
	t.Run("a policy bounds a key's life and never extends it", func(t *testing.T) {
		w := newPolicyWorld(t)
		ttl := w.policy("short", events.PolicyCreatedV1{MaxTTL: "2h"})
		own := t0.Add(time.Hour)
		w.key("acme", 1, events.KeyIssuedV1{Policies: []string{"short"}})                  // no expiry of its own
		w.key("acme", 2, events.KeyIssuedV1{ExpiresAt: &own, Policies: []string{"short"}}) // its own comes first
		w.expect(w.verify(1, "", t0.Add(2*time.Hour-1)), CodeValid)
		w.expect(w.verify(1, "", t0.Add(2*time.Hour)), CodeExpired, ttl)
		w.expect(w.verify(2, "", own), CodeExpired, 7) // the key's own issue
		// Raising the policy's bound does not revive a key past its own
		// expiry; lowering it shortens every key's life at once.
		w.policy("short", events.PolicyUpdatedV1{MaxTTL: "30d"})
		w.expect(w.verify(2, "", own), CodeExpired)
		w.expect(w.verify(1, "", t0.Add(3*time.Hour)), CodeValid)
		lowered := w.policy("short", events.PolicyUpdatedV1{MaxTTL: "1m"})
		w.expect(w.verify(1, "", t0.Add(time.Minute)), CodeExpired, lowered)
		// A retired policy bounds nothing.
		w.policy("short", events.PolicyRetiredV1{})
		w.expect(w.verify(1, "", t0.Add(time.Hour)), CodeValid)
	})
	t.Run("a policy's APIs confine its keys", func(t *testing.T) {
		w := newPolicyWorld(t)
		confined := w.policy("orders-only", events.PolicyCreatedV1{Scopes: []string{"orders:read"}, APIs: []string{"orders"}})
		w.policy("anywhere", events.PolicyCreatedV1{})
		w.key("acme", 1, events.KeyIssuedV1{Policies: []string{"orders-only"}})
		w.key("acme", 2, events.KeyIssuedV1{Policies: []string{"orders-only", "anywhere"}})
		w.key("acme", 3, events.KeyIssuedV1{})
		w.expect(w.verify(1, "orders", t0), CodeValid)
		w.expect(w.verify(1, "billing", t0), CodeInsufficientScope, confined)
		w.expect(w.verify(2, "billing", t0), CodeValid)
		w.expect(w.verify(3, "billing", t0), CodeValid)
		w.policy("orders-only", events.PolicyRetiredV1{})
		w.expect(w.verify(1, "billing", t0), CodeValid)
	})
}

func TestPoliciesAreTheirTenantsOwn(t *testing.T) {
	w := newPolicyWorld(t)
	w.policy("readers", events.PolicyCreatedV1{Scopes: []string{"orders:read"}})
	w.add("globex", events.TenantAggregate("globex"), events.TenantCreatedV1{Name: "Globex"})
	w.add("globex", events.UserAggregate("bob"), events.UserCreatedV1{})
	// A key of another tenant naming a policy of the same id gets nothing
	// from acme's.
	w.key("globex", 1, events.KeyIssuedV1{Policies: []string{"readers"}})
	w.expect(w.verify(1, "", t0, "orders:read"), CodeInsufficientScope)
	if _, ok := w.c.Policy("globex", "readers"); ok {
		t.Fatal("globex has a policy it never created")
	}
	if page, _ := w.c.Policies("globex", "", 0); len(page) != 0 {
		t.Fatalf("globex lists %v", page)
	}
	// Until globex creates its own.
	w.add("globex", events.PolicyAggregate("readers"), events.PolicyCreatedV1{Scopes: []string{"orders:read"}})
	w.expect(w.verify(1, "", t0, "orders:read"), CodeValid)
}

// A key may name a policy before the policy has events (the log is read in
// any order by a reader of some subjects): it grants nothing until it does.
func TestAPolicyReferencedBeforeItExists(t *testing.T) {
	w := newPolicyWorld(t)
	w.key("acme", 1, events.KeyIssuedV1{Policies: []string{"later"}})
	w.expect(w.verify(1, "", t0, "x"), CodeInsufficientScope)
	w.policy("later", events.PolicyCreatedV1{Scopes: []string{"x"}, APIs: []string{"billing"}})
	w.expect(w.verify(1, "", t0, "x"), CodeValid)
	w.expect(w.verify(1, "orders", t0), CodeInsufficientScope)
}

func TestVerifyWithPoliciesAllocatesNothing(t *testing.T) {
	w := newPolicyWorld(t)
	w.policy("p1", events.PolicyCreatedV1{Scopes: []string{"orders:read"}, RateLimit: &events.RateLimit{PerSecond: 5, Burst: 5}, MaxTTL: "30d", APIs: []string{"orders"}})
	w.policy("p2", events.PolicyCreatedV1{Scopes: []string{"b"}})
	w.key("acme", 1, events.KeyIssuedV1{Scopes: []string{"a"}, Policies: []string{"p1", "p2"}})
	q := Request{Secret: w.keys[keyID(1)].Reveal(), Prefix: secret.DefaultPrefix, APITenant: "acme", API: "orders", Scopes: []string{"b"}}
	if d := w.c.Verify(q, t0); d.Code != CodeValid {
		t.Fatalf("code %s", d.Code)
	}
	if n := testing.AllocsPerRun(100, func() { w.c.Verify(q, t0) }); n != 0 {
		t.Fatalf("%v allocations per VALID verification with policies", n)
	}
}

// BenchmarkVerifyWithPolicies: BenchmarkVerify for a request to an API
// requiring a scope, by a key holding it itself (own) and by a key taking
// it from the second of two policies that also set a rate limit, a
// lifetime and the APIs allowed (policies): what resolving policies at
// verification costs, against SHA-256 interleaved (goal: ratio ≤ 2).
func BenchmarkVerifyWithPolicies(b *testing.B) {
	w := newPolicyWorld(&testing.T{})
	w.policy("limits", events.PolicyCreatedV1{RateLimit: &events.RateLimit{PerSecond: 100, Burst: 10}, MaxTTL: "90d", APIs: []string{"orders", "billing"}})
	w.policy("readers", events.PolicyCreatedV1{Scopes: []string{"invoices:read", "orders:read"}, APIs: []string{"orders"}})
	w.key("acme", 1, events.KeyIssuedV1{Scopes: []string{"orders:read"}})
	w.key("acme", 2, events.KeyIssuedV1{Policies: []string{"limits", "readers"}})
	for i := 3; i < 1000; i++ {
		w.key("acme", i, events.KeyIssuedV1{Scopes: []string{"orders:read"}, Policies: []string{"readers"}})
	}
	for name, i := range map[string]int{"own": 1, "policies": 2} {
		b.Run(name, func(b *testing.B) {
			secrets, idx := []string{w.keys[keyID(i)].Reveal()}, make([]int32, verifyBlock)
			now := t0.Add(time.Minute)
			verify := func(s string) Code {
				return w.c.Verify(Request{Secret: s, Prefix: secret.DefaultPrefix, APITenant: "acme", API: "orders"}, now).Code
			}
			var m shaVsVerify
			b.ReportAllocs()
			for b.Loop() {
				m.block(b, secrets, idx, verify)
			}
			m.report(b)
		})
	}
}

// A preview sorts the scopes it probes: it must sort a copy, never a key's
// scope list, which the catalog shares between keys.
func TestAPreviewLeavesTheCatalogAsItWas(t *testing.T) {
	w := newPolicyWorld(t)
	w.key("acme", 1, events.KeyIssuedV1{Scopes: []string{"zeta", "alpha"}})
	before := w.c.Digest()
	if _, err := w.c.Preview("acme", []events.Event{{ID: "01JDQ8Z6W4M2N9V3X5C7B1A0ZZ", Type: events.KeySuspended, Tenant: "acme",
		Aggregate: events.KeyAggregate("bob", keyID(1)), OccurredAt: t0, Data: events.KeySuspendedV1{}}}, t0); err != nil {
		t.Fatal(err)
	}
	if k, _ := w.c.Key("acme", keyID(1)); !slices.Equal(k.Scopes, []string{"zeta", "alpha"}) || w.c.Digest() != before {
		t.Fatalf("the preview changed the catalog: scopes %v", k.Scopes)
	}
}

// A decision is kept after the catalog is released (the gateway reads its
// scopes to set Keytrail-Scopes, the admin API its policies to answer):
// what it says of its key's policies is what they were when it was made,
// however the catalog changes afterwards — and reading it while the
// catalog applies a policy's change is no data race (go test -race).
func TestADecisionKeepsItsPoliciesAsTheyWere(t *testing.T) {
	w := newPolicyWorld(t)
	w.policy("readers", events.PolicyCreatedV1{Scopes: []string{"orders:read"}, APIs: []string{"orders"}})
	w.policy("writers", events.PolicyCreatedV1{Scopes: []string{"orders:write"}})
	w.key("acme", 1, events.KeyIssuedV1{Scopes: []string{"own"}, Policies: []string{"readers", "writers"}})
	d := w.verify(1, "orders", t0)
	w.expect(d, CodeValid)
	want := []string{"own", "orders:read", "orders:write"}

	var mu sync.RWMutex // the read model's lock: the catalog changes under it, the decision is read outside it
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			mu.Lock()
			w.policy("readers", events.PolicyUpdatedV1{Scopes: []string{"other:" + strconv.Itoa(i)}})
			mu.Unlock()
		}
		mu.Lock()
		w.policy("writers", events.PolicyRetiredV1{})
		mu.Unlock()
	}()
	for range 200 {
		if got := d.EffectiveScopes(nil); !slices.Equal(got, want) {
			t.Fatalf("while the policies change, the decision's scopes are %v, want %v", got, want)
		}
		if got := d.Policies(); !slices.Equal(got, []string{"readers", "writers"}) {
			t.Fatalf("the decision's policies %v", got)
		}
	}
	<-done
	if got := d.EffectiveScopes(nil); !slices.Equal(got, want) {
		t.Fatalf("after its policies changed, the decision's scopes are %v, want %v as they were", got, want)
	}
	mu.RLock()
	now := w.verify(1, "", t0)
	mu.RUnlock()
	if got := now.EffectiveScopes(nil); !slices.Equal(got, []string{"own", "other:49"}) {
		t.Fatalf("a new decision's scopes %v", got)
	}
}

// Because explains the decision ExplainKey made, from the same events: a
// policy's retirement after the time asked about is not why a scope is
// missing, even when an event with an earlier time but a later sequence
// was folded (clocks of control nodes differ).
func TestBecauseSeesThePoliciesTheDecisionSaw(t *testing.T) {
	var h chain
	sec := mustSecret(t)
	h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "Acme"})
	h.add("acme", events.UserAggregate("bob"), t0, events.UserCreatedV1{})
	h.add("acme", events.PolicyAggregate("p"), t0, events.PolicyCreatedV1{Scopes: []string{"a"}})
	h.add("acme", events.KeyAggregate("bob", keyID(1)), t0, events.KeyIssuedV1{SecretHash: sec.Hash(), Hint: sec.Hint(), Policies: []string{"p"}})
	h.add("acme", events.PolicyAggregate("p"), t0.Add(2*time.Hour), events.PolicyRetiredV1{})
	h.add("acme", events.PolicyAggregate("q"), t0.Add(30*time.Minute), events.PolicyCreatedV1{Scopes: []string{"c"}})

	d, ok := ExplainKey(h.out, "acme", keyID(1), 0, t0.Add(time.Hour), []string{"a", "b"}, "")
	if !ok || d.Code != CodeInsufficientScope || !slices.Contains(d.EffectiveScopes(nil), "a") {
		t.Fatalf("the decision an hour in: %s, scopes %v; want INSUFFICIENT_SCOPE holding a", d.Code, d.EffectiveScopes(nil))
	}
	if why := Because(h.out, &d, []string{"a", "b"}); len(why) != 0 {
		t.Fatalf("Because %q: the key held a then, and no policy ever granted b", why)
	}
}

// A policy's change remakes the scopes of the lists that hold it, and only
// those: the work of a policy event does not grow with the catalog's other
// lists.
func TestAPolicyChangeTouchesOnlyItsLists(t *testing.T) {
	w := newPolicyWorld(t)
	for _, id := range []string{"p", "q", "r"} {
		w.policy(id, events.PolicyCreatedV1{Scopes: []string{id + ":1"}})
	}
	w.key("acme", 1, events.KeyIssuedV1{Policies: []string{"p", "q"}})
	w.key("acme", 2, events.KeyIssuedV1{Policies: []string{"q", "r"}})
	w.key("acme", 3, events.KeyIssuedV1{Policies: []string{"r"}})
	te := w.c.tenants["acme"]
	if n := []int{len(te.listsOf["p"]), len(te.listsOf["q"]), len(te.listsOf["r"])}; !slices.Equal(n, []int{1, 2, 2}) {
		t.Fatalf("lists holding p, q, r: %v, want [1 2 2]", n)
	}
	others := te.listsOf["r"] // {q, r} and {r}: neither holds p
	kept := []*string{&others[0].scopes[0], &others[1].scopes[0]}
	w.policy("p", events.PolicyUpdatedV1{Scopes: []string{"p:2"}})
	d := w.verify(1, "", t0)
	if got := d.EffectiveScopes(nil); !slices.Equal(got, []string{"p:2", "q:1"}) {
		t.Fatalf("key 1's scopes after p changed: %v", got)
	}
	for i, l := range others {
		if &l.scopes[0] != kept[i] {
			t.Fatalf("list %v, which does not hold p, was made anew on p's change", l.ids)
		}
	}
}

package projections

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
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
	if k, ok := c.KeyByHash(events.SecretHash{3}); !ok || k.ID != keyID(2) {
		t.Fatalf("KeyByHash: %v %v", k.ID, ok)
	}
	if _, ok := c.KeyByHash(events.SecretHash{99}); ok {
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

func TestCheckPrecedence(t *testing.T) {
	exp := t0.Add(time.Hour)
	nb := t0.Add(-time.Hour)
	base := func(h *chain) {
		h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"})
		h.add("acme", events.UserAggregate("bob"), t0, events.UserCreatedV1{})
		h.add("acme", events.KeyAggregate("bob", keyID(1)), t0, events.KeyIssuedV1{SecretHash: events.SecretHash{1}, Hint: "h",
			Scopes: []string{"a"}, ExpiresAt: &exp, NotBefore: &nb})
	}
	key := events.KeyAggregate("bob", keyID(1))
	user := events.UserAggregate("bob")
	cases := []struct {
		name  string
		then  func(h *chain)
		check KeyCheck
		want  Code
	}{
		{"valid", func(*chain) {}, KeyCheck{Now: t0, Scopes: []string{"a"}}, CodeValid},
		{"scope", func(*chain) {}, KeyCheck{Now: t0, Scopes: []string{"b"}}, CodeInsufficientScope},
		{"tenant mismatch", func(*chain) {}, KeyCheck{Now: t0, Tenant: "globex"}, CodeTenantMismatch},
		{"not yet valid", func(*chain) {}, KeyCheck{Now: t0.Add(-2 * time.Hour)}, CodeNotYetValid},
		{"expired", func(*chain) {}, KeyCheck{Now: exp}, CodeExpired},
		{"suspended", func(h *chain) { h.add("acme", key, t0, events.KeySuspendedV1{}) }, KeyCheck{Now: t0}, CodeSuspended},
		{"user disabled beats suspended", func(h *chain) {
			h.add("acme", key, t0, events.KeySuspendedV1{})
			h.add("acme", user, t0, events.UserDisabledV1{})
		}, KeyCheck{Now: t0}, CodeUserDisabled},
		{"tenant suspended beats user disabled", func(h *chain) {
			h.add("acme", user, t0, events.UserDisabledV1{})
			h.add("acme", events.TenantAggregate("acme"), t0, events.TenantSuspendedV1{})
		}, KeyCheck{Now: t0}, CodeTenantSuspended},
		{"user deleted", func(h *chain) { h.add("acme", user, t0, events.UserDeletedV1{}) }, KeyCheck{Now: t0}, CodeUserDeleted},
		{"expired beats deleted", func(h *chain) { h.add("acme", user, t0, events.UserDeletedV1{}) }, KeyCheck{Now: exp}, CodeExpired},
		{"revoked beats expired", func(h *chain) { h.add("acme", key, t0, events.KeyRevokedV1{}) }, KeyCheck{Now: exp}, CodeRevoked},
		{"revoked before", func(h *chain) {
			h.add("acme", user, t0, events.UserKeysRevokedBeforeV1{Before: t0.Add(time.Second)})
		}, KeyCheck{Now: t0}, CodeRevoked},
		{"grace over", func(h *chain) {
			h.add("acme", key, t0, events.KeyRotatedV1{Successor: keyID(2), GraceUntil: t0.Add(time.Minute)})
		}, KeyCheck{Now: t0.Add(time.Minute)}, CodeExpired},
	}
	for _, c := range cases {
		var h chain
		base(&h)
		c.then(&h)
		cat := NewCatalog()
		for _, r := range h.out {
			cat.Apply(r)
		}
		if _, got := cat.Check(events.SecretHash{1}, c.check); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	if _, got := NewCatalog().Check(events.SecretHash{1}, KeyCheck{Now: t0}); got != CodeNotFound {
		t.Fatal(got)
	}
	var h chain
	h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"})
	h.add("acme", events.KeyAggregate("ghost", keyID(1)), t0, events.KeyIssuedV1{SecretHash: events.SecretHash{1}, Hint: "h"})
	cat := NewCatalog()
	for _, r := range h.out {
		cat.Apply(r)
	}
	if _, got := cat.Check(events.SecretHash{1}, KeyCheck{Now: t0}); got != CodeUserUnknown {
		t.Fatal(got)
	}
}

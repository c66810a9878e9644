package projections

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"

	"github.com/keytrail/keytrail/events"
)

func seedKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

// seal signs r with key (a stand-in for its stored bytes, naming its seq)
// as the store would have stored it, and reads the seal back.
func seal(r events.Recorded, key ed25519.PrivateKey) events.Recorded { return sealed(r, key, false) }

// forge is seal with a signature that is not the key's over r: one
// character of its text changed.
func forge(r events.Recorded, key ed25519.PrivateKey) events.Recorded { return sealed(r, key, true) }

func sealed(r events.Recorded, key ed25519.PrivateKey, forged bool) events.Recorded {
	stored, err := events.Sign(r.Subject, fmt.Appendf(nil, `{"seq":%d}`, r.Seq), key)
	if err != nil {
		panic(err)
	}
	if at := bytes.LastIndex(stored, []byte(`"sig":"`)) + len(`"sig":"`); forged {
		stored[at] = map[bool]byte{true: 'B', false: 'A'}[stored[at] == 'A']
	}
	_, sl, err := events.Unseal(r.Subject, stored)
	if err != nil || sl == nil {
		panic(fmt.Sprint("not unsealed: ", err))
	}
	r.Seal = *sl
	return r
}

// TestOnlySignedEventsCount: with the root key pinned, the catalog applies
// the signer set's events only when the root signed them, and every other
// event only when a signer the set holds signed it — an unsigned event, one
// signed by a stranger, a forged signature and a removed signer's later
// event are refused and left out of their chain (the next valid event links
// to the last one applied); events a removed signer signed before its
// removal stay.
func TestOnlySignedEventsCount(t *testing.T) {
	root, node, next, stranger := seedKey(1), seedKey(2), seedKey(3), seedKey(4)
	pub := func(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }
	added := func(k ed25519.PrivateKey) events.Payload {
		return events.SignerAddedV1{ID: events.SignerID(pub(k)), PublicKey: pub(k), Name: "n"}
	}
	c := NewCatalog()
	c.SetTrust(pub(root))
	var h chain
	apply := func(r events.Recorded) error { return c.Take(r.Seq, r.Hash, r, nil) }
	must := func(r events.Recorded) {
		t.Helper()
		if err := apply(r); err != nil {
			t.Fatal(err)
		}
	}
	refused := func(why string, r events.Recorded) {
		t.Helper()
		if err := apply(r); !errors.Is(err, ErrUnsigned) {
			t.Fatalf("%s: %v", why, err)
		}
	}
	trust := events.TrustAggregate()
	// History from before signing began counts unsigned.
	must(h.add("old", events.TenantAggregate("old"), t0, events.TenantCreatedV1{Name: "O"}))
	refused("a signer added by a node, not the root", seal(h.add(events.SystemTenant, trust, t0, added(stranger)), node))
	delete(h.heads, "keytrail.evt.keytrail-system.s") // refused: the chain goes on from before it
	must(seal(h.add(events.SystemTenant, trust, t0, added(node)), root))
	must(seal(h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"}), node))
	refused("unsigned", h.add("acme", events.UserAggregate("bob"), t0, events.UserCreatedV1{}))
	delete(h.heads, "keytrail.evt.acme.u.bob.u")
	refused("a stranger's", seal(h.add("acme", events.UserAggregate("bob"), t0, events.UserCreatedV1{}), stranger))
	delete(h.heads, "keytrail.evt.acme.u.bob.u")
	refused("a forged signature", forge(h.add("acme", events.UserAggregate("bob"), t0, events.UserCreatedV1{}), node))
	delete(h.heads, "keytrail.evt.acme.u.bob.u")
	must(seal(h.add("acme", events.UserAggregate("bob"), t0, events.UserCreatedV1{}), node))
	// Rotation: the next signer, then the old one removed.
	must(seal(h.add(events.SystemTenant, trust, t0, added(next)), root))
	must(seal(h.add("acme", events.UserAggregate("eve"), t0, events.UserCreatedV1{}), next))
	must(seal(h.add(events.SystemTenant, trust, t0, events.SignerRemovedV1{ID: events.SignerID(pub(node))}), root))
	refused("a removed signer's", seal(h.add("acme", events.UserAggregate("carol"), t0, events.UserCreatedV1{}), node))
	if _, ok := c.User("acme", "bob"); !ok {
		t.Fatal("an event the removed signer signed before its removal is gone")
	}
	if _, ok := c.User("acme", "carol"); ok {
		t.Fatal("a removed signer's event applied")
	}
	if _, ok := c.Tenant("old"); !ok {
		t.Fatal("history from before signing began was refused")
	}
	if got := c.Signers(); len(got) != 1 || got[0] != events.SignerID(pub(next)) {
		t.Fatalf("signers %v", got)
	}
	// A snapshot keeps the signer set.
	var b bytes.Buffer
	if err := c.WriteSnapshot(&b); err != nil {
		t.Fatal(err)
	}
	r, err := ReadSnapshot(&b)
	if err != nil || fmt.Sprint(r.Signers()) != fmt.Sprint(c.Signers()) || r.Digest() != c.Digest() {
		t.Fatalf("restored: %v %v", r.Signers(), err)
	}
	// Without a pinned root, nothing is judged by signature (readers that
	// were given no trust file).
	open := NewCatalog()
	for _, ev := range h.out {
		open.Apply(ev)
	}
	if _, ok := open.User("acme", "carol"); !ok {
		t.Fatal("a catalog without a root refused an event for its signature")
	}
}

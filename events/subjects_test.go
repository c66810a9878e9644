package events

import (
	"strings"
	"testing"
	"time"
)

func TestSubjects(t *testing.T) {
	cases := []struct {
		tenant string
		agg    Aggregate
		want   string
	}{
		{"acme", TenantAggregate("acme"), "keytrail.evt.acme.t"},
		{"acme", UserAggregate("Bob_1"), "keytrail.evt.acme.u.Bob_1.u"},
		{"acme", KeyAggregate("Bob_1", keyID), "keytrail.evt.acme.u.Bob_1.k." + keyID},
		{"acme", APIAggregate("orders"), "keytrail.evt.acme.a.orders"},
	}
	for _, c := range cases {
		got, err := Subject(c.tenant, c.agg)
		if err != nil || got != c.want {
			t.Fatalf("Subject(%q, %v) = %q, %v; want %q", c.tenant, c.agg, got, err, c.want)
		}
		tenant, agg, err := ParseSubject(got)
		if err != nil || tenant != c.tenant || agg != c.agg {
			t.Fatalf("ParseSubject(%q) = %q, %v, %v", got, tenant, agg, err)
		}
		scope, _ := UserScopeFilter("acme", "Bob_1")
		if c.agg.Kind == KindKey || c.agg.Kind == KindUser {
			if !strings.HasPrefix(got, strings.TrimSuffix(scope, ">")) {
				t.Fatalf("%s is outside the user scope %s", got, scope)
			}
		}
	}
}

func TestSubjectRejectsUnsafeIDs(t *testing.T) {
	bad := []struct {
		tenant string
		agg    Aggregate
	}{
		{"", TenantAggregate("")},
		{"ac.me", TenantAggregate("ac.me")},
		{"acme", TenantAggregate("other")},
		{"ac*", TenantAggregate("ac*")},
		{"Acme", TenantAggregate("Acme")},
		{"-acme", TenantAggregate("-acme")},
		{"acme", UserAggregate("bo.b")},
		{"acme", UserAggregate("bo b")},
		{"acme", UserAggregate(">")},
		{"acme", UserAggregate("")},
		{"acme", UserAggregate(strings.Repeat("a", 65))},
		{"acme", UserAggregate("bob\n")},
		{"acme", KeyAggregate("bob", "key_*")},
		{"acme", KeyAggregate("bob", "key_01jdq8z6w4m2n9v3x5c7b1a0zy")},
		{"acme", KeyAggregate("", keyID)},
		{"acme", APIAggregate("or.ders")},
		{"acme", Aggregate{Kind: "widget", ID: "x"}},
	}
	for _, b := range bad {
		if s, err := Subject(b.tenant, b.agg); err == nil {
			t.Errorf("Subject(%q, %v) = %q, want an error", b.tenant, b.agg, s)
		}
	}
	for _, s := range []string{"keytrail.evt.acme", "keytrail.evt.acme.x", "keytrail.evt.acme.u.bob", "other.evt.acme.t", "keytrail.evt.acme.u.bob.k.key_bad", "keytrail.evt.ac.me.t"} {
		if _, _, err := ParseSubject(s); err == nil {
			t.Errorf("ParseSubject(%q) accepted", s)
		}
	}
}

func TestValidators(t *testing.T) {
	for s, want := range map[string]bool{"orders:read": true, "a": true, "a/b.c_d-e:f": true, ":x": false, "": false, "a b": false, "a*": false} {
		if ValidScope(s) != want {
			t.Errorf("ValidScope(%q) != %v", s, want)
		}
	}
	for s, want := range map[string]bool{"/orders": true, "/v1/orders": true, "/": true, "orders": false, "/a//b": false, "/_keytrail": false, "/_keytrail/x": false, "/a?b": false, "/a b": false} {
		if ValidPathPrefix(s) != want {
			t.Errorf("ValidPathPrefix(%q) != %v", s, want)
		}
	}
	for s, want := range map[string]bool{"http://127.0.0.1:80": true, "https://x.example/base": true, "ftp://x": false, "http://u:p@x": false, "http://x/?q": false, "/rel": false} {
		if ValidUpstream(s) != want {
			t.Errorf("ValidUpstream(%q) != %v", s, want)
		}
	}
	if id, err := NewKeyID(t0); err != nil || !ValidKeyID(id) {
		t.Fatalf("NewKeyID = %q, %v", id, err)
	}
	if id, err := NewEventID(t0); err != nil || !ValidEventID(id) {
		t.Fatalf("NewEventID = %q, %v", id, err)
	}
	if MsgID("s", "c", 0) == MsgID("s", "c", 1) || MsgID("a.t", "c", 0) == MsgID("b.t", "c", 0) {
		t.Fatal("MsgID collides")
	}
}

func TestIsSubjectOfAgreesWithSubjectOf(t *testing.T) {
	subjects := []string{"keytrail.evt.acme.t", "keytrail.evt.acme.u.alice_01.u", "keytrail.evt.acme.u.alice_01.k." + keyID,
		"keytrail.evt.acme.a.orders", "keytrail.evt.acme.u.alice_0.k." + keyID, "keytrail.evt.acm.t", "keytrail.evt.acme.a.order",
		"keytrail.evt.acme.u.alice_01.uu", "keytrail.evt.acme.u.alice_01.k." + keyID2, "x.evt.acme.t"}
	for _, typ := range Types() {
		e := sample(typ)
		want, _ := SubjectOf(&e)
		for _, s := range subjects {
			if got := IsSubjectOf(&e, s); got != (s == want) {
				t.Errorf("IsSubjectOf(%s, %q) = %v; SubjectOf = %q", typ, s, got, want)
			}
		}
	}
}

// TestDecisionSubjects: every decision lands on a five-token subject under
// the prefix whatever its fields hold (a made-up key id with dots or
// wildcards becomes "_"), and a query's filter selects by any field.
func TestDecisionSubjects(t *testing.T) {
	for _, c := range []struct {
		d    DecisionRecord
		want string
	}{
		{DecisionRecord{Tenant: "acme", User: "bob", KeyID: "key_1", API: "orders", APITenant: "acme", Code: "REVOKED"}, "keytrail.dec.acme.bob.key_1.orders.REVOKED"},
		{DecisionRecord{Code: "MISSING", APITenant: "acme", API: "orders"}, "keytrail.dec.acme._._.orders.MISSING"},
		{DecisionRecord{Code: "NOT_FOUND", KeyID: "a.b*>", User: "x y"}, "keytrail.dec._._._._.NOT_FOUND"},
		{DecisionRecord{}, "keytrail.dec._._._._._"},
	} {
		if got := DecisionSubject(&c.d); got != c.want {
			t.Errorf("%+v: %s, want %s", c.d, got, c.want)
		}
	}
	if f, err := (DecisionQuery{KeyID: "key_1", Code: "EXPIRED"}).Filter(); err != nil || f != "keytrail.dec.*.*.key_1.*.EXPIRED" {
		t.Errorf("filter %q %v", f, err)
	}
	for _, bad := range []DecisionQuery{{KeyID: "a.b"}, {Code: "*"}, {Tenant: ">"}, {User: "a b"}, {API: "x.>"}} {
		if f, err := bad.Filter(); err == nil {
			t.Errorf("%+v: filter %q, want an error", bad, f)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "720h": 720 * time.Hour, "90m": 90 * time.Minute, "1d": 24 * time.Hour} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "d", "0d", "-1d", "36501d", "1.5d", "30x", "1e9d"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

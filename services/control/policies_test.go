package control

import (
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
)

// The clock of these tests is the fixture's: a key outlives a policy's
// lifetime bound without waiting for it.

func (f *fixture) policy(spec PolicySpec) projections.Policy {
	f.t.Helper()
	return must[projections.Policy](f.t)(f.svc.CreatePolicy(f.ctx(), meta(""), "acme", spec))
}

// A key its policy's lifetime has ended is expired: rotating it is
// refused, as for a key past its own expiry (it revived the key).
func TestRotatingAKeyAPolicyExpiredIsRefused(t *testing.T) {
	f := newFixture(t)
	f.givenUser()
	f.policy(PolicySpec{ID: "short", MaxTTL: "1h"})
	k, _ := f.issue(KeySpec{User: "bob", Policies: []string{"short"}})
	f.now = t0.Add(59 * time.Minute)
	if _, _, err := f.svc.RotateKey(f.ctx(), meta(""), "acme", k.ID, time.Hour, nil); err != nil {
		t.Fatalf("within the bound: %v", err)
	}
	k2, _ := f.issue(KeySpec{User: "bob", Policies: []string{"short"}})
	f.now = f.now.Add(time.Hour)
	before := f.last()
	_, _, err := f.svc.RotateKey(f.ctx(), meta(""), "acme", k2.ID, time.Hour, nil)
	wantCode(t, err, CodeFailedPrecondition)
	if f.last() != before {
		t.Fatal("a refused rotation appended")
	}
}

// A policy whose bound a key has passed already would end the key the
// moment it is referenced: refused, rather than killing it silently.
func TestAPolicyThatWouldEndAKeyAtOnceIsRefused(t *testing.T) {
	f := newFixture(t)
	f.givenUser()
	f.policy(PolicySpec{ID: "short", MaxTTL: "1h"})
	k, _ := f.issue(KeySpec{User: "bob"})
	f.now = t0.Add(2 * time.Hour)
	policies := []string{"short"}
	_, _, err := f.svc.UpdateKey(f.ctx(), meta(""), "acme", k.ID, KeyPatch{Policies: &policies}, nil)
	wantCode(t, err, CodeFailedPrecondition)
	f.now = t0.Add(30 * time.Minute)
	if _, _, err := f.svc.UpdateKey(f.ctx(), meta(""), "acme", k.ID, KeyPatch{Policies: &policies}, nil); err != nil {
		t.Fatalf("within the bound: %v", err)
	}
}

// A confined caller (a tenant admin) may reference, define, change and
// retire only policies that grant what it holds — judged against the
// policy as the command reads it from the log, not a read model that may
// not have it yet (the race that let a tenant admin take a policy created
// a moment before, granting what it lacked).
func TestConfinedCommandsJudgeThePolicyTheyRead(t *testing.T) {
	f := newFixture(t)
	f.givenUser()
	f.policy(PolicySpec{ID: "wide", Scopes: []string{"billing:admin"}})
	f.policy(PolicySpec{ID: "narrow", Scopes: []string{"orders:read"}})
	k, _ := f.issue(KeySpec{User: "bob"})
	admin := meta("")
	admin.Actor, admin.Confine = k.ID, &Confinement{KeyID: k.ID, Scopes: []string{"keytrail:admin", "orders:read"}}
	before := f.last()
	wide, narrow := []string{"wide"}, []string{"narrow"}
	_, _, _, err := f.svc.IssueKey(f.ctx(), admin, "acme", KeySpec{User: "bob", Policies: wide})
	wantCode(t, err, CodePermissionDenied)
	_, _, err = f.svc.UpdateKey(f.ctx(), admin, "acme", k.ID, KeyPatch{Policies: &wide}, nil)
	wantCode(t, err, CodePermissionDenied)
	_, _, err = f.svc.CreatePolicy(f.ctx(), admin, "acme", PolicySpec{ID: "mine", Scopes: []string{"billing:admin"}})
	wantCode(t, err, CodePermissionDenied)
	none := []string{}
	_, _, err = f.svc.UpdatePolicy(f.ctx(), admin, "acme", "wide", PolicyPatch{APIs: &none}, nil)
	wantCode(t, err, CodePermissionDenied)
	_, _, err = f.svc.RetirePolicy(f.ctx(), admin, "acme", "wide", nil)
	wantCode(t, err, CodePermissionDenied)
	if f.last() != before {
		t.Fatal("refused commands appended")
	}
	if _, _, err := f.svc.UpdateKey(f.ctx(), admin, "acme", k.ID, KeyPatch{Policies: &narrow}, nil); err != nil {
		t.Fatalf("a policy within its scopes: %v", err)
	}
}

// An update that changes nothing appends nothing; a policy's max_ttl reads
// back as it was given.
func TestAPolicyUpdateThatChangesNothingAppendsNothing(t *testing.T) {
	f := newFixture(t)
	f.givenUser()
	p := f.policy(PolicySpec{ID: "p", Scopes: []string{"a"}, MaxTTL: "90m"})
	if got := events.FormatTTL(p.MaxTTL); got != "90m" {
		t.Fatalf("max_ttl reads back as %q", got)
	}
	before := f.last()
	empty := ""
	_, res, err := f.svc.UpdatePolicy(f.ctx(), meta(""), "acme", "p", PolicyPatch{Scopes: &[]string{"a"}, MaxTTL: &[]string{"90m"}[0]}, nil)
	if err != nil || !res.Unchanged || f.last() != before {
		t.Fatalf("a no-op update: %+v %v, log %d → %d", res, err, before, f.last())
	}
	if _, _, err := f.svc.UpdatePolicy(f.ctx(), meta(""), "acme", "p", PolicyPatch{MaxTTL: &empty}, nil); err != nil || f.last() != before+1 {
		t.Fatalf("removing max_ttl: %v", err)
	}
	// An API a policy names must exist.
	_, _, err = f.svc.UpdatePolicy(f.ctx(), meta(""), "acme", "p", PolicyPatch{APIs: &[]string{"nosuch"}}, nil)
	wantCode(t, err, CodeInvalidArgument)
}

// A tenant admin's policy change was judged against the keys the read
// model held at AsOf: if a key of the tenant changed since (one that may
// have come to reference the policy), the change is a conflict, not made.
func TestAJudgedPolicyChangeConflictsWithALaterKey(t *testing.T) {
	f := newFixture(t)
	f.givenUser()
	f.policy(PolicySpec{ID: "p", Scopes: []string{"a"}})
	judgedAt := f.last()
	f.issue(KeySpec{User: "bob", Policies: []string{"p"}}) // after the judgement
	admin := meta("")
	admin.Confine = &Confinement{KeyID: "key_x", Scopes: []string{"a"}, AsOf: judgedAt}
	before := f.last()
	_, _, err := f.svc.UpdatePolicy(f.ctx(), admin, "acme", "p", PolicyPatch{MaxTTL: &[]string{"1d"}[0]}, nil)
	wantCode(t, err, CodeConflict)
	if f.last() != before {
		t.Fatal("a conflicting change appended")
	}
	admin.Confine.AsOf = f.last()
	if _, _, err := f.svc.UpdatePolicy(f.ctx(), admin, "acme", "p", PolicyPatch{MaxTTL: &[]string{"1d"}[0]}, nil); err != nil {
		t.Fatalf("judged on the current keys: %v", err)
	}
}

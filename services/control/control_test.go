package control

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

type fixture struct {
	t   *testing.T
	st  *store.Memory
	svc *Service
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, st: store.NewMemory(), now: t0}
	svc, err := New(Config{Store: f.st, Now: func() time.Time { return f.now }})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

func (f *fixture) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	f.t.Cleanup(cancel)
	return ctx
}

func meta(cmd string) Meta { return Meta{Actor: "root", Reason: "test", CommandID: cmd} }

func must[T any](t *testing.T) func(T, Result, error) T {
	return func(v T, _ Result, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func wantCode(t *testing.T, err error, code Code) {
	t.Helper()
	if CodeOf(err) != code {
		t.Fatalf("error %v, want code %s", err, code)
	}
}

func (f *fixture) last() uint64 {
	seq, err := f.st.LastSeq(f.ctx(), "")
	if err != nil {
		f.t.Fatal(err)
	}
	return seq
}

// givenUser creates tenant acme and user bob.
func (f *fixture) givenUser() {
	must[projections.Tenant](f.t)(f.svc.CreateTenant(f.ctx(), meta(""), "acme", "Acme"))
	must[projections.User](f.t)(f.svc.CreateUser(f.ctx(), meta(""), "acme", "bob", "Bob"))
}

func (f *fixture) issue(spec KeySpec) (projections.Key, secret.Secret) {
	f.t.Helper()
	k, sec, _, err := f.svc.IssueKey(f.ctx(), meta(""), "acme", spec)
	if err != nil {
		f.t.Fatal(err)
	}
	return k, sec
}

func TestTenants(t *testing.T) {
	f := newFixture(t)
	ten, res, err := f.svc.CreateTenant(f.ctx(), meta("c1"), "acme", "Acme")
	if err != nil || ten.Status != projections.TenantActive || res.Seq != 1 || res.Replayed {
		t.Fatalf("%+v %+v %v", ten, res, err)
	}
	// The same request again answers the same, appending nothing.
	if _, res, err := f.svc.CreateTenant(f.ctx(), meta("c1"), "acme", "Acme"); err != nil || !res.Replayed || res.Seq != 1 || f.last() != 1 {
		t.Fatalf("replay: %+v %v", res, err)
	}
	_, _, err = f.svc.CreateTenant(f.ctx(), meta("c2"), "acme", "Other")
	wantCode(t, err, CodeConflict)
	for _, bad := range []string{"", "Acme", "ac.me", "ac me", "a*", ">", "-a"} {
		_, _, err := f.svc.CreateTenant(f.ctx(), meta(""), bad, "x")
		wantCode(t, err, CodeInvalidArgument)
	}
	ten = must[projections.Tenant](t)(f.svc.SuspendTenant(f.ctx(), meta(""), "acme"))
	if ten.Status != projections.TenantSuspended {
		t.Fatal(ten.Status)
	}
	before := f.last()
	ten, res, _ = f.svc.SuspendTenant(f.ctx(), meta(""), "acme")
	if f.last() != before || res.Seq != ten.Version {
		t.Fatal("suspending a suspended tenant appended an event")
	}
	must[projections.Tenant](t)(f.svc.ResumeTenant(f.ctx(), meta(""), "acme"))
	_, _, err = f.svc.SuspendTenant(f.ctx(), meta(""), "nope")
	wantCode(t, err, CodeNotFound)
	if f.last() != 3 {
		t.Fatalf("%d events, want 3", f.last())
	}
}

func TestUsers(t *testing.T) {
	f := newFixture(t)
	_, _, err := f.svc.CreateUser(f.ctx(), meta(""), "acme", "bob", "Bob")
	wantCode(t, err, CodeNotFound)
	f.givenUser()
	gen := must[projections.User](t)(f.svc.CreateUser(f.ctx(), meta(""), "acme", "", "generated"))
	if !events.ValidUserID(gen.ID) || gen.ID[:4] != "usr_" {
		t.Fatalf("generated id %q", gen.ID)
	}
	// An idempotent create without an id lands on the same user when retried.
	a := must[projections.User](t)(f.svc.CreateUser(f.ctx(), meta("idem"), "acme", "", "x"))
	b, res, err := f.svc.CreateUser(f.ctx(), meta("idem"), "acme", "", "x")
	if err != nil || a.ID != b.ID || !res.Replayed {
		t.Fatalf("retried create: %s vs %s, %v", a.ID, b.ID, err)
	}
	u := must[projections.User](t)(f.svc.DisableUser(f.ctx(), meta(""), "acme", "bob"))
	if u.Status != projections.UserDisabled {
		t.Fatal(u.Status)
	}
	must[projections.User](t)(f.svc.EnableUser(f.ctx(), meta(""), "acme", "bob"))
	u = must[projections.User](t)(f.svc.RevokeUserKeys(f.ctx(), meta(""), "acme", "bob", nil))
	if !u.KeysRevokedBefore.Equal(t0) {
		t.Fatal(u.KeysRevokedBefore)
	}
	future := t0.Add(time.Hour)
	_, _, err = f.svc.RevokeUserKeys(f.ctx(), meta(""), "acme", "bob", &future)
	wantCode(t, err, CodeInvalidArgument)
	ten := must[projections.Tenant](t)(f.svc.RevokeTenantKeys(f.ctx(), meta(""), "acme", nil))
	if !ten.KeysRevokedBefore.Equal(t0) {
		t.Fatal(ten.KeysRevokedBefore)
	}
	_, _, err = f.svc.RevokeTenantKeys(f.ctx(), meta(""), "acme", &future)
	wantCode(t, err, CodeInvalidArgument)
	_, _, err = f.svc.RevokeTenantKeys(f.ctx(), meta(""), "nope", nil)
	wantCode(t, err, CodeNotFound)
	must[projections.User](t)(f.svc.DeleteUser(f.ctx(), meta(""), "acme", "bob"))
	_, _, err = f.svc.EnableUser(f.ctx(), meta(""), "acme", "bob")
	wantCode(t, err, CodeFailedPrecondition)
	_, _, err = f.svc.DisableUser(f.ctx(), meta(""), "acme", "nobody")
	wantCode(t, err, CodeNotFound)
	for _, bad := range []string{"bo.b", "bo b", "*", ">", ""} {
		_, _, err := f.svc.DisableUser(f.ctx(), meta(""), "acme", bad)
		wantCode(t, err, CodeInvalidArgument)
	}
}

func TestIssueKey(t *testing.T) {
	f := newFixture(t)
	f.givenUser()
	exp := t0.Add(time.Hour)
	k, sec := f.issue(KeySpec{User: "bob", Name: "ci", Scopes: []string{"orders:read"}, ExpiresAt: &exp,
		RateLimit: &events.RateLimit{PerSecond: 5, Burst: 10}, Metadata: map[string]string{"team": "a"}})
	parsed, err := secret.Parse(sec.Reveal(), secret.DefaultPrefix)
	if err != nil || parsed.Hash() != k.SecretHash || k.Hint != sec.Hint() || k.User != "bob" || k.Status != projections.KeyActive {
		t.Fatalf("%+v %v", k, err)
	}
	got, err := f.svc.Key(f.ctx(), "acme", k.ID)
	if err != nil || got.Version != k.Version {
		t.Fatalf("Key: %+v %v", got, err)
	}
	// TTL, and the retry of an idempotent issue returns the same key without a secret.
	k1, s1, r1, err := f.svc.IssueKey(f.ctx(), meta("issue-1"), "acme", KeySpec{User: "bob", TTL: time.Minute})
	if err != nil || !k1.ExpiresAt.Equal(t0.Add(time.Minute)) || s1.IsZero() || r1.Replayed {
		t.Fatalf("%+v %v", k1, err)
	}
	before := f.last()
	k2, s2, r2, err := f.svc.IssueKey(f.ctx(), meta("issue-1"), "acme", KeySpec{User: "bob", TTL: time.Minute})
	if err != nil || k2.ID != k1.ID || !s2.IsZero() || !r2.Replayed || f.last() != before {
		t.Fatalf("retry issued %s (first %s), secret returned %v, %v", k2.ID, k1.ID, !s2.IsZero(), err)
	}
	past := t0.Add(-time.Second)
	nb := t0.Add(2 * time.Hour)
	for name, spec := range map[string]KeySpec{
		"expiry in the past":       {User: "bob", ExpiresAt: &past},
		"expiry before not-before": {User: "bob", ExpiresAt: &exp, NotBefore: &nb},
		"ttl and expires_at":       {User: "bob", ExpiresAt: &exp, TTL: time.Hour},
		"negative ttl":             {User: "bob", TTL: -time.Hour},
		"bad scope":                {User: "bob", Scopes: []string{"a b"}},
		"bad rate":                 {User: "bob", RateLimit: &events.RateLimit{PerSecond: 0, Burst: 1}},
		"bad user id":              {User: "b.b"},
	} {
		_, _, _, err := f.svc.IssueKey(f.ctx(), meta(""), "acme", spec)
		if CodeOf(err) != CodeInvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, _, _, err = f.svc.IssueKey(f.ctx(), meta(""), "acme", KeySpec{User: "ghost"})
	wantCode(t, err, CodeFailedPrecondition)
	_, _, _, err = f.svc.IssueKey(f.ctx(), meta(""), "nope", KeySpec{User: "bob"})
	wantCode(t, err, CodeNotFound)
	must[projections.User](t)(f.svc.DisableUser(f.ctx(), meta(""), "acme", "bob"))
	_, _, _, err = f.svc.IssueKey(f.ctx(), meta(""), "acme", KeySpec{User: "bob"})
	wantCode(t, err, CodeFailedPrecondition)
	must[projections.User](t)(f.svc.EnableUser(f.ctx(), meta(""), "acme", "bob"))
	must[projections.Tenant](t)(f.svc.SuspendTenant(f.ctx(), meta(""), "acme"))
	before = f.last()
	_, sec, _, err = f.svc.IssueKey(f.ctx(), meta(""), "acme", KeySpec{User: "bob"})
	wantCode(t, err, CodeFailedPrecondition)
	if !sec.IsZero() || f.last() != before {
		t.Fatal("a refused issue returned a secret or appended")
	}
}

func TestKeyLifecycle(t *testing.T) {
	f := newFixture(t)
	f.givenUser()
	k, _ := f.issue(KeySpec{User: "bob", Scopes: []string{"a"}})
	k = must[projections.Key](t)(f.svc.SuspendKey(f.ctx(), meta(""), "acme", k.ID, nil))
	if k.Status != projections.KeySuspended {
		t.Fatal(k.Status)
	}
	stale := k.Version - 1
	_, _, err := f.svc.ResumeKey(f.ctx(), meta(""), "acme", k.ID, &stale)
	wantCode(t, err, CodeConflict)
	v := k.Version
	k = must[projections.Key](t)(f.svc.ResumeKey(f.ctx(), meta(""), "acme", k.ID, &v))
	name, scopes := "renamed", []string{"b", "c"}
	exp := t0.Add(24 * time.Hour)
	k = must[projections.Key](t)(f.svc.UpdateKey(f.ctx(), meta(""), "acme", k.ID, KeyPatch{Name: &name, Scopes: &scopes, ExpiresAt: &exp}, nil))
	if k.Name != "renamed" || len(k.Scopes) != 2 || !k.ExpiresAt.Equal(exp) {
		t.Fatalf("%+v", k)
	}
	_, _, err = f.svc.UpdateKey(f.ctx(), meta(""), "acme", k.ID, KeyPatch{}, nil)
	wantCode(t, err, CodeInvalidArgument)
	k = must[projections.Key](t)(f.svc.RevokeKey(f.ctx(), meta(""), "acme", k.ID, nil))
	before := f.last()
	must[projections.Key](t)(f.svc.RevokeKey(f.ctx(), meta(""), "acme", k.ID, nil))
	if f.last() != before {
		t.Fatal("revoking twice appended")
	}
	for name, op := range map[string]func() error{
		"resume": func() error { _, _, err := f.svc.ResumeKey(f.ctx(), meta(""), "acme", k.ID, nil); return err },
		"update": func() error {
			_, _, err := f.svc.UpdateKey(f.ctx(), meta(""), "acme", k.ID, KeyPatch{Name: &name}, nil)
			return err
		},
		"rotate": func() error {
			_, _, err := f.svc.RotateKey(f.ctx(), meta(""), "acme", k.ID, time.Hour, nil)
			return err
		},
	} {
		if CodeOf(op()) != CodeFailedPrecondition {
			t.Errorf("%s on a revoked key", name)
		}
	}
	_, _, err = f.svc.SuspendKey(f.ctx(), meta(""), "acme", "key_01JDQ8Z6W4M2N9V3X5C7B1A0ZY", nil)
	wantCode(t, err, CodeNotFound)
	_, _, err = f.svc.SuspendKey(f.ctx(), meta(""), "acme", "key_*", nil)
	wantCode(t, err, CodeInvalidArgument)
	_, err = f.svc.Key(f.ctx(), "other", k.ID)
	wantCode(t, err, CodeNotFound)
}

func TestRotateKey(t *testing.T) {
	f := newFixture(t)
	f.givenUser()
	exp := t0.Add(2 * time.Hour)
	old, _ := f.issue(KeySpec{User: "bob", Name: "ci", Scopes: []string{"a", "b"}, ExpiresAt: &exp,
		RateLimit: &events.RateLimit{PerSecond: 1, Burst: 2}, Metadata: map[string]string{"k": "v"}})
	before := f.last()
	rot, res, err := f.svc.RotateKey(f.ctx(), meta("rot"), "acme", old.ID, 24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, p := rot.New, rot.Previous
	if n.User != "bob" || n.Name != "ci" || len(n.Scopes) != 2 || *n.RateLimit != *old.RateLimit || n.Metadata["k"] != "v" ||
		n.RotatedFrom != old.ID || !n.ExpiresAt.Equal(exp) || rot.Secret.IsZero() || rot.Secret.Hash() != n.SecretHash {
		t.Fatalf("new key %+v", n)
	}
	if p.RotatedTo != n.ID || !p.GraceUntil.Equal(exp) {
		t.Fatalf("grace %v: a rotation must not extend the old key's expiry %v", p.GraceUntil, exp)
	}
	if f.last() != before+2 || res.Seq != before+2 {
		t.Fatalf("rotation appended %d events", f.last()-before)
	}
	again, res, err := f.svc.RotateKey(f.ctx(), meta("rot"), "acme", old.ID, 24*time.Hour, nil)
	if err != nil || !res.Replayed || again.New.ID != n.ID || !again.Secret.IsZero() || f.last() != before+2 {
		t.Fatalf("retried rotation: %+v %v", res, err)
	}
	_, _, err = f.svc.RotateKey(f.ctx(), meta(""), "acme", old.ID, time.Hour, nil)
	wantCode(t, err, CodeFailedPrecondition)
	rot2 := must[Rotation](t)(f.svc.RotateKey(f.ctx(), meta(""), "acme", n.ID, time.Minute, nil))
	if !rot2.Previous.GraceUntil.Equal(t0.Add(time.Minute)) {
		t.Fatal(rot2.Previous.GraceUntil)
	}
	_, _, err = f.svc.RotateKey(f.ctx(), meta(""), "acme", rot2.New.ID, -time.Minute, nil)
	wantCode(t, err, CodeInvalidArgument)
}

// TestSecretsNeverReachEvents: no event holds a secret, only its hash.
func TestSecretsNeverReachEvents(t *testing.T) {
	f := newFixture(t)
	f.givenUser()
	_, sec := f.issue(KeySpec{User: "bob"})
	k, _ := f.issue(KeySpec{User: "bob"})
	rot := must[Rotation](t)(f.svc.RotateKey(f.ctx(), meta(""), "acme", k.ID, time.Hour, nil))
	sub, err := f.st.Subscribe(f.ctx(), store.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for seq := uint64(1); seq <= f.last(); seq++ {
		d, err := sub.Next(f.ctx())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := events.Encode(&d.Event.Event)
		for _, s := range []secret.Secret{sec, rot.Secret} {
			if strings.Contains(string(b), s.Reveal()) || strings.Contains(string(b), s.Reveal()[3:33]) {
				t.Fatalf("seq %d holds a secret", d.Seq)
			}
		}
	}
}

func TestMetaIsChecked(t *testing.T) {
	f := newFixture(t)
	for name, m := range map[string]Meta{
		"no actor":       {Reason: "x"},
		"bad command id": {Actor: "root", CommandID: "a b"},
		"control chars":  {Actor: "root", Reason: "\x1b[31m"},
	} {
		_, _, err := f.svc.CreateTenant(f.ctx(), m, "acme", "A")
		if CodeOf(err) != CodeInvalidArgument {
			t.Errorf("%s: %v", name, err)
		}
	}
	if f.last() != 0 {
		t.Fatal("a refused command appended")
	}
	if CodeOf(errors.New("boom")) != CodeInternal {
		t.Fatal("a plain error is not internal")
	}
}

func TestAPIs(t *testing.T) {
	f := newFixture(t)
	f.givenUser()
	must[projections.Tenant](t)(f.svc.CreateTenant(f.ctx(), meta(""), "globex", "Globex"))
	spec := func(id, prefix string) APISpec {
		return APISpec{ID: id, PathPrefix: prefix, Upstreams: []string{"http://127.0.0.1:9001"}, Scopes: []string{"orders:read"}}
	}
	a := must[projections.API](t)(f.svc.CreateAPI(f.ctx(), meta(""), "acme", spec("orders", "/orders")))
	if a.Status != projections.APIPublished || a.PathPrefix != "/orders" {
		t.Fatalf("%+v", a)
	}
	must[projections.API](t)(f.svc.CreateAPI(f.ctx(), meta(""), "acme", spec("orders-v2", "/orders/v2")))
	must[projections.API](t)(f.svc.CreateAPI(f.ctx(), meta(""), "globex", spec("ordersx", "/ordersx")))
	for name, c := range map[string]struct {
		tenant string
		spec   APISpec
		code   Code
	}{
		"same prefix, same tenant":  {"acme", spec("dup", "/orders"), CodeConflict},
		"same prefix, other tenant": {"globex", spec("dup", "/orders"), CodeConflict},
		"below another tenant's":    {"globex", spec("dup", "/orders/admin"), CodeConflict},
		"above another tenant's":    {"globex", spec("dup", "/"), CodeConflict},
		"existing id":               {"acme", spec("orders", "/other"), CodeConflict},
		"reserved prefix":           {"acme", spec("x", "/_keytrail/x"), CodeInvalidArgument},
		"relative prefix":           {"acme", spec("x", "orders"), CodeInvalidArgument},
		"bad upstream":              {"acme", APISpec{ID: "x", PathPrefix: "/x", Upstreams: []string{"ftp://x"}}, CodeInvalidArgument},
		"no upstream":               {"acme", APISpec{ID: "x", PathPrefix: "/x"}, CodeInvalidArgument},
		"bad id":                    {"acme", spec("a.b", "/ab"), CodeInvalidArgument},
		"unknown tenant":            {"nope", spec("x", "/x"), CodeNotFound},
	} {
		_, _, err := f.svc.CreateAPI(f.ctx(), meta(""), c.tenant, c.spec)
		if CodeOf(err) != c.code {
			t.Errorf("%s: %v, want %s", name, err, c.code)
		}
	}
	moved := "/shop"
	a = must[projections.API](t)(f.svc.UpdateAPI(f.ctx(), meta(""), "acme", "orders", APIPatch{PathPrefix: &moved}, nil))
	if a.PathPrefix != "/shop" || len(a.Upstreams) != 1 {
		t.Fatalf("%+v", a)
	}
	taken := "/ordersx"
	_, _, err := f.svc.UpdateAPI(f.ctx(), meta(""), "acme", "orders", APIPatch{PathPrefix: &taken}, nil)
	wantCode(t, err, CodeConflict)
	_, _, err = f.svc.DeprecateAPI(f.ctx(), meta(""), "acme", "orders", t0.Add(-time.Hour))
	wantCode(t, err, CodeInvalidArgument)
	a = must[projections.API](t)(f.svc.DeprecateAPI(f.ctx(), meta(""), "acme", "orders", t0.Add(30*24*time.Hour)))
	if a.Status != projections.APIDeprecated || !a.Sunset.Equal(t0.Add(30*24*time.Hour)) {
		t.Fatalf("%+v", a)
	}
	must[projections.API](t)(f.svc.RetireAPI(f.ctx(), meta(""), "acme", "orders"))
	_, _, err = f.svc.UpdateAPI(f.ctx(), meta(""), "acme", "orders", APIPatch{Name: &moved}, nil)
	wantCode(t, err, CodeFailedPrecondition)
	// A retired API keeps its prefix from tenant admins (and one-segment
	// prefixes are the operator's anyway); the operator reclaims it.
	tenantAdmin := Meta{Actor: "key_01JDQ8Z6W4M2N9V3X5C7B1D2E3"}
	_, _, err = f.svc.CreateAPI(f.ctx(), tenantAdmin, "globex", spec("shop", "/shop"))
	wantCode(t, err, CodePermissionDenied)
	_, _, err = f.svc.CreateAPI(f.ctx(), tenantAdmin, "globex", spec("all", "/"))
	wantCode(t, err, CodePermissionDenied)
	_, _, err = f.svc.CreateAPI(f.ctx(), tenantAdmin, "globex", spec("dots", "/globex/../acme"))
	wantCode(t, err, CodeInvalidArgument)
	if got, err := f.svc.API(f.ctx(), "acme", "orders"); err != nil || got.Status != projections.APIRetired {
		t.Fatalf("%+v %v", got, err)
	}
	must[projections.API](t)(f.svc.CreateAPI(f.ctx(), meta(""), "globex", spec("shop", "/shop")))
	_, err = f.svc.API(f.ctx(), "globex", "orders")
	wantCode(t, err, CodeNotFound)
}

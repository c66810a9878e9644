package integration

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/client"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

// TestRevocationsOverNATS: other services revoke over NATS with the same
// authorization, validation, idempotency and problems as HTTP; a bad or
// unauthorized request appends nothing; a revocation is enforced by the
// gateway.
func TestRevocationsOverNATS(t *testing.T) {
	e := startAdmin(t)
	ctx := testCtx(t, time.Minute)
	admin := client.New(e.base, e.root, nil)
	for _, ten := range []string{"acme", "beta"} {
		if _, _, err := admin.CreateTenant(ctx, ten, ten, nil); err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{"bob", "ops"} {
			if _, _, err := admin.CreateUser(ctx, ten, u, "", nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	up := upstream(t)
	if _, _, err := admin.CreateAPI(ctx, "acme", client.APISpec{ID: "orders", PathPrefix: "/orders", Upstreams: []string{up.URL}}, nil); err != nil {
		t.Fatal(err)
	}
	issue := func(tenant string, scopes ...string) client.IssuedKey {
		user := "bob"
		if len(scopes) > 0 {
			user = "ops" // admin keys belong to another user than the keys revoked here
		}
		k, err := admin.IssueKey(ctx, tenant, client.KeySpec{User: user, Scopes: scopes}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	acmeAdmin, betaAdmin := issue("acme", "keytrail:admin"), issue("beta", "keytrail:admin")
	plain := issue("acme")
	victim, betaKey := issue("acme"), issue("beta")
	gw := e.dev.Addresses().Gateway

	nc := devConnect(t, e.dev.Addresses().NATS, e.dir, natsauth.Service)
	raw := func(subject, token, body string) (int, string) {
		m := nats.NewMsg(subject)
		m.Data = []byte(body)
		if token != "" {
			m.Header.Set("Authorization", "Bearer "+token)
		}
		reply, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		status, _ := strconv.Atoi(reply.Header.Get("Keytrail-Status"))
		return status, string(reply.Data)
	}
	before := e.last()
	bad := []struct {
		name, subject, token, body string
		status                     int
		code                       client.Code
	}{
		{"no token", "keytrail.cmd.acme.keys.revoke", "", fmt.Sprintf(`{"key":%q}`, victim.Key.ID), 401, client.CodeUnauthenticated},
		{"garbage token", "keytrail.cmd.acme.keys.revoke", "kt_garbage", fmt.Sprintf(`{"key":%q}`, victim.Key.ID), 401, client.CodeUnauthenticated},
		{"a key without the admin scope", "keytrail.cmd.acme.keys.revoke", plain.Secret, fmt.Sprintf(`{"key":%q}`, victim.Key.ID), 403, client.CodePermissionDenied},
		// As over HTTP, another tenant does not exist for a tenant's key.
		{"another tenant's admin", "keytrail.cmd.acme.keys.revoke", betaAdmin.Secret, fmt.Sprintf(`{"key":%q}`, victim.Key.ID), 404, client.CodeNotFound},
		{"another tenant's key", "keytrail.cmd.acme.keys.revoke", acmeAdmin.Secret, fmt.Sprintf(`{"key":%q}`, betaKey.Key.ID), 404, client.CodeNotFound},
		{"not JSON", "keytrail.cmd.acme.keys.revoke", acmeAdmin.Secret, `{"key":`, 400, client.CodeInvalidArgument},
		{"unknown field", "keytrail.cmd.acme.keys.revoke", acmeAdmin.Secret, fmt.Sprintf(`{"key":%q,"force":true}`, victim.Key.ID), 400, client.CodeInvalidArgument},
		{"key and user", "keytrail.cmd.acme.keys.revoke", acmeAdmin.Secret, fmt.Sprintf(`{"key":%q,"user":"bob"}`, victim.Key.ID), 400, client.CodeInvalidArgument},
		{"a path in the key", "keytrail.cmd.acme.keys.revoke", acmeAdmin.Secret, `{"key":"../../beta/keys/x"}`, 400, client.CodeInvalidArgument},
		{"a path in the user", "keytrail.cmd.acme.keys.revoke", acmeAdmin.Secret, `{"user":"bob/../../x"}`, 400, client.CodeInvalidArgument},
		{"nothing named", "keytrail.cmd.acme.keys.revoke", acmeAdmin.Secret, `{}`, 400, client.CodeInvalidArgument},
		{"bad tenant token", "keytrail.cmd.ACME.keys.revoke", e.root, fmt.Sprintf(`{"key":%q}`, victim.Key.ID), 400, client.CodeInvalidArgument},
		{"future before", "keytrail.cmd.acme.keys.revoke", acmeAdmin.Secret, `{"before":"2999-01-01T00:00:00Z"}`, 400, client.CodeInvalidArgument},
		{"unknown tenant", "keytrail.cmd.gamma.keys.revoke", e.root, `{"before":"2020-01-01T00:00:00Z"}`, 404, client.CodeNotFound},
	}
	for _, c := range bad {
		status, body := raw(c.subject, c.token, c.body)
		if status != c.status || !containsCode(body, c.code) {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, body, c.status, c.code)
		}
	}
	if after := e.last(); after != before {
		t.Fatalf("refused revocations appended %d events", after-before)
	}
	if s, _ := through(gw, "/orders/1", victim.Secret); s != 200 {
		t.Fatalf("the victim key before its revocation: %d", s)
	}

	// The tenant's admin key revokes, idempotently; the gateway enforces it.
	r := client.NewRevoker(nc, acmeAdmin.Secret)
	seq, err := r.RevokeKey(ctx, "acme", victim.Key.ID, "fraud signal", &client.Call{IdempotencyKey: "alert-42"})
	if err != nil || seq == 0 {
		t.Fatalf("revoke: %d %v", seq, err)
	}
	again, err := r.RevokeKey(ctx, "acme", victim.Key.ID, "fraud signal", &client.Call{IdempotencyKey: "alert-42"})
	if err != nil || again != seq || e.last() != seq {
		t.Fatalf("a retry: %d vs %d, last %d, %v", again, seq, e.last(), err)
	}
	if s, code := through(gw, "/orders/1", victim.Secret, "Keytrail-Min-Seq", strconv.FormatUint(seq, 10)); s != 403 || code != "REVOKED" {
		t.Fatalf("the gateway after a NATS revocation: %d %s", s, code)
	}
	k, err := admin.Key(ctx, "acme", victim.Key.ID, &client.Call{MinSeq: seq})
	if err != nil || k.Status != "revoked" {
		t.Fatalf("key after: %+v %v", k, err)
	}

	// A user's keys, then the whole tenant's.
	userKey := issue("acme")
	if _, err := r.RevokeUserKeys(ctx, "acme", "bob", nil, "offboarding", nil); err != nil {
		t.Fatal(err)
	}
	if s, code := through(gw, "/orders/1", userKey.Secret, "Keytrail-Min-Seq", strconv.FormatUint(e.last(), 10)); s != 403 || code != "REVOKED" {
		t.Fatalf("a user's keys: %d %s", s, code)
	}
	if _, _, err := admin.CreateUser(ctx, "acme", "eve", "", nil); err != nil {
		t.Fatal(err)
	}
	eveKey, err := admin.IssueKey(ctx, "acme", client.KeySpec{User: "eve"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The tenant-wide revocation takes the admin key with it: the root key
	// makes it.
	seq, err = client.NewRevoker(nc, e.root).RevokeTenantKeys(ctx, "acme", time.Now(), "incident", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s, code := through(gw, "/orders/1", eveKey.Secret, "Keytrail-Min-Seq", strconv.FormatUint(seq, 10)); s != 403 || code != "REVOKED" {
		t.Fatalf("the tenant's keys: %d %s", s, code)
	}
	d, err := admin.Verify(ctx, betaKey.Secret, nil, nil)
	if err != nil || d.Code != "VALID" {
		t.Fatalf("another tenant's key after acme's revocation: %+v %v", d, err)
	}

	// The same over HTTP with the client: a user's keys, a tenant's keys.
	u, res, err := admin.RevokeUserKeys(ctx, "beta", "bob", nil, "over HTTP", nil)
	if err != nil || u.KeysRevokedBefore == nil || res.Seq == 0 {
		t.Fatalf("revoke a user's keys over HTTP: %+v %v", u, err)
	}
	if d, err := admin.Verify(ctx, betaKey.Secret, nil, &client.Call{MinSeq: res.Seq}); err != nil || d.Code != "REVOKED" {
		t.Fatalf("beta's key after its user's revocation: %+v %v", d, err)
	}
	cutoff := time.Now().Add(-time.Minute)
	ten, res, err := admin.RevokeTenantKeys(ctx, "beta", &cutoff, "over HTTP", nil)
	if err != nil || ten.KeysRevokedBefore == nil || !ten.KeysRevokedBefore.Equal(cutoff.UTC()) || res.Seq == 0 {
		t.Fatalf("revoke a tenant's keys over HTTP: %+v %v", ten, err)
	}

	// Typed errors over NATS as over HTTP.
	_, err = client.NewRevoker(nc, betaAdmin.Secret).RevokeKey(ctx, "beta", "key_01JDQ8Z6W4M2N9V3X5C7B1D2E3", "", nil)
	if !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("typed error: %v", err)
	}
}

func containsCode(body string, code client.Code) bool {
	return strings.Contains(body, `"code":"`+string(code)+`"`)
}

// TestARevocationWaitsForAControlNodeToAnswer: a service revoking while no
// control node listens yet (one starting or restarting) is answered once
// one does, within a few seconds, instead of failing at once with "no
// control node serves revocations" (as it did, and made a deployment test
// fail whenever the service was quicker than the control node).
func TestARevocationWaitsForAControlNodeToAnswer(t *testing.T) {
	node := natstest.RunServer(t)
	svc := node.ConnectAs(t, natsauth.Service)
	ctx := testCtx(t, 30*time.Second)
	answered := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		seq, err := client.NewRevoker(svc, "kt_token").RevokeKey(ctx, "acme", "key_01JDQ8Z6W4M2N9V3X5C7B1D2E3", "leaked", nil)
		if err == nil && seq != 7 {
			err = fmt.Errorf("seq %d", seq)
		}
		result <- err
	}()
	// A control node comes up a moment later: here a plain subscriber on the
	// revocation subject, answering as the control plane does.
	time.Sleep(300 * time.Millisecond) // not waiting for something: the delay is the point
	ctl := node.ConnectAs(t, natsauth.Control)
	sub, err := ctl.Subscribe(client.RevocationSubject("acme"), func(m *nats.Msg) {
		reply := nats.NewMsg(m.Reply)
		reply.Header.Set("Keytrail-Status", "200")
		reply.Data = []byte(`{"seq":7}`)
		m.RespondMsg(reply)
		close(answered)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := <-result; err != nil {
		t.Fatalf("revoked before a control node listened: %v", err)
	}
	<-answered
}

package integration

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/adminhttp"
	"github.com/keytrail/keytrail/services/app"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/egress"
)

// TestIfMatchIsHonouredOnEveryWrite: `If-Match: 999` on writes that used to
// drop the version (tenant suspend/resume/revoke-keys, every user write, API
// deprecate and retire) gets 409 and appends nothing; the right version
// goes through; If-Match on a creation is refused with 400.
func TestIfMatchIsHonouredOnEveryWrite(t *testing.T) {
	e := startAdmin(t)
	e.givenKey()
	e.must(e.call("POST", "/v1/tenants/acme/users", e.root, map[string]any{"id": "carol"}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "orders", "path_prefix": "/orders",
		"upstreams": []string{"http://127.0.0.1:9"}}), 201)
	sunset := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, w := range []struct{ path, body string }{
		{"/v1/tenants/acme/suspend", `{"reason":"x"}`},
		{"/v1/tenants/acme/resume", ``},
		{"/v1/tenants/acme/revoke-keys", `{"reason":"x"}`},
		{"/v1/tenants/acme/users/bob/disable", `{"reason":"x"}`},
		{"/v1/tenants/acme/users/bob/enable", ``},
		{"/v1/tenants/acme/users/bob/revoke-keys", `{"reason":"x"}`},
		{"/v1/tenants/acme/users/carol/delete", ``},
		{"/v1/tenants/acme/apis/orders/deprecate", `{"sunset":"` + sunset + `"}`},
		{"/v1/tenants/acme/apis/orders/retire", ``},
	} {
		method := "POST"
		path := w.path
		if p, ok := cutSuffix(path, "/delete"); ok {
			method, path = "DELETE", p
		}
		last, _ := e.store.LastSeq(testCtx(t, 5*time.Second), "")
		var body any
		if w.body != "" {
			body = w.body
		}
		if r := e.call(method, path, e.root, body, "If-Match", "999"); r.status != http.StatusConflict || r.body["code"] != "conflict" {
			t.Fatalf("%s %s with If-Match 999: %d %s", method, path, r.status, r.raw)
		}
		if now, _ := e.store.LastSeq(testCtx(t, 5*time.Second), ""); now != last {
			t.Fatalf("%s %s with a wrong If-Match appended %d events", method, path, now-last)
		}
	}
	// Every GET of one object carries its version as an ETag, which
	// If-Match takes back.
	for _, path := range []string{"/v1/tenants/acme", "/v1/tenants/acme/users/bob", "/v1/tenants/acme/apis/orders"} {
		g := e.must(e.call("GET", path, e.root, nil), 200)
		for _, obj := range g.body {
			if o, ok := obj.(map[string]any); ok && g.header.Get("ETag") != fmt.Sprintf(`"%d"`, uint64(o["version"].(float64))) {
				t.Fatalf("GET %s: ETag %q, version %v", path, g.header.Get("ETag"), o["version"])
			}
		}
	}
	etag := e.must(e.call("GET", "/v1/tenants/acme", e.root, nil), 200).header.Get("ETag")
	e.must(e.call("POST", "/v1/tenants/acme/suspend", e.root, `{"reason":"x"}`, "If-Match", etag), 200)
	// A creation has no version to match.
	for _, c := range []struct{ path, body string }{
		{"/v1/tenants", `{"id":"beta","name":"B"}`},
		{"/v1/tenants/acme/users", `{"id":"dave"}`},
		{"/v1/tenants/acme/keys", `{"user":"bob"}`},
		{"/v1/tenants/acme/apis", `{"id":"x","path_prefix":"/x","upstreams":["http://127.0.0.1:9"]}`},
	} {
		if r := e.call("POST", c.path, e.root, c.body, "If-Match", "1"); r.status != http.StatusBadRequest {
			t.Fatalf("If-Match on POST %s: %d %s", c.path, r.status, r.raw)
		}
	}
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}

// TestIdempotencyKeyIsBoundToTheRequest: the same Idempotency-Key with
// another body gets 422 idempotency_mismatch and appends nothing; two key
// issues with one key but different users never produce one key id (before,
// they did, and revoking that id left the first secret working); the same
// key and body is still answered from the first request.
func TestIdempotencyKeyIsBoundToTheRequest(t *testing.T) {
	e := startAdmin(t)
	e.givenKey()
	e.must(e.call("POST", "/v1/tenants/acme/users", e.root, map[string]any{"id": "alice"}), 201)
	first := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, `{"user":"bob"}`, "Idempotency-Key", "k-1"), 201)
	last, _ := e.store.LastSeq(testCtx(t, 5*time.Second), "")
	r := e.call("POST", "/v1/tenants/acme/keys", e.root, `{"user":"alice"}`, "Idempotency-Key", "k-1")
	if r.status != http.StatusUnprocessableEntity || r.body["code"] != "idempotency_mismatch" {
		t.Fatalf("the same Idempotency-Key for another user: %d %s", r.status, r.raw)
	}
	if now, _ := e.store.LastSeq(testCtx(t, 5*time.Second), ""); now != last {
		t.Fatalf("a mismatched Idempotency-Key appended %d events", now-last)
	}
	// The same key on another route: refused too, nothing appended.
	if r := e.call("POST", "/v1/tenants/acme/users/alice/disable", e.root, `{"reason":"x"}`, "Idempotency-Key", "k-1"); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("the same Idempotency-Key on another route: %d %s", r.status, r.raw)
	}
	if now, _ := e.store.LastSeq(testCtx(t, 5*time.Second), ""); now != last {
		t.Fatalf("a mismatched Idempotency-Key appended %d events", now-last)
	}
	// The same request again: the first key, no secret.
	again := e.call("POST", "/v1/tenants/acme/keys", e.root, `{"user":"bob"}`, "Idempotency-Key", "k-1")
	firstID := first.body["key"].(map[string]any)["id"].(string)
	if again.status != http.StatusConflict || again.body["key_id"] != firstID {
		t.Fatalf("the same request again: %d %s", again.status, again.raw)
	}
	// Another caller, the same key and body: another request, another key.
	other := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, `{"user":"bob","scopes":["keytrail:admin"]}`, "Idempotency-Key", "k-2"), 201)
	adminKey := other.body["secret"].(string)
	// (Keytrail-Min-Seq: the admin key was issued a moment ago.)
	mine := e.must(e.call("POST", "/v1/tenants/acme/keys", adminKey, `{"user":"bob"}`, "Idempotency-Key", "k-1", "Keytrail-Min-Seq", other.header.Get("Keytrail-Seq")), 201)
	if id := mine.body["key"].(map[string]any)["id"]; id == firstID {
		t.Fatal("two callers' requests made one key id")
	}
	// Revoking the first key revokes its secret.
	revoked := e.must(e.call("POST", "/v1/tenants/acme/keys/"+firstID+"/revoke", e.root, `{"reason":"x"}`), 200)
	d := e.must(e.call("POST", "/v1/verify", e.root, map[string]any{"key": first.body["secret"]}, "Keytrail-Min-Seq", revoked.header.Get("Keytrail-Seq")), 200)
	if d.body["code"] != "REVOKED" {
		t.Fatalf("the first secret after its key was revoked: %s", d.raw)
	}
}

// TestConcurrentWritesNeverConflictUnasked: eight clients issuing keys for
// one user at once, without If-Match, 1 000 each: every issue goes through,
// none answers a conflict (it is decided again on fresh state), on R1 and
// on R3.
func TestConcurrentWritesNeverConflictUnasked(t *testing.T) {
	for _, replicas := range []int{1, 3} {
		t.Run(fmt.Sprintf("R%d", replicas), func(t *testing.T) {
			_, svc := controlOn(t, replicas)
			ctx := testCtx(t, 5*time.Minute)
			m := control.Meta{Actor: "test"}
			if _, _, err := svc.CreateTenant(ctx, m, "acme", "A"); err != nil {
				t.Fatal(err)
			}
			if _, _, err := svc.CreateUser(ctx, m, "acme", "bob", ""); err != nil {
				t.Fatal(err)
			}
			// 8 × 1 000 at full size (go test without -race); under the race
			// detector (make test) 8 × 150, the same contention in fewer rounds.
			clients, each := 8, 1000
			if raceEnabled {
				each = 150
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			codes := map[control.Code]int{}
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range each {
						// As over HTTP: each request has its deadline.
						rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
						_, _, _, err := svc.IssueKey(rctx, m, "acme", control.KeySpec{User: "bob"})
						cancel()
						mu.Lock()
						codes[control.CodeOf(err)]++
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			if codes[""] != clients*each {
				t.Fatalf("of %d issues: %v", clients*each, codes)
			}
		})
	}
}

// TestTenantAdminCannotPointAnAPIInside: a tenant admin creating an API whose
// upstream is an internal service (loopback, cloud metadata, localhost) or
// one of Keytrail's own listeners gets 400 naming the upstream; the
// operator's --allow-upstream range is allowed.
func TestTenantAdminCannotPointAnAPIInside(t *testing.T) {
	allow, _ := egress.ParsePrefixes("10.99.0.0/16")
	e := startAdminWith(t, app.DevConfig{AllowUpstream: allow, Logger: slog.New(slog.DiscardHandler)}, nil)
	e.givenKey()
	admin := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob", "scopes": []string{"keytrail:admin"}}), 201).body["secret"].(string)
	internal := upstream(t)
	for i, up := range []string{internal.URL, "http://localhost:9", "http://169.254.169.254/latest/meta-data", "http://[::1]:8080", "http://192.168.0.10"} {
		r := e.call("POST", "/v1/tenants/acme/apis", admin, map[string]any{"id": fmt.Sprintf("in%d", i), "path_prefix": fmt.Sprintf("/acme/in%d", i), "upstreams": []string{up}})
		if r.status != http.StatusBadRequest || !strings.Contains(r.raw, "upstreams[0]") {
			t.Errorf("upstream %s: %d %s", up, r.status, r.raw)
		}
	}
	e.must(e.call("POST", "/v1/tenants/acme/apis", admin, map[string]any{"id": "ok", "path_prefix": "/acme/ok", "upstreams": []string{"http://10.99.1.2:8080"}}), 201)
	r := e.call("PATCH", "/v1/tenants/acme/apis/ok", admin, map[string]any{"upstreams": []string{"http://10.99.1.2:8080", internal.URL}})
	if r.status != http.StatusBadRequest || !strings.Contains(r.raw, "upstreams[1]") {
		t.Errorf("an update to an internal upstream: %d %s", r.status, r.raw)
	}
	// With loopback allowed (keytrail dev's default), Keytrail's own
	// listeners are still refused.
	d := startAdmin(t)
	d.givenKey()
	r = d.call("POST", "/v1/tenants/acme/apis", d.root, map[string]any{"id": "self", "path_prefix": "/self", "upstreams": []string{d.dev.Addresses().Admin}})
	if r.status != http.StatusBadRequest || !strings.Contains(r.raw, "own listeners") {
		t.Errorf("the admin API as an upstream: %d %s", r.status, r.raw)
	}
}

// TestAKeyCannotOutliveOrOutscopeTheKeyThatSetIt: a tenant admin's 1 h key
// extended itself to year 9999, and could grant any scope. Now what a
// tenant admin issues or updates stays within its own key; root is not
// confined.
func TestAKeyCannotOutliveOrOutscopeTheKeyThatSetIt(t *testing.T) {
	e := startAdmin(t)
	e.givenKey()
	issued := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob", "scopes": []string{"keytrail:admin"}, "ttl": "1h"}), 201)
	admin, id := issued.body["secret"].(string), issued.body["key"].(map[string]any)["id"].(string)
	seq := issued.header.Get("Keytrail-Seq")
	for _, c := range []struct {
		method, path string
		body         map[string]any
		field        string
	}{
		{"PATCH", "/v1/tenants/acme/keys/" + id, map[string]any{"expires_at": "9999-12-31T00:00:00Z"}, "expires_at"},
		{"POST", "/v1/tenants/acme/keys", map[string]any{"user": "bob"}, "expires_at"},
		{"POST", "/v1/tenants/acme/keys", map[string]any{"user": "bob", "ttl": "2h"}, "expires_at"},
		{"POST", "/v1/tenants/acme/keys", map[string]any{"user": "bob", "ttl": "30m", "scopes": []string{"orders:admin"}}, "scopes"},
		{"PATCH", "/v1/tenants/acme/keys/" + id, map[string]any{"scopes": []string{"keytrail:admin", "orders:admin"}}, "scopes"},
	} {
		r := e.call(c.method, c.path, admin, c.body, "Keytrail-Min-Seq", seq)
		if r.status != http.StatusForbidden || !strings.Contains(r.raw, c.field) {
			t.Errorf("%s %s %v: %d %s", c.method, c.path, c.body, r.status, r.raw)
		}
	}
	e.must(e.call("POST", "/v1/tenants/acme/keys", admin, map[string]any{"user": "bob", "ttl": "30m", "scopes": []string{"keytrail:admin"}}), 201)
	e.must(e.call("PATCH", "/v1/tenants/acme/keys/"+id, e.root, map[string]any{"expires_at": "2999-12-31T00:00:00Z"}), 200)
}

// TestRootPrefixIsTheOperatorsAndARetiredOneCanBeReclaimed: a tenant admin
// claimed "/" and retired it, after which every path of every tenant
// answered 410 and nobody could reclaim it. Now "/" and one-segment
// prefixes are the root key's to give, and root reclaims a retired prefix.
func TestRootPrefixIsTheOperatorsAndARetiredOneCanBeReclaimed(t *testing.T) {
	e := startAdmin(t)
	e.givenKey()
	admin := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob", "scopes": []string{"keytrail:admin"}}), 201)
	seq := admin.header.Get("Keytrail-Seq")
	for _, prefix := range []string{"/", "/orders", "/orders/"} {
		r := e.call("POST", "/v1/tenants/acme/apis", admin.body["secret"].(string), map[string]any{"id": "x", "path_prefix": prefix,
			"upstreams": []string{"http://127.0.0.1:9"}}, "Keytrail-Min-Seq", seq)
		if r.status != http.StatusForbidden || !strings.Contains(r.raw, "path_prefix") {
			t.Errorf("a tenant admin claiming %s: %d %s", prefix, r.status, r.raw)
		}
	}
	e.must(e.call("POST", "/v1/tenants/acme/apis", admin.body["secret"].(string), map[string]any{"id": "orders", "path_prefix": "/acme/orders",
		"upstreams": []string{"http://127.0.0.1:9"}}), 201)
	for _, bad := range []string{"/acme/../beta", "/acme/./x", "/acme/x."} {
		if r := e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "bad", "path_prefix": bad, "upstreams": []string{"http://127.0.0.1:9"}}); r.status != http.StatusBadRequest {
			t.Errorf("prefix %s: %d %s", bad, r.status, r.raw)
		}
	}

	up := upstream(t)
	e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "all", "path_prefix": "/", "upstreams": []string{up.URL}}), 201)
	retired := e.must(e.call("POST", "/v1/tenants/acme/apis/all/retire", e.root, nil), 200)
	gw := e.dev.Addresses().Gateway
	if s, code := through(gw, "/anything", "", "Keytrail-Min-Seq", retired.header.Get("Keytrail-Seq")); s != http.StatusGone {
		t.Fatalf("under a retired /: %d %s", s, code)
	}
	if r := e.call("POST", "/v1/tenants/acme/apis", admin.body["secret"].(string), map[string]any{"id": "again", "path_prefix": "/acme/orders",
		"upstreams": []string{up.URL}}); r.status != http.StatusConflict {
		t.Fatalf("a live prefix taken again: %d %s", r.status, r.raw)
	}
	reclaimed := e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "all2", "path_prefix": "/", "upstreams": []string{up.URL}}), 201)
	if s, code := through(gw, "/anything", "", "Keytrail-Min-Seq", reclaimed.header.Get("Keytrail-Seq")); s != http.StatusUnauthorized || code != "MISSING" {
		t.Fatalf("under the reclaimed /: %d %s", s, code)
	}
}

// TestBodiesAtTheTrustBoundary: members are spelt exactly ({"user":"alice",
// "USER":"mallory"} decoded as mallory), none twice, none unknown; null is
// not an object; a problem names the member and the rule, never a Go type;
// a duration takes days; a wrong content type is 415, a wrong method 405
// with Allow; a list under a tenant that does not exist is 404, not [].
func TestBodiesAtTheTrustBoundary(t *testing.T) {
	e := startAdmin(t)
	e.givenKey()
	e.must(e.call("POST", "/v1/tenants/acme/users", e.root, map[string]any{"id": "alice"}), 201)
	last, _ := e.store.LastSeq(testCtx(t, 5*time.Second), "")
	for _, c := range []struct{ body, want string }{
		{`{"user":"alice","USER":"mallory"}`, "USER: unknown member"},
		{`{"User":"alice"}`, `did you mean "user"`},
		{`{"user":"alice","user":"mallory"}`, "user: given twice"},
		{`{"user":"alice","rate_limit":{"per_second":1,"burst":2,"burst":3}}`, "rate_limit.burst: given twice"},
		{`{"user":"alice","rate_limit":{"Per_Second":1}}`, "rate_limit.Per_Second: unknown member"},
		{`null`, "must be a JSON object"},
		{`[]`, "must be a JSON object"},
		{`{"user":"alice","ttl":"30x"}`, `ttl: "30x" is not a duration`},
		{`{"user":"alice","ttl":30}`, "ttl: a duration is a string"},
		{`{"user":"alice","rate_limit":{"burst":"x"}}`, "must be a whole number"},
		{`{"user":"alice","scopes":"a"}`, "must be an array"},
		{`{"user":null}`, "user: null is not a value here"},
		{`{"user":"alice","expires_at":"garbage"}`, "expires_at: a time is RFC 3339"},
		{`{"user":"alice","rate_limit":{"per_second":1e400,"burst":1}}`, "out of range"},
	} {
		r := e.call("POST", "/v1/tenants/acme/keys", e.root, c.body)
		if d, _ := r.body["detail"].(string); r.status != http.StatusBadRequest || !strings.Contains(d, c.want) {
			t.Errorf("%s: %d %s, want %q", c.body, r.status, r.raw, c.want)
		}
		for _, goName := range []string{"int", "string", "time.", "adminhttp", "json:", "struct"} {
			if d, _ := r.body["detail"].(string); strings.Contains(d, goName+" ") || strings.Contains(d, goName+".") {
				t.Errorf("%s: the detail names a Go type: %s", c.body, d)
			}
		}
	}
	if now, _ := e.store.LastSeq(testCtx(t, 5*time.Second), ""); now != last {
		t.Fatalf("bad bodies appended %d events", now-last)
	}
	k := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, `{"user":"alice","ttl":"30d"}`), 201)
	if exp, _ := time.Parse(time.RFC3339, k.body["key"].(map[string]any)["expires_at"].(string)); time.Until(exp) < 29*24*time.Hour {
		t.Fatalf("ttl 30d: expires %v", exp)
	}
	for _, ct := range []string{"text/plain", "application/evil+json", "application/json; charset=utf-16"} {
		if r := e.call("POST", "/v1/tenants/acme/keys", e.root, []byte(`{"user":"alice"}`), "Content-Type", ct); r.status != http.StatusUnsupportedMediaType || r.header.Get("Accept-Post") != "application/json" {
			t.Fatalf("%s: %d %s", ct, r.status, r.raw)
		}
	}
	e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, []byte(`{"user":"alice","expires_at":null}`), "Content-Type", "application/json; charset=UTF-8"), 201)
	if r := e.call("POST", "/v1/tenants/acme/suspend", e.root, nil, "If-Match", `"10`); r.status != http.StatusBadRequest {
		t.Fatalf("an unbalanced If-Match: %d", r.status)
	}
	r := e.call("PUT", "/v1/tenants/acme/keys", e.root, `{}`)
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, POST" {
		t.Fatalf("PUT on keys: %d Allow %q %s", r.status, r.header.Get("Allow"), r.raw)
	}
	if r := e.call("GET", "/v1/tenants/nope/keys", e.root, nil); r.status != http.StatusNotFound {
		t.Fatalf("keys of a tenant that does not exist: %d %s", r.status, r.raw)
	}
	for _, p := range []string{"/v1/nothing", "//v1/tenants", "/v1/tenants/./acme", "/v1/tenants/acme/../acme"} {
		if r := e.call("GET", p, "", nil); r.status != http.StatusNotFound || r.header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: %d %s", p, r.status, r.header.Get("Content-Type"))
		}
	}
}

// TestKeysShowTheirEffectiveStatus: a key whose user is disabled shows
// user_disabled, an expired one expired (it showed active), and the list's
// status filter takes each of them.
func TestKeysShowTheirEffectiveStatus(t *testing.T) {
	e := startAdmin(t)
	e.givenKey()
	e.must(e.call("POST", "/v1/tenants/acme/users", e.root, map[string]any{"id": "carol"}), 201)
	short := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "carol", "ttl": "1s"}), 201)
	shortID := short.body["key"].(map[string]any)["id"].(string)
	bobs := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob"}), 201)
	bobID := bobs.body["key"].(map[string]any)["id"].(string)
	disabled := e.must(e.call("POST", "/v1/tenants/acme/users/bob/disable", e.root, `{"reason":"left"}`), 200)
	seq := disabled.header.Get("Keytrail-Seq")
	status := func(id string) string {
		return e.must(e.call("GET", "/v1/tenants/acme/keys/"+id, e.root, nil, "Keytrail-Min-Seq", seq), 200).body["key"].(map[string]any)["status"].(string)
	}
	if s := status(bobID); s != "user_disabled" {
		t.Fatalf("a key of a disabled user: %s", s)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if s := status(shortID); s != "expired" {
			return fmt.Errorf("a key past its expiry: %s", s)
		}
		return nil
	})
	for want, id := range map[string]string{"user_disabled": bobID, "expired": shortID} {
		l := e.must(e.call("GET", "/v1/tenants/acme/keys?status="+want, e.root, nil, "Keytrail-Min-Seq", seq), 200)
		keys := l.body["keys"].([]any)
		found := false
		for _, k := range keys {
			m := k.(map[string]any)
			found = found || m["id"] == id
			if m["status"] != want {
				t.Errorf("?status=%s listed a key that is %v", want, m["status"])
			}
		}
		if !found {
			t.Errorf("?status=%s did not list %s: %s", want, id, l.raw)
		}
	}
}

// TestListsOfTenantsUsersAndAPIs: the lists that did not exist, paged like
// keys, with the CLI to match; tenants are the root key's to list.
func TestListsOfTenantsUsersAndAPIs(t *testing.T) {
	e := startAdmin(t)
	e.givenKey()
	e.must(e.call("POST", "/v1/tenants", e.root, map[string]any{"id": "beta", "name": "Beta"}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/users", e.root, map[string]any{"id": "carol"}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "orders", "path_prefix": "/acme/orders", "upstreams": []string{"http://127.0.0.1:9"}}), 201)
	last := e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "shop", "path_prefix": "/acme/shop", "upstreams": []string{"http://127.0.0.1:9"}}), 201)
	seq := last.header.Get("Keytrail-Seq")
	ids := func(r response, name string) []string {
		var out []string
		for _, it := range r.body[name].([]any) {
			out = append(out, it.(map[string]any)["id"].(string))
		}
		return out
	}
	p1 := e.must(e.call("GET", "/v1/tenants?limit=1", e.root, nil, "Keytrail-Min-Seq", seq), 200)
	p2 := e.must(e.call("GET", "/v1/tenants?limit=1&cursor="+p1.body["next_cursor"].(string), e.root, nil), 200)
	if got := append(ids(p1, "tenants"), ids(p2, "tenants")...); fmt.Sprint(got) != "[acme beta]" || p2.body["next_cursor"] != nil {
		t.Fatalf("tenants: %v, next %v", got, p2.body["next_cursor"])
	}
	if got := ids(e.must(e.call("GET", "/v1/tenants/acme/users", e.root, nil, "Keytrail-Min-Seq", seq), 200), "users"); fmt.Sprint(got) != "[bob carol]" {
		t.Fatalf("users: %v", got)
	}
	if got := ids(e.must(e.call("GET", "/v1/tenants/acme/apis", e.root, nil, "Keytrail-Min-Seq", seq), 200), "apis"); fmt.Sprint(got) != "[orders shop]" {
		t.Fatalf("apis: %v", got)
	}
	admin := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob", "scopes": []string{"keytrail:admin"}}), 201)
	if r := e.call("GET", "/v1/tenants", admin.body["secret"].(string), nil, "Keytrail-Min-Seq", admin.header.Get("Keytrail-Seq")); r.status != http.StatusForbidden {
		t.Fatalf("a tenant admin listing tenants: %d", r.status)
	}
	if r := e.call("GET", "/v1/tenants/beta/users", admin.body["secret"].(string), nil); r.status != http.StatusNotFound {
		t.Fatalf("a tenant admin listing another tenant's users: %d", r.status)
	}
	if r := e.call("GET", "/v1/tenants/acme/users?cursor=a.b", e.root, nil); r.status != http.StatusBadRequest {
		t.Fatalf("a bad cursor: %d", r.status)
	}
	for want, c := range map[string][]string{"beta": {"tenant", "list"}, "carol": {"user", "list", "--tenant", "acme"},
		"/acme/shop": {"api", "list", "--tenant", "acme"}} {
		out, code := runCLI(append(c, "--data", e.dir, "--min-seq", seq)...)
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("keytrail %v: exit %d, want %q\n%s", c, code, want, out)
		}
	}
}

// TestTenantQuotas: a tenant may hold so many users, keys and APIs, and a
// key so much metadata (~97 KiB keys were issued without any bound); past
// that a clear 4xx, and nothing appended.
func TestTenantQuotas(t *testing.T) {
	e := startAdminWith(t, app.DevConfig{Quotas: adminhttp.Quotas{Users: 2, Keys: 2, APIs: 1, MetadataBytes: 64}, Logger: slog.New(slog.DiscardHandler)}, nil)
	e.givenKey() // bob and one key
	e.must(e.call("POST", "/v1/tenants/acme/users", e.root, map[string]any{"id": "carol"}), 201)
	k := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob"}), 201)
	api := e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "a", "path_prefix": "/acme/a", "upstreams": []string{"http://127.0.0.1:9"}}), 201)
	seq := api.header.Get("Keytrail-Seq")
	before, _ := e.store.LastSeq(testCtx(t, 5*time.Second), "")
	for _, c := range []struct {
		path string
		body map[string]any
		want string
	}{
		{"/v1/tenants/acme/users", map[string]any{"id": "dave"}, "quota: tenant acme holds 2 users"},
		{"/v1/tenants/acme/keys", map[string]any{"user": "bob"}, "quota: tenant acme holds 2 keys"},
		{"/v1/tenants/acme/apis", map[string]any{"id": "b", "path_prefix": "/acme/b", "upstreams": []string{"http://127.0.0.1:9"}}, "quota: tenant acme holds 1 apis"},
	} {
		r := e.call("POST", c.path, e.root, c.body, "Keytrail-Min-Seq", seq)
		if d, _ := r.body["detail"].(string); r.status != http.StatusUnprocessableEntity || !strings.Contains(d, c.want) {
			t.Errorf("POST %s: %d %s", c.path, r.status, r.raw)
		}
	}
	big := map[string]any{"metadata": map[string]string{"note": strings.Repeat("x", 100)}}
	if r := e.call("PATCH", "/v1/tenants/acme/keys/"+k.body["key"].(map[string]any)["id"].(string), e.root, big); r.status != http.StatusBadRequest || !strings.Contains(r.raw, "metadata") {
		t.Errorf("too much metadata: %d %s", r.status, r.raw)
	}
	if now, _ := e.store.LastSeq(testCtx(t, 5*time.Second), ""); now != before {
		t.Fatalf("refused writes appended %d events", now-before)
	}
	// Revoking a key makes room for another.
	e.must(e.call("POST", "/v1/tenants/acme/keys/"+k.body["key"].(map[string]any)["id"].(string)+"/revoke", e.root, nil), 200)
	testkit.Eventually(t, 5*time.Second, func() error {
		if r := e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob"}); r.status != 201 {
			return fmt.Errorf("%d %s", r.status, r.raw)
		}
		return nil
	})
}

// TestRotationIsConfinedToo: a tenant admin rotating a key with more scopes
// or a longer life than its own got a successor it could never have issued
// (and, with it, a permanent admin foothold).
func TestRotationIsConfinedToo(t *testing.T) {
	e := startAdmin(t)
	e.givenKey()
	admin := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob", "scopes": []string{"keytrail:admin"}, "ttl": "1h"}), 201)
	strong := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob", "scopes": []string{"orders:admin", "keytrail:admin"}}), 201)
	id := strong.body["key"].(map[string]any)["id"].(string)
	r := e.call("POST", "/v1/tenants/acme/keys/"+id+"/rotate", admin.body["secret"].(string), map[string]any{"grace": "1h"}, "Keytrail-Min-Seq", strong.header.Get("Keytrail-Seq"))
	if r.status != http.StatusForbidden {
		t.Fatalf("a tenant admin rotating a stronger key: %d %s", r.status, r.raw)
	}
	mine := e.must(e.call("POST", "/v1/tenants/acme/keys", admin.body["secret"].(string), map[string]any{"user": "bob", "scopes": []string{"keytrail:admin"}, "ttl": "30m"}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/keys/"+mine.body["key"].(map[string]any)["id"].(string)+"/rotate", admin.body["secret"].(string), map[string]any{"grace": "1m"}), 201)
}

// TestOneTenantCannotBlockOrClaimAnothersPaths: acme created /BETA/x and
// every beta path under /beta/x answered 400 at the gateway; acme claimed
// /gamma/x and gamma could no longer get /gamma. Prefixes are compared
// case-folded, and a tenant admin's live under /<tenant>/.
func TestOneTenantCannotBlockOrClaimAnothersPaths(t *testing.T) {
	e := startAdmin(t)
	e.givenKey()
	e.must(e.call("POST", "/v1/tenants", e.root, map[string]any{"id": "beta", "name": "Beta"}), 201)
	e.must(e.call("POST", "/v1/tenants/beta/apis", e.root, map[string]any{"id": "b", "path_prefix": "/beta", "upstreams": []string{"http://127.0.0.1:9"}}), 201)
	admin := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob", "scopes": []string{"keytrail:admin"}}), 201)
	ak, seq := admin.body["secret"].(string), admin.header.Get("Keytrail-Seq")
	for prefix, want := range map[string]int{"/BETA/x": http.StatusForbidden, "/gamma/x": http.StatusForbidden, "/Acme/x": http.StatusForbidden} {
		r := e.call("POST", "/v1/tenants/acme/apis", ak, map[string]any{"id": "q", "path_prefix": prefix, "upstreams": []string{"http://127.0.0.1:9"}}, "Keytrail-Min-Seq", seq)
		if r.status != want {
			t.Errorf("acme claiming %s: %d %s", prefix, r.status, r.raw)
		}
	}
	// Root too: a prefix that differs from a taken one only in case.
	if r := e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "q", "path_prefix": "/BETA/x", "upstreams": []string{"http://127.0.0.1:9"}}); r.status != http.StatusConflict {
		t.Errorf("root claiming /BETA/x over beta's /beta: %d %s", r.status, r.raw)
	}
	e.must(e.call("POST", "/v1/tenants/acme/apis", ak, map[string]any{"id": "orders", "path_prefix": "/acme/orders", "upstreams": []string{"http://127.0.0.1:9"}}), 201)
	if r := e.call("POST", "/v1/tenants/acme/apis", ak, map[string]any{"id": "orders2", "path_prefix": "/acme/ORDERS", "upstreams": []string{"http://127.0.0.1:9"}}); r.status != http.StatusConflict {
		t.Errorf("a case variant of its own prefix: %d %s", r.status, r.raw)
	}
}

// TestAdminAPIHoldsNoSlowBodyItRefuses: a request the admin API refuses
// without reading its body (no key, no route) is answered at once and its
// connection closed; it used to get no answer until the 30 s read timeout.
func TestAdminAPIHoldsNoSlowBodyItRefuses(t *testing.T) {
	e := startAdmin(t)
	addr := strings.TrimPrefix(e.base, "http://")
	for path, want := range map[string]int{"/v1/tenants/acme/users": 401, "/nope": 404, "/healthz": 405} {
		if status := testkit.SlowBody(t, addr, path); status != want {
			t.Errorf("POST %s with a slow body: %d, want %d", path, status, want)
		}
	}
}

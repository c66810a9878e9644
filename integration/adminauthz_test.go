package integration

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keytrail/keytrail/services/adminhttp"
)

// problem checks an error answer: the status, problem+json, the code.
func (e *adminEnv) problem(r response, status int, code string) {
	e.t.Helper()
	if r.status != status || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") || field(r, "code") != code {
		e.t.Fatalf("got %d %s %s, want %d %s", r.status, r.header.Get("Content-Type"), r.raw, status, code)
	}
	if field(r, "request_id") == "" || field(r, "title") == "" {
		e.t.Fatalf("problem without request_id or title: %s", r.raw)
	}
}

func TestAdminAPIRefusesBadInputAndChangesNothing(t *testing.T) {
	e := startAdmin(t)
	root := e.root
	k := e.givenKey()
	keyID := fmt.Sprint(field(k, "key", "id"))
	before := e.last()
	big := `{"id":"x","name":"` + strings.Repeat("a", 70<<10) + `"}`
	cases := []struct {
		name, method, path, token string
		body                      any
		headers                   []string
		status                    int
		code                      string
	}{
		{"malformed JSON", "POST", "/v1/tenants", root, `{"id":`, nil, 400, "invalid_argument"},
		{"not an object", "POST", "/v1/tenants", root, `[1]`, nil, 400, "invalid_argument"},
		{"unknown field", "POST", "/v1/tenants", root, `{"id":"x","name":"x","admin":true}`, nil, 400, "invalid_argument"},
		{"trailing data", "POST", "/v1/tenants", root, `{"id":"x","name":"x"} {}`, nil, 400, "invalid_argument"},
		{"wrong type", "POST", "/v1/tenants/acme/keys", root, `{"user":"bob","scopes":"a"}`, nil, 400, "invalid_argument"},
		{"empty body", "POST", "/v1/tenants", root, nil, nil, 400, "invalid_argument"},
		{"oversize body", "POST", "/v1/tenants", root, big, nil, 400, "invalid_argument"},
		{"tenant id with a dot", "POST", "/v1/tenants", root, `{"id":"ac.me","name":"x"}`, nil, 400, "invalid_argument"},
		{"tenant id with a star", "POST", "/v1/tenants", root, `{"id":"ac*","name":"x"}`, nil, 400, "invalid_argument"},
		{"tenant id with a chevron", "POST", "/v1/tenants", root, `{"id":">","name":"x"}`, nil, 400, "invalid_argument"},
		{"tenant id with a space", "POST", "/v1/tenants", root, `{"id":"ac me","name":"x"}`, nil, 400, "invalid_argument"},
		{"user id with a dot", "POST", "/v1/tenants/acme/users", root, `{"id":"bo.b"}`, nil, 400, "invalid_argument"},
		{"user id with a star in the path", "POST", "/v1/tenants/acme/users/b*/disable", root, nil, nil, 400, "invalid_argument"},
		{"user id with a space in the path", "POST", "/v1/tenants/acme/users/b%20b/disable", root, nil, nil, 400, "invalid_argument"},
		{"key id with a chevron", "POST", "/v1/tenants/acme/keys/key_%3E/revoke", root, nil, nil, 400, "invalid_argument"},
		{"tenant with a dot in the path", "POST", "/v1/tenants/ac.me/users", root, `{"id":"x"}`, nil, 400, "invalid_argument"},
		{"no token", "POST", "/v1/tenants", "", `{"id":"x","name":"x"}`, nil, 401, "unauthenticated"},
		{"malformed token", "POST", "/v1/tenants", "kt_nope", `{"id":"x","name":"x"}`, nil, 401, "unauthenticated"},
		{"unknown token", "POST", "/v1/tenants", root[:len(root)-8] + "AAAAAAAA", `{"id":"x","name":"x"}`, nil, 401, "unauthenticated"},
		{"stale If-Match", "POST", "/v1/tenants/acme/keys/" + keyID + "/suspend", root, nil, []string{"If-Match", "1"}, 409, "conflict"},
		{"bad If-Match", "POST", "/v1/tenants/acme/keys/" + keyID + "/suspend", root, nil, []string{"If-Match", "v2"}, 400, "invalid_argument"},
		{"past expiry", "POST", "/v1/tenants/acme/keys", root, `{"user":"bob","expires_at":"2001-01-01T00:00:00Z"}`, nil, 400, "invalid_argument"},
		{"bad ttl", "POST", "/v1/tenants/acme/keys", root, `{"user":"bob","ttl":"soon"}`, nil, 400, "invalid_argument"},
		{"unknown user", "POST", "/v1/tenants/acme/keys", root, `{"user":"ghost"}`, nil, 422, "failed_precondition"},
		{"unknown tenant", "POST", "/v1/tenants/nope/users", root, `{"id":"x"}`, nil, 404, "not_found"},
		{"unknown key", "POST", "/v1/tenants/acme/keys/key_01JDQ8Z6W4M2N9V3X5C7B1A0ZY/revoke", root, nil, nil, 404, "not_found"},
		{"duplicate tenant", "POST", "/v1/tenants", root, `{"id":"acme","name":"again"}`, nil, 409, "conflict"},
		{"bad list status", "GET", "/v1/tenants/acme/keys?status=gone", root, nil, nil, 400, "invalid_argument"},
		{"bad cursor", "GET", "/v1/tenants/acme/keys?cursor=x.y", root, nil, nil, 400, "invalid_argument"},
		{"bad min-seq", "GET", "/v1/tenants/acme", root, nil, []string{"Keytrail-Min-Seq", "soon"}, 400, "invalid_argument"},
		{"future min-seq", "GET", "/v1/tenants/acme", root, nil, []string{"Keytrail-Min-Seq", "999999"}, 503, "unavailable"},
		{"wrong content type", "POST", "/v1/tenants", root, `{"id":"x","name":"x"}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"no such route", "GET", "/v1/nothing", root, nil, nil, 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			e.problem(e.call(c.method, c.path, c.token, c.body, c.headers...), c.status, c.code)
			if after := e.last(); after != before {
				t.Fatalf("the log moved from %d to %d", before, after)
			}
		})
	}
}

func TestAdminAPIIdempotency(t *testing.T) {
	e := startAdmin(t)
	root := e.root
	e.must(e.call("POST", "/v1/tenants", root, map[string]any{"id": "acme", "name": "Acme"}), 201)
	first := e.must(e.call("POST", "/v1/tenants/acme/users", root, map[string]any{"name": "gen"}, "Idempotency-Key", "req-1"), 201)
	before := e.last()
	again := e.must(e.call("POST", "/v1/tenants/acme/users", root, map[string]any{"name": "gen"}, "Idempotency-Key", "req-1"), 200)
	if field(again, "user", "id") != field(first, "user", "id") || field(again, "seq") != field(first, "seq") || e.last() != before {
		t.Fatalf("replay: %s vs %s", again.raw, first.raw)
	}
	user := fmt.Sprint(field(first, "user", "id"))
	issued := e.must(e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{"user": user}, "Idempotency-Key", "k-1"), 201)
	replay := e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{"user": user}, "Idempotency-Key", "k-1")
	e.problem(replay, 409, "conflict")
	if field(replay, "key_id") != field(issued, "key", "id") || strings.Contains(replay.raw, "kt_") {
		t.Fatalf("replayed issue: %s", replay.raw)
	}
	if e.last() != before+1 {
		t.Fatalf("%d events for one key", e.last()-before)
	}
}

// TestAdminAPIAuthorization covers OWASP API1 (object level) and API5
// (function level) over every route: a tenant's admin key reaches its own
// tenant only, another tenant's objects answer 404 and change nothing,
// root-only routes answer 403, and a key without keytrail:admin reaches
// nothing.
func TestAdminAPIAuthorization(t *testing.T) {
	e := startAdmin(t)
	root := e.root
	for _, ten := range []string{"acme", "globex"} {
		e.must(e.call("POST", "/v1/tenants", root, map[string]any{"id": ten, "name": ten}), 201)
		e.must(e.call("POST", "/v1/tenants/"+ten+"/users", root, map[string]any{"id": "admin"}), 201)
		e.must(e.call("POST", "/v1/tenants/"+ten+"/apis", root, map[string]any{"id": "api", "path_prefix": "/" + ten,
			"upstreams": []string{"http://127.0.0.1:9"}}), 201)
	}
	issue := func(tenant string, scopes ...string) (id, secret string) {
		r := e.must(e.call("POST", "/v1/tenants/"+tenant+"/keys", root, map[string]any{"user": "admin", "scopes": scopes}), 201)
		return fmt.Sprint(field(r, "key", "id")), fmt.Sprint(field(r, "secret"))
	}
	_, acmeAdmin := issue("acme", "keytrail:admin")
	_, acmePlain := issue("acme", "orders:read")
	globexKey, _ := issue("globex", "keytrail:admin")
	revokedID, revokedAdmin := issue("acme", "keytrail:admin")
	e.must(e.call("POST", "/v1/tenants/acme/keys/"+revokedID+"/revoke", root, nil), 200)
	e.must(e.call("POST", "/v1/tenants/globex/policies", root, map[string]any{"id": "pol", "scopes": []string{"orders:read"}}), 201)
	// Admin keys authenticate against the read model: let it catch up.
	e.must(e.call("GET", "/v1/tenants/acme", root, nil, "Keytrail-Min-Seq", fmt.Sprint(e.last())), 200)

	// The admin key works on its own tenant.
	e.must(e.call("POST", "/v1/tenants/acme/users", acmeAdmin, map[string]any{"id": "carol"}), 201)
	e.must(e.call("GET", "/v1/tenants/acme/keys", acmeAdmin, nil), 200)

	before := e.last()
	params := map[string]string{"{tenant}": "globex", "{user}": "admin", "{key}": globexKey, "{api}": "api", "{policy}": "pol"}
	for _, route := range adminhttp.Routes {
		method, path, _ := strings.Cut(route, " ")
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		for k, v := range params {
			path = strings.ReplaceAll(path, k, v)
		}
		rootOnly := path == "/v1/tenants" || strings.HasSuffix(path, "/globex/suspend") || strings.HasSuffix(path, "/globex/resume")
		t.Run(route, func(t *testing.T) {
			e.t = t
			// API1: another tenant's objects.
			if strings.Contains(path, "/globex") {
				e.problem(e.call(method, path, acmeAdmin, "{}"), 404, "not_found")
				if adminhttp.DryRunnable(route) {
					// A dry run reveals no more than the write would.
					e.problem(e.call(method, path+"?dry_run=true", acmeAdmin, "{}"), 404, "not_found")
				}
			} else if rootOnly {
				// API5: a tenant admin on a root-only route.
				e.problem(e.call(method, path, acmeAdmin, "{}"), 403, "permission_denied")
			}
			// API5: the same route on its own tenant, where root-only.
			own := strings.ReplaceAll(path, "/globex", "/acme")
			if rootOnly && own != path {
				e.problem(e.call(method, own, acmeAdmin, "{}"), 403, "permission_denied")
			}
			// A key without keytrail:admin, and a revoked admin key.
			e.problem(e.call(method, own, acmePlain, "{}"), 403, "permission_denied")
			e.problem(e.call(method, own, revokedAdmin, "{}"), 401, "unauthenticated")
			if after := e.last(); after != before {
				t.Fatalf("the log moved from %d to %d", before, after)
			}
		})
	}
}

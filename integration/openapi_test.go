package integration

import (
	"time"

	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/keytrail/keytrail/services/adminhttp"
)

// apiDoc is /openapi.json loaded and validated by kin-openapi (a maintained
// OpenAPI library), with a router for the server at base.
type apiDoc struct {
	doc    *openapi3.T
	router routers.Router

	mu   sync.Mutex
	seen map[string]map[int]bool // route (METHOD path template) → statuses answered
}

var (
	docOnce sync.Once
	docJSON []byte
)

// loadAPIDoc validates the document itself and returns it routed at base.
func loadAPIDoc(t testing.TB, base string) *apiDoc {
	t.Helper()
	docOnce.Do(func() { docJSON, _ = json.Marshal(adminhttp.OpenAPI()) })
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(docJSON)
	if err != nil {
		t.Fatalf("the OpenAPI document does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: base}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &apiDoc{doc: doc, router: router, seen: map[string]map[int]bool{}}
}

// check validates one answer against the document: its status is declared
// for the route, and its headers and body match what is declared. Requests
// to a route or method the document does not have are 404 or 405 by
// design, and not checked here.
func (d *apiDoc) check(t testing.TB, req *http.Request, status int, header http.Header, body []byte) {
	t.Helper()
	route, params, err := d.router.FindRoute(req)
	if err != nil {
		return
	}
	d.mu.Lock()
	key := req.Method + " " + route.Path
	if d.seen[key] == nil {
		d.seen[key] = map[int]bool{}
	}
	d.seen[key][status] = true
	d.mu.Unlock()
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		t.Errorf("%s %s → %d does not match /openapi.json: %v\n%s", req.Method, req.URL.Path, status, err, bytes.TrimSpace(body))
	}
}

// TestOpenAPIDocumentIsValid: kin-openapi loads and validates the document
// the server serves.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	e := startAdmin(t)
	resp, err := http.Get(e.base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var served map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&served); err != nil {
		t.Fatal(err)
	}
	loadAPIDoc(t, e.base)
	if served["openapi"] != "3.1.0" || served["servers"] == nil {
		t.Fatalf("served document: %v", served["openapi"])
	}
}

// TestEveryRouteAnswersAsDocumented drives every route of the route table
// through success and the errors every route can give (no key, a bad body,
// an object that does not exist, a wrong If-Match, another media type), and
// validates each answer against the document (adminEnv.call does, for
// every test).
func TestEveryRouteAnswersAsDocumented(t *testing.T) {
	e := startAdmin(t)
	root := e.root
	ok := func(method, path string, body any, status int) response {
		t.Helper()
		return e.must(e.call(method, path, root, body), status)
	}
	ok("POST", "/v1/tenants", map[string]any{"id": "acme", "name": "Acme"}, 201)
	ok("GET", "/v1/tenants", nil, 200)
	ok("GET", "/v1/tenants/acme", nil, 200)
	ok("POST", "/v1/tenants/acme/users", map[string]any{"id": "bob"}, 201)
	ok("GET", "/v1/tenants/acme/users", nil, 200)
	ok("GET", "/v1/tenants/acme/users?with=key_counts", nil, 200)
	ok("GET", "/v1/tenants/acme/users/bob", nil, 200)
	k := ok("POST", "/v1/tenants/acme/keys", map[string]any{"user": "bob", "scopes": []string{"orders:read"}}, 201)
	key := k.body["key"].(map[string]any)["id"].(string)
	seq := k.header.Get("Keytrail-Seq")
	e.must(e.call("GET", "/v1/tenants/acme/keys", root, nil, "Keytrail-Min-Seq", seq), 200)
	ok("GET", "/v1/tenants/acme/keys/"+key, nil, 200)
	ok("PATCH", "/v1/tenants/acme/keys/"+key, map[string]any{"name": "ci"}, 200)
	ok("POST", "/v1/tenants/acme/keys/"+key+"/suspend", map[string]any{"reason": "x"}, 200)
	ok("POST", "/v1/tenants/acme/keys/"+key+"/resume", nil, 200)
	rot := ok("POST", "/v1/tenants/acme/keys/"+key+"/rotate", map[string]any{"grace": "1h"}, 201)
	next := rot.body["key"].(map[string]any)["id"].(string)
	ok("POST", "/v1/tenants/acme/keys/"+next+"/rotate?dry_run=true", nil, 200)
	ok("GET", "/v1/tenants/acme/keys/"+key+"/history", nil, 200)
	ok("GET", "/v1/tenants/acme/keys/"+key+"/explain?seq="+seq, nil, 200)
	e.must(e.call("POST", "/v1/verify", root, map[string]any{"key": rot.body["secret"]}, "Keytrail-Min-Seq", rot.header.Get("Keytrail-Seq")), 200)
	ok("POST", "/v1/tenants/acme/keys/"+next+"/revoke", map[string]any{"reason": "x"}, 200)
	ok("POST", "/v1/tenants/acme/apis", map[string]any{"id": "orders", "name": "Orders", "path_prefix": "/orders", "upstreams": []string{"http://127.0.0.1:9"}}, 201)
	ok("GET", "/v1/tenants/acme/apis", nil, 200)
	ok("GET", "/v1/tenants/acme/apis/orders", nil, 200)
	ok("PATCH", "/v1/tenants/acme/apis/orders", map[string]any{"name": "Orders v2"}, 200)
	ok("POST", "/v1/tenants/acme/apis/orders/deprecate", map[string]any{"sunset": "2999-01-01T00:00:00Z"}, 200)
	ok("POST", "/v1/tenants/acme/apis/orders/retire", nil, 200)
	ok("POST", "/v1/tenants/acme/users/bob/revoke-keys", map[string]any{"reason": "x"}, 200)
	ok("POST", "/v1/tenants/acme/users/bob/disable", nil, 200)
	ok("POST", "/v1/tenants/acme/users/bob/enable", nil, 200)
	ok("DELETE", "/v1/tenants/acme/users/bob", nil, 200)
	ok("POST", "/v1/tenants/acme/revoke-keys", map[string]any{"reason": "x"}, 200)
	ok("POST", "/v1/tenants/acme/suspend", nil, 200)
	ok("POST", "/v1/tenants/acme/resume", nil, 200)
	ok("POST", "/v1/tenants/acme/notice-settings", map[string]any{"expiry_before": []string{"14d", "2d"}, "unused_after": "60d"}, 200)
	ok("GET", "/v1/tenants/acme/usage?group_by=code&bucket=minute&since=1h", nil, 200)
	ok("GET", "/v1/tenants/acme/decisions?since=1h", nil, 200)
	ok("GET", "/v1/gateways", nil, 200)
	ok("GET", "/v1/tenants/acme/notices?since=1h&type=key.expiring", nil, 200)
	pol := ok("POST", "/v1/tenants/acme/policies", map[string]any{"id": "readers", "scopes": []string{"orders:read"}, "max_ttl": "90d"}, 201)
	e.must(e.call("GET", "/v1/tenants/acme/policies", root, nil, "Keytrail-Min-Seq", pol.header.Get("Keytrail-Seq")), 200)
	ok("GET", "/v1/tenants/acme/policies/readers", nil, 200)
	ok("PATCH", "/v1/tenants/acme/policies/readers?dry_run=true", map[string]any{"scopes": []string{}}, 200)
	ok("PATCH", "/v1/tenants/acme/policies/readers", map[string]any{"rate_limit": map[string]any{"per_second": 5, "burst": 5}, "max_ttl": nil}, 200)
	ok("POST", "/v1/tenants/acme/policies/readers/retire", nil, 200)
	for _, r := range []string{"orphaned-keys", "retired-policy-keys", "unneeded-scopes"} {
		ok("GET", "/v1/tenants/acme/reports/"+r, nil, 200)
	}
	wh := ok("POST", "/v1/tenants/acme/webhooks", map[string]any{"url": "http://127.0.0.1:9/hook", "types": []string{"key.expiring"}}, 201)
	hook, whSeq := "/v1/tenants/acme/webhooks/"+wh.body["webhook"].(map[string]any)["id"].(string), wh.header.Get("Keytrail-Seq")
	e.must(e.call("GET", "/v1/tenants/acme/webhooks", root, nil, "Keytrail-Min-Seq", whSeq), 200)
	ok("GET", hook, nil, 200)
	ok("PATCH", hook, map[string]any{"types": []string{}}, 200)
	ok("POST", hook+"/rotate-secret", nil, 201)
	e.must(e.call("GET", hook+"/deliveries", root, nil, "Keytrail-Min-Seq", whSeq), 200)
	e.must(e.call("POST", hook+"/replay", root, map[string]any{"since": time.Now().Add(-time.Hour)}, "Keytrail-Min-Seq", whSeq), 202)
	ok("POST", hook+"/disable", nil, 200)
	ok("POST", hook+"/enable", nil, 200)
	ok("DELETE", hook, nil, 200)
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json", "/metrics"} {
		ok("GET", p, nil, 200)
	}

	// The errors of every /v1/ route.
	for _, route := range adminhttp.Routes {
		method, path, _ := strings.Cut(route, " ")
		if !strings.HasPrefix(path, "/v1/") {
			continue
		}
		concrete := strings.NewReplacer("{tenant}", "acme", "{user}", "ghost", "{key}", "key_01JDQ8Z6W4M2N9V3X5C7B1D2E3", "{api}", "ghost",
			"{webhook}", "whk_01JDQ8Z6W4M2N9V3X5C7B1D2E3", "{policy}", "ghost").Replace(path)
		e.call(method, concrete, "", nil)                                                    // 401
		e.call(method, strings.Replace(concrete, "acme", "nope", 1), root, map[string]any{}) // 404 or 400
		if method != "GET" {
			e.call(method, concrete, root, "{", "Content-Type", "application/json") // 400
			e.call(method, concrete, root, "{}", "Content-Type", "text/plain")      // 415
			e.call(method, concrete, root, map[string]any{"reason": "x"}, "If-Match", "999")
		}
	}
	e.doc.mu.Lock()
	defer e.doc.mu.Unlock()
	for _, route := range adminhttp.Routes {
		method, path, _ := strings.Cut(route, " ")
		answered := e.doc.seen[method+" "+path]
		success := false
		for st := range answered {
			success = success || st < 300
		}
		if !success {
			t.Errorf("%s: never answered with success (%v)", route, answered)
		}
		if strings.HasPrefix(path, "/v1/") && !answered[401] {
			t.Errorf("%s: never answered 401", route)
		}
	}
}

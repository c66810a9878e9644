package adminhttp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/readmodel"
)

// testServer is the API on an in-memory store, with a root key.
func testServer(tb testing.TB) (*Server, string, *store.Memory) {
	tb.Helper()
	st := store.NewMemory()
	svc, err := control.New(control.Config{Store: st})
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	model := readmodel.New(log)
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	go model.Run(ctx, st, nil)
	root, err := secret.Generate(secret.DefaultPrefix, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	s := New(Config{Control: svc, Model: model, RootKeyHash: root.Hash(), Log: log, MinSeqWait: 10 * time.Millisecond})
	return s, root.Reveal(), st
}

// FuzzRequestBodies: no body makes a write route fail with a 5xx or panic,
// and a refused one appends nothing.
func FuzzRequestBodies(f *testing.F) {
	for _, seed := range []string{`{"id":"acme","name":"A"}`, `{"user":"bob","ttl":"1h","scopes":["a"]}`, `{"id":"x","path_prefix":"/x","upstreams":["http://127.0.0.1:1"]}`,
		`{"name":null}`, `{"grace":"-1h"}`, `{"sunset":"2099-01-01T00:00:00Z"}`, `{"rate_limit":{"per_second":1e309,"burst":1}}`, `[]`, `""`,
		`{"id":"p","scopes":["a"],"max_ttl":"1d","apis":["x"]}`, `{"rate_limit":null,"max_ttl":null}`, `{"max_ttl":{"a":1}}`, `{"policies":["p","p"]}`, `{"a":` + strings.Repeat("[", 5000)} {
		for route := range 10 {
			f.Add(route, seed)
		}
	}
	s, root, st := testServer(f)
	do := func(method, path, body string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+root)
		s.ServeHTTP(rec, req)
		return rec.Code
	}
	do("POST", "/v1/tenants", `{"id":"acme","name":"A"}`)
	do("POST", "/v1/tenants/acme/users", `{"id":"bob"}`)
	do("POST", "/v1/tenants/acme/policies", `{"id":"p","scopes":["a"]}`)
	routes := [][2]string{{"POST", "/v1/tenants"}, {"POST", "/v1/tenants/acme/users"}, {"POST", "/v1/tenants/acme/keys"},
		{"POST", "/v1/tenants/acme/apis"}, {"POST", "/v1/tenants/acme/users/bob/revoke-keys"}, {"PATCH", "/v1/tenants/acme/apis/x"},
		{"POST", "/v1/tenants/acme/policies"}, {"PATCH", "/v1/tenants/acme/policies/p"},
		{"PATCH", "/v1/tenants/acme/policies/p?dry_run=true"}, {"POST", "/v1/tenants/acme/users/bob/disable?dry_run=true"}}
	f.Fuzz(func(t *testing.T, route int, body string) {
		if route < 0 {
			route = -route
		}
		r := routes[route%len(routes)]
		before, _ := st.LastSeq(context.Background(), "")
		code := do(r[0], r[1], body)
		if code >= 500 {
			t.Fatalf("%s %s %q: %d", r[0], r[1], body, code)
		}
		if after, _ := st.LastSeq(context.Background(), ""); (code >= 400 || strings.Contains(r[1], "dry_run")) && after != before {
			t.Fatalf("a refused request or a dry run (%d) appended", code)
		}
	})
}

func TestRouteTableMatchesTheMux(t *testing.T) {
	s, _, _ := testServer(t)
	if len(s.unlisted) > 0 || len(s.unserved) > 0 {
		t.Fatalf("handlers without a row of Routes (never served): %v; rows without a handler: %v", s.unlisted, s.unserved)
	}
	for _, route := range Routes {
		method, path, _ := strings.Cut(route, " ")
		path = strings.NewReplacer("{tenant}", "acme", "{user}", "bob", "{key}", "key_01JDQ8Z6W4M2N9V3X5C7B1A0ZY", "{api}", "orders").Replace(path)
		req := httptest.NewRequest(method, path, nil)
		if _, pattern := s.mux.Handler(req); pattern != route {
			t.Errorf("%s is routed to %q", route, pattern)
		}
	}
	_ = http.MethodGet
}

// TestOpenAPIMatchesTheRouter fails when a route is served but not
// documented, or documented but not served.
func TestOpenAPIMatchesTheRouter(t *testing.T) {
	doc := OpenAPI()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(b, &parsed); err != nil || parsed.OpenAPI != "3.1.0" {
		t.Fatalf("%v %q", err, parsed.OpenAPI)
	}
	documented := map[string]bool{}
	for path, item := range parsed.Paths {
		for method, operation := range item {
			documented[strings.ToUpper(method)+" "+path] = true
			if operation["summary"] == "" || operation["responses"] == nil {
				t.Errorf("%s %s lacks a summary or responses", method, path)
			}
		}
	}
	served := map[string]bool{}
	for _, r := range Routes {
		served[r] = true
		if !documented[r] {
			t.Errorf("%s is served but not documented", r)
		}
		if _, ok := ops[r]; !ok {
			t.Errorf("%s has no description", r)
		}
	}
	for r := range documented {
		if !served[r] {
			t.Errorf("%s is documented but not served", r)
		}
	}
	for r := range ops {
		if !served[r] {
			t.Errorf("%s is described but not served", r)
		}
	}
	// Every schema a document refers to exists.
	schemas := doc["components"].(obj)["schemas"].(obj)
	for _, o := range ops {
		for _, name := range []string{o.request, o.response} {
			if _, ok := schemas[name]; name != "" && !ok {
				t.Errorf("schema %s is missing", name)
			}
		}
	}
}

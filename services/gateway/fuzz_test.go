package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keytrail/keytrail/services/control"
)

// FuzzGateway: any path and any key headers a client sends get an answer
// from the gateway's table of statuses, never a panic, and never reach the
// upstream unless the key is valid.
func FuzzGateway(f *testing.F) {
	fx := newFixture(f)
	fx.tenant("acme")
	fx.user("acme", "bob")
	fx.api("acme", "orders", "/orders", nil, nil)
	_, sec := fx.key("acme", control.KeySpec{User: "bob"})
	fx.sync()
	for _, seed := range [][3]string{{"/orders/1", "Bearer " + sec, ""}, {"/orders/../x", "", sec}, {"/", "bearer x", "y"},
		{"/_keytrail/readyz", "", ""}, {"/orders//1", "Basic abc", ""}, {"/%2e%2e/x", "Bearer " + sec, sec + "x"}} {
		f.Add(seed[0], seed[1], seed[2])
	}
	allowed := map[int]bool{200: true, 400: true, 401: true, 403: true, 404: true, 410: true, 429: true, 503: true}
	f.Fuzz(func(t *testing.T, path, auth, apiKey string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path = path
		req.Header.Set("Authorization", auth)
		req.Header.Set("X-API-Key", apiKey)
		w := httptest.NewRecorder()
		fx.gw.ServeHTTP(w, req)
		if !allowed[w.Code] {
			t.Fatalf("%q: status %d", path, w.Code)
		}
		if w.Code == http.StatusOK && !strings.HasPrefix(w.Body.String(), "upstream GET ") && path[:min(len(path), 11)] != "/_keytrail/" {
			t.Fatalf("%q: %s", path, w.Body.String())
		}
	})
}

package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/gateway"
)

// BenchmarkServeHTTP: the gateway's work per request (route, verify, limit,
// rewrite, proxy, log, metrics) against a bare httputil.ReverseProxy's
// (tuned as a Go proxy would be), both to the same loopback upstream.
func BenchmarkServeHTTP(b *testing.B) {
	f := newFixture(b, func(c *gateway.Config) {
		c.AccessLog = io.Discard
		c.Sample = 0
	})
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", nil, nil)
	_, sec := f.key("acme", control.KeySpec{User: "bob"})
	f.sync()
	target, _ := url.Parse(f.upstream.URL)
	bare := httputil.NewSingleHostReverseProxy(target)
	bare.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	for name, h := range map[string]http.Handler{"bare": bare, "gateway": f.gw} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("GET", "/orders/1", nil)
				req.Header.Set("Authorization", "Bearer "+sec)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatal(w.Code, w.Body.String())
				}
			}
		})
	}
}

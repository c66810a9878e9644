package gateway_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/gateway"
)

// canned answers every request at once, without a network: what is left
// is the proxies' own work.
type canned struct{}

func (canned) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, ContentLength: 2,
		Body: io.NopCloser(strings.NewReader("{}")), Request: r, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
}

// BenchmarkServeHTTP: the gateway's work per request (route, verify, limit,
// rewrite, proxy, log, metrics) against a bare httputil.ReverseProxy's, both
// on a transport that answers at once.
func BenchmarkServeHTTP(b *testing.B) {
	f := newFixture(b, func(c *gateway.Config) {
		c.Transport = canned{}
		c.Log = slog.New(slog.NewJSONHandler(io.Discard, nil))
		c.Sample = 0
	})
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", nil, nil)
	_, sec := f.key("acme", control.KeySpec{User: "bob"})
	f.sync()
	target, _ := url.Parse("http://127.0.0.1:1")
	bare := httputil.NewSingleHostReverseProxy(target)
	bare.Transport = canned{}
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

package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/egress"
)

// upstreams proxies to the APIs' upstreams: round-robin over an API's
// upstreams, an upstream that refuses a connection left out for ejectFor,
// and a request whose method is idempotent and that has no body retried on
// the next upstream after a connection failure (never after the upstream
// may have seen it: a timeout or a reset after sending is answered 502).
type upstreams struct {
	proxy    *httputil.ReverseProxy
	base     http.RoundTripper
	ejectFor time.Duration
	now      func() time.Time
	metrics  *metrics
	log      *slog.Logger

	mu    sync.RWMutex
	pools map[apiRef]*pool
}

type apiRef struct{ tenant, id string }

// pool is one version of an API's upstream list.
type pool struct {
	version uint64
	targets []*target
	next    atomic.Uint32
}

type target struct {
	url          *url.URL
	ejectedUntil atomic.Int64 // Unix nanoseconds
}

func newUpstreams(base http.RoundTripper, policy *egress.Policy, timeout, ejectFor time.Duration, now func() time.Time, m *metrics, log *slog.Logger) *upstreams {
	if base == nil {
		dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		if policy != nil {
			// The address actually dialled, after name resolution.
			dialer.Control = policy.Control
		}
		base = &http.Transport{
			DialContext:           dialer.DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: timeout,
			ExpectContinueTimeout: time.Second,
		}
	}
	u := &upstreams{base: base, ejectFor: ejectFor, now: now, metrics: m, log: log, pools: map[apiRef]*pool{}}
	u.proxy = &httputil.ReverseProxy{Rewrite: rewrite, Transport: u, ErrorHandler: u.failed, BufferPool: buffers{},
		ModifyResponse: func(resp *http.Response) error {
			if x := exchangeOf(resp.Request.Context()); x != nil {
				x.status = resp.StatusCode
			}
			return nil
		}}
	return u
}

// serve proxies a verified request.
func (u *upstreams) serve(w http.ResponseWriter, r *http.Request, x *exchange) {
	x.status = http.StatusBadGateway
	u.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, x)))
}

// rewrite strips every credential and any Keytrail-* header the client
// sent (an upstream must be able to trust them) and adds the verified
// identity.
func rewrite(pr *httputil.ProxyRequest) {
	x := exchangeOf(pr.In.Context())
	pr.SetXForwarded()
	h := pr.Out.Header
	for name := range h {
		if reservedHeader(name) {
			delete(h, name)
		}
	}
	// The identity headers share one backing array: one allocation, not
	// five (the names are canonical already).
	d := &x.decision
	v := [...]string{d.KeyID, d.Tenant, d.User, strings.Join(d.KeyScopes(), ","), x.id}
	vals := v[:]
	for i, name := range identityHeaders {
		h[name] = vals[i : i+1 : i+1]
	}
	// The transport picks the upstream; until then the URL names none.
	pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "upstream.invalid"
}

// reservedHeader reports whether a client's header must not reach an
// upstream: a credential (Authorization, Proxy-Authorization, X-API-Key) or
// a Keytrail-* name, however it is spelt. Names are compared as an upstream
// may read them: any case, and '_' as '-' (CGI and WSGI servers turn both
// into '_', so Keytrail_Scopes would reach them as Keytrail-Scopes).
func reservedHeader(name string) bool {
	return normalEqual(name, "authorization") || normalEqual(name, "proxy-authorization") ||
		normalEqual(name, "x-api-key") || (len(name) >= 9 && normalEqual(name[:9], "keytrail-"))
}

// normalEqual compares a header name with a lower-case one, case-folded and
// with '_' read as '-'.
func normalEqual(name, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' {
			c = '-'
		} else if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// identityHeaders are what the upstream learns of the verified key, in the
// order rewrite fills them.
var identityHeaders = [...]string{HeaderKeyID, HeaderTenant, HeaderUser, HeaderScopes, HeaderRequestID}

// RoundTrip sends the request to the API's upstreams.
func (u *upstreams) RoundTrip(req *http.Request) (*http.Response, error) {
	x := exchangeOf(req.Context())
	p := u.poolFor(&x.api)
	if len(p.targets) == 0 {
		return nil, errors.New("gateway: the API has no upstreams")
	}
	tries := 1
	if idempotent(req.Method) && (req.Body == nil || req.Body == http.NoBody) {
		tries = min(len(p.targets), 3)
	}
	start := time.Now()
	defer func() { x.upstream = time.Since(start) }()
	var err error
	// req is the proxy's own copy of the client's request: the upstream is
	// set on it in place, its path joined once.
	path, rawPath := req.URL.Path, req.URL.RawPath
	escaped := req.URL.EscapedPath()
	for range tries {
		t := p.pick(u.now())
		req.URL.Scheme, req.URL.Host = t.url.Scheme, t.url.Host
		req.URL.Path = joinPath(t.url.Path, path)
		if rawPath != "" {
			req.URL.RawPath = joinPath(t.url.EscapedPath(), escaped)
		}
		var resp *http.Response
		resp, err = u.base.RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		u.metrics.upstreamErrors.WithLabelValues(x.api.Tenant, x.api.ID).Inc()
		if !refused(err) {
			return nil, err // the upstream may have seen it: never retried
		}
		t.ejectedUntil.Store(u.now().Add(u.ejectFor).UnixNano())
		u.metrics.ejections.WithLabelValues(x.api.Tenant, x.api.ID).Inc()
		u.log.Warn("upstream ejected", "api", x.api.ID, "upstream", t.url.Redacted(), "for", u.ejectFor.String(), "err", err)
	}
	return nil, err
}

// failed answers a request the upstreams did not (502, 504 on a timeout).
func (u *upstreams) failed(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeOf(r.Context())
	if errors.Is(err, context.Canceled) {
		x.status = 499 // the client went away; nothing to answer
		return
	}
	status, code, title := http.StatusBadGateway, "UPSTREAM_UNAVAILABLE", "The API's upstreams did not answer"
	var ne net.Error
	switch {
	case errors.Is(err, egress.ErrDenied):
		code, title = "UPSTREAM_FORBIDDEN", "The API's upstream is at an address the gateway may not reach"
		u.log.Warn("upstream address denied", "tenant", x.api.Tenant, "api", x.api.ID, "err", err)
	case errors.As(err, &ne) && ne.Timeout():
		status, title = http.StatusGatewayTimeout, "The API's upstream timed out"
	}
	x.status = status
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	writeProblemBody(w, Problem{Type: "https://keytrail.dev/problems/" + code, Title: title, Status: status,
		Code: code, KeyID: x.decision.KeyID, RequestID: x.id})
}

// poolFor returns the pool of an API's current upstream list.
func (u *upstreams) poolFor(a *projections.API) *pool {
	key := apiRef{a.Tenant, a.ID}
	u.mu.RLock()
	p := u.pools[key]
	u.mu.RUnlock()
	if p != nil && p.version == a.Version {
		return p
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if p := u.pools[key]; p != nil && p.version == a.Version {
		return p
	}
	p = &pool{version: a.Version}
	for _, s := range a.Upstreams {
		if parsed, err := url.Parse(s); err == nil {
			p.targets = append(p.targets, &target{url: parsed})
		}
	}
	u.pools[key] = p
	return p
}

// pick returns the next upstream in turn that is not ejected; when every
// one is, the next in turn (a request is better tried than refused).
func (p *pool) pick(now time.Time) *target {
	n := uint32(len(p.targets))
	start := p.next.Add(1)
	for i := range n {
		t := p.targets[(start+i)%n]
		if t.ejectedUntil.Load() <= now.UnixNano() {
			return t
		}
	}
	return p.targets[start%n]
}

// refused reports whether err is a failure to connect: the upstream never
// saw the request.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func joinPath(base, p string) string {
	if base == "" || base == "/" {
		return p
	}
	return strings.TrimSuffix(base, "/") + p
}

// buffers lends the proxy its 32 KiB copy buffers instead of allocating one
// per request.
type buffers struct{}

var bufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (buffers) Get() []byte  { return *bufferPool.Get().(*[]byte) }
func (buffers) Put(b []byte) { bufferPool.Put(&b) }

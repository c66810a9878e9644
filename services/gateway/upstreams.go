package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/egress"
	"github.com/keytrail/keytrail/services/gateway/h1"
)

// upstreams proxies to the APIs' upstreams: round-robin over an API's
// upstreams, an upstream that refuses a connection left out for ejectFor,
// and a request whose method is idempotent and that has no body retried on
// the next upstream after a connection failure (never after the upstream
// may have seen it: a timeout or a reset after sending is answered 502).
type upstreams struct {
	transport *h1.Transport
	ejectFor  time.Duration
	now       func() time.Time
	metrics   *metrics
	log       *slog.Logger
	trusted   []netip.Prefix

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
	tls          bool
	addr         string       // host:port
	path         string       // the URL's escaped path, without a trailing /
	ejectedUntil atomic.Int64 // Unix nanoseconds
}

func newUpstreams(t *h1.Transport, policy *egress.Policy, timeout, ejectFor time.Duration, now func() time.Time, m *metrics, log *slog.Logger, trusted []netip.Prefix) *upstreams {
	if t == nil {
		dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		if policy != nil {
			// The address actually dialled, after name resolution.
			dialer.Control = policy.Control
		}
		t = &h1.Transport{Dial: dialer.DialContext, MaxIdlePerHost: 256, IdleTimeout: 90 * time.Second}
	}
	t.ResponseHeaderTimeout = timeout
	return &upstreams{transport: t, ejectFor: ejectFor, now: now, metrics: m, log: log, trusted: trusted, pools: map[apiRef]*pool{}}
}

// serve proxies a verified request and streams the answer back.
func (u *upstreams) serve(w http.ResponseWriter, r *http.Request, x *exchange) {
	x.status = http.StatusBadGateway
	x.connection = r.Header["Connection"]
	out := h1.Request{Method: r.Method, Host: r.Host, Header: r.Header, Skip: x, Extra: u.extra(r, x)}
	if x.body {
		out.Body, out.ContentLength = r.Body, r.ContentLength
	}
	start := time.Now()
	resp, err := u.roundTrip(r, &out, x)
	if err != nil {
		x.upstream = time.Since(start)
		u.failed(w, r, x, err)
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	conn := resp.Header["Connection"]
	for k, v := range resp.Header {
		if !hopByHop(k) && !listedIn(conn, k) {
			h[k] = v
		}
	}
	x.status = resp.Status
	w.WriteHeader(resp.Status)
	// The body as it comes: flushed whenever the upstream has nothing more
	// ready, so that a stream reaches the client as it is written.
	bp := bufferPool.Get().(*[]byte)
	defer bufferPool.Put(bp)
	buf := *bp
	flusher, _ := w.(http.Flusher)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				x.upstream = time.Since(start)
				return
			}
			if flusher != nil && resp.Body.Buffered() == 0 && err == nil {
				flusher.Flush()
			}
		}
		if err != nil {
			if err != io.EOF {
				// The upstream broke off: the client must not take a
				// truncated body for a whole one.
				x.upstream = time.Since(start)
				panic(http.ErrAbortHandler)
			}
			x.upstream = time.Since(start)
			return
		}
	}
}

// Skip reports whether a client's header stays out of the upstream
// request: hop-by-hop headers (and those its Connection names),
// credentials and any Keytrail-* header it sent (an upstream must be able
// to trust them), and the X-Forwarded-* the gateway sets itself.
func (x *exchange) Skip(name string) bool {
	return hopByHop(name) || transportOwned(name) || reservedHeader(name) || forwarding(name) || listedIn(x.connection, name)
}

// extra is what the gateway adds to the upstream request: X-Forwarded-*
// and the verified identity, in the exchange's own storage.
func (u *upstreams) extra(r *http.Request, x *exchange) []string {
	// X-Forwarded-For names the peer, after what a trusted proxy said.
	forwardedFor := r.RemoteAddr
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		forwardedFor = host
	}
	if prior := r.Header["X-Forwarded-For"]; len(prior) > 0 {
		if peer, ok := remoteAddr(r); ok && isTrusted(u.trusted, peer) {
			forwardedFor = strings.Join(prior, ", ") + ", " + forwardedFor
		}
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	d := &x.decision
	scopes := ""
	if s := d.EffectiveScopes(nil); len(s) == 1 {
		scopes = s[0]
	} else if len(s) > 1 {
		scopes = strings.Join(s, ",")
	}
	x.extra = [...]string{"X-Forwarded-For", forwardedFor, "X-Forwarded-Host", r.Host, "X-Forwarded-Proto", proto,
		HeaderKeyID, d.KeyID, HeaderTenant, d.Tenant, HeaderUser, d.User, HeaderScopes, scopes, HeaderRequestID, x.id}
	return x.extra[:]
}

// listedIn reports whether a Connection header names name.
func listedIn(connection []string, name string) bool {
	for _, v := range connection {
		if h1.Listed(v, name) {
			return true
		}
	}
	return false
}

// hopByHop reports whether a header concerns one connection only and is
// not passed on (RFC 9110 7.6.1).
func hopByHop(name string) bool {
	switch name {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer",
		"Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// transportOwned reports whether a request header is set by the transport
// for the upstream connection (the client's Expect is answered by the
// gateway's server).
func transportOwned(name string) bool {
	return name == "Content-Length" || name == "Expect" || name == "Host"
}

// forwarding reports whether a header says something about the client or
// the original request that only a proxy may say — the gateway sets its
// own X-Forwarded-*, and a client's is not believed — in any case and
// with '_' read as '-': Forwarded, X-Forwarded-*, X-Real-IP, and the
// path overrides some frameworks obey (X-Original-URL, X-Rewrite-URL).
func forwarding(name string) bool {
	return normalEqual(name, "forwarded") || (len(name) >= 12 && normalEqual(name[:12], "x-forwarded-")) ||
		normalEqual(name, "x-real-ip") || normalEqual(name, "x-original-url") || normalEqual(name, "x-rewrite-url")
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

// roundTrip sends the request to the API's upstreams.
func (u *upstreams) roundTrip(r *http.Request, out *h1.Request, x *exchange) (*h1.Response, error) {
	p := u.poolFor(&x.api)
	if len(p.targets) == 0 {
		return nil, errors.New("gateway: the API has no upstreams")
	}
	tries := 1
	if idempotent(r.Method) && out.Body == nil {
		tries = min(len(p.targets), 3)
	}
	var err error
	for range tries {
		t := p.pick(u.now())
		out.TLS, out.Addr = t.tls, t.addr
		out.Target = t.target(r)
		var resp *h1.Response
		resp, err = u.transport.RoundTrip(r.Context(), out)
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

// target is the request target on this upstream: its path, then the
// client's.
func (t *target) target(r *http.Request) string {
	if t.path == "" && r.URL.Host == "" && r.RequestURI != "" && r.RequestURI[0] == '/' {
		return r.RequestURI // as the client sent it: nothing to join
	}
	s := t.path + r.URL.EscapedPath()
	if r.URL.ForceQuery || r.URL.RawQuery != "" {
		s += "?" + r.URL.RawQuery
	}
	return s
}

// failed answers a request the upstreams did not (502, 504 on a timeout).
func (u *upstreams) failed(w http.ResponseWriter, r *http.Request, x *exchange, err error) {
	if errors.Is(err, context.Canceled) {
		x.status = 499 // the client went away; nothing to answer
		return
	}
	status, code, detail := http.StatusBadGateway, ProblemUpstreamUnavailable, ""
	var ne net.Error
	switch {
	case errors.Is(err, egress.ErrDenied):
		code = ProblemUpstreamForbidden
		u.log.Warn("upstream address denied", "tenant", x.api.Tenant, "api", x.api.ID, "err", err)
	case errors.As(err, &ne) && ne.Timeout():
		status, detail = http.StatusGatewayTimeout, "the API's upstream timed out"
	}
	x.status = status
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	writeProblemBody(w, newProblem(code, status, detail, x.decision.KeyID, x.id))
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
		parsed, err := url.Parse(s)
		if err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
			continue
		}
		t := &target{url: parsed, tls: parsed.Scheme == "https", addr: parsed.Host, path: strings.TrimSuffix(parsed.EscapedPath(), "/")}
		if parsed.Port() == "" {
			port := "80"
			if t.tls {
				port = "443"
			}
			t.addr = net.JoinHostPort(parsed.Hostname(), port)
		}
		p.targets = append(p.targets, t)
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

// bufferPool lends the proxy its 32 KiB copy buffers instead of
// allocating one per request.
var bufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

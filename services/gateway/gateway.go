// Package gateway is Keytrail's stateless proxy: it routes a request to an
// API by the longest path prefix in the read model, verifies the presented
// key against the local read model (no network hop), enforces rate limits,
// and proxies to the API's upstreams. Every denial, and a sample of the
// requests let through, goes to the decision log; every request to the
// access log and the metrics.
//
// Nothing about an API, a key or a user is configured on a gateway: all of
// it comes from the event log, and a change is enforced as soon as the read
// model has applied it.
package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/egress"
	"github.com/keytrail/keytrail/services/gateway/h1"
	"github.com/keytrail/keytrail/services/readmodel"
)

// Headers the gateway reads or sets.
const (
	HeaderAPIKey    = "X-API-Key"
	HeaderKeyID     = "Keytrail-Key-Id"
	HeaderTenant    = "Keytrail-Tenant"
	HeaderUser      = "Keytrail-User"
	HeaderScopes    = "Keytrail-Scopes"
	HeaderRequestID = "Keytrail-Request-Id"
	HeaderMinSeq    = "Keytrail-Min-Seq"
	HeaderSeq       = "Keytrail-Seq"
	// ReservedPrefix is the gateway's own path space.
	ReservedPrefix = "/_keytrail/"
)

// Config configures a gateway.
type Config struct {
	// Model is the read model the gateway verifies against; the caller runs
	// it (Run) and owns it.
	Model *readmodel.Model
	// Node names this gateway (decision log, presence).
	Node string
	// SecretPrefix is the deployment's secret prefix (default "kt_").
	SecretPrefix string
	// MaxStaleness: STALE once the model has not confirmed it is current
	// for longer (default 5 s).
	MaxStaleness time.Duration
	// ConfirmWindow: a request arriving when the model's last confirmation
	// is older than this is held (up to the window again) for a fresh one
	// before it is decided, so that a gateway resuming from a pause never
	// answers from what it knew before. 0: never held. The model must
	// confirm well within it on a healthy link (app: every half window).
	ConfirmWindow time.Duration
	// FailOpen verifies against a stale model instead of answering STALE;
	// every such request is counted. Off by default: fail closed.
	FailOpen bool
	// MinSeqWait bounds the wait for Keytrail-Min-Seq (default 5 s).
	MinSeqWait time.Duration
	// Denials aggregates floods of denials in the logs (nil: each denial
	// is logged on its own); whoever owns it calls Flush every second.
	Denials *DenialLog
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client that Denials accounts a denial to (Failures has its own).
	TrustedProxies []netip.Prefix
	// Limits shares rate limits with the other gateways; nil: this node
	// alone (Limits with no presence).
	Limits *Limits
	// Failures, when set, is the per-client-address budget of failed
	// authentications (FailureBudget).
	Failures *FailureBudget
	// Decisions receives the decision log; nil: none is written.
	Decisions *DecisionLog
	// Usage counts every decided request (docs/usage.md); nil: none.
	Usage *UsageCounter
	// Sample is the fraction of allowed requests written to the decision
	// log (denials are always written), 0 to 1.
	Sample float64
	// Transport reaches the upstreams (default: one that dials only
	// addresses Egress allows).
	Transport *h1.Transport
	// Egress is where upstreams may be (nil: anywhere, for tests that bring
	// their own Transport).
	Egress *egress.Policy
	// UpstreamTimeout bounds the wait for an upstream's response headers
	// (default 30 s); EjectFor is how long an upstream that refused a
	// connection is left out (default 10 s).
	UpstreamTimeout, EjectFor time.Duration
	// BodyTimeout bounds how long a request's body may take to arrive while
	// it is proxied (default 60 s).
	BodyTimeout time.Duration
	// Log receives errors and warnings.
	Log *slog.Logger
	// AccessLog receives the access log (nil: none), one JSON line per
	// Write in the shape of slog's JSON records, with "component" set to
	// AccessComponent when it is not empty.
	AccessLog       io.Writer
	AccessComponent string
	// Registry receives the gateway's metrics (default: a new one).
	Registry *prometheus.Registry
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Gateway is an http.Handler.
type Gateway struct {
	cfg       Config
	access    *accessLog
	metrics   *metrics
	upstreams *upstreams
}

// New returns a gateway serving cfg.Model.
func New(cfg Config) *Gateway {
	if cfg.SecretPrefix == "" {
		cfg.SecretPrefix = secret.DefaultPrefix
	}
	if cfg.MaxStaleness <= 0 {
		cfg.MaxStaleness = 5 * time.Second
	}
	if cfg.MinSeqWait <= 0 {
		cfg.MinSeqWait = 5 * time.Second
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = time.Minute
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = 30 * time.Second
	}
	if cfg.EjectFor <= 0 {
		cfg.EjectFor = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Limits == nil {
		cfg.Limits = NewLimits(nil)
	}
	cfg.Sample = min(max(cfg.Sample, 0), 1)
	g := &Gateway{cfg: cfg}
	if cfg.AccessLog != nil {
		g.access = newAccessLog(cfg.AccessLog, cfg.AccessComponent)
	}
	g.metrics = newMetrics(cfg.Registry, cfg.Model, cfg.MaxStaleness, cfg.Now, cfg.Decisions, cfg.Limits, cfg.Failures)
	g.upstreams = newUpstreams(cfg.Transport, cfg.Egress, cfg.UpstreamTimeout, cfg.EjectFor, cfg.Now, g.metrics, cfg.Log, cfg.TrustedProxies)
	return g
}

// The limits of both of the gateway's servers. No write timeout on
// net/http's: answers may stream for as long as the upstream sends (h1's
// bounds each write instead).
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
)

// Server is the gateway's plaintext HTTP/1.1 server (package h1, the fast
// path).
func (g *Gateway) Server() *h1.Server {
	return &h1.Server{Handler: g, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes,
		BadRequest: g.badRequest, Log: g.cfg.Log}
}

// TLSServer is net/http's server with the gateway as its handler, for a
// TLS listener (HTTP/2 for clients that negotiate it); the caller sets its
// TLSConfig.
func (g *Gateway) TLSServer() *http.Server {
	return &http.Server{Handler: g, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes}
}

// Close closes the connections to upstreams, idle or in use (after the
// server has stopped: an answer still streaming is cut).
func (g *Gateway) Close() { g.upstreams.transport.Close() }

// SweepIdle closes upstream connections idle for longer than they are
// kept (the app calls it every few seconds).
func (g *Gateway) SweepIdle(now time.Time) { g.upstreams.transport.SweepIdle(now) }

// badRequest is the problem answering a request the server could not read.
func (g *Gateway) badRequest(h http.Header, status int, reason string) []byte {
	g.metrics.requests.WithLabelValues("", "", "NONE").Inc()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	b, _ := json.Marshal(newProblem(ProblemBadRequest, status, reason, "", requestID()))
	return append(b, '\n')
}

// MetricsHandler serves the gateway's metrics (every tenant's APIs and
// denial counts): for an operator listener, never the public port.
func (g *Gateway) MetricsHandler() http.Handler { return g.metrics.handler }

// ObserveApplied is a readmodel.OnApplied callback that measures the
// propagation delay: from an event's time to this gateway applying it.
func (g *Gateway) ObserveApplied(r *events.Recorded, at time.Time) {
	g.metrics.propagation.Observe(max(at.Sub(r.OccurredAt), 0).Seconds())
}

// requestID is 96 bits from the CSPRNG (about 60 ns): an id nobody can
// predict, so that nobody can plant a decision under the id of a request
// still to come and have the audit tell it as that request's story.
func requestID() string {
	var b [12]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// exchange is what a request became, for the access log, the metrics and
// the decision log.
type exchange struct {
	id       string
	start    time.Time
	decision projections.Decision
	api      projections.API
	status   int
	verify   time.Duration
	upstream time.Duration
	failOpen bool
	// limitedBy is the rate limit that denied the request (events'
	// LimitSource...), "" when none did.
	limitedBy string
	body      bool // the request has a body
	// connection is the client's Connection header; extra what the
	// upstream request adds (upstreams.extra): kept here, not allocated.
	connection []string
	extra      [16]string
	idHeader   [1]string
	quiet      bool // a denial past its address's threshold: counted, not logged one by one
}

// ServeHTTP routes, verifies, limits and proxies one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, ReservedPrefix) {
		w.Header().Set(HeaderRequestID, requestID())
		if r.ContentLength != 0 {
			refuseBody(w)
		}
		g.own(w, r)
		return
	}
	x := &exchange{id: requestID(), start: time.Now(), body: r.ContentLength != 0}
	x.idHeader[0] = x.id
	w.Header()[HeaderRequestID] = x.idHeader[:] // the exchange's own storage: no allocation
	defer g.finish(r, x)
	if why := notCanonical(r.URL); why != "" {
		g.problem(w, x, ProblemBadPath, "the path is not in canonical form: "+why)
		return
	}
	if v := r.Header.Get(HeaderMinSeq); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			g.problem(w, x, ProblemBadMinSeq, HeaderMinSeq+" must be a sequence number")
			return
		}
		if err := g.cfg.Model.WaitFor(r.Context(), n, g.cfg.MinSeqWait); err != nil {
			x.decision = projections.Decision{Code: projections.CodeStale, Now: g.cfg.Now(), Seq: g.cfg.Model.Applied()}
			g.deny(w, r, x)
			return
		}
	}
	now := g.cfg.Now()
	// A spent address first: it is answered at once, neither held nor
	// verified.
	var client netip.Addr
	budgeted := false
	if b := g.cfg.Failures; b != nil {
		if client, budgeted = b.client(r); budgeted {
			if wait, spent := b.Spent(client, now); spent {
				// Cheap: no verification, no decision, no decision record;
				// held a moment (the tarpit), or the connection closed.
				if !b.hold(r.Context(), wait) {
					w.Header().Set("Connection", "close")
				}
				w.Header().Set("Retry-After", RetryAfter(wait))
				g.problem(w, x, ProblemTooManyFailures,
					"too many requests without a valid key from this address; retry after Retry-After seconds")
				g.quiet(r, x, string(ProblemTooManyFailures))
				return
			}
		}
	}
	if w := g.cfg.ConfirmWindow; w > 0 && g.cfg.Model.Ready() && !g.cfg.Model.ConfirmedWithin(now, w) {
		// After a pause: what this request should see may have happened
		// meanwhile. If no confirmation comes, the bound decides below.
		g.metrics.held.Inc()
		g.cfg.Model.Hold(r.Context(), now, w)
		now = g.cfg.Now()
	}
	if !g.cfg.Model.Ready() || g.cfg.Model.Stale(g.cfg.MaxStaleness) {
		if !g.cfg.FailOpen || !g.cfg.Model.Ready() {
			// Never from an empty or unconfirmed model: fail closed.
			x.decision = projections.Decision{Code: projections.CodeStale, Now: now, Seq: g.cfg.Model.Applied()}
			g.deny(w, r, x)
			return
		}
		x.failOpen = true
		g.metrics.failOpen.Inc()
	}
	secretValue, ok := presentedKey(r)
	var routing projections.Routing
	verifyStart := time.Now()
	g.cfg.Model.Read(func(c *projections.Catalog) {
		x.api, routing = c.Route(r.URL.Path)
		if routing != projections.Routed || x.api.Status == projections.APIRetired {
			return
		}
		q := projections.Request{Secret: secretValue, Prefix: g.cfg.SecretPrefix, APITenant: x.api.Tenant, API: x.api.ID}
		x.decision = c.Verify(q, now)
	})
	x.verify = time.Since(verifyStart)
	switch {
	case routing == projections.Ambiguous:
		g.problem(w, x, ProblemBadPath, "the path matches a published prefix only when case is ignored; use the prefix's exact case")
		return
	case routing == projections.NoRoute:
		g.problem(w, x, ProblemNoAPI, "no API is published at this path")
		return
	case x.api.Status == projections.APIRetired:
		g.problem(w, x, ProblemAPIRetired, "this API is retired")
		return
	case !ok:
		x.decision.Code = projections.CodeMalformed // two different keys presented
	}
	if budgeted && authFailure(string(x.decision.Code)) {
		g.cfg.Failures.Fail(client, now)
	}
	if x.decision.Code == projections.CodeValid {
		if retry, by := g.cfg.Limits.Take(&x.decision, &x.api, now); by != "" {
			x.decision.Code, x.limitedBy = projections.CodeRateLimited, by
			w.Header().Set("Retry-After", RetryAfter(retry))
		}
	}
	if x.decision.Code != projections.CodeValid {
		w.Header().Set(HeaderSeq, strconv.FormatUint(x.decision.Seq, 10))
		g.deny(w, r, x)
		return
	}
	if x.api.Status == projections.APIDeprecated {
		w.Header().Set("Deprecation", "@"+strconv.FormatInt(x.api.DeprecatedAt.Unix(), 10))
		if x.api.Sunset != nil {
			w.Header().Set("Sunset", x.api.Sunset.UTC().Format(http.TimeFormat))
		}
	}
	g.logDecision(r, x, false)
	if x.body {
		// The body is read while it is proxied, for so long at most: a slow
		// sender cannot hold the connection.
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(g.cfg.BodyTimeout))
	}
	g.upstreams.serve(w, r, x)
}

// presentedKey is the key from "Authorization: Bearer" or X-API-Key, never
// from the query string. ok is false when two different keys were
// presented.
func presentedKey(r *http.Request) (key string, ok bool) {
	var bearer string
	auths := r.Header["Authorization"]
	if len(auths) > 1 {
		return "", false // which one would the upstream believe?
	}
	if len(auths) == 1 && len(auths[0]) > 7 && strings.EqualFold(auths[0][:7], "bearer ") {
		bearer = strings.TrimSpace(auths[0][7:])
	}
	apiKeys := r.Header[apiKeyHeader]
	switch {
	case len(apiKeys) > 1:
		return "", false
	case len(apiKeys) == 1 && bearer != "" && apiKeys[0] != bearer:
		return "", false
	case bearer != "":
		return bearer, true
	case len(apiKeys) == 1:
		return strings.TrimSpace(apiKeys[0]), true
	}
	return "", true
}

// apiKeyHeader is HeaderAPIKey as net/http and h1 store it.
var apiKeyHeader = http.CanonicalHeaderKey(HeaderAPIKey)

// notCanonical says why a request path is not canonical, "" when it is. A
// path an upstream could read as another than the one it was routed by is
// refused rather than cleaned: empty, "." or ".." segments; ';' (path
// parameters, which some servers strip); a segment ending in '.' (which some
// file systems drop); control characters, NUL among them; a backslash; an
// encoded '/' or '\' (which some servers decode into a separator).
func notCanonical(u *url.URL) string {
	p := u.Path
	if p == "" || p[0] != '/' {
		return "it must start with /"
	}
	if c := path.Clean(p); c != p && c+"/" != p {
		return "no empty, . or .. segments"
	}
	if strings.Contains(p, "//") {
		return "no empty segments"
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c < 0x20 || c == 0x7f:
			return "no control characters"
		case c == ' ' || c >= 0x80:
			// Upstreams fold Unicode (ſ is s, ı is i) and drop trailing
			// spaces in ways a prefix match cannot follow.
			return "only printable ASCII, no spaces"
		case c == ';':
			return "no ;"
		case c == '\\':
			return "no backslash"
		case c == '#':
			return "no #" // a fragment is the client's: some servers end the path there
		case c == '.' && (i+1 == len(p) || p[i+1] == '/'):
			return "no segment ending in ."
		}
	}
	if raw := u.RawPath; raw != "" {
		for i := 0; i+2 < len(raw); i++ {
			if raw[i] == '%' && (raw[i+1] == '2' && (raw[i+2] == 'f' || raw[i+2] == 'F') || raw[i+1] == '5' && (raw[i+2] == 'c' || raw[i+2] == 'C')) {
				return "no encoded / or \\"
			}
		}
	}
	return ""
}

// Problem is a denial: an RFC 9457 problem document with the outcome code.
// The evidence stays server-side (decision log, explain).
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Code      string `json:"code"`
	Detail    string `json:"detail,omitempty"`
	KeyID     string `json:"key_id,omitempty"`
	RequestID string `json:"request_id"`
}

// deny answers x's decision as a problem and logs it.
func (g *Gateway) deny(w http.ResponseWriter, r *http.Request, x *exchange) {
	code := x.decision.Code
	o, ok := projections.OutcomeOf(code)
	if !ok || o.Status < 400 {
		o = projections.Outcome{Code: code, Status: http.StatusForbidden} // not reached: deny is called for denials
	}
	status := o.Status
	switch code {
	case projections.CodeStale:
		w.Header().Set("Retry-After", "1")
	case projections.CodeMissing, projections.CodeMalformed, projections.CodeNotFound:
		w.Header().Set("WWW-Authenticate", `Bearer realm="keytrail"`)
	}
	g.write(w, x, status, Problem{Type: problemType + string(code), Title: o.Title,
		Status: status, Code: string(code), Detail: o.Detail, KeyID: x.decision.KeyID, RequestID: x.id})
	if !g.quiet(r, x, string(code)) {
		g.logDecision(r, x, true)
	}
}

// problem answers a request that is not a decision on a key (bad path,
// unknown or retired API).
func (g *Gateway) problem(w http.ResponseWriter, x *exchange, code ProblemCode, detail string) {
	status := problemOf(code).Statuses[0]
	g.write(w, x, status, newProblem(code, status, detail, "", x.id))
}

func (g *Gateway) write(w http.ResponseWriter, x *exchange, status int, p Problem) {
	x.status = status
	if x.body {
		refuseBody(w)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	writeProblemBody(w, p)
}

func writeProblemBody(w io.Writer, p Problem) { json.NewEncoder(w).Encode(p) }

// refuseBody makes the answer to a request whose body is not read close
// the connection at once, instead of the server draining a (slow) body
// first: a client without a key holds nothing.
func refuseBody(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	http.NewResponseController(w).SetReadDeadline(time.Now())
}

// finish writes the access log line and the metrics of a request.
func (g *Gateway) finish(r *http.Request, x *exchange) {
	code := string(x.decision.Code)
	if code == "" {
		code = "NONE" // answered before any verification: bad path, unknown or retired API
	}
	g.metrics.requests.WithLabelValues(x.api.Tenant, x.api.ID, code).Inc()
	g.count(x)
	if x.decision.Code != "" {
		g.metrics.verify.Observe(x.verify.Seconds())
	}
	if x.upstream > 0 {
		g.metrics.proxy.Observe(x.upstream.Seconds())
	}
	if g.access != nil && !x.quiet {
		end := time.Now()
		g.access.write(&accessEntry{at: end, requestID: x.id, method: r.Method, path: r.URL.Path, status: x.status,
			code: code, keyID: x.decision.KeyID, tenant: x.decision.Tenant, api: x.api.ID, seq: x.decision.Seq,
			failOpen: x.failOpen, duration: end.Sub(x.start), upstream: x.upstream})
	}
}

// own serves /_keytrail/: healthz (the process is up) and readyz (the read
// model has caught up and is not stale). Metrics are not on the public
// port: MetricsHandler serves them on an operator listener.
func (g *Gateway) own(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case ReservedPrefix + "healthz":
		writeStatus(w, http.StatusOK, map[string]any{"status": "ok"})
	case ReservedPrefix + "readyz":
		applied, lag, confirmed := g.cfg.Model.Freshness()
		body := map[string]any{"applied_seq": applied, "lag": lag, "ready": g.cfg.Model.Ready(),
			"stale": g.cfg.Model.Stale(g.cfg.MaxStaleness), "stream_refused": g.cfg.Model.Refused() != nil}
		if !confirmed.IsZero() {
			body["confirmed_at"] = confirmed.UTC()
		}
		status := http.StatusOK
		if !g.cfg.Model.Ready() || g.cfg.Model.Stale(g.cfg.MaxStaleness) {
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "1")
		}
		writeStatus(w, status, body)
	default:
		http.NotFound(w, r)
	}
}

func writeStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

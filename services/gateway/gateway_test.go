package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/egress"
	"github.com/keytrail/keytrail/services/gateway"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
	"github.com/keytrail/keytrail/services/readmodel"
)

// fixture is a deployment in miniature: a real NATS node, the event store,
// the control plane writing events, a read model following them, a real
// upstream, and a gateway in front of it.
type fixture struct {
	t        testing.TB
	ctx      context.Context
	node     *natstest.Server
	st       *store.JetStream
	js       jetstream.JetStream // the gateway identity's
	svc      *control.Service
	model    *readmodel.Model
	upstream *httptest.Server
	gw       *gateway.Gateway
	srv      *served
	access   *testkit.Buffer
	skew     atomic.Int64 // added to the gateway's clock
	seen     chan http.Header
}

var root = control.Meta{Actor: "test"}

func newFixture(t testing.TB, mutate ...func(*gateway.Config)) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	node := natstest.RunServer(t)
	nc := node.ConnectAs(t, natsauth.Control)
	st, err := store.OpenJetStream(ctx, nc, store.Config{CreateIfMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := control.New(control.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.EnsureDecisionStream(ctx, st.JetStream(), gateway.DecisionStreamConfig{Retention: time.Hour}); err != nil {
		t.Fatal(err)
	}
	// The gateway reads and writes as the gateway identity.
	gwnc := node.ConnectAs(t, natsauth.Gateway)
	gst, err := store.OpenJetStream(ctx, gwnc, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(gwnc)
	f := &fixture{t: t, ctx: ctx, node: node, st: st, js: js, svc: svc, access: &testkit.Buffer{}, seen: make(chan http.Header, 100)}
	f.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case f.seen <- r.Header.Clone():
		default:
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "upstream %s %s", r.Method, r.URL.Path)
	}))
	t.Cleanup(f.upstream.Close)
	discard := slog.New(slog.DiscardHandler)
	f.model = readmodel.New(discard, readmodel.VerificationOnly(), readmodel.ConfirmEvery(50*time.Millisecond))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.model.Run(runCtx, gst, nil); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	decisions := gateway.NewDecisionLog(js, 1000)
	go decisions.Run(runCtx)
	cfg := gateway.Config{Model: f.model, Node: "gw-test", Decisions: decisions, Sample: 1,
		AccessLog: f.access, Now: func() time.Time { return time.Now().Add(time.Duration(f.skew.Load())) }}
	for _, m := range mutate {
		m(&cfg)
	}
	f.gw = gateway.New(cfg)
	f.srv = serve(t, f.gw)
	return f
}

// ok fails the test on a control-plane error and returns the result's
// sequence.
func (f *fixture) ok(res control.Result, err error) uint64 {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
	return res.Seq
}

func (f *fixture) tenant(id string) {
	_, res, err := f.svc.CreateTenant(f.ctx, root, id, id)
	f.ok(res, err)
}

func (f *fixture) user(tenant, id string) {
	_, res, err := f.svc.CreateUser(f.ctx, root, tenant, id, "")
	f.ok(res, err)
}

func (f *fixture) api(tenant, id, prefix string, scopes []string, rl *events.RateLimit, upstreams ...string) {
	if len(upstreams) == 0 {
		upstreams = []string{f.upstream.URL}
	}
	_, res, err := f.svc.CreateAPI(f.ctx, root, tenant, control.APISpec{ID: id, Name: id, PathPrefix: prefix, Upstreams: upstreams, Scopes: scopes, RateLimit: rl})
	f.ok(res, err)
}

func (f *fixture) key(tenant string, spec control.KeySpec) (string, string) {
	k, sec, res, err := f.svc.IssueKey(f.ctx, root, tenant, spec)
	f.ok(res, err)
	return k.ID, sec.Reveal()
}

// sync waits until the gateway's model has applied everything written.
func (f *fixture) sync() uint64 {
	f.t.Helper()
	last, err := f.st.LastSeq(f.ctx, "")
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.model.WaitFor(f.ctx, last, 10*time.Second); err != nil {
		f.t.Fatal(err)
	}
	return last
}

type answer struct {
	close   bool // the gateway closed the connection after it
	status  int
	header  http.Header
	body    string
	problem gateway.Problem
}

func (f *fixture) do(method, path string, hdr map[string]string) answer {
	f.t.Helper()
	h := http.Header{}
	for k, v := range hdr {
		h.Set(k, v)
	}
	return f.send(method, path, h)
}

// doHeaders is do with headers set exactly as given: several values, names
// in any spelling.
func (f *fixture) doHeaders(path string, hdr http.Header) answer {
	f.t.Helper()
	return f.send("GET", path, hdr)
}

func (f *fixture) send(method, path string, hdr http.Header) answer {
	f.t.Helper()
	req, _ := http.NewRequestWithContext(f.ctx, method, f.srv.URL+path, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b), close: resp.Close}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		if err := json.Unmarshal(b, &a.problem); err != nil {
			f.t.Fatalf("problem body %q: %v", b, err)
		}
	}
	return a
}

func bearer(secret string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + secret}
}

// TestEveryOutcomeOnTheWire: each outcome code of the brief, through the
// gateway, with its status, problem body and headers; VALID reaches the
// upstream with the identity headers and without the secret.
func TestEveryOutcomeOnTheWire(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme")
	f.tenant("beta")
	f.tenant("gamma")
	for _, u := range []string{"bob", "eve", "dan", "ann"} {
		f.user("acme", u)
	}
	f.user("beta", "bo")
	f.user("gamma", "gil")
	f.api("acme", "orders", "/orders", []string{"orders:read"}, nil)
	f.api("gamma", "gam", "/gamma", nil, nil)
	read := []string{"orders:read"}
	validID, valid := f.key("acme", control.KeySpec{User: "bob", Scopes: read})
	revokedID, revoked := f.key("acme", control.KeySpec{User: "bob", Scopes: read})
	_, expiring := f.key("acme", control.KeySpec{User: "bob", Scopes: read, TTL: time.Hour})
	_, ofDeleted := f.key("acme", control.KeySpec{User: "eve", Scopes: read})
	_, ofDisabled := f.key("acme", control.KeySpec{User: "dan", Scopes: read})
	suspendedID, suspended := f.key("acme", control.KeySpec{User: "ann", Scopes: read})
	later := time.Now().Add(time.Hour)
	_, notYet := f.key("acme", control.KeySpec{User: "ann", Scopes: read, NotBefore: &later})
	_, otherTenant := f.key("beta", control.KeySpec{User: "bo", Scopes: read})
	_, noScope := f.key("acme", control.KeySpec{User: "bob"})
	_, suspendedTenant := f.key("gamma", control.KeySpec{User: "gil"})
	_, limited := f.key("acme", control.KeySpec{User: "bob", Scopes: read, RateLimit: &events.RateLimit{PerSecond: 0.001, Burst: 1}})
	f.ok(control.Result{}, func() error { _, _, err := f.svc.RevokeKey(f.ctx, root, "acme", revokedID, nil); return err }())
	f.ok(control.Result{}, func() error { _, _, err := f.svc.DeleteUser(f.ctx, root, "acme", "eve"); return err }())
	f.ok(control.Result{}, func() error { _, _, err := f.svc.DisableUser(f.ctx, root, "acme", "dan"); return err }())
	f.ok(control.Result{}, func() error { _, _, err := f.svc.SuspendKey(f.ctx, root, "acme", suspendedID, nil); return err }())
	f.ok(control.Result{}, func() error { _, _, err := f.svc.SuspendTenant(f.ctx, root, "gamma"); return err }())
	// A key whose user has no events: only a writer outside the control
	// plane can produce one.
	ghost := mustSecret(t)
	if _, err := f.st.Append(f.ctx, store.Head{}, storetest.Event("acme", events.KeyAggregate("ghost", "key_01JDQ8Z6W4M2N9V3X5C7B1GHST"),
		events.KeyIssuedV1{SecretHash: ghost.Hash(), Hint: "h", Scopes: read}, "ghost")); err != nil {
		t.Fatal(err)
	}
	f.sync()

	cases := []struct {
		name   string
		hdr    map[string]string
		path   string
		want   projections.Code
		status int
		skew   time.Duration
	}{
		{"missing", nil, "/orders/1", projections.CodeMissing, 401, 0},
		{"malformed", bearer("kt_nope"), "/orders/1", projections.CodeMalformed, 401, 0},
		{"two different keys", map[string]string{"Authorization": "Bearer " + valid, "X-API-Key": revoked}, "/orders/1", projections.CodeMalformed, 401, 0},
		{"not found", bearer(mustSecret(t).Reveal()), "/orders/1", projections.CodeNotFound, 401, 0},
		{"revoked", bearer(revoked), "/orders/1", projections.CodeRevoked, 403, 0},
		{"expired", bearer(expiring), "/orders/1", projections.CodeExpired, 403, 2 * time.Hour},
		{"user deleted", bearer(ofDeleted), "/orders/1", projections.CodeUserDeleted, 403, 0},
		{"user unknown", bearer(ghost.Reveal()), "/orders/1", projections.CodeUserUnknown, 403, 0},
		{"tenant suspended", bearer(suspendedTenant), "/gamma/x", projections.CodeTenantSuspended, 403, 0},
		{"user disabled", bearer(ofDisabled), "/orders/1", projections.CodeUserDisabled, 403, 0},
		{"suspended", bearer(suspended), "/orders/1", projections.CodeSuspended, 403, 0},
		{"not yet valid", bearer(notYet), "/orders/1", projections.CodeNotYetValid, 403, 0},
		{"tenant mismatch", bearer(otherTenant), "/orders/1", projections.CodeTenantMismatch, 403, 0},
		{"insufficient scope", bearer(noScope), "/orders/1", projections.CodeInsufficientScope, 403, 0},
		{"valid, X-API-Key", map[string]string{"X-API-Key": valid}, "/orders/1", projections.CodeValid, 200, 0},
		{"valid, bearer", bearer(valid), "/orders", projections.CodeValid, 200, 0},
		{"rate limit: first", bearer(limited), "/orders/1", projections.CodeValid, 200, 0},
		{"rate limited", bearer(limited), "/orders/1", projections.CodeRateLimited, 429, 0},
	}
	for _, c := range cases {
		f.skew.Store(int64(c.skew))
		a := f.do("GET", c.path, c.hdr)
		if a.status != c.status {
			t.Errorf("%s: status %d, want %d (%s)", c.name, a.status, c.status, a.body)
			continue
		}
		if a.header.Get(gateway.HeaderRequestID) == "" {
			t.Errorf("%s: no request id", c.name)
		}
		if c.want == projections.CodeValid {
			if !strings.HasPrefix(a.body, "upstream GET "+c.path) {
				t.Errorf("%s: body %q", c.name, a.body)
			}
			continue
		}
		if a.problem.Code != string(c.want) || a.problem.RequestID != a.header.Get(gateway.HeaderRequestID) || a.problem.Status != c.status {
			t.Errorf("%s: problem %+v, want %s", c.name, a.problem, c.want)
		}
		if strings.Contains(a.body, "kt_") && c.want != projections.CodeMalformed {
			t.Errorf("%s: a secret in the body: %s", c.name, a.body)
		}
		if c.want == projections.CodeRateLimited && a.header.Get("Retry-After") == "" {
			t.Errorf("rate limited without Retry-After")
		}
	}
	f.skew.Store(0)

	// What the upstream saw of the valid requests: identity, never the key,
	// never a header the client tried to pass off as the gateway's.
	drain(f.seen)
	a := f.do("GET", "/orders/1", map[string]string{"Authorization": "Bearer " + valid, "Keytrail-User": "mallory", "Keytrail-Admin": "yes"})
	if a.status != 200 {
		t.Fatal(a.status, a.body)
	}
	h := <-f.seen
	if h.Get("Authorization") != "" || h.Get("X-API-Key") != "" || h.Get("Keytrail-Admin") != "" {
		t.Fatalf("the upstream saw the key or a spoofed header: %v", h)
	}
	if h.Get(gateway.HeaderKeyID) != validID || h.Get(gateway.HeaderTenant) != "acme" || h.Get(gateway.HeaderUser) != "bob" ||
		h.Get(gateway.HeaderScopes) != "orders:read" || h.Get(gateway.HeaderRequestID) != a.header.Get(gateway.HeaderRequestID) {
		t.Fatalf("identity headers: %v", h)
	}
	if strings.Contains(f.access.String(), valid) || strings.Contains(f.access.String(), revoked) {
		t.Fatal("a secret reached the access log")
	}

	// The decision log holds every denial, with its evidence; no secret.
	decisions := readDecisions(t, f, 18)
	var denials int
	for _, d := range decisions {
		if d.Code != "VALID" {
			denials++
		}
		if d.Code == "REVOKED" && (d.KeyID != revokedID || len(d.Evidence) == 0 || d.Node != "gw-test" || d.Seq == 0) {
			t.Fatalf("revoked decision: %+v", d)
		}
	}
	if denials != 15 {
		t.Fatalf("%d denials logged, want 15", denials)
	}
}

// readDecisions reads the decision log until it holds at least n entries.
func readDecisions(t *testing.T, f *fixture, n int) []events.DecisionRecord {
	t.Helper()
	var out []events.DecisionRecord
	testkit.Eventually(t, 10*time.Second, func() error {
		out = out[:0]
		ajs, _ := jetstream.New(f.node.ConnectAs(f.t, natsauth.Auditor))
		cons, err := ajs.OrderedConsumer(f.ctx, events.DecisionStream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			return err
		}
		info, err := cons.Info(f.ctx)
		if err != nil {
			return err
		}
		for range info.NumPending {
			m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
			if err != nil {
				return err
			}
			if bytes.Contains(m.Data(), []byte("kt_")) {
				t.Fatalf("a secret in the decision log: %s", m.Data())
			}
			var d events.DecisionRecord
			if err := json.Unmarshal(m.Data(), &d); err != nil {
				return err
			}
			out = append(out, d)
		}
		if len(out) < n {
			return fmt.Errorf("%d decisions logged, want %d", len(out), n)
		}
		return nil
	})
	return out
}

func mustSecret(t *testing.T) secret.Secret {
	s, err := secret.Generate(secret.DefaultPrefix, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func drain(c chan http.Header) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// TestRoutingAndLifecycle: unknown paths, non-canonical paths, deprecated
// and retired APIs, Keytrail-Min-Seq, and the gateway's own endpoints.
func TestRoutingAndLifecycle(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", nil, nil)
	f.api("acme", "old", "/old", nil, nil)
	_, sec := f.key("acme", control.KeySpec{User: "bob"})
	sunset := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	_, _, err := f.svc.DeprecateAPI(f.ctx, root, "acme", "orders", sunset)
	f.ok(control.Result{}, err)
	_, res, err := f.svc.RetireAPI(f.ctx, root, "acme", "old")
	seq := f.ok(res, err)

	// Keytrail-Min-Seq: the gateway waits for the sequence rather than
	// answer from an older view.
	a := f.do("GET", "/orders/1", map[string]string{"Authorization": "Bearer " + sec, gateway.HeaderMinSeq: fmt.Sprint(seq)})
	if a.status != 200 || a.header.Get("Deprecation") == "" || a.header.Get("Sunset") != sunset.UTC().Format(http.TimeFormat) {
		t.Fatalf("deprecated API: %d %v", a.status, a.header)
	}
	for path, want := range map[string]int{"/old/x": 410, "/nothing": 404, "/orders/../admin": 400, "/orders//x": 400} {
		if a := f.do("GET", path, bearer(sec)); a.status != want || a.problem.RequestID == "" {
			t.Errorf("%s: %d %+v, want %d", path, a.status, a.problem, want)
		}
	}
	if a := f.do("GET", "/orders/1", map[string]string{gateway.HeaderMinSeq: "x"}); a.status != 400 {
		t.Errorf("bad Min-Seq: %d", a.status)
	}
	if a := f.do("GET", "/_keytrail/healthz", nil); a.status != 200 {
		t.Errorf("healthz %d", a.status)
	}
	if a := f.do("GET", "/_keytrail/readyz", nil); a.status != 200 || !strings.Contains(a.body, `"applied_seq"`) {
		t.Errorf("readyz %d %s", a.status, a.body)
	}
	m := answer{body: f.metricsText()}
	for _, name := range []string{"keytrail_gateway_requests_total", "keytrail_gateway_verify_seconds", "keytrail_gateway_applied_seq",
		"keytrail_gateway_lag", "keytrail_gateway_staleness_seconds", "keytrail_gateway_propagation_seconds",
		"keytrail_gateway_decisions_dropped_total", "keytrail_gateway_peers"} {
		if !strings.Contains(m.body, name) {
			t.Errorf("metric %s missing", name)
		}
	}
	if strings.Contains(m.body, sec) {
		t.Fatal("a secret in the metrics")
	}
}

// TestStaleFailsClosed: a model that never caught up answers STALE (and
// readyz 503); with fail-open opted in a stale but ready model is used and
// counted.
func TestStaleFailsClosed(t *testing.T) {
	m := readmodel.New(slog.New(slog.DiscardHandler))
	g := gateway.New(gateway.Config{Model: m})
	srv := serve(t, g)
	for _, path := range []string{"/orders", "/_keytrail/readyz"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}

	// Ready, then a bound the model cannot meet: stale.
	for _, failOpen := range []bool{false, true} {
		f := newFixture(t, func(c *gateway.Config) { c.MaxStaleness = time.Minute; c.FailOpen = failOpen })
		f.tenant("acme")
		f.user("acme", "bob")
		f.api("acme", "orders", "/orders", nil, nil)
		_, sec := f.key("acme", control.KeySpec{User: "bob"})
		f.sync()
		if a := f.do("GET", "/orders", bearer(sec)); a.status != 200 {
			t.Fatalf("fresh: %d", a.status)
		}
		g := gateway.New(gateway.Config{Model: f.model, MaxStaleness: time.Nanosecond, FailOpen: failOpen})
		srv := serve(t, g)
		resp, err := http.Get(srv.URL + "/orders")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := 401 // verified (no key presented) despite staleness
		if !failOpen {
			want = 503
		}
		if resp.StatusCode != want {
			t.Fatalf("fail-open %v: %d, want %d", failOpen, resp.StatusCode, want)
		}
	}
}

// TestUpstreams: round-robin with a dead upstream ejected and idempotent
// requests retried on the live one; a non-idempotent request is never
// retried; a slow upstream times out; a streamed response reaches the client
// as it is written.
func TestUpstreams(t *testing.T) {
	f := newFixture(t, func(c *gateway.Config) { c.UpstreamTimeout = 300 * time.Millisecond })
	dead := deadURL(t)
	release := make(chan struct{})
	stream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "second\n")
	}))
	defer stream.Close()
	defer close(release)
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "mixed", "/mixed", nil, nil, dead, f.upstream.URL)
	f.api("acme", "gone", "/gone", nil, nil, dead)
	f.api("acme", "stream", "/", nil, nil, stream.URL)
	_, sec := f.key("acme", control.KeySpec{User: "bob"})
	f.sync()

	for i := range 6 {
		if a := f.do("GET", "/mixed/x", bearer(sec)); a.status != 200 {
			t.Fatalf("GET %d through a dead and a live upstream: %d %s", i, a.status, a.body)
		}
	}
	if a := f.do("POST", "/gone/x", bearer(sec)); a.status != 502 || a.problem.Code != "UPSTREAM_UNAVAILABLE" {
		t.Fatalf("POST to a dead upstream: %d %+v", a.status, a.problem)
	}
	if a := f.do("GET", "/slow", bearer(sec)); a.status != 504 {
		t.Fatalf("slow upstream: %d", a.status)
	}
	m := f.metricsText()
	if !strings.Contains(m, `keytrail_gateway_upstream_ejections_total{api="mixed",tenant="acme"}`) || !strings.Contains(m, `keytrail_gateway_upstream_errors_total{api="gone",tenant="acme"} 1`) {
		t.Fatalf("ejection and error metrics:\n%s", grep(m, "upstream_"))
	}

	// Streaming: the first line arrives before the upstream has finished.
	req, _ := http.NewRequestWithContext(f.ctx, "GET", f.srv.URL+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+sec)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("streamed: %q %v", line, err)
	}
}

// deadURL is a loopback address nothing listens on.
func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRateLimitsAreShared: two gateways that see each other enforce half of
// a key's burst each; once one is gone the other enforces all of it. A
// request denied for another reason consumes nothing.
func TestRateLimitsAreShared(t *testing.T) {
	f := newFixture(t)
	nc := f.node.ConnectAs(t, natsauth.Gateway)
	presence := func(node string) (*gateway.Presence, context.CancelFunc) {
		p := gateway.NewPresence(nc, node, nil, 20*time.Millisecond, nil)
		ctx, cancel := context.WithCancel(f.ctx)
		go p.Run(ctx)
		return p, cancel
	}
	pa, stopA := presence("a")
	defer stopA()
	pb, stopB := presence("b")
	limits := gateway.NewLimits(pa)
	g := gateway.New(gateway.Config{Model: f.model, Limits: limits})
	srv := serve(t, g)
	testkit.Eventually(t, 5*time.Second, func() error {
		if n, m := pa.Live(), pb.Live(); n != 2 || m != 2 {
			return fmt.Errorf("peers %d, %d", n, m)
		}
		return nil
	})
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", []string{"orders:read"}, nil)
	rl := &events.RateLimit{PerSecond: 0.0001, Burst: 4}
	_, sec := f.key("acme", control.KeySpec{User: "bob", Scopes: []string{"orders:read"}, RateLimit: rl})
	_, noScope := f.key("acme", control.KeySpec{User: "bob", RateLimit: rl})
	f.sync()
	get := func(secret string) int {
		req, _ := http.NewRequest("GET", srv.URL+"/orders", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Denied for its scope: no token taken, however often.
	for range 5 {
		if s := get(noScope); s != 403 {
			t.Fatalf("no scope: %d", s)
		}
	}
	var statuses []int
	for range 3 {
		statuses = append(statuses, get(sec))
	}
	if fmt.Sprint(statuses) != "[200 200 429]" {
		t.Fatalf("half of a burst of 4 on one of two gateways: %v", statuses)
	}
	// b leaves: a's share grows to the whole limit (the bucket refills to
	// the larger burst only as the rate allows, so a new key shows it).
	stopB()
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := pa.Live(); n != 1 {
			return fmt.Errorf("peers %d", n)
		}
		return nil
	})
	_, alone := f.key("acme", control.KeySpec{User: "bob", Scopes: []string{"orders:read"}, RateLimit: rl})
	f.sync()
	statuses = statuses[:0]
	for range 5 {
		statuses = append(statuses, get(alone))
	}
	if fmt.Sprint(statuses) != "[200 200 200 200 429]" {
		t.Fatalf("a whole burst of 4 on the only gateway: %v", statuses)
	}
}

// TestDecisionLogNeverBlocks: with its writer stopped and its queue full, a
// decision is dropped and counted at once.
func TestDecisionLogNeverBlocks(t *testing.T) {
	f := newFixture(t)
	log := gateway.NewDecisionLog(f.js, 2)
	done := make(chan struct{})
	go func() {
		for range 1000 {
			log.Offer(&events.DecisionRecord{Code: "MISSING"})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Offer blocked")
	}
	if log.Dropped() != 998 {
		t.Fatalf("dropped %d, want 998", log.Dropped())
	}
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	go log.Run(ctx)
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := log.Written(); n != 2 {
			return fmt.Errorf("written %d", n)
		}
		return nil
	})
}

// TestDecisionsQueuedAtShutdownAreWritten: decisions offered just before
// the log stops are written, not lost uncounted; with NATS gone the log
// stops within DrainTimeout all the same, and in both cases every decision
// offered is written or counted dropped.
func TestDecisionsQueuedAtShutdownAreWritten(t *testing.T) {
	for _, natsUp := range []bool{true, false} {
		f := newFixture(t)
		log := gateway.NewDecisionLog(f.js, 1000)
		for range 500 {
			log.Offer(&events.DecisionRecord{Tenant: "acme", Code: "MISSING"})
		}
		if !natsUp {
			f.node.Shutdown()
		}
		ctx, cancel := context.WithCancel(f.ctx)
		cancel() // stopped before it wrote anything
		start := time.Now()
		log.Run(ctx)
		if took := time.Since(start); took > gateway.DrainTimeout+2*time.Second {
			t.Fatalf("nats up %v: stopping took %s", natsUp, took)
		}
		log.Offer(&events.DecisionRecord{Tenant: "acme", Code: "MISSING"}) // after the stop: dropped
		written, dropped, offered := log.Written(), log.Dropped(), log.Offered()
		if written+dropped != offered || offered != 501 || (natsUp && written != 500) || (!natsUp && written != 0) {
			t.Fatalf("nats up %v: written %d + dropped %d, offered %d", natsUp, written, dropped, offered)
		}
	}
}

// TestRequestIDsAreUnpredictable: every request id is 96 random bits (24
// hex characters) with nothing shared between consecutive ones, so nobody
// can plant a decision under the id of a request still to come.
func TestRequestIDsAreUnpredictable(t *testing.T) {
	f := newFixture(t)
	seen := map[string]bool{}
	var prev []byte
	for range 500 {
		id := f.do("GET", "/nowhere", nil).header.Get(gateway.HeaderRequestID)
		b, err := hex.DecodeString(id)
		if err != nil || len(b) != 12 || seen[id] {
			t.Fatalf("request id %q: %v (seen before: %v)", id, err, seen[id])
		}
		seen[id] = true
		if prev != nil && bytes.Equal(prev[:4], b[:4]) {
			t.Fatalf("consecutive request ids share a prefix: %x, %x", prev, b)
		}
		prev = b
	}
}

// TestPathsThatCouldReachAnotherAPIAreRefused: with a loose /orders API and
// a strict /orders/admin one, paths an upstream could read as /orders/admin
// (case, ';', a trailing dot, NUL, encoded separators) answer 400 and never
// fall through to /orders.
func TestPathsThatCouldReachAnotherAPIAreRefused(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", nil, nil)
	f.api("acme", "admin", "/orders/admin", []string{"orders:admin"}, nil)
	_, sec := f.key("acme", control.KeySpec{User: "bob"})
	f.sync()
	if a := f.do("GET", "/orders/1", bearer(sec)); a.status != 200 {
		t.Fatalf("/orders/1: %d %s", a.status, a.body)
	}
	if a := f.do("GET", "/orders/admin", bearer(sec)); a.status != 403 || a.problem.Code != "INSUFFICIENT_SCOPE" {
		t.Fatalf("/orders/admin: %d %s", a.status, a.body)
	}
	for len(f.seen) > 0 {
		<-f.seen
	}
	for _, path := range []string{"/orders/Admin", "/ORDERS/ADMIN/users", "/orders/admin;x", "/orders/admin.", "/orders/admin%00",
		"/orders/admin%2Fx", "/orders%2Fadmin", "/orders/admin%5Cx", "/orders/x/../admin", "/orders//admin", "//",
		"/orders/%C5%BFecrets", "/orders/adm%C4%B1n", "/orders/admin%20/x", "/orders/admin%C2%A0"} {
		if a := f.do("GET", path, bearer(sec)); a.status != http.StatusBadRequest || a.problem.Code != "BAD_PATH" {
			t.Errorf("%s: %d %s", path, a.status, a.body)
		}
	}
	// A '#' an HTTP client would never send: routed by what comes before
	// the '/' after it, read by nginx as the end of the path. Refused by
	// the gateway's server, and by the handler behind net/http (TLS).
	raw := "GET /orders/admin#/users HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + sec + "\r\nConnection: close\r\n\r\n"
	if got := f.rawExchange(raw); !strings.HasPrefix(got, "HTTP/1.1 400 ") {
		t.Errorf("a fragment in the target: %.120q", got)
	}
	req := httptest.NewRequest("GET", "/orders/admin#/users", nil)
	req.Header.Set("Authorization", "Bearer "+sec)
	w := httptest.NewRecorder()
	f.gw.ServeHTTP(w, req)
	if w.Code != http.StatusBadRequest {
		t.Errorf("a fragment through net/http: %d %s", w.Code, w.Body)
	}
	if n := len(f.seen); n > 0 {
		t.Fatalf("%d refused paths reached the upstream", n)
	}
}

// rawExchange writes raw to the gateway and returns what it answers until
// it closes the connection (10 s at most).
func (f *fixture) rawExchange(raw string) string {
	c := f.dial()
	io.WriteString(c, raw)
	b, _ := io.ReadAll(c)
	return string(b)
}

// dial opens a connection to the gateway, for requests an HTTP client would
// not send; it has 10 s to live and is closed when the test ends.
func (f *fixture) dial() net.Conn {
	f.t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// TestCredentialHeadersNeverReachTheUpstream: a header that an upstream
// could read as a Keytrail-* identity header or a credential, however it is
// spelt (Keytrail_Scopes reaches a WSGI upstream merged into
// Keytrail-Scopes), is removed; two Authorization headers are refused.
func TestCredentialHeadersNeverReachTheUpstream(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", nil, nil)
	_, sec := f.key("acme", control.KeySpec{User: "bob", Scopes: []string{"orders:read"}})
	f.sync()
	for len(f.seen) > 0 {
		<-f.seen
	}
	a := f.doHeaders("/orders/1", http.Header{
		"Authorization":       {"Bearer " + sec},
		"Keytrail_Scopes":     {"orders:admin"},
		"keytrail_user":       {"root"},
		"KEYTRAIL-TENANT":     {"other"},
		"X_Api_Key":           {"kt_smuggled"},
		"Proxy-Authorization": {"Basic bWFsbG9yeTp4"},
		"Proxy_Authorization": {"Basic bWFsbG9yeTp4"},
		"X_Forwarded_For":     {"10.6.6.6"},
		"X-Real-IP":           {"10.6.6.6"},
		"X-Original-URL":      {"/admin"},
		"x-rewrite-url":       {"/admin"},
		"X-Forwarded-Prefix":  {"/admin"},
	})
	if a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	h := <-f.seen
	for _, name := range []string{"X_Forwarded_For", "X-Real-Ip", "X-Original-Url", "X-Rewrite-Url", "X-Forwarded-Prefix"} {
		if v, ok := h[name]; ok {
			t.Errorf("the client's %s reached the upstream: %v", name, v)
		}
	}
	if xff := h.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", xff)
	}
	for name := range h {
		switch n := strings.ToLower(strings.ReplaceAll(name, "_", "-")); {
		case n == "authorization", n == "proxy-authorization", n == "x-api-key":
			t.Errorf("%s reached the upstream", name)
		case strings.HasPrefix(n, "keytrail-") && name != gateway.HeaderKeyID && name != gateway.HeaderTenant &&
			name != gateway.HeaderUser && name != gateway.HeaderScopes && name != gateway.HeaderRequestID:
			t.Errorf("%s reached the upstream", name)
		}
	}
	if h.Get(gateway.HeaderScopes) != "orders:read" || h.Get(gateway.HeaderTenant) != "acme" || len(h.Values(gateway.HeaderScopes)) != 1 {
		t.Fatalf("identity headers: %v", h)
	}
	two := f.doHeaders("/orders/1", http.Header{"Authorization": {"Bearer " + sec, "Basic bWFsbG9yeTp4"}})
	if two.status != 401 || two.problem.Code != "MALFORMED" {
		t.Fatalf("two Authorization headers: %d %s", two.status, two.body)
	}
}

// TestRetryAfterIsAlwaysAPositiveInteger: a tiny rate used to give
// Retry-After: -9223372036.
func TestRetryAfterIsAlwaysAPositiveInteger(t *testing.T) {
	for wait, want := range map[time.Duration]string{0: "1", time.Millisecond: "1", 1500 * time.Millisecond: "2",
		-time.Second: "1", 1 << 62: "86400", 48 * time.Hour: "86400"} {
		if got := gateway.RetryAfter(wait); got != want {
			t.Errorf("RetryAfter(%v) = %s, want %s", wait, got, want)
		}
	}
	f := newFixture(t)
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", nil, nil)
	_, sec := f.key("acme", control.KeySpec{User: "bob", RateLimit: &events.RateLimit{PerSecond: 1e-12, Burst: 1}})
	f.sync()
	f.do("GET", "/orders/1", bearer(sec))
	a := f.do("GET", "/orders/1", bearer(sec))
	if ra := a.header.Get("Retry-After"); a.status != 429 || ra != "86400" {
		t.Fatalf("a tiny rate: %d, Retry-After %q", a.status, ra)
	}
}

// metricsText is what the gateway's operator listener serves.
func (f *fixture) metricsText() string {
	rec := httptest.NewRecorder()
	f.gw.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// TestMetricsAreNotOnThePublicPort: every tenant's APIs and denial counts
// are for operators (MetricsHandler on --metrics-listen), not for whoever
// reaches the gateway; healthz and readyz stay public.
func TestMetricsAreNotOnThePublicPort(t *testing.T) {
	f := newFixture(t)
	f.sync()
	if a := f.do("GET", "/_keytrail/metrics", nil); a.status != http.StatusNotFound {
		t.Fatalf("/_keytrail/metrics on the public port: %d", a.status)
	}
	for _, p := range []string{"/_keytrail/healthz", "/_keytrail/readyz"} {
		testkit.Eventually(t, 10*time.Second, func() error {
			if a := f.do("GET", p, nil); a.status != 200 {
				return fmt.Errorf("%s: %d", p, a.status)
			}
			return nil
		})
	}
	if !strings.Contains(f.metricsText(), "keytrail_gateway_applied_seq") {
		t.Fatal("no metrics on the operator handler")
	}
}

// TestDenialsSayWhatToDoAndReadNoBody: MISSING says where the key goes; a
// refused request with a body has its connection closed rather than its
// body drained.
func TestDenialsSayWhatToDoAndReadNoBody(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme")
	f.api("acme", "orders", "/orders", nil, nil)
	f.sync()
	a := f.do("GET", "/orders/1?api_key=kt_x", nil)
	if a.problem.Code != "MISSING" || !strings.Contains(a.problem.Detail, "Authorization: Bearer") || !strings.Contains(a.problem.Detail, "query string is never read") {
		t.Fatalf("MISSING: %s", a.body)
	}
	req, _ := http.NewRequestWithContext(f.ctx, "POST", f.srv.URL+"/orders/1", strings.NewReader(strings.Repeat("x", 1<<20)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !resp.Close {
		t.Fatalf("a refused request with a body: %d, connection close %v", resp.StatusCode, resp.Close)
	}
}

// TestUpstreamsAreDialledOnlyAtAllowedAddresses: the gateway checks the
// address it actually dials: an API whose upstream is a loopback address,
// or a name that resolves to one, is never reached unless allowed.
func TestUpstreamsAreDialledOnlyAtAllowedAddresses(t *testing.T) {
	f := newFixture(t, func(c *gateway.Config) { c.Egress = &egress.Policy{} })
	f.tenant("acme")
	f.user("acme", "bob")
	port := f.upstream.URL[strings.LastIndexByte(f.upstream.URL, ':'):]
	f.api("acme", "literal", "/literal", nil, nil, f.upstream.URL)
	f.api("acme", "named", "/named", nil, nil, "http://localhost"+port)
	_, sec := f.key("acme", control.KeySpec{User: "bob"})
	f.sync()
	for _, p := range []string{"/literal/x", "/named/x"} {
		if a := f.do("GET", p, bearer(sec)); a.status != http.StatusBadGateway || a.problem.Code != "UPSTREAM_FORBIDDEN" {
			t.Errorf("%s: %d %s", p, a.status, a.body)
		}
	}
	if n := len(f.seen); n > 0 {
		t.Fatalf("the upstream was reached %d times", n)
	}
	allowed := newFixture(t, func(c *gateway.Config) { c.Egress = &egress.Policy{Allow: egress.Loopback()} })
	allowed.tenant("acme")
	allowed.user("acme", "bob")
	allowed.api("acme", "literal", "/literal", nil, nil)
	_, sec = allowed.key("acme", control.KeySpec{User: "bob"})
	allowed.sync()
	if a := allowed.do("GET", "/literal/x", bearer(sec)); a.status != 200 {
		t.Fatalf("an allowed loopback upstream: %d %s", a.status, a.body)
	}
}

// TestASlowBodyWithoutAKeyHoldsNothing: a client that announces a large
// body and sends it slowly, without a key, gets its 401 at once and its
// connection closed: nothing waits for the body (2 000 such connections
// used to be held 31 s and more).
func TestASlowBodyWithoutAKeyHoldsNothing(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme")
	f.api("acme", "orders", "/orders", nil, nil)
	f.sync()
	for path, want := range map[string]int{"/orders/1": 401, "/_keytrail/healthz": 200, "/_keytrail/metrics": 404, "/nope": 404} {
		if status := testkit.SlowBody(t, strings.TrimPrefix(f.srv.URL, "http://"), path); status != want {
			t.Errorf("POST %s with a slow body: %d, want %d", path, status, want)
		}
	}
}

// TestAFloodOfUnknownKeysSpendsOnlyItsOwnBudget: one client address sending
// unknown keys is answered 429 TOO_MANY_FAILURES at once after its budget,
// before any verification; another client's valid requests pass; behind a
// trusted proxy the client is the X-Forwarded-For address, and without one
// a spoofed X-Forwarded-For changes nothing.
func TestAFloodOfUnknownKeysSpendsOnlyItsOwnBudget(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		var proxies []netip.Prefix
		if trusted {
			proxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		}
		f := newFixture(t, func(c *gateway.Config) { c.Failures = gateway.NewFailureBudget(0.001, 5, proxies) })
		f.tenant("acme")
		f.user("acme", "bob")
		f.api("acme", "orders", "/orders", nil, nil)
		_, sec := f.key("acme", control.KeySpec{User: "bob"})
		f.sync()
		codes := map[string]int{}
		for range 20 {
			a := f.do("GET", "/orders/1", map[string]string{"Authorization": "Bearer " + mustSecret(t).Reveal(), "X-Forwarded-For": "10.0.0.1"})
			codes[a.problem.Code]++
			if a.problem.Code == "TOO_MANY_FAILURES" && (a.status != 429 || a.header.Get("Retry-After") == "") {
				t.Fatalf("a spent budget: %d, Retry-After %q", a.status, a.header.Get("Retry-After"))
			}
		}
		if codes["NOT_FOUND"] != 5 || codes["TOO_MANY_FAILURES"] != 15 {
			t.Fatalf("trusted %v: the flood got %v", trusted, codes)
		}
		legit := f.do("GET", "/orders/1", map[string]string{"Authorization": "Bearer " + sec, "X-Forwarded-For": "10.0.0.2"})
		if trusted && legit.status != 200 {
			t.Fatalf("another client behind the proxy: %d %s", legit.status, legit.body)
		}
		if !trusted && legit.problem.Code != "TOO_MANY_FAILURES" {
			t.Fatalf("a spoofed X-Forwarded-For from an untrusted address escaped the budget: %d %s", legit.status, legit.body)
		}
	}
}

// TestASpentAddressIsTarpitted: past its budget an address's 429 is held
// (here 300 ms; a failure comes back only after 1 000 s), so that a flood
// on one connection slows to a few requests a second; past the bound of
// held answers the 429 comes at once and closes the connection. Another
// client is not held.
func TestASpentAddressIsTarpitted(t *testing.T) {
	const delay = 300 * time.Millisecond
	budget := gateway.NewFailureBudget(0.001, 1, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}).Tarpit(delay, 1)
	f := newFixture(t, func(c *gateway.Config) { c.Failures = budget })
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", nil, nil)
	_, sec := f.key("acme", control.KeySpec{User: "bob"})
	f.sync()
	flood := map[string]string{"Authorization": "Bearer " + mustSecret(t).Reveal(), "X-Forwarded-For": "10.0.0.1"}
	if a := f.do("GET", "/orders/1", flood); a.problem.Code != "NOT_FOUND" {
		t.Fatalf("the first failure: %s", a.body)
	}
	start := time.Now()
	if a := f.do("GET", "/orders/1", flood); a.problem.Code != "TOO_MANY_FAILURES" || time.Since(start) < delay || a.close {
		t.Fatalf("held: %s after %s, closed %v", a.problem.Code, time.Since(start), a.close)
	}
	// One answer held (the bound is 1): the next spent request is answered
	// at once and its connection closed; a valid client is never held.
	held := make(chan answer, 1)
	go func() { held <- f.do("GET", "/orders/1", flood) }()
	testkit.Eventually(t, 5*time.Second, func() error {
		if budget.Held() == 0 {
			return errors.New("the first spent request is not held yet")
		}
		return nil
	})
	start = time.Now()
	a := f.do("GET", "/orders/1", flood)
	if a.problem.Code != "TOO_MANY_FAILURES" || !a.close || time.Since(start) >= delay {
		t.Fatalf("past the bound: %s, closed %v, after %s", a.problem.Code, a.close, time.Since(start))
	}
	<-held
	start = time.Now()
	if a := f.do("GET", "/orders/1", map[string]string{"Authorization": "Bearer " + sec, "X-Forwarded-For": "10.0.0.2"}); a.status != 200 || time.Since(start) >= delay {
		t.Fatalf("another client: %d after %s", a.status, time.Since(start))
	}
}

// TestAFloodOfDenialsIsLoggedInAggregate: past the threshold, denials of one
// code from one address within a second get no access-log line and no
// decision record each, but one aggregate line with their count.
func TestAFloodOfDenialsIsLoggedInAggregate(t *testing.T) {
	f, denials, agg, at := denialFixture(t)
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", nil, nil)
	_, sec := f.key("acme", control.KeySpec{User: "bob"})
	f.sync()
	const n = 30
	for range n {
		if a := f.do("GET", "/orders/1", map[string]string{"Authorization": "Bearer " + mustSecret(t).Reveal()}); a.problem.Code != "NOT_FOUND" {
			t.Fatalf("an unknown key: %d %s", a.status, a.body)
		}
	}
	// One allowed request after the flood: its decision record (sampled
	// at 1) is written after theirs.
	if a := f.do("GET", "/orders/1", map[string]string{"Authorization": "Bearer " + sec}); a.status != 200 {
		t.Fatalf("the valid key: %d %s", a.status, a.body)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		s, err := f.st.JetStream().Stream(f.ctx, events.DecisionStream)
		if err != nil {
			return err
		}
		if got := s.CachedInfo().State.Msgs; got < 4 {
			return fmt.Errorf("%d decision records", got)
		}
		return nil
	})
	s, _ := f.st.JetStream().Stream(f.ctx, events.DecisionStream)
	if got := s.CachedInfo().State.Msgs; got != 4 {
		t.Fatalf("%d decision records; want 3 denials logged one by one and the allowed request", got)
	}
	if got := strings.Count(f.access.String(), `"code":"NOT_FOUND"`); got != 3 {
		t.Fatalf("%d access-log lines for the flood; want 3", got)
	}
	if agg.String() != "" {
		t.Fatalf("aggregated before the second was over: %s", agg)
	}
	denials.Flush(at.Add(time.Second))
	line := agg.String()
	for _, want := range []string{`"msg":"denials aggregated"`, `"client":"127.0.0.1"`, `"code":"NOT_FOUND"`, `"count":30`, `"aggregated":27`} {
		if !strings.Contains(line, want) {
			t.Fatalf("aggregate line %s lacks %s", line, want)
		}
	}
	if strings.Contains(line, sec) {
		t.Fatal("a secret in the aggregate line")
	}
}

// TestDenialAggregationIsPerClient: with the failure budget off, behind a
// trusted proxy, each forwarded client has its own threshold (one client's
// flood does not mute another's first denial), an IPv6 client is its /64
// (spraying addresses within it does not escape aggregation), and a full
// table logs denials one by one rather than muting them.
func TestDenialAggregationIsPerClient(t *testing.T) {
	f, denials, agg, at := denialFixture(t, func(c *gateway.Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", nil, nil)
	f.sync()
	deny := func(client string) {
		t.Helper()
		if a := f.do("GET", "/orders/1", map[string]string{"Authorization": "Bearer " + mustSecret(t).Reveal(), "X-Forwarded-For": client}); a.problem.Code != "NOT_FOUND" {
			t.Fatalf("an unknown key: %d %s", a.status, a.body)
		}
	}
	for i := range 20 {
		deny(fmt.Sprintf("2001:db8::%x", i+1)) // twenty addresses of one /64
	}
	deny("203.0.113.7") // another client: its first denial is logged
	if got := strings.Count(f.access.String(), `"code":"NOT_FOUND"`); got != 4 {
		t.Fatalf("%d access-log lines; want 3 for the /64 and 1 for the other client", got)
	}
	denials.Flush(at.Add(time.Second))
	if !strings.Contains(agg.String(), `"client":"2001:db8::"`) || !strings.Contains(agg.String(), `"count":20`) {
		t.Fatalf("the /64's flood is not aggregated: %s", agg)
	}
	// A full table: a new client's denials are logged one by one.
	full := gateway.NewDenialLog(1, slog.New(slog.DiscardHandler))
	for i := range 100_000 {
		full.Note(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), "NOT_FOUND", "", at)
	}
	victim := netip.MustParseAddr("198.51.100.1")
	for i := range 3 {
		if !full.Note(victim, "NOT_FOUND", "", at) {
			t.Fatalf("denial %d of a client arriving at a full table was muted", i+1)
		}
	}
}

// denialFixture is a fixture whose gateway aggregates denials past 3 per
// client, code and second (to agg), on a clock stopped at at.
func denialFixture(t *testing.T, mutate ...func(*gateway.Config)) (f *fixture, denials *gateway.DenialLog, agg *testkit.Buffer, at time.Time) {
	t.Helper()
	at = time.Now()
	agg = &testkit.Buffer{}
	denials = gateway.NewDenialLog(3, slog.New(slog.NewJSONHandler(agg, nil)))
	f = newFixture(t, append([]func(*gateway.Config){func(c *gateway.Config) {
		c.Now = func() time.Time { return at }
		c.Denials = denials
	}}, mutate...)...)
	return f, denials, agg, at
}

// served is a gateway served as in production: by its h1 server on a
// loopback listener.
type served struct{ URL string }

func serve(t testing.TB, g *gateway.Gateway) *served {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := g.Server()
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return &served{URL: "http://" + ln.Addr().String()}
}

// TestTheProxyKeepsHTTPSemantics, through the gateway's own HTTP/1.1 path:
// hop-by-hop headers (and those a Connection header names) stop at the
// gateway both ways; a chunked request body reaches the upstream whole; a
// large answer keeps its Content-Length; HEAD keeps the length a GET would
// have; X-Forwarded-For from an untrusted client is replaced by its
// address.
func TestTheProxyKeepsHTTPSemantics(t *testing.T) {
	f := newFixture(t)
	got := make(chan *http.Request, 1)
	bodies := make(chan string, 1)
	big := strings.Repeat("b", 100<<10)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- string(b)
		w.Header().Set("Connection", "X-Up-Hop")
		w.Header().Set("X-Up-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		io.WriteString(w, big)
	}))
	defer up.Close()
	_, sec := f.bobOn("orders", "/orders", up.URL)

	c := f.dial()
	fmt.Fprintf(c, "POST /orders/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\nConnection: X-Client-Hop\r\nX-Client-Hop: 1\r\n"+
		"Te: trailers\r\nX-Forwarded-For: 10.9.9.9\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", sec)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	r := <-got
	if body := <-bodies; body != "hello world" {
		t.Fatalf("the chunked body reached the upstream as %q", body)
	}
	for _, name := range []string{"X-Client-Hop", "Te", "Connection"} {
		if r.Header.Get(name) != "" {
			t.Errorf("%s reached the upstream: %v", name, r.Header)
		}
	}
	if xff := r.Header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q", xff)
	}
	if resp.StatusCode != 200 || string(b) != big || resp.ContentLength != int64(len(big)) {
		t.Fatalf("%d, %d bytes, Content-Length %d", resp.StatusCode, len(b), resp.ContentLength)
	}
	for _, name := range []string{"X-Up-Hop", "Keep-Alive"} {
		if resp.Header.Get(name) != "" {
			t.Errorf("%s reached the client", name)
		}
	}
	// The connection is still good for the next request: a HEAD.
	fmt.Fprintf(c, "HEAD /orders/1 HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\n\r\n", sec)
	resp, err = http.ReadResponse(br, &http.Request{Method: "HEAD"})
	if err != nil {
		t.Fatal(err)
	}
	<-got
	<-bodies
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(big)) {
		t.Fatalf("HEAD: %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
}

// TestAClientLeavingAQuietStreamFreesTheUpstream: a client that closes its
// connection while a quiet upstream streams to it ends the gateway's wait
// and the upstream connection; they used to be held until the upstream
// spoke again.
func TestAClientLeavingAQuietStreamFreesTheUpstream(t *testing.T) {
	f := newFixture(t)
	freed := make(chan bool, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			freed <- true
		case <-time.After(10 * time.Second):
			freed <- false
		}
	}))
	defer up.Close()
	_, sec := f.bobOn("events", "/events", up.URL)
	c := f.dial()
	fmt.Fprintf(c, "GET /events HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\n\r\n", sec)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	if line != "first\n" {
		t.Fatalf("%q", line)
	}
	c.Close()
	if !<-freed {
		t.Fatal("the upstream connection was held after the client left")
	}
}

// TestTheSameHandlerBehindNetHTTP: a TLS listener is net/http's (for
// HTTP/2), serving the same handler; what the h1 tests check holds there
// too: proxying with the identity and without the credential, a denial's
// problem, a refused body closing the connection, a stream flushed as it
// comes, HEAD keeping the upstream's length.
func TestTheSameHandlerBehindNetHTTP(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	defer close(release)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/s/stream" {
			io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("X-Saw-Key-Id", r.Header.Get(gateway.HeaderKeyID))
		w.Header().Set("X-Saw-Authorization", r.Header.Get("Authorization"))
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	}))
	defer up.Close()
	kid, sec := f.bobOn("s", "/s", up.URL)
	srv := httptest.NewUnstartedServer(f.gw)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()
	get := func(method, path string, body io.Reader, auth bool) *http.Response {
		req, _ := http.NewRequestWithContext(f.ctx, method, srv.URL+path, body)
		if auth {
			req.Header.Set("Authorization", "Bearer "+sec)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get("GET", "/s/1", nil, true)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "hello" || resp.Header.Get("X-Saw-Key-Id") != kid || resp.Header.Get("X-Saw-Authorization") != "" || resp.ProtoMajor != 2 {
		t.Fatalf("proxied over HTTP/%d: %d %q %v", resp.ProtoMajor, resp.StatusCode, b, resp.Header)
	}
	resp = get("HEAD", "/s/1", nil, true)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 5 {
		t.Fatalf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	resp = get("POST", "/s/1", strings.NewReader(strings.Repeat("x", 1<<20)), false)
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var p gateway.Problem
	if resp.StatusCode != 401 || json.Unmarshal(b, &p) != nil || p.Code != "MISSING" {
		t.Fatalf("a denial with a body: %d %s", resp.StatusCode, b)
	}
	resp = get("GET", "/s/stream", nil, true)
	defer resp.Body.Close()
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); line != "first\n" || err != nil {
		t.Fatalf("streamed: %q %v", line, err)
	}
}

// bobOn sets up tenant acme, its user bob, an API id at prefix in front of
// upstream, and a key of bob's, and waits for the gateway to have them; it
// returns the key's id and secret.
func (f *fixture) bobOn(id, prefix, upstream string) (string, string) {
	f.t.Helper()
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", id, prefix, nil, nil, upstream)
	kid, sec := f.key("acme", control.KeySpec{User: "bob"})
	f.sync()
	return kid, sec
}

// TestAccessLogLinesStayUnderAPipesWrite: whatever path and method a client
// sends (here 16 KiB of characters that JSON escapes six-fold, and a 2 KiB
// method), its access-log line stays under 4 KiB — what a pipe takes in one
// piece, so that gateway workers sharing one stderr never interleave inside
// a line — and shows the start of both.
func TestAccessLogLinesStayUnderAPipesWrite(t *testing.T) {
	f := newFixture(t)
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", nil, nil)
	f.sync()
	method := strings.Repeat("M", 2048)
	for _, path := range []string{"/orders/" + strings.Repeat("\x01", 16<<10), "/orders/" + strings.Repeat("a", 16<<10)} {
		req := httptest.NewRequest(method, "/", nil)
		req.URL.Path = path
		f.gw.ServeHTTP(httptest.NewRecorder(), req)
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if n := strings.Count(f.access.String(), "\n"); n < 2 {
			return fmt.Errorf("%d access-log lines", n)
		}
		return nil
	})
	for _, line := range strings.Split(strings.TrimSpace(f.access.String()), "\n") {
		if len(line) >= 4096 {
			t.Errorf("an access-log line of %d bytes", len(line))
		}
		var e struct{ Method, Path string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%v: %.200s", err, line)
		}
		if !strings.HasPrefix(method, e.Method) || len(e.Method) == 0 || !strings.HasPrefix(e.Path, "/orders/") {
			t.Errorf("method %.40q, path %.40q", e.Method, e.Path)
		}
	}
}

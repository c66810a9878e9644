package integration

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/adminhttp"
	"github.com/keytrail/keytrail/services/app"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/gateway"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
	"github.com/keytrail/keytrail/services/readmodel"
	"github.com/keytrail/keytrail/services/trust"
)

// benchEnv is a deployment for the gateway benchmarks: NATS in a child
// process, the control plane in this one, tenant acme with user bob, API
// /bench in front of a loopback upstream answering 200 with a small body.
//
// The history is signed as production signs it (docs/signing.md): the
// control plane's store signs with a signer of events the root added,
// gateways pin the root and sign checkpoints of their decisions.
type benchEnv struct {
	ctx      context.Context
	srv      serverProcess
	st       *store.JetStream
	svc      *control.Service
	upstream *httptest.Server
	root     ed25519.PublicKey
	gwKey    ed25519.PrivateKey
}

func newBenchEnv(b *testing.B) *benchEnv {
	e := &benchEnv{ctx: testCtx(b, 20*time.Minute), srv: startServerProcess(b)}
	_, rootKey, _ := ed25519.GenerateKey(rand.Reader)
	_, gwKey, _ := ed25519.GenerateKey(rand.Reader)
	_, signerKey, _ := ed25519.GenerateKey(rand.Reader)
	e.root, e.gwKey = rootKey.Public().(ed25519.PublicKey), gwKey
	e.st = openStore(b, e.srv.Connect(b, natsauth.Control), store.Config{Signer: signerKey})
	for _, s := range []struct {
		key  ed25519.PrivateKey
		role string
	}{{signerKey, events.SignerRoleEvents}, {gwKey, events.SignerRoleDecisions}} {
		if _, err := trust.AddSigner(e.ctx, e.st, rootKey, s.key.Public().(ed25519.PublicKey), "bench", s.role); err != nil {
			b.Fatal(err)
		}
	}
	if err := gateway.EnsureDecisionStream(e.ctx, e.st.JetStream(), gateway.DecisionStreamConfig{Retention: time.Hour}); err != nil {
		b.Fatal(err)
	}
	var err error
	if e.svc, err = control.New(control.Config{Store: e.st}); err != nil {
		b.Fatal(err)
	}
	e.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"order":1,"status":"shipped"}`)
	}))
	b.Cleanup(e.upstream.Close)
	m := control.Meta{Actor: "bench"}
	if _, _, err := e.svc.CreateTenant(e.ctx, m, "acme", "A"); err != nil {
		b.Fatal(err)
	}
	if _, _, err := e.svc.CreateUser(e.ctx, m, "acme", "bob", ""); err != nil {
		b.Fatal(err)
	}
	if _, _, err := e.svc.CreateAPI(e.ctx, m, "acme", control.APISpec{ID: "bench", PathPrefix: "/bench", Upstreams: []string{e.upstream.URL}}); err != nil {
		b.Fatal(err)
	}
	return e
}

func (e *benchEnv) key(b *testing.B) (id, sec string) {
	k, s, _, err := e.svc.IssueKey(e.ctx, control.Meta{Actor: "bench"}, "acme", control.KeySpec{User: "bob"})
	if err != nil {
		b.Fatal(err)
	}
	return k.ID, s.Reveal()
}

// gateway starts an in-process gateway (its own NATS connection, read
// model, decision log) as `keytrail gateway` would, access log included,
// and waits until it has applied the log.
func (e *benchEnv) gateway(b *testing.B) string {
	url, _ := e.gatewayWithModel(b)
	return url
}

func (e *benchEnv) gatewayWithModel(b *testing.B) (string, *readmodel.Model) {
	return e.gatewayWith(b, nil)
}

// gatewayWith is gatewayWithModel with a failure budget.
func (e *benchEnv) gatewayWith(b *testing.B, failures *gateway.FailureBudget) (string, *readmodel.Model) {
	g, model := e.gatewayHandler(b, failures)
	return servePlain(b, g), model
}

// servePlain serves g as production does on a plaintext listener: with its
// own HTTP/1.1 server, on a loopback port; it returns the base URL.
func servePlain(b *testing.B, g *gateway.Gateway) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := g.Server()
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	b.Cleanup(func() { srv.Close(); <-done })
	return "http://" + ln.Addr().String()
}

// gatewayHandler is a gateway caught up with the log, not yet listening.
func (e *benchEnv) gatewayHandler(b *testing.B, failures *gateway.FailureBudget) (*gateway.Gateway, *readmodel.Model) {
	st := openStore(b, e.srv.Connect(b, natsauth.Gateway), store.Config{})
	model := readmodel.New(slog.New(slog.DiscardHandler), readmodel.VerificationOnly(), readmodel.Trust(e.root),
		readmodel.CatchUpBy(func(ctx context.Context, after uint64) ([][]byte, error) {
			return store.ReadCheckpointsAfter(ctx, st.JetStream(), after)
		}))
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { model.Run(ctx, st, nil); close(done) }()
	b.Cleanup(func() { cancel(); <-done })
	decisions := gateway.NewDecisionLog(st.JetStream(), 8192).SignWith(e.gwKey, "bench")
	go decisions.Run(ctx)
	// The access log as production writes it: JSON lines to a file,
	// through the log's batch.
	f, err := os.Create(filepath.Join(b.TempDir(), "access.log"))
	if err != nil {
		b.Fatal(err)
	}
	access := app.NewLogBatch(f)
	b.Cleanup(func() { access.Close(); f.Close() })
	g := gateway.New(gateway.Config{Model: model, Node: "bench", Decisions: decisions, Sample: 0.01, Failures: failures,
		AccessLog: access, Usage: gateway.NewUsageCounter()})
	last, _ := e.st.LastSeq(e.ctx, "")
	if err := model.WaitFor(e.ctx, last, 30*time.Second); err != nil {
		b.Fatal(err)
	}
	return g, model
}

// loadResult is what a bounded load run measured.
type loadResult struct {
	requests int
	elapsed  time.Duration
	latency  []time.Duration
	failures int
}

func (r loadResult) perSecond() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func (r loadResult) quantile(q float64) time.Duration {
	if len(r.latency) == 0 {
		return 0
	}
	slices.Sort(r.latency)
	return r.latency[min(len(r.latency)-1, int(q*float64(len(r.latency))))]
}

// generate sends GETs to target from conc workers for dur (and at most
// maxRequests in all), each request with the given key.
func generate(ctx context.Context, client *http.Client, target, key string, conc int, dur time.Duration, maxRequests int) loadResult {
	return generateWith(ctx, client, target, conc, dur, maxRequests, func(req *http.Request) {
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
	})
}

// generateWith is generate with each request prepared by prep.
func generateWith(ctx context.Context, client *http.Client, target string, conc int, dur time.Duration, maxRequests int, prep func(*http.Request)) loadResult {
	var mu sync.Mutex
	var res loadResult
	var wg sync.WaitGroup
	deadline := time.Now().Add(dur)
	budget := make(chan struct{}, maxRequests)
	for range maxRequests {
		budget <- struct{}{}
	}
	close(budget)
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			failures := 0
			for range budget {
				if time.Now().After(deadline) || ctx.Err() != nil {
					break
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", target, nil)
				prep(req)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					failures++
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures++
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.latency = append(res.latency, lat...)
			res.requests += len(lat)
			res.failures += failures
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// loadTarget is where interleave sends load: a URL, the client to reach it
// and the key to present ("" for none).
type loadTarget struct {
	client *http.Client
	url    string
	key    string
}

// interleave warms up x and y, then for each benchmark iteration loads
// them in four alternating one-second rounds, returning what each got.
func interleave(b *testing.B, ctx context.Context, conc int, x, y loadTarget) (xAll, yAll loadResult) {
	const round, rounds = time.Second, 4
	for _, t := range []loadTarget{x, y} {
		generate(ctx, t.client, t.url, t.key, conc, 300*time.Millisecond, 100_000)
	}
	add := func(all *loadResult, r loadResult) {
		all.requests, all.elapsed, all.latency = all.requests+r.requests, all.elapsed+r.elapsed, append(all.latency, r.latency...)
	}
	for b.Loop() {
		for range rounds {
			rx := generate(ctx, x.client, x.url, x.key, conc, round, 1_000_000)
			ry := generate(ctx, y.client, y.url, y.key, conc, round, 1_000_000)
			if rx.failures+ry.failures > 0 {
				b.Fatalf("failures: %s %d, %s %d", x.url, rx.failures, y.url, ry.failures)
			}
			add(&xAll, rx)
			add(&yAll, ry)
		}
	}
	return xAll, yAll
}

func loadClient(conc int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConns: 4 * conc, MaxIdleConnsPerHost: 2 * conc, IdleConnTimeout: time.Minute}}
}

// BenchmarkGatewayThroughput: requests per second and p99 through the
// gateway against a bare httputil.ReverseProxy to the same upstream, same
// concurrency, rounds alternating in one run (goal: ratio ≥ 0.90, p99
// within 1 ms). KEYTRAIL_LOAD_CONC sets the concurrency (default 32).
func BenchmarkGatewayThroughput(b *testing.B) {
	conc := 32
	if v, err := strconv.Atoi(os.Getenv("KEYTRAIL_LOAD_CONC")); err == nil && v > 0 {
		conc = v
	}
	e := newBenchEnv(b)
	_, sec := e.key(b)
	gw := e.gateway(b)
	target, _ := url.Parse(e.upstream.URL)
	bare := httputil.NewSingleHostReverseProxy(target)
	bare.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
	bare.BufferPool = copyBuffers{} // the gateway's size of copy buffer, pooled as it pools them
	bareSrv := httptest.NewServer(bare)
	b.Cleanup(bareSrv.Close)
	client := loadClient(conc)
	bareAll, gwAll := interleave(b, e.ctx, conc, loadTarget{client, bareSrv.URL + "/bench/1", ""}, loadTarget{client, gw + "/bench/1", sec})
	b.ReportMetric(bareAll.perSecond(), "bare-req/s")
	b.ReportMetric(gwAll.perSecond(), "gateway-req/s")
	b.ReportMetric(gwAll.perSecond()/bareAll.perSecond(), "ratio")
	b.ReportMetric(float64(bareAll.quantile(0.5).Microseconds())/1000, "bare-p50-ms")
	b.ReportMetric(float64(gwAll.quantile(0.5).Microseconds())/1000, "gateway-p50-ms")
	bp99, gp99 := bareAll.quantile(0.99), gwAll.quantile(0.99)
	b.ReportMetric(float64(bp99.Microseconds())/1000, "bare-p99-ms")
	b.ReportMetric(float64(gp99.Microseconds())/1000, "gateway-p99-ms")
	b.ReportMetric(float64((gp99-bp99).Microseconds())/1000, "p99-diff-ms")
}

// BenchmarkGatewayThroughputTLS: the same gateway over plaintext HTTP/1.1
// and over TLS 1.3 (HTTP/1.1, keep-alive, so the handshake is paid once
// per connection), rounds alternating: the price of terminating TLS.
func BenchmarkGatewayThroughputTLS(b *testing.B) {
	conc := 32
	if v, err := strconv.Atoi(os.Getenv("KEYTRAIL_LOAD_CONC")); err == nil && v > 0 {
		conc = v
	}
	e := newBenchEnv(b)
	_, sec := e.key(b)
	g, _ := e.gatewayHandler(b, nil)
	plain := servePlain(b, g)
	tlsSrv := httptest.NewUnstartedServer(g)
	tlsSrv.StartTLS()
	b.Cleanup(tlsSrv.Close)
	tlsClient := loadClient(conc)
	tlsClient.Transport.(*http.Transport).TLSClientConfig = tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig
	plainAll, tlsAll := interleave(b, e.ctx, conc, loadTarget{loadClient(conc), plain + "/bench/1", sec}, loadTarget{tlsClient, tlsSrv.URL + "/bench/1", sec})
	b.ReportMetric(plainAll.perSecond(), "plain-req/s")
	b.ReportMetric(tlsAll.perSecond(), "tls-req/s")
	b.ReportMetric(tlsAll.perSecond()/plainAll.perSecond(), "ratio")
	b.ReportMetric(float64(plainAll.quantile(0.99).Microseconds())/1000, "plain-p99-ms")
	b.ReportMetric(float64(tlsAll.quantile(0.99).Microseconds())/1000, "tls-p99-ms")
}

// BenchmarkRevocationPropagation: from the admin API's acknowledgement of a
// revocation to every one of three gateways denying the key, p50 and p99,
// idle and while the gateways carry load (goal p99 ≤ 5 ms). Two clocks:
// "applied" stops when every gateway's read model has applied the
// revocation (from then on every request it verifies is denied); "denied"
// stops when a request sent in a loop to each gateway comes back 403, so it
// also holds that request's own latency, which under load is queueing
// behind the load's requests.
// KEYTRAIL_PROPAGATION_SAMPLES sets the samples per phase (default 100).
func BenchmarkRevocationPropagation(b *testing.B) {
	samples := 100
	if v, err := strconv.Atoi(os.Getenv("KEYTRAIL_PROPAGATION_SAMPLES")); err == nil && v > 0 {
		samples = v
	}
	e := newBenchEnv(b)
	root, err := secret.Generate(secret.DefaultPrefix, rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	adminModel := readmodel.New(slog.New(slog.DiscardHandler), readmodel.Trust(e.root))
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	go adminModel.Run(ctx, e.st, nil)
	admin := httptest.NewServer(adminhttp.New(adminhttp.Config{Control: e.svc, Model: adminModel, RootKeyHash: root.Hash(),
		Log: slog.New(slog.DiscardHandler)}))
	b.Cleanup(admin.Close)
	var gateways []string
	var models []*readmodel.Model
	for range 3 {
		u, m := e.gatewayWithModel(b)
		gateways, models = append(gateways, u), append(models, m)
	}
	_, loadKey := e.key(b)
	client := loadClient(16)

	// A change is a key that verifies on every gateway and the admin
	// request that denies it: a revocation, or (policy-) an update of the
	// policy the key takes its APIs from.
	type change struct {
		prefix string
		issue  func(i int) (id, sec string)
		deny   func(i int, id string) *http.Request
	}
	revoke := change{"", func(int) (string, string) { return e.key(b) }, func(_ int, id string) *http.Request {
		req, _ := http.NewRequest("POST", admin.URL+"/v1/tenants/acme/keys/"+id+"/revoke", nil)
		return req
	}}
	policyN := 0
	policy := change{"policy-", func(i int) (string, string) {
		policyN++
		pid := fmt.Sprintf("bench-%d", policyN)
		if _, _, err := e.svc.CreatePolicy(e.ctx, control.Meta{Actor: "bench"}, "acme", control.PolicySpec{ID: pid, APIs: []string{"bench"}}); err != nil {
			b.Fatal(err)
		}
		k, s, _, err := e.svc.IssueKey(e.ctx, control.Meta{Actor: "bench"}, "acme", control.KeySpec{User: "bob", Policies: []string{pid}})
		if err != nil {
			b.Fatal(err)
		}
		return k.ID, s.Reveal()
	}, func(int, string) *http.Request {
		req, _ := http.NewRequest("PATCH", admin.URL+fmt.Sprintf("/v1/tenants/acme/policies/bench-%d", policyN),
			strings.NewReader(`{"apis":["elsewhere"]}`))
		req.Header.Set("Content-Type", "application/json")
		return req
	}}

	measure := func(phase string, c change) {
		var delays, applied []time.Duration
		for i := range samples {
			id, sec := c.issue(i)
			for _, gw := range gateways { // every gateway lets it through first
				testkit.Eventually(b, 5*time.Second, func() error {
					if s, code := through(gw, "/bench/1", sec); s != 200 {
						return fmt.Errorf("%d %s", s, code)
					}
					return nil
				})
			}
			req := c.deny(i, id)
			req.Header.Set("Authorization", "Bearer "+root.Reveal())
			resp, err := client.Do(req)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("%s: %v %v", req.URL.Path, err, resp)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ack := time.Now()
			seq, _ := strconv.ParseUint(resp.Header.Get("Keytrail-Seq"), 10, 64)
			var wg sync.WaitGroup
			var mu sync.Mutex
			var worst, worstApplied time.Duration
			for _, m := range models {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := m.WaitFor(e.ctx, seq, 5*time.Second); err != nil {
						b.Errorf("a gateway never applied the revocation: %v", err)
					}
					mu.Lock()
					worstApplied = max(worstApplied, time.Since(ack))
					mu.Unlock()
				}()
			}
			for _, gw := range gateways {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// A probe every 250 µs: often enough to see the denial
					// within a fraction of the target, seldom enough not to
					// starve the gateways it measures of the two cores.
					tick := time.NewTicker(250 * time.Microsecond)
					defer tick.Stop()
					for time.Since(ack) < 5*time.Second {
						if s, _ := through(gw, "/bench/1", sec); s == 403 {
							mu.Lock()
							worst = max(worst, time.Since(ack))
							mu.Unlock()
							return
						}
						<-tick.C
					}
					b.Errorf("%s never denied the key", gw)
				}()
			}
			wg.Wait()
			delays, applied = append(delays, worst), append(applied, worstApplied)
		}
		for name, d := range map[string][]time.Duration{"denied": delays, "applied": applied} {
			r := loadResult{latency: d}
			b.ReportMetric(float64(r.quantile(0.50).Microseconds())/1000, c.prefix+phase+"-"+name+"-p50-ms")
			b.ReportMetric(float64(r.quantile(0.99).Microseconds())/1000, c.prefix+phase+"-"+name+"-p99-ms")
		}
	}
	for b.Loop() {
		measure("idle", revoke)
		measure("idle", policy)
		loadCtx, stopLoad := context.WithCancel(e.ctx)
		var wg sync.WaitGroup
		for _, gw := range gateways {
			wg.Add(1)
			go func() {
				defer wg.Done()
				generate(loadCtx, client, gw+"/bench/1", loadKey, 4, 10*time.Minute, 10_000_000)
			}()
		}
		measure("load", revoke)
		measure("load", policy)
		stopLoad()
		wg.Wait()
	}
}

// BenchmarkGatewayMemory: resident memory of a `keytrail gateway` process
// holding 10 000 keys while it carries load (goal < 64 MB).
func BenchmarkGatewayMemory(b *testing.B) {
	e := newBenchEnv(b)
	secrets := issueMemoryKeys(b, e)
	p, gw := startKeytrail(b, "gateway ", "gateway", "--allow-upstream", "127.0.0.0/8", "--nats", e.srv.URL, "--nats-nkey", filepath.Join(e.srv.Seeds, natsauth.Gateway.SeedFile()), "--gateway-listen", "127.0.0.1:0")
	for b.Loop() {
		loadForMemory(b, e, gw, secrets)
	}
	rss, hwm := procMemory(b, p.cmd.Process.Pid)
	b.ReportMetric(rss/(1<<20), "rss-MB")
	b.ReportMetric(hwm/(1<<20), "peak-rss-MB")
}

// BenchmarkGatewayMemoryTwoProcesses: the same keys and load through two
// `keytrail gateway` processes of one processor each sharing a port
// (GOMAXPROCS=1, --reuse-port: docs/operations.md), as the machine pays for
// them: what each holds alone, plus once what they share (the binary's code
// above all), beside the sum of their resident sets (which counts shared
// pages twice).
func BenchmarkGatewayMemoryTwoProcesses(b *testing.B) {
	e := newBenchEnv(b)
	secrets := issueMemoryKeys(b, e)
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(b, 1)[0])
	var procs []*process
	var gw string
	for range 2 {
		p, u := startKeytrailEnv(b, []string{"GOMAXPROCS=1"}, "gateway ", "gateway", "--allow-upstream", "127.0.0.0/8", "--nats", e.srv.URL,
			"--nats-nkey", filepath.Join(e.srv.Seeds, natsauth.Gateway.SeedFile()), "--gateway-listen", addr, "--reuse-port", "--metrics-listen", "127.0.0.1:0")
		procs, gw = append(procs, p), u
	}
	for b.Loop() {
		loadForMemory(b, e, gw, secrets)
	}
	var rss, private, shared float64
	for _, p := range procs {
		r, _ := procMemory(b, p.cmd.Process.Pid)
		own, common := procSharing(b, p.cmd.Process.Pid)
		rss, private, shared = rss+r, private+own, max(shared, common)
	}
	b.ReportMetric((private+shared)/(1<<20), "together-MB")
	b.ReportMetric(rss/(1<<20), "rss-sum-MB")
}

// issueMemoryKeys issues the memory benchmarks' 10 000 keys and returns
// every hundredth secret.
func issueMemoryKeys(b *testing.B, e *benchEnv) []string {
	m := control.Meta{Actor: "bench"}
	var secrets []string
	for i := range 10_000 {
		rl := &events.RateLimit{PerSecond: 1000, Burst: 1000}
		k, s, _, err := e.svc.IssueKey(e.ctx, m, "acme", control.KeySpec{User: "bob", Name: fmt.Sprintf("key %d", i), Scopes: []string{"orders:read"}, RateLimit: rl})
		if err != nil {
			b.Fatal(err)
		}
		_ = k
		if i%100 == 0 {
			secrets = append(secrets, s.Reveal())
		}
	}
	return secrets
}

// loadForMemory waits for gw to be ready (every process behind it: each
// readyz is a new connection, which the kernel may give either), then
// loads it from 32 clients with 100 different keys for 3 s.
func loadForMemory(b *testing.B, e *benchEnv, gw string, secrets []string) {
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	testkit.Eventually(b, 60*time.Second, func() error {
		for range 8 {
			resp, err := fresh.Get(gw + "/_keytrail/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("readyz %d", resp.StatusCode)
			}
		}
		return nil
	})
	client := loadClient(32)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			generate(e.ctx, client, gw+"/bench/1", secrets[i%len(secrets)], 1, 3*time.Second, 1_000_000)
		}()
	}
	wg.Wait()
}

// procSharing reads what of a process's resident set is its alone and what
// it shares with other processes, from /proc.
func procSharing(b *testing.B, pid int) (private, shared float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Skip("no /proc:", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "Private_Clean:", "Private_Dirty:":
			private += kb * 1024
		case "Shared_Clean:", "Shared_Dirty:":
			shared += kb * 1024
		}
	}
	return private, shared
}

// procMemory reads a process's resident set and its peak from /proc.
func procMemory(b *testing.B, pid int) (rss, hwm float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skip("no /proc:", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseFloat(f[1], 64)
			if f[0] == "VmRSS:" {
				rss = kb * 1024
			} else {
				hwm = kb * 1024
			}
		}
	}
	return rss, hwm
}

// BenchmarkFloodFromOneAddress: legitimate traffic (one client behind a
// trusted proxy, a valid key) alone, and while another client floods the
// same gateway with random well-formed keys, rounds alternating in one run;
// with the failure budget on (10/s, burst 100) and, for comparison, off.
// The ratio is legitimate req/s under the flood over without it (goal ≥ 0.7).
func BenchmarkFloodFromOneAddress(b *testing.B) {
	e := newBenchEnv(b)
	_, sec := e.key(b)
	proxy := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	guarded, _ := e.gatewayWith(b, gateway.NewFailureBudget(10, 100, proxy).Tarpit(time.Second, 4096)) // the defaults of keytrail gateway
	gateways := map[string]string{"budget": guarded, "nobudget": e.gateway(b)}
	legit := func(req *http.Request) {
		req.Header.Set("Authorization", "Bearer "+sec)
		req.Header.Set("X-Forwarded-For", "10.0.0.1")
	}
	flood := func(req *http.Request) {
		s, _ := secret.Generate(secret.DefaultPrefix, rand.Reader)
		req.Header.Set("Authorization", "Bearer "+s.Reveal())
		req.Header.Set("X-Forwarded-For", "10.0.0.9")
	}
	client, floodClient := loadClient(8), loadClient(16)
	const round = time.Second
	alone, flooded := map[string]*loadResult{}, map[string]*loadResult{}
	for name, gw := range gateways {
		generateWith(e.ctx, client, gw+"/bench/1", 8, 200*time.Millisecond, 100_000, legit)
		alone[name], flooded[name] = &loadResult{}, &loadResult{}
	}
	add := func(to *loadResult, r loadResult) {
		to.requests, to.elapsed = to.requests+r.requests, to.elapsed+r.elapsed
	}
	for b.Loop() {
		for range 2 {
			for name, gw := range gateways {
				add(alone[name], generateWith(e.ctx, client, gw+"/bench/1", 8, round, 1_000_000, legit))
				ctx, stop := context.WithCancel(e.ctx)
				done := make(chan struct{})
				go func() { generateWith(ctx, floodClient, gw+"/bench/1", 16, 2*round, 10_000_000, flood); close(done) }()
				add(flooded[name], generateWith(e.ctx, client, gw+"/bench/1", 8, round, 1_000_000, legit))
				stop()
				<-done
			}
		}
	}
	for name := range gateways {
		b.ReportMetric(alone[name].perSecond(), name+"-alone-req/s")
		b.ReportMetric(flooded[name].perSecond(), name+"-flooded-req/s")
		b.ReportMetric(flooded[name].perSecond()/alone[name].perSecond(), name+"-ratio")
	}
}

// copyBuffers pools 32 KiB copy buffers for the bare proxy, as the gateway
// pools its own.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBuffers) Get() []byte  { return *copyBufferPool.Get().(*[]byte) }
func (copyBuffers) Put(b []byte) { copyBufferPool.Put(&b) }

package app

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/services/egress"
	"github.com/keytrail/keytrail/services/gateway"
	"github.com/keytrail/keytrail/services/readmodel"
)

// GatewayConfig configures a gateway role.
type GatewayConfig struct {
	Listen string
	// Trust, when set, is the pinned root public key: the gateway applies
	// only signed events (docs/signing.md).
	Trust ed25519.PublicKey
	// Signer, when set, signs checkpoints of the decisions the gateway
	// writes (a trusted signer of decisions).
	Signer ed25519.PrivateKey
	// MetricsListen is the operator listener of the gateway's metrics (the
	// public port does not serve them); port 0 picks a free port.
	MetricsListen string
	// Filters are the read model's subject filters (nil: every tenant).
	Filters      []string
	MaxStaleness time.Duration
	FailOpen     bool
	// Sample is the fraction of allowed requests written to the decision
	// log.
	Sample     float64
	MinSeqWait time.Duration
	// ConfirmEvery is how often the read model confirms it is current
	// (default: a fifth of MaxStaleness, between 20 ms and 1 s, so that any
	// bound gets several confirmations and a healthy link never goes STALE).
	ConfirmEvery time.Duration
	// ConfirmWindow: a request arriving when the last confirmation is
	// older is held (up to the window) for a fresh one (gateway.Config);
	// 0: DefaultConfirmWindow. Confirmations come every half window.
	ConfirmWindow time.Duration
	// PresenceEvery is how often gateways announce themselves (default 1 s).
	PresenceEvery time.Duration
	// UsageWindow is the length of a usage counting window (default and
	// at most events.UsageWindow; it divides a minute).
	UsageWindow time.Duration
	// Egress is where upstreams may be; the gateway's own listeners are
	// added to it.
	Egress *egress.Policy
	// TLS terminates TLS on the public listener (reloaded on SIGHUP).
	TLS TLSFiles
	// ReuseMetricsPort: the metrics listener too (a worker of --workers,
	// whose supervisor holds its metrics port while it restarts).
	ReuseMetricsPort bool
	// ReusePort lets several gateway processes listen on one address
	// (SO_REUSEPORT: the kernel spreads new connections among them), as
	// nginx's workers do; docs/operations.md says when that pays.
	ReusePort bool
	// FailuresPerSecond and FailureBurst are each client address's budget
	// of failed authentications (0: no budget); TrustedProxies are the
	// proxies whose X-Forwarded-For is believed (and who have no budget).
	FailuresPerSecond float64
	FailureBurst      int
	// FailureDelay and FailureMaxHeld are the tarpit of addresses past
	// their budget (gateway.FailureBudget.Tarpit).
	FailureDelay   time.Duration
	FailureMaxHeld int
	// DenialsLoggedEach: denials of one code from one address logged one
	// by one per second; the rest are logged as one line (0: all logged).
	DenialsLoggedEach int
	TrustedProxies    []netip.Prefix
	// AccessLog receives the access log, one JSON line per request (nil:
	// none); the modes give it their log's batch when the level is info or
	// lower.
	AccessLog io.Writer
}

// gatewayRole is a running gateway: its read model, presence, decision log
// writer and HTTP server.
type gatewayRole struct {
	gw      *gateway.Gateway
	model   *readmodel.Model
	srv     roleServer
	addr    string
	cert    *certificate
	metrics *http.Server
	maddr   string
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errc    chan error
	// listening is closed once the gateway listens (with ReusePort, when
	// its read model is ready); held is its bound socket until then.
	listening chan struct{}
	held      io.Closer
}

// DefaultMaxStaleness is how long a gateway serves without confirming its
// read model is current before it answers STALE: the window in which a cut
// link could leave a revocation unseen, against the availability a brief
// NATS hiccup costs (docs/gateway.md).
const DefaultMaxStaleness = 5 * time.Second

// DefaultConfirmWindow is how old the last confirmation may be before a
// request is held for a fresh one (docs/gateway.md).
const DefaultConfirmWindow = 100 * time.Millisecond

// sweepEvery calls sweep every period until ctx ends.
func sweepEvery(ctx context.Context, period time.Duration, sweep func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sweep()
		}
	}
}

func confirmWindow(cfg GatewayConfig) time.Duration {
	if cfg.ConfirmWindow > 0 {
		return cfg.ConfirmWindow
	}
	return DefaultConfirmWindow
}

// confirmEvery is the confirmation interval of a gateway's read model.
func confirmEvery(cfg GatewayConfig) time.Duration {
	if cfg.ConfirmEvery > 0 {
		return cfg.ConfirmEvery
	}
	bound := cfg.MaxStaleness
	if bound <= 0 {
		bound = DefaultMaxStaleness
	}
	w := confirmWindow(cfg)
	return min(max(bound/5, 20*time.Millisecond), time.Second, max(w/2, 10*time.Millisecond))
}

// startGateway starts a gateway on an open event store, with the gateway
// identity's connection nc: read model (from the latest verification
// snapshot when there is a consistent one), presence for shared rate
// limits, the decision log, and the proxy on cfg.Listen. It writes nothing
// but its decisions and presence: the streams and snapshots are control's.
func startGateway(ctx context.Context, nc *nats.Conn, st *store.JetStream, cfg GatewayConfig, log *slog.Logger) (*gatewayRole, error) {
	if cfg.PresenceEvery <= 0 {
		cfg.PresenceEvery = time.Second
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	if err := gateway.CheckDecisionStream(ctx, js); err != nil {
		return nil, err
	}
	if cfg.MetricsListen == "" {
		cfg.MetricsListen = DefaultMetricsListen
	}
	cert, err := loadCertificate(cfg.TLS)
	if err != nil {
		return nil, err
	}
	// Sharing the port (--reuse-port), the gateway listens only once its
	// read model is ready: the processes beside it serve meanwhile, where
	// it would answer STALE. Alone, it listens at once (and answers STALE,
	// readyz 503, until ready).
	var ln net.Listener
	var listenLater func() (net.Listener, error)
	var held io.Closer
	addr := ""
	if cfg.ReusePort {
		addr, listenLater, held, err = listenWhenReady(cfg.Listen)
	} else if ln, err = net.Listen("tcp", cfg.Listen); err == nil {
		addr = ln.Addr().String()
	}
	if err != nil {
		return nil, fmt.Errorf("gateway listen %s: %w", cfg.Listen, err)
	}
	closeGateway := func() {
		if ln != nil {
			ln.Close()
		}
		if held != nil {
			held.Close()
		}
	}
	mlc := net.ListenConfig{}
	if cfg.ReuseMetricsPort {
		mlc.Control = reusePort
	}
	mln, err := mlc.Listen(ctx, "tcp", cfg.MetricsListen)
	if err != nil {
		closeGateway()
		return nil, fmt.Errorf("metrics listen %s: %w", cfg.MetricsListen, err)
	}
	node := nodeName()
	g := &gatewayRole{addr: addr, maddr: mln.Addr().String(), cert: cert, errc: make(chan error, 8), listening: make(chan struct{}), held: held}
	if cfg.Egress == nil {
		cfg.Egress = &egress.Policy{}
	}
	cfg.Egress.AddOwn(g.addr, g.maddr)
	opts := []readmodel.Option{readmodel.VerificationOnly(),
		readmodel.OnApplied(func(r *events.Recorded, at time.Time) { g.gw.ObserveApplied(r, at) })}
	opts = append(opts, readmodel.ConfirmEvery(confirmEvery(cfg)),
		readmodel.CatchUpBy(func(ctx context.Context, after uint64) ([][]byte, error) {
			return store.ReadCheckpointsAfter(ctx, js, after)
		}))
	if cfg.Trust != nil {
		opts = append(opts, readmodel.Trust(cfg.Trust))
	}
	g.model = readmodel.New(log.With("component", "readmodel"), opts...)
	restoreSnapshot(ctx, st, g.model, cfg.Filters, log)
	presence := gateway.NewPresence(nc, node, cfg.Filters, cfg.PresenceEvery, nil)
	limits := gateway.NewLimits(presence)
	decisions := gateway.NewDecisionLog(js, 8192)
	if cfg.Signer != nil {
		decisions.SignWith(cfg.Signer, node)
	}
	usage := gateway.NewUsageCounter()
	reporter := gateway.NewUsageReporter(js, usage, node, time.Now(), log.With("component", "usage"))
	reporter.Window = cfg.UsageWindow
	reporter.Freshness = g.model.Freshness
	failures := gateway.NewFailureBudget(cfg.FailuresPerSecond, cfg.FailureBurst, cfg.TrustedProxies)
	if failures != nil {
		failures.Tarpit(cfg.FailureDelay, cfg.FailureMaxHeld)
	}
	var denials *gateway.DenialLog
	if cfg.DenialsLoggedEach > 0 {
		denials = gateway.NewDenialLog(cfg.DenialsLoggedEach, log.With("component", "gateway"))
	}
	g.gw = gateway.New(gateway.Config{Failures: failures, Denials: denials, TrustedProxies: cfg.TrustedProxies, Model: g.model, Node: node, MaxStaleness: cfg.MaxStaleness, ConfirmWindow: confirmWindow(cfg), FailOpen: cfg.FailOpen,
		MinSeqWait: cfg.MinSeqWait, Limits: limits, Decisions: decisions, Usage: usage, Sample: cfg.Sample, Egress: cfg.Egress,
		Log: log.With("component", "gateway"), AccessLog: cfg.AccessLog, AccessComponent: "gateway"})
	// Plaintext HTTP/1.1 is the gateway's own server (the fast path); TLS,
	// with HTTP/2, is net/http's, serving the same handler. No write
	// timeout: responses may stream for as long as the upstream sends.
	if cert != nil {
		hs := g.gw.TLSServer()
		hs.ErrorLog = serverErrorLog(log)
		g.srv = hs
	} else {
		g.srv = g.gw.Server()
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.cancel = cancel
	g.run(func() error { return g.model.Run(runCtx, st, cfg.Filters) })
	g.run(func() error { return presence.Run(runCtx) })
	g.run(func() error { sweepEvery(runCtx, time.Minute, func() { limits.Sweep(time.Now()) }); return nil })
	g.run(func() error { sweepEvery(runCtx, 10*time.Second, func() { g.gw.SweepIdle(time.Now()) }); return nil })
	if denials != nil {
		g.run(func() error { sweepEvery(runCtx, time.Second, func() { denials.Flush(time.Now()) }); return nil })
	}
	if failures != nil {
		g.run(func() error { sweepEvery(runCtx, time.Minute, func() { failures.Sweep(time.Now()) }); return nil })
	}
	g.run(func() error { decisions.Run(runCtx); return nil })
	g.run(func() error { reporter.Run(runCtx); return nil })
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", g.gw.MetricsHandler())
	g.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		ErrorLog: serverErrorLog(log)}
	if cert != nil {
		reloadOnSIGHUP(runCtx, log, cert)
	}
	g.run(func() error { return serve(g.metrics, mln, nil) })
	if listenLater == nil {
		close(g.listening)
		g.run(func() error { return serve(g.srv, ln, cert) })
		return g, nil
	}
	g.run(func() error {
		if g.model.WaitReady(runCtx) != nil {
			return nil // stopped before it was ready
		}
		ln, err := listenLater()
		held.Close() // the listener has its own descriptor
		if err != nil {
			return fmt.Errorf("gateway listen %s: %w", addr, err)
		}
		close(g.listening)
		return serve(g.srv, ln, cert)
	})
	return g, nil
}

func (g *gatewayRole) run(fn func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(); err != nil {
			g.errc <- err
		}
	}()
}

// URL is the gateway's base URL.
func (g *gatewayRole) URL() string { return scheme(g.cert) + g.addr }

// MetricsURL is the operator listener's metrics URL.
func (g *gatewayRole) MetricsURL() string { return "http://" + g.maddr + "/metrics" }

// Close stops serving (letting requests in flight finish) and everything
// else.
func (g *gatewayRole) Close() {
	g.metrics.Close()
	stopRole(g.srv, g.cancel, &g.wg)
	if g.held != nil {
		g.held.Close() // closed already once it listened: no harm
	}
	g.gw.Close()
}

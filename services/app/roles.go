package app

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/services/egress"
	"github.com/keytrail/keytrail/services/gateway"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/trust"
	"github.com/keytrail/keytrail/services/webhooks"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var nf natsFlags
	var lf logFlags
	defer lf.close()
	nf.register(fs, natsauth.Control)
	adminListen := fs.String("admin-listen", DefaultAdminListen, "admin API address")
	replicas := fs.Int("replicas", 1, "replicas of the streams this node creates (3 on a cluster)")
	rootKey := fs.String("root-key", "./root.key", "file holding the root key (created, mode 0600, if missing; give every control node the same)")
	dup := fs.Duration("dup-window", store.DefaultDuplicates, "idempotency window of the event stream")
	signingKey := fs.String("signing-key", "", "this node's Ed25519 signing key: it signs every event the node appends (created, mode 0600, if missing; default: signer.key next to the root key)")
	trustKey := fs.String("trust-key", "", "the root signing key of signed history, to add this node's signer to the trusted set (held by one node once, or offline)")
	kekFile := fs.String("kek", "", "file holding the key-encryption key that seals webhook signing secrets (64 hex characters, mode 0600; give every control node the same; without it this node neither creates nor delivers webhooks)")
	webhookTimeout := fs.Duration("webhook-timeout", webhooks.DefaultTimeout, "how long one webhook delivery attempt may take")
	watermark := fs.String("watermark", "", "file keeping the last sequence this node saw the event stream hold, so that it refuses a stream rewound or made anew (default: keytrail-watermark.json next to the root key)")
	var df decisionFlags
	df.register(fs)
	var ef egressFlags
	ef.register(fs, "")
	var tlsFiles TLSFiles
	tlsFlags(fs, &tlsFiles, "admin listener")
	lf.register(fs)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if err := nf.validate(); err != nil {
		return err
	}
	if err := df.validate(); err != nil {
		return err
	}
	policy, err := ef.policy()
	if err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*adminListen); err != nil {
		return usageError{fmt.Errorf("-admin-listen %q: %w", *adminListen, err)}
	}
	if *replicas < 1 || *replicas > 5 {
		return usageError{fmt.Errorf("-replicas must be 1 to 5")}
	}
	rootHash, _, err := loadOrCreateRootKey(*rootKey)
	if err != nil {
		return err
	}
	if *watermark == "" {
		*watermark = filepath.Join(filepath.Dir(*rootKey), "keytrail-watermark.json")
	}
	if *signingKey == "" {
		*signingKey = filepath.Join(filepath.Dir(*rootKey), trust.SignerKeyFile)
	}
	signer, err := trust.LoadOrCreateKey(*signingKey)
	if err != nil {
		return err
	}
	root, err := nf.trustKey()
	if err != nil {
		return err
	}
	var rootPriv ed25519.PrivateKey
	if *trustKey != "" {
		if rootPriv, err = trust.ReadKey(*trustKey); err != nil {
			return err
		}
		root = rootPriv.Public().(ed25519.PublicKey)
	}
	log, nc, st, err := connectRole(ctx, &nf, &lf, stderr, store.Config{Replicas: *replicas, Duplicates: *dup, CreateIfMissing: true,
		WatermarkFile: *watermark, Signer: signer})
	if err != nil {
		return err
	}
	defer closeConn(nc)
	if err := ensureSigner(ctx, st, root, rootPriv, signer.Public().(ed25519.PublicKey)); err != nil {
		return err
	}
	var kek *webhooks.KEK
	if *kekFile != "" {
		if kek, err = webhooks.ReadKEK(*kekFile); err != nil {
			return err
		}
	}
	admin, err := startAdmin(ctx, st, adminConfig{Trust: root, Signer: signer, Listen: *adminListen, Replicas: *replicas, Duplicates: *dup, RootHash: rootHash, Decisions: df.cfg,
		Egress: policy, TLS: tlsFiles, KEK: kek, Webhooks: WebhookConfig{Timeout: *webhookTimeout}}, log)
	if err != nil {
		return err
	}
	defer admin.Close()
	log.Info("control node connected; event stream ensured", "nats", nc.ConnectedUrlRedacted(), "replicas", *replicas, "admin", admin.URL())
	select {
	case <-ctx.Done():
		return nil
	case err := <-admin.errc:
		return err
	}
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if os.Getenv(workerEnv) != "" {
		// A worker's SIGHUP is its supervisor's, passed on to reload
		// certificates: never the worker's end, before it serves or
		// without TLS (reloadOnSIGHUP takes it back when there is TLS).
		signal.Ignore(syscall.SIGHUP)
	}
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var nf natsFlags
	var lf logFlags
	defer lf.close()
	var gf gatewayFlags
	nf.register(fs, natsauth.Gateway)
	fs.StringVar(&gf.cfg.Listen, "gateway-listen", DefaultGatewayListen, "gateway address")
	workers := fs.Int("workers", 1, "run this many gateway processes on -gateway-listen, each with one processor (GOMAXPROCS=1 unless set) and --reuse-port, supervised by this one, as nginx runs a worker per core; for machines shared with other busy processes (Linux; docs/operations.md)")
	fs.BoolVar(&gf.cfg.ReusePort, "reuse-port", false, "share -gateway-listen with other gateway processes of this user on this host (SO_REUSEPORT; Linux): the kernel spreads connections among them (give each its own -metrics-listen)")
	gf.register(fs)
	watermark := fs.String("watermark", "", "file keeping the last sequence this node saw the event stream hold across restarts (default: in memory only)")
	signingKey := fs.String("signing-key", "", "this gateway's Ed25519 signing key (a trusted signer of decisions): it signs checkpoints of the decisions it writes, so that audits tell them from forgeries (created, mode 0600, if missing; default: none)")
	var ef egressFlags
	ef.register(fs, "")
	tlsFlags(fs, &gf.cfg.TLS, "gateway listener")
	lf.register(fs)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	policy, err := ef.policy()
	if err != nil {
		return err
	}
	gf.cfg.Egress = policy
	if err := nf.validate(); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(gf.cfg.Listen); err != nil {
		return usageError{fmt.Errorf("-gateway-listen %q: %w", gf.cfg.Listen, err)}
	}
	if err := gf.validate(); err != nil {
		return err
	}
	// A gateway never creates the event stream; it refuses to run on a weak
	// one, or on one that is not the history it saw.
	if gf.cfg.Trust, err = nf.trustKey(); err != nil {
		return err
	}
	if *signingKey != "" {
		if gf.cfg.Signer, err = trust.LoadOrCreateKey(*signingKey); err != nil {
			return err
		}
	}
	switch {
	case *workers < 1 || *workers > runtime.NumCPU():
		return usageError{fmt.Errorf("-workers must be between 1 and the number of processors (%d)", runtime.NumCPU())}
	case *workers > 1 && runtime.GOOS != "linux":
		return usageError{fmt.Errorf("-workers needs Linux (its workers share the port with SO_REUSEPORT)")}
	case *workers > 1 && os.Getenv(workerEnv) == "":
		log, err := lf.logger(stderr)
		if err != nil {
			return err
		}
		return superviseGateway(ctx, *workers, fs, gf.cfg.Listen, gf.cfg.MetricsListen, stdout, stderr, log.With("component", "workers"))
	}
	log, nc, st, err := connectRole(ctx, &nf, &lf, stderr, store.Config{WatermarkFile: *watermark})
	if err != nil {
		return err
	}
	defer closeConn(nc)
	if w := os.Getenv(workerEnv); w != "" {
		log = log.With("worker", w)
	}
	if gf.cfg.Signer != nil && gf.cfg.Trust != nil {
		if err := checkDecisionSigner(ctx, st, gf.cfg.Signer.Public().(ed25519.PublicKey)); err != nil {
			return err
		}
	}
	gf.cfg.AccessLog = lf.accessLog()
	gf.cfg.ReuseMetricsPort = os.Getenv(workerEnv) != "" // its supervisor holds it
	g, err := startGateway(ctx, nc, st, gf.cfg, log)
	if err != nil {
		return err
	}
	defer g.Close()
	select { // with --reuse-port, it listens once its read model is ready
	case <-g.listening:
	case <-ctx.Done():
		return nil
	case err := <-g.errc:
		return err
	}
	fmt.Fprintf(stdout, "gateway %s\nmetrics %s\n", g.URL(), g.MetricsURL())
	log.Info("gateway started", "nats", nc.ConnectedUrlRedacted(), "filters", gf.cfg.Filters, "gateway", g.URL(), "metrics", g.MetricsURL())
	select {
	case <-ctx.Done():
		return nil
	case err := <-g.errc:
		return err
	}
}

// gatewayFlags are the flags a gateway shares between `keytrail gateway`
// and `keytrail dev`.
type gatewayFlags struct {
	cfg     GatewayConfig
	tenants string
	trusted string
}

func (f *gatewayFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.tenants, "tenants", "", "serve only these tenants, comma-separated (default: all)")
	fs.StringVar(&f.cfg.MetricsListen, "metrics-listen", DefaultMetricsListen, "operator listener of the gateway's /metrics (not on the public port)")
	fs.Float64Var(&f.cfg.FailuresPerSecond, "auth-failures-per-second", 10, "failed authentications (no key, malformed or unknown key) each client address may cause per second before it is answered 429 without verification (0: no budget)")
	fs.IntVar(&f.cfg.FailureBurst, "auth-failures-burst", 100, "burst of -auth-failures-per-second")
	fs.DurationVar(&f.cfg.FailureDelay, "auth-failures-delay", time.Second, "hold each 429 to an address past its budget this long at most (until a failure is back), so that a flood slows to a few requests per connection a second (0: answer at once)")
	fs.IntVar(&f.cfg.FailureMaxHeld, "auth-failures-max-held", 4096, "429s held at once at most; past it the 429 closes the connection")
	fs.IntVar(&f.cfg.DenialsLoggedEach, "denials-logged-each", 10, "denials of one code from one client address logged one by one (access log and decision record) per second; the rest are logged as one aggregate line (0: log every denial)")
	fs.StringVar(&f.trusted, "trusted-proxies", "", "CIDRs of proxies whose X-Forwarded-For names the client (they have no failure budget themselves)")
	fs.DurationVar(&f.cfg.MaxStaleness, "max-staleness", DefaultMaxStaleness, "deny with STALE once the read model cannot be confirmed current for this long (confirmed every fifth of it, 20 ms to 1 s, and every half -confirm-window)")
	fs.DurationVar(&f.cfg.ConfirmWindow, "confirm-window", DefaultConfirmWindow, "hold a request for a fresh confirmation (up to this long) when the last is older, as after a pause; confirmations come every half of it")
	fs.BoolVar(&f.cfg.FailOpen, "fail-open", false, "verify against a stale read model instead of denying with STALE (counted; not recommended)")
	fs.Float64Var(&f.cfg.Sample, "decision-sample", 0.01, "fraction of allowed requests written to the decision log (denials always are)")
	fs.DurationVar(&f.cfg.UsageWindow, "usage-window", events.UsageWindow, "length of a usage counting window: 1s, 2s, 5s or 10s")
}

func (f *gatewayFlags) validate() error {
	filters, err := tenantFilters(f.tenants)
	if err != nil {
		return err
	}
	f.cfg.Filters = filters
	if f.cfg.MaxStaleness <= 0 {
		return usageError{fmt.Errorf("-max-staleness must be positive")}
	}
	if f.cfg.ConfirmWindow <= 0 {
		return usageError{fmt.Errorf("-confirm-window must be positive")}
	}
	trusted, err := egress.ParsePrefixes(f.trusted)
	if err != nil {
		return usageError{fmt.Errorf("-trusted-proxies: %w", err)}
	}
	f.cfg.TrustedProxies = trusted
	if f.cfg.DenialsLoggedEach < 0 {
		return usageError{fmt.Errorf("-denials-logged-each must not be negative")}
	}
	if f.cfg.FailuresPerSecond < 0 || f.cfg.FailureBurst < 0 || f.cfg.FailureDelay < 0 || f.cfg.FailureMaxHeld < 0 {
		return usageError{fmt.Errorf("-auth-failures-per-second, -auth-failures-burst, -auth-failures-delay and -auth-failures-max-held must not be negative")}
	}
	if f.cfg.Sample < 0 || f.cfg.Sample > 1 {
		return usageError{fmt.Errorf("-decision-sample must be between 0 and 1")}
	}
	if w := f.cfg.UsageWindow; w <= 0 || w > events.UsageWindow || time.Minute%w != 0 || w%time.Second != 0 {
		return usageError{fmt.Errorf("-usage-window must be 1s, 2s, 5s or 10s")}
	}
	return nil
}

// tlsFlags are a listener's certificate and key.
func tlsFlags(fs *flag.FlagSet, files *TLSFiles, which string) {
	fs.StringVar(&files.Cert, "tls-cert", "", "PEM certificate (chain) to terminate TLS on the "+which+" (reloaded on SIGHUP)")
	fs.StringVar(&files.Key, "tls-key", "", "PEM private key of -tls-cert")
}

// egressFlags are the internal ranges an operator allows upstreams in.
type egressFlags struct{ allow string }

func (f *egressFlags) register(fs *flag.FlagSet, dflt string) {
	fs.StringVar(&f.allow, "allow-upstream", dflt, "CIDRs of internal addresses APIs' upstreams may have, comma-separated (loopback, private, link-local and shared ranges are refused otherwise)")
}

func (f *egressFlags) policy() (*egress.Policy, error) {
	allow, err := egress.ParsePrefixes(f.allow)
	if err != nil {
		return nil, usageError{fmt.Errorf("-allow-upstream: %w", err)}
	}
	return &egress.Policy{Allow: allow}, nil
}

// decisionFlags are the limits of the decision stream, for the control
// nodes that create it.
type decisionFlags struct{ cfg gateway.DecisionStreamConfig }

func (f *decisionFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.cfg.Retention, "decision-retention", gateway.DefaultDecisionRetention, "how long the decision stream keeps decisions, if this node creates it")
	fs.Int64Var(&f.cfg.MaxBytes, "decision-max-bytes", gateway.DefaultDecisionMaxBytes, "how many bytes of decisions the decision stream keeps, if this node creates it")
}

func (f *decisionFlags) validate() error {
	if f.cfg.Retention <= 0 {
		return usageError{fmt.Errorf("-decision-retention must be positive")}
	}
	if f.cfg.MaxBytes <= 0 {
		return usageError{fmt.Errorf("-decision-max-bytes must be positive")}
	}
	return nil
}

// connectRole starts a role that reaches NATS over the network: its logger,
// its connection, and the event store opened (and checked) with cfg.
func connectRole(ctx context.Context, nf *natsFlags, lf *logFlags, stderr io.Writer, cfg store.Config) (*slog.Logger, *nats.Conn, *store.JetStream, error) {
	log, err := lf.logger(stderr)
	if err != nil {
		return nil, nil, nil, err
	}
	nc, err := nf.connect(ctx, log)
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := store.OpenJetStream(ctx, nc, cfg)
	if err != nil {
		closeConn(nc)
		return nil, nil, nil, err
	}
	return log, nc, st, nil
}

// ensureSigner makes sure the events this node signs count: with the root
// key at hand it adds the node's signer; with only the pinned public key it
// refuses to run a node whose signer is not in the set (its events would
// be refused by every reader).
func ensureSigner(ctx context.Context, st *store.JetStream, root ed25519.PublicKey, rootPriv ed25519.PrivateKey, signer ed25519.PublicKey) error {
	switch {
	case rootPriv != nil:
		_, err := trust.AddSigner(ctx, st, rootPriv, signer, nodeName(), events.SignerRoleEvents)
		return err
	case root == nil:
		return nil // history is not judged by signature here
	}
	have, _, err := trust.Signers(ctx, st)
	if err != nil {
		return err
	}
	if p, ok := have[events.SignerID(signer)]; !ok || p.SignerRole() != events.SignerRoleEvents {
		return fmt.Errorf("this node's signer %s is not in the trusted set: start it once with --trust-key (the root signing key) to add it",
			events.SignerID(signer))
	}
	return nil
}

// checkDecisionSigner refuses a gateway signing its decisions with a key
// the trusted set does not hold as a signer of decisions: every audit
// would name its decisions as written by no gateway.
func checkDecisionSigner(ctx context.Context, st store.Store, signer ed25519.PublicKey) error {
	have, _, err := trust.Signers(ctx, st)
	if err != nil {
		return err
	}
	id := events.SignerID(signer)
	if p, ok := have[id]; !ok || p.SignerRole() != events.SignerRoleDecisions {
		return fmt.Errorf("this gateway's signing key %s is not a trusted signer of decisions: add it with keytrail trust add-signer --role decisions --public-key %s",
			id, base64.StdEncoding.EncodeToString(signer))
	}
	return nil
}

// tenantFilters turns -tenants a,b into subject filters, validating each id.
func tenantFilters(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return nil, nil // every tenant
	}
	var fs []string
	for _, t := range strings.Split(list, ",") {
		f, err := events.TenantFilter(strings.TrimSpace(t))
		if err != nil {
			return nil, usageError{fmt.Errorf("-tenants: %q is not a tenant id", t)}
		}
		fs = append(fs, f)
	}
	return fs, nil
}

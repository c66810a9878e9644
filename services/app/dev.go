package app

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/services/adminhttp"
	"github.com/keytrail/keytrail/services/egress"
	"github.com/keytrail/keytrail/services/gateway"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode"
	"github.com/keytrail/keytrail/services/trust"
	"github.com/keytrail/keytrail/services/usage"
	"github.com/keytrail/keytrail/services/webhooks"
)

// WatermarkFile keeps, in a dev data directory, the last sequence the node
// saw the event stream hold (store.Watermark).
const WatermarkFile = "watermark.json"

// Defaults of the embedded mode; all on loopback.
const (
	DefaultDataDir       = "./keytrail-data"
	DefaultAdminListen   = "127.0.0.1:7400"
	DefaultGatewayListen = "127.0.0.1:7480"
	DefaultNATSListen    = "127.0.0.1:4222"
	// DefaultMetricsListen is the gateway's operator listener: loopback, a
	// free port (printed, and in addresses.json); set it for scraping.
	DefaultMetricsListen = "127.0.0.1:0"
)

// DevConfig configures the embedded mode.
type DevConfig struct {
	DataDir       string
	AdminListen   string
	GatewayListen string
	NATSListen    string
	// Duplicates is the event stream's idempotency window.
	Duplicates time.Duration
	// MinSeqWait bounds how long a read with Keytrail-Min-Seq waits (5 s
	// when zero).
	MinSeqWait time.Duration
	// Gateway configures the gateway (its Listen is GatewayListen).
	Gateway GatewayConfig
	// Decisions are the limits of the decision stream.
	Decisions gateway.DecisionStreamConfig
	// TLS terminates TLS on the admin and gateway listeners.
	TLS TLSFiles
	// Quotas bound what one tenant may hold (zero: the defaults).
	Quotas adminhttp.Quotas
	// AllowUpstream are the internal ranges APIs' upstreams may be in
	// (keytrail dev: loopback, unless set).
	AllowUpstream []netip.Prefix
	// Webhooks tunes webhook delivery (the key-encryption key is
	// <data>/kek, created on first start).
	Webhooks WebhookConfig
	// NoticeEvery is how often notices are derived (one minute when zero).
	NoticeEvery time.Duration
	// OperatorKey, when set, is a public nkey the embedded server gives
	// every permission: an operator's identity outside Keytrail's roles
	// (tests use one to do what no role may, such as deleting the stream).
	OperatorKey string
	Logger      *slog.Logger
}

// Addresses are where a dev process listens; written to <data>/addresses.json.
type Addresses struct {
	NATS    string `json:"nats"`
	Admin   string `json:"admin,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	// Metrics is the gateway's metrics URL, on its operator listener.
	Metrics string `json:"metrics,omitempty"`
}

// Dev is a running embedded deployment.
type Dev struct {
	cfg     DevConfig
	lock    *os.File
	node    *natsnode.Node
	nc      *nats.Conn // the control identity's
	gwnc    *nats.Conn // the gateway identity's
	store   *store.JetStream
	admin   *adminRole
	gateway *gatewayRole
	addrs   Addresses
}

// StartDev starts the embedded NATS node on cfg.DataDir, ensures the event
// stream and writes addresses.json. The caller must Close it.
func StartDev(ctx context.Context, cfg DevConfig) (_ *Dev, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	for name, addr := range map[string]string{"admin": cfg.AdminListen, "gateway": cfg.GatewayListen, "nats": cfg.NATSListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, usageError{fmt.Errorf("-%s-listen %q: %w", name, addr, err)}
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	d := &Dev{cfg: cfg}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.lock, err = lockDir(cfg.DataDir); err != nil {
		return nil, err
	}
	// One identity per role (seeds in <data>/nats, next to JetStream's
	// files); anonymous clients are refused.
	ids, err := natsauth.LoadOrCreateDir(filepath.Join(cfg.DataDir, "nats"))
	if err != nil {
		return nil, err
	}
	users := natsnode.Users(ids)
	if cfg.OperatorKey != "" {
		users = append(users, natsnode.User{PublicKey: cfg.OperatorKey})
	}
	d.node, err = natsnode.Start(natsnode.Config{
		Name:     "keytrail-dev",
		StoreDir: filepath.Join(cfg.DataDir, "nats"),
		Listen:   cfg.NATSListen,
		Logger:   cfg.Logger.With("component", "nats-server"),
		Users:    users,
	})
	if err != nil {
		return nil, err
	}
	if d.nc, err = d.node.Connect(ids[natsauth.Control]); err != nil {
		return nil, fmt.Errorf("connect to embedded NATS: %w", err)
	}
	// Signed history (docs/signing.md): the root key (whose public half
	// readers pin, <data>/trust.pub) and this node's signing key; the node
	// adds its signer, signed by the root, before it appends anything.
	root, err := trust.LoadOrCreateKey(filepath.Join(cfg.DataDir, trust.RootKeyFile))
	if err != nil {
		return nil, err
	}
	rootPub := root.Public().(ed25519.PublicKey)
	if err := trust.WritePublic(filepath.Join(cfg.DataDir, trust.RootPubFile), rootPub); err != nil {
		return nil, err
	}
	signer, err := trust.LoadOrCreateKey(filepath.Join(cfg.DataDir, trust.SignerKeyFile))
	if err != nil {
		return nil, err
	}
	d.store, err = store.OpenJetStream(ctx, d.nc, store.Config{Replicas: 1, Duplicates: cfg.Duplicates, CreateIfMissing: true,
		WatermarkFile: filepath.Join(cfg.DataDir, WatermarkFile), Signer: signer})
	if err != nil {
		return nil, err
	}
	if _, err := trust.AddSigner(ctx, d.store, root, signer.Public().(ed25519.PublicKey), "keytrail-dev", events.SignerRoleEvents); err != nil {
		return nil, err
	}
	// The gateway's key, for checkpoints of its decisions.
	gwSigner, err := trust.LoadOrCreateKey(filepath.Join(cfg.DataDir, trust.GatewayKeyFile))
	if err != nil {
		return nil, err
	}
	if _, err := trust.AddSigner(ctx, d.store, root, gwSigner.Public().(ed25519.PublicKey), "keytrail-dev-gateway", events.SignerRoleDecisions); err != nil {
		return nil, err
	}
	rootHash, created, err := loadOrCreateRootKey(filepath.Join(cfg.DataDir, RootKeyFile))
	if err != nil {
		return nil, err
	}
	if created {
		cfg.Logger.Info("root key written", "file", filepath.Join(cfg.DataDir, RootKeyFile))
	}
	allow := cfg.AllowUpstream
	if allow == nil {
		allow = egress.Loopback()
	}
	if len(allow) > 0 {
		cfg.Logger.Info("upstreams in these internal ranges are allowed; serve and gateway refuse internal addresses unless --allow-upstream allows them",
			"allow_upstream", fmt.Sprint(allow))
	}
	policy := &egress.Policy{Allow: allow}
	policy.AddOwn(d.node.Addr().String())
	kek, err := webhooks.LoadOrCreateKEK(filepath.Join(cfg.DataDir, KEKFile))
	if err != nil {
		return nil, err
	}
	if d.admin, err = startAdmin(ctx, d.store, adminConfig{Trust: rootPub, Signer: signer, KEK: kek, Webhooks: cfg.Webhooks, NoticeEvery: cfg.NoticeEvery, Egress: policy, Quotas: cfg.Quotas, TLS: cfg.TLS, Listen: cfg.AdminListen, Replicas: 1, Duplicates: cfg.Duplicates, RootHash: rootHash,
		MinSeqWait: cfg.MinSeqWait, Decisions: cfg.Decisions}, cfg.Logger); err != nil {
		return nil, err
	}
	// The gateway is a gateway on the bus too: its own identity, its own
	// view of the stream.
	if d.gwnc, err = d.node.Connect(ids[natsauth.Gateway]); err != nil {
		return nil, fmt.Errorf("connect to embedded NATS: %w", err)
	}
	gst, err := store.OpenJetStream(ctx, d.gwnc, store.Config{})
	if err != nil {
		return nil, err
	}
	gcfg := cfg.Gateway
	gcfg.Listen, gcfg.Egress, gcfg.TLS, gcfg.Trust, gcfg.Signer = cfg.GatewayListen, policy, cfg.TLS, rootPub, gwSigner
	if gcfg.MinSeqWait == 0 {
		gcfg.MinSeqWait = cfg.MinSeqWait
	}
	if d.gateway, err = startGateway(ctx, d.gwnc, gst, gcfg, cfg.Logger); err != nil {
		return nil, err
	}
	d.addrs = Addresses{NATS: d.node.ClientURL(), Admin: d.admin.URL(), Gateway: d.gateway.URL(), Metrics: d.gateway.MetricsURL()}
	if err := writeJSONFile(filepath.Join(cfg.DataDir, "addresses.json"), d.addrs, 0o644); err != nil {
		return nil, err
	}
	cfg.Logger.Info("keytrail dev started", "data", cfg.DataDir, "nats", d.addrs.NATS, "admin", d.addrs.Admin, "gateway", d.addrs.Gateway)
	return d, nil
}

// Addresses returns where the deployment listens.
func (d *Dev) Addresses() Addresses { return d.addrs }

// DataDir is the deployment's data directory.
func (d *Dev) DataDir() string { return d.cfg.DataDir }

// Store is the event store of the deployment.
func (d *Dev) Store() *store.JetStream { return d.store }

// Usage is the control role's usage rollups.
func (d *Dev) Usage() *usage.Rollups { return d.admin.usage }

// Close stops everything in reverse order of starting; safe on a partial Dev.
func (d *Dev) Close() error {
	if d.gateway != nil {
		d.gateway.Close()
	}
	if d.admin != nil {
		d.admin.Close()
	}
	for _, nc := range []*nats.Conn{d.gwnc, d.nc} {
		if nc != nil {
			nc.Close()
		}
	}
	if d.node != nil {
		d.node.Shutdown()
	}
	if d.lock != nil {
		d.lock.Close() // releases the flock
	}
	return nil
}

// lockDir takes an exclusive lock on dir so that two processes never share
// one JetStream store.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by another keytrail process", dir)
		}
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	return f, nil
}

// writeJSONFile writes v to path atomically (temp file, fsync, rename).
func writeJSONFile(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var cfg DevConfig
	var lf logFlags
	defer lf.close()
	fs.StringVar(&cfg.DataDir, "data", DefaultDataDir, "data directory (JetStream store, root key, addresses.json)")
	fs.StringVar(&cfg.AdminListen, "admin-listen", DefaultAdminListen, "admin API address (port 0 picks a free port)")
	fs.StringVar(&cfg.GatewayListen, "gateway-listen", DefaultGatewayListen, "gateway address (port 0 picks a free port)")
	fs.StringVar(&cfg.NATSListen, "nats-listen", DefaultNATSListen, "embedded NATS client address other nodes join (port 0 picks a free port)")
	fs.DurationVar(&cfg.Duplicates, "dup-window", store.DefaultDuplicates, "idempotency window of the event stream")
	fs.DurationVar(&cfg.Webhooks.Timeout, "webhook-timeout", webhooks.DefaultTimeout, "how long one webhook delivery attempt may take")
	var gf gatewayFlags
	gf.register(fs)
	var df decisionFlags
	df.register(fs)
	var ef egressFlags
	ef.register(fs, "127.0.0.0/8,::1")
	tlsFlags(fs, &cfg.TLS, "admin and gateway listeners")
	lf.register(fs)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	policy, err := ef.policy()
	if err != nil {
		return err
	}
	cfg.AllowUpstream = policy.Allow
	if err := gf.validate(); err != nil {
		return err
	}
	if err := df.validate(); err != nil {
		return err
	}
	cfg.Gateway, cfg.Decisions = gf.cfg, df.cfg
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.Gateway.AccessLog = lf.accessLog()
	d, err := StartDev(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	a := d.Addresses()
	fmt.Fprintf(stdout, "keytrail dev\n  data:     %s\n  nats:     %s\n  admin:    %s\n  gateway:  %s\n  metrics:  %s\n  root key: %s\n  nats identities: %s\n", cfg.DataDir, a.NATS, a.Admin,
		a.Gateway, a.Metrics, filepath.Join(cfg.DataDir, RootKeyFile), filepath.Join(cfg.DataDir, "nats", "{control,gateway,service,auditor}.nk"))
	select {
	case <-ctx.Done():
	case err := <-d.admin.errc:
		return err
	case err := <-d.gateway.errc:
		return err
	}
	log.Info("keytrail dev stopping")
	return nil
}

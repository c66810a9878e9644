package app

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/internal/secretfile"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/adminhttp"
	"github.com/keytrail/keytrail/services/audit"
	"github.com/keytrail/keytrail/services/console"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/egress"
	"github.com/keytrail/keytrail/services/gateway"
	"github.com/keytrail/keytrail/services/notices"
	"github.com/keytrail/keytrail/services/readmodel"
	"github.com/keytrail/keytrail/services/trust"
	"github.com/keytrail/keytrail/services/usage"
	"github.com/keytrail/keytrail/services/webhooks"
)

// RootKeyFile is the root key's file name in a dev data directory.
const RootKeyFile = "root.key"

// KEKFile is the key-encryption key's file name in a dev data directory:
// it seals webhook signing secrets (serve takes --kek).
const KEKFile = "kek"

// loadOrCreateRootKey reads the root key from path, creating it (mode 0600)
// on first start. Only its hash is kept; the file is the one place the
// secret lives.
func loadOrCreateRootKey(path string) (events.SecretHash, bool, error) {
	if secretfile.Missing(path) {
		sec, err := secret.Generate(secret.DefaultPrefix, rand.Reader)
		if err != nil {
			return events.SecretHash{}, false, err
		}
		if err := secretfile.Create(path, []byte(sec.Reveal()+"\n")); err != nil {
			return events.SecretHash{}, false, fmt.Errorf("root key: %w", err)
		}
		return sec.Hash(), true, nil
	}
	b, err := secretfile.Read(path)
	if err != nil {
		return events.SecretHash{}, false, fmt.Errorf("root key: %w", err)
	}
	sec, err := secret.Parse(strings.TrimSpace(string(b)), secret.DefaultPrefix)
	if err != nil {
		return events.SecretHash{}, false, fmt.Errorf("root key %s: %w", path, err)
	}
	return sec.Hash(), false, nil
}

// adminRole is a running control plane: the read model and the admin API.
type adminRole struct {
	srv    *http.Server
	addr   string
	cert   *certificate
	model  *readmodel.Model
	usage  *usage.Rollups
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errc   chan error
}

// snapshotEvery is how often a control node writes a snapshot of its read
// model when it has applied anything since the last one.
const snapshotEvery = time.Minute

// adminConfig configures a control role.
type adminConfig struct {
	Listen     string
	Replicas   int
	Duplicates time.Duration // the idempotency window
	RootHash   events.SecretHash
	MinSeqWait time.Duration
	// Decisions are the limits of the decision stream, which a control
	// node creates when it is missing.
	Decisions gateway.DecisionStreamConfig
	// Egress is where APIs' upstreams may point.
	Egress *egress.Policy
	// Quotas bound what one tenant may hold (zero: adminhttp.DefaultQuotas).
	Quotas adminhttp.Quotas
	// TLS terminates TLS on the admin listener (reloaded on SIGHUP).
	TLS TLSFiles
	// KEK seals webhook endpoints' signing secrets; without one, this node
	// neither creates endpoints nor delivers to them.
	KEK *webhooks.KEK
	// Webhooks tunes delivery.
	Webhooks WebhookConfig
	// NoticeEvery is how often the notice scheduler looks (one minute when
	// zero).
	NoticeEvery time.Duration
	// Trust, when set, is the pinned root public key: the read model
	// applies only signed events (docs/signing.md).
	Trust ed25519.PublicKey
	// Signer, when set, is the node's signing key: it signs checkpoints of
	// the log too.
	Signer ed25519.PrivateKey
}

// WebhookConfig tunes webhook delivery (zero values: the defaults of
// services/webhooks).
type WebhookConfig struct {
	// Timeout bounds one attempt.
	Timeout time.Duration
	// Ladder and FailFor override the retry ladder and how long an
	// endpoint may fail before it is disabled (tests shorten them).
	Ladder  []time.Duration
	FailFor time.Duration
}

// startAdmin creates the decision stream and the snapshot buckets if they
// are missing, starts the read model (from the latest snapshot when there
// is a consistent one), serves the admin API on cfg.Listen and revocations
// on the bus, and writes snapshots for itself and for the gateways.
func startAdmin(ctx context.Context, st *store.JetStream, cfg adminConfig, log *slog.Logger) (a *adminRole, err error) {
	js := st.JetStream()
	var vault *webhooks.Vault
	ccfg := control.Config{Store: st, Egress: cfg.Egress}
	if cfg.KEK != nil {
		if vault, err = webhooks.OpenVault(ctx, js, cfg.KEK, cfg.Replicas); err != nil {
			return nil, err
		}
		if err := webhooks.EnsureStream(ctx, js, cfg.Replicas); err != nil {
			return nil, fmt.Errorf("webhook stream: %w", err)
		}
		ccfg.Webhooks = vault
	}
	svc, err := control.New(ccfg)
	if err != nil {
		return nil, err
	}
	dcfg := cfg.Decisions
	dcfg.Replicas = cfg.Replicas
	if err := gateway.EnsureDecisionStream(ctx, js, dcfg); err != nil {
		return nil, err
	}
	if err := gateway.EnsureUsageStream(ctx, js, cfg.Replicas); err != nil {
		return nil, fmt.Errorf("usage stream: %w", err)
	}
	if err := notices.EnsureStream(ctx, js, cfg.Replicas); err != nil {
		return nil, fmt.Errorf("notice stream: %w", err)
	}
	snaps, err := readmodel.OpenSnapshots(ctx, js, cfg.Replicas, nodeName())
	if err != nil {
		return nil, err
	}
	if cfg.Signer != nil {
		s, err := js.Stream(ctx, events.StreamName)
		if err != nil {
			return nil, fmt.Errorf("event stream: %w", err)
		}
		snaps.SignWith(cfg.Signer, trust.Origin(s.CachedInfo().Created))
	}
	idem, err := store.OpenIdempotencyKeys(ctx, js, cfg.Replicas, cfg.Duplicates)
	if err != nil {
		return nil, err
	}
	cert, err := loadCertificate(cfg.TLS)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin listen %s: %w", cfg.Listen, err)
	}
	if cfg.Egress != nil {
		cfg.Egress.AddOwn(ln.Addr().String())
	}
	rollups, err := usage.Open(ctx, js, cfg.Replicas, log.With("component", "usage"))
	if err != nil {
		ln.Close()
		return nil, err
	}
	mopts := []readmodel.Option{readmodel.CatchUpBy(func(ctx context.Context, after uint64) ([][]byte, error) {
		return store.ReadCheckpointsAfter(ctx, js, after)
	})}
	if cfg.Trust != nil {
		mopts = append(mopts, readmodel.Trust(cfg.Trust))
	}
	var cp *trust.Checkpointer
	if cfg.Signer != nil {
		s, err := js.Stream(ctx, events.StreamName)
		if err == nil {
			err = trust.EnsureCheckpointStream(ctx, js, cfg.Replicas)
		}
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("checkpoint stream: %w", err)
		}
		cp = &trust.Checkpointer{JS: js, Key: cfg.Signer, Origin: trust.Origin(s.CachedInfo().Created), Judged: cfg.Trust != nil,
			Log: log.With("component", "checkpoints")}
		mopts = append(mopts, readmodel.OnTaken(cp.Take))
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a = &adminRole{model: readmodel.New(log.With("component", "readmodel"), mopts...), cancel: cancel, errc: make(chan error, 2),
		addr: ln.Addr().String(), cert: cert, usage: rollups}
	if cert != nil {
		reloadOnSIGHUP(runCtx, log, cert)
	}
	if cfg.Trust != nil {
		// The node's own reads judge signatures as its read model does,
		// with the signer set as of the event's place in the log.
		model := a.model
		st.SetVerify(func(r *events.Recorded) error {
			wctx, cancel := context.WithTimeout(runCtx, 2*time.Second)
			defer cancel()
			if err := model.WaitFor(wctx, r.Seq-1, 2*time.Second); err != nil {
				return fmt.Errorf("%w: the read model has not reached seq %d to judge its signature", store.ErrUnavailable, r.Seq)
			}
			var err error
			model.Read(func(c *projections.Catalog) { err = c.TrustedAt(r) })
			return err
		})
	}
	acfg := adminhttp.Config{Control: svc, Model: a.model, RootKeyHash: cfg.RootHash, Log: log.With("component", "admin"),
		MinSeqWait: cfg.MinSeqWait, Idempotency: idem, Quotas: cfg.Quotas, Usage: rollups, Decisions: audit.New(st)}
	if vault != nil {
		acfg.Webhooks = webhooks.NewLog(js)
	}
	api := adminhttp.New(acfg)
	con, err := console.New(console.Config{Auth: consoleAuth{api}, Secure: cert != nil, Log: log.With("component", "console")})
	if err != nil {
		ln.Close()
		cancel()
		return nil, err
	}
	// The console has /console/; the API everything else, as it arrives (a
	// mux would clean and redirect paths the API answers 404 itself).
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/console":
			http.Redirect(w, r, "/console/", http.StatusSeeOther)
			return
		case strings.HasPrefix(r.URL.Path, "/console/"):
			con.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
	a.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 32 << 10, ErrorLog: serverErrorLog(log)}
	restoreSnapshot(ctx, st, a.model, nil, log)
	revocations, err := api.ServeRevocations(st.JetStream().Conn())
	if err != nil {
		ln.Close()
		cancel()
		return nil, fmt.Errorf("serve revocations: %w", err)
	}
	if vault != nil {
		d := webhooks.NewDispatcher(webhooks.Config{JS: js, Model: a.model, Vault: vault, Egress: cfg.Egress,
			Timeout: cfg.Webhooks.Timeout, Ladder: cfg.Webhooks.Ladder, FailFor: cfg.Webhooks.FailFor, Log: log.With("component", "webhooks"),
			Disable: func(ctx context.Context, tenant, id, reason string) (uint64, error) {
				_, res, err := svc.DisableWebhook(ctx, control.Meta{Actor: webhooks.Actor, Reason: reason}, tenant, id)
				if err != nil || res.Unchanged || res.Replayed {
					return 0, err
				}
				return res.Seq, nil
			}})
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			d.Run(runCtx)
		}()
	}
	if cp != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			cp.Run(runCtx)
		}()
	}
	a.wg.Add(6)
	go func() {
		defer a.wg.Done()
		rollups.Run(runCtx)
	}()
	go func() {
		defer a.wg.Done()
		notices.New(notices.Config{JS: js, Model: a.model, Usage: rollups, Events: st, Every: cfg.NoticeEvery, Log: log.With("component", "notices")}).Run(runCtx)
	}()
	go func() {
		defer a.wg.Done()
		<-runCtx.Done()
		revocations.Drain() // answer the requests already received, take no more
	}()
	go func() {
		defer a.wg.Done()
		saveSnapshots(runCtx, snaps, a.model, log)
	}()
	go func() {
		defer a.wg.Done()
		if err := a.model.Run(runCtx, st, nil); err != nil {
			a.errc <- err
		}
	}()
	go func() {
		defer a.wg.Done()
		if err := serve(a.srv, ln, cert); err != nil {
			a.errc <- err
		}
	}()
	return a, nil
}

// consoleAuth signs in to the console with the admin API's own check of an
// admin key, and gives the console a way to call the API as whoever signed
// in.
type consoleAuth struct{ api *adminhttp.Server }

func (c consoleAuth) SignIn(_ context.Context, key string) (console.Who, http.RoundTripper, error) {
	p, err := c.api.SignIn(key)
	if err != nil {
		return console.Who{}, nil, err
	}
	return console.Who{Root: p.Root, Tenant: p.Tenant, KeyID: p.KeyID}, c.api.RoundTripper(p), nil
}

// nodeName names this process among the nodes: host and pid.
func nodeName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// restoreSnapshot starts model from the latest snapshot of its kind, if
// there is one consistent with the log.
func restoreSnapshot(ctx context.Context, st *store.JetStream, model *readmodel.Model, filters []string, log *slog.Logger) {
	switch cat, err := readmodel.LoadSnapshot(ctx, st.JetStream(), st, model, filters); {
	case err != nil:
		// A bad snapshot costs a full replay, not the node.
		log.Warn("snapshot refused; folding the log from the start", "err", err)
	case cat != nil:
		model.Restore(cat)
		log.Info("read model restored from snapshot", "seq", cat.Seq)
	}
}

// saveSnapshots writes a snapshot every snapshotEvery when the model moved
// and this node holds the writer lease.
func saveSnapshots(ctx context.Context, snaps *readmodel.Snapshots, model *readmodel.Model, log *slog.Logger) {
	t := time.NewTicker(snapshotEvery)
	defer t.Stop()
	var saved uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !model.Ready() || model.Applied() == saved {
			continue
		}
		seq, err := snaps.Save(ctx, model)
		switch {
		case errors.Is(err, readmodel.ErrNotWriter):
		case err != nil:
			log.Warn("snapshot not written", "err", err)
		default:
			saved = seq
			log.Debug("snapshot written", "seq", seq)
		}
	}
}

// Close stops serving (letting requests in flight finish) and the read model.
func (a *adminRole) Close() { stopRole(a.srv, a.cancel, &a.wg) }

// stopRole shuts a role's server down, letting requests in flight finish
// (10 s at most), then stops its goroutines and waits for them.
func stopRole(srv roleServer, cancel context.CancelFunc, wg *sync.WaitGroup) {
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if srv.Shutdown(ctx) != nil {
		srv.Close() // a stream still open after the grace: cut it
	}
	cancel()
	wg.Wait()
}

// URL is the admin API's base URL.
func (a *adminRole) URL() string { return scheme(a.cert) + a.addr }

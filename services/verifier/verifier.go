// Package verifier is the library for Go services that verify keys
// in-process: it connects to the event log, keeps a read model current, and
// decides requests locally with no network hop per request — the same
// decisions, with the same evidence, as Keytrail's own gateways.
//
// It fails closed: until the read model has caught up it answers STALE, and
// so it does once it cannot confirm it is current for longer than
// MaxStaleness.
package verifier

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/readmodel"
)

// Config is how a Verifier reaches the log and decides.
type Config struct {
	// NATS is a connection to the cluster holding the event log.
	NATS *nats.Conn
	// Tenants, when set, limits the read model to these tenants' events.
	Tenants []string
	// SecretPrefix of the deployment's keys (default kt_).
	SecretPrefix string
	// MaxStaleness is how long the model may go without confirming it is
	// current before decisions are STALE (default 30 s).
	MaxStaleness time.Duration
	// Now is the clock decisions use (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// Verifier decides requests against a read model it keeps current.
type Verifier struct {
	cfg    Config
	model  *readmodel.Model
	cancel context.CancelFunc
	// stopped is closed when following the log has ended, runErr being
	// why (read only after stopped).
	stopped chan struct{}
	runErr  error
}

// Start opens the event log (which must exist, with safe settings) and
// starts following it. Close stops it.
func Start(ctx context.Context, cfg Config) (*Verifier, error) {
	if cfg.NATS == nil {
		return nil, errors.New("verifier: a NATS connection is required")
	}
	if cfg.SecretPrefix == "" {
		cfg.SecretPrefix = secret.DefaultPrefix
	}
	if cfg.MaxStaleness <= 0 {
		cfg.MaxStaleness = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var filters []string
	for _, t := range cfg.Tenants {
		f, err := events.TenantFilter(t)
		if err != nil {
			return nil, err
		}
		filters = append(filters, f)
	}
	st, err := store.OpenJetStream(ctx, cfg.NATS, store.Config{})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	v := &Verifier{cfg: cfg, model: readmodel.New(cfg.Logger, readmodel.WithClock(cfg.Now), readmodel.VerificationOnly()), cancel: cancel, stopped: make(chan struct{})}
	go func() { v.runErr = v.model.Run(runCtx, st, filters); close(v.stopped) }()
	return v, nil
}

// Ready reports whether the read model has caught up with the log as it was
// at Start.
func (v *Verifier) Ready() bool { return v.model.Ready() }

// WaitReady blocks until Ready or ctx ends.
func (v *Verifier) WaitReady(ctx context.Context) error {
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // following the log has ended: the model will not get ready
		select {
		case <-v.stopped:
			cancel()
		case <-waitCtx.Done():
		}
	}()
	if v.model.WaitReady(waitCtx) == nil {
		return nil
	}
	select {
	case <-v.stopped:
		if v.runErr == nil {
			return errors.New("verifier: stopped")
		}
		return v.runErr
	default:
		return ctx.Err()
	}
}

// Verify decides a request now. Only Secret, Tenant, API and Scopes of q are
// read; the prefix is the configured one.
func (v *Verifier) Verify(q projections.Request) projections.Decision {
	now := v.cfg.Now()
	if !v.model.Ready() || v.model.Stale(v.cfg.MaxStaleness) {
		applied, _, _ := v.model.Freshness()
		return projections.Decision{Code: projections.CodeStale, Now: now, Seq: applied}
	}
	q.Prefix = v.cfg.SecretPrefix
	var d projections.Decision
	v.model.Read(func(c *projections.Catalog) { d = c.Verify(q, now) })
	return d
}

// WaitFor blocks until the read model has applied seq (a Keytrail-Seq the
// caller saw), at most max.
func (v *Verifier) WaitFor(ctx context.Context, seq uint64, max time.Duration) error {
	return v.model.WaitFor(ctx, seq, max)
}

// Close stops following the log and returns why it had stopped, if it
// had (also after WaitReady returned that).
func (v *Verifier) Close() error {
	v.cancel()
	<-v.stopped
	return v.runErr
}

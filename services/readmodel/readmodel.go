// Package readmodel keeps a projections.Catalog current: one goroutine tails
// the event log with an ordered subscription and applies every event; any
// number of readers look at the catalog under a read lock. It reports the
// applied sequence, whether it has caught up with the log as it was at start
// (readiness), and lets a reader wait until a sequence is applied
// (Keytrail-Min-Seq).
package readmodel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
)

// Model is a catalog kept current from the log.
type Model struct {
	log *slog.Logger

	mu      sync.RWMutex
	cat     *projections.Catalog
	applied uint64
	changed chan struct{} // closed and replaced whenever applied moves
	ready   bool
}

// New returns an empty model; Run fills it.
func New(log *slog.Logger) *Model {
	return &Model{log: log, cat: projections.NewCatalog(), changed: make(chan struct{})}
}

// Run tails st (events under filters, all when empty) until ctx ends or the
// subscription fails.
func (m *Model) Run(ctx context.Context, st store.Store, filters []string) error {
	target, err := lastOf(ctx, st, filters)
	if err != nil {
		return fmt.Errorf("readmodel: last sequence: %w", err)
	}
	if target == 0 {
		m.markReady(0)
	}
	sub, err := st.Subscribe(ctx, store.SubscribeOptions{From: 1, Filters: filters})
	if err != nil {
		return fmt.Errorf("readmodel: subscribe: %w", err)
	}
	defer sub.Close()
	for {
		d, err := sub.Next(ctx)
		if errors.Is(err, context.Canceled) || errors.Is(err, store.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("readmodel: %w", err)
		}
		m.mu.Lock()
		if d.Err != nil {
			m.cat.Skip(d.Seq, d.Err)
		} else if err := m.cat.Apply(d.Event); err != nil {
			m.log.Warn("event not applied", "seq", d.Seq, "err", err)
		}
		m.applied = d.Seq
		close(m.changed)
		m.changed = make(chan struct{})
		if !m.ready && (d.Seq >= target || d.CaughtUp()) {
			m.ready = true
			m.log.Info("read model caught up", "seq", d.Seq)
		}
		m.mu.Unlock()
		if d.Err != nil {
			m.log.Warn("message is not a valid event", "seq", d.Seq, "err", d.Err)
		}
	}
}

func lastOf(ctx context.Context, st store.Store, filters []string) (uint64, error) {
	if len(filters) == 0 {
		return st.LastSeq(ctx, "")
	}
	var last uint64
	for _, f := range filters {
		seq, err := st.LastSeq(ctx, f)
		if err != nil {
			return 0, err
		}
		last = max(last, seq)
	}
	return last, nil
}

func (m *Model) markReady(seq uint64) {
	m.mu.Lock()
	m.ready = true
	m.mu.Unlock()
	m.log.Info("read model caught up", "seq", seq)
}

// Ready reports whether the model has caught up with the log as it was when
// Run started.
func (m *Model) Ready() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.ready
}

// Applied is the stream sequence of the last message the model applied.
func (m *Model) Applied() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.applied
}

// ErrBehind: the model did not apply the sequence asked for in time.
var ErrBehind = errors.New("readmodel: not caught up with the requested sequence")

// WaitFor blocks until seq is applied, at most max (and ctx).
func (m *Model) WaitFor(ctx context.Context, seq uint64, max time.Duration) error {
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	for {
		m.mu.RLock()
		applied, changed := m.applied, m.changed
		m.mu.RUnlock()
		if applied >= seq {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return ErrBehind
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Read runs fn with the catalog under the read lock; fn must not keep it.
func (m *Model) Read(fn func(c *projections.Catalog)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	fn(m.cat)
}

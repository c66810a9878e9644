// Package readmodel keeps a projections.Catalog current: one goroutine tails
// the event log with an ordered subscription and applies every event; any
// number of readers look at the catalog under a read lock. It reports the
// applied sequence, whether it has caught up with the log as it was at start
// (readiness), its lag, the last time it confirmed it was current (for
// STALE), and lets a reader wait until a sequence is applied
// (Keytrail-Min-Seq).
package readmodel

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
)

// Model is a catalog kept current from the log.
type Model struct {
	log          *slog.Logger
	now          func() time.Time
	confirmEvery time.Duration
	// trust is the pinned root public key (Trust), nil when none.
	trust ed25519.PublicKey

	// mu guards the catalog alone: verifiers share it, the applier takes it
	// for one event at a time. Freshness is in atomics, so that reading it
	// (every request) and confirming it (every second) never wait on the
	// lock, nor make verifiers wait behind a writer.
	mu  sync.RWMutex
	cat *projections.Catalog

	applied atomic.Uint64
	ready   atomic.Bool
	lag     atomic.Uint64
	// confirmed is when applied was last seen to be the log's last
	// sequence, as nanoseconds since epoch plus one (0: never). Measured
	// from epoch so that time.Now's monotonic reading is used: a wall
	// clock stepped back cannot make an old confirmation look recent.
	confirmed atomic.Int64
	epoch     time.Time

	chMu      sync.Mutex
	changed   signal // whenever applied moves
	confirmCh signal // whenever the model is confirmed

	// kick asks the confirm loop for a confirmation now (Hold).
	kick chan struct{}

	// refused is why the model stopped applying from the stream: it is not
	// the history the model knew (store.ErrRefused). Sticky: only a new
	// process, after an operator has looked, trusts the stream again.
	refused atomic.Pointer[error]

	onApplied func(r *events.Recorded, at time.Time)
	onTaken   func(c *projections.Catalog, err error)
	// checkpoints reads the signed checkpoints of the log, to catch up by
	// (CatchUpBy); vouched and verified count the messages whose
	// signatures a checkpoint vouched for and those judged one by one.
	checkpoints       func(ctx context.Context, after uint64) ([][]byte, error)
	vouched, verified atomic.Uint64
}

// Option configures a Model.
type Option func(*Model)

// WithClock injects the clock freshness is measured with.
func WithClock(now func() time.Time) Option { return func(m *Model) { m.now = now } }

// OnApplied calls fn after each event applied once the model is ready (not
// while it catches up), outside the model's lock, with the time it was
// applied: a gateway measures propagation delay (event time → applied) with
// it.
func OnApplied(fn func(r *events.Recorded, at time.Time)) Option {
	return func(m *Model) { m.onApplied = fn }
}

// OnTaken calls fn under the model's lock after every message the model
// takes, with the catalog (its Seq and Chain) and what Take said: a control
// node's checkpointer signs the judgement of its reads with it.
func OnTaken(fn func(c *projections.Catalog, err error)) Option {
	return func(m *Model) { m.onTaken = fn }
}

// CatchUpBy gives the model the signed checkpoints of the log (read by
// read, those past the model's position after at least): with a root
// pinned, a model catching up verifies one checkpoint per span of messages
// instead of every signature in it (docs/signing.md).
func CatchUpBy(read func(ctx context.Context, after uint64) ([][]byte, error)) Option {
	return func(m *Model) { m.checkpoints = read }
}

// ConfirmEvery sets how often the model asks the log for its last sequence
// to confirm it is current (default 1 s).
func ConfirmEvery(d time.Duration) Option { return func(m *Model) { m.confirmEvery = d } }

// VerificationOnly makes the model keep a verification-only catalog
// (projections.NewVerificationCatalog): a gateway's or an in-process
// verifier's, which never show keys' admin attributes.
func VerificationOnly() Option {
	return func(m *Model) { m.cat = projections.NewVerificationCatalog() }
}

// Trust pins the root public key: the model applies only signed events
// (docs/signing.md), also after restoring a snapshot.
func Trust(root ed25519.PublicKey) Option {
	return func(m *Model) { m.trust = root }
}

// VerifyOnly reports whether the model keeps a verification-only catalog.
func (m *Model) VerifyOnly() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.cat.VerifyOnly()
}

// New returns an empty model; Run fills it.
func New(log *slog.Logger, opts ...Option) *Model {
	m := &Model{log: log, now: time.Now, confirmEvery: time.Second, cat: projections.NewCatalog(), kick: make(chan struct{}, 1)}
	for _, o := range opts {
		o(m)
	}
	if m.trust != nil {
		m.cat.SetTrust(m.trust)
	}
	m.epoch = m.now()
	return m
}

// Checker is a store that can tell whether its stream is still the history
// it saw (store.JetStream): Check returns the stream's last sequence, or an
// error matching store.ErrRefused.
type Checker interface {
	Check(ctx context.Context) (uint64, error)
}

// Run tails st (events under filters, all when empty) until ctx ends. A
// subscription that fails (NATS gone, the stream's leader moving) is taken
// up again from the last applied sequence, with backoff; meanwhile nothing
// is confirmed, so the model turns stale and gateways answer STALE rather
// than exit. Only the first look at the log's last sequence must succeed.
//
// When st is a Checker, the stream is checked at start and with every
// confirmation: once it is refused (gone, rewound, made anew, weakened) the
// model stops applying, is neither ready nor fresh, and reports why
// (Refused) until ctx ends.
func (m *Model) Run(ctx context.Context, st store.Store, filters []string) error {
	target, err := m.lastChecked(ctx, st, filters)
	if errors.Is(err, store.ErrRefused) {
		<-ctx.Done()
		return nil
	}
	if err != nil {
		return fmt.Errorf("readmodel: last sequence: %w", err)
	}
	if from := m.applied.Load() + 1; target < from { // after a restored snapshot, or 1
		m.markReady(from - 1)
	}
	// followCtx ends when ctx does, or when the confirm loop refuses the
	// stream.
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.confirmLoop(followCtx, stopFollow, st, filters)
	}()
	defer wg.Wait()
	// The ceiling is low: a gateway whose link returns must catch up within
	// about 100 ms (product.md), and a failed attempt while the link is down
	// costs nothing but a local error.
	const minBackoff, maxBackoff = 20 * time.Millisecond, 100 * time.Millisecond
	backoff := minBackoff
	for {
		applied, err := m.follow(followCtx, st, filters, target)
		if ctx.Err() != nil {
			return nil
		}
		if m.Refused() != nil {
			<-ctx.Done()
			return nil
		}
		if applied > 0 {
			backoff = minBackoff
		}
		m.log.Warn("subscription lost; taking it up again", "after", m.applied.Load(), "in", backoff.String(), "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-followCtx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// follow subscribes after the last applied sequence and applies until the
// subscription fails or ctx ends; it returns how many messages it applied.
func (m *Model) follow(ctx context.Context, st store.Store, filters []string, target uint64) (int, error) {
	from := m.applied.Load() + 1
	sub, err := st.Subscribe(ctx, store.SubscribeOptions{From: from, Filters: filters})
	if err != nil {
		return 0, fmt.Errorf("readmodel: subscribe: %w", err)
	}
	defer sub.Close()
	var plan *catchUp
	if len(filters) == 0 && target >= from+catchUpAtLeast {
		plan = m.planCatchUp(ctx, from-1, target)
	}
	for n := 0; ; n++ {
		d, err := sub.Next(ctx)
		if err != nil {
			return n, fmt.Errorf("readmodel: %w", err)
		}
		if plan.take(d) {
			if cp, span, ok := plan.spanDone(); ok {
				m.applySpan(span, cp, target)
			}
			continue
		}
		m.apply(d, target, nil)
	}
}

// apply folds one delivery and moves the model's position. chain, when
// set, is the global chain after it, folded and checked against a
// checkpoint that vouches for its signature (applySpan).
func (m *Model) apply(d store.Delivery, target uint64, chain *events.Hash) {
	vouched := chain != nil
	m.mu.Lock()
	var err error
	if vouched {
		err = m.cat.TakeChained(d.Seq, *chain, d.Event, d.Err)
	} else {
		err = m.cat.Take(d.Seq, d.Raw, d.Event, d.Err)
	}
	if m.onTaken != nil {
		m.onTaken(m.cat, err)
	}
	m.mu.Unlock()
	switch {
	case m.trust == nil || d.Err != nil:
	case vouched:
		m.vouched.Add(1)
	default:
		m.verified.Add(1)
	}
	if err != nil && d.Err == nil {
		m.log.Warn("event not applied", "seq", d.Seq, "err", err)
	}
	// A message with nothing pending behind it confirms nothing: nothing
	// was pending when it was sent, which may be long before it is applied
	// (a pause, a backlog). Only the confirm loop's questions confirm.
	// Ready before the position moves: whoever waits for this sequence
	// (WaitFor) then sees the model ready too.
	if !m.ready.Load() && (d.Seq >= target || d.CaughtUp()) {
		m.markReady(d.Seq)
	}
	m.applied.Store(d.Seq)
	m.wake(&m.changed)
	if d.Err != nil {
		m.log.Warn("message is not a valid event", "seq", d.Seq, "err", d.Err)
	} else if m.ready.Load() && m.onApplied != nil {
		m.onApplied(&d.Event, m.now())
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

// refuse stops the model trusting the stream, and says why.
func (m *Model) refuse(err error) {
	if m.refused.CompareAndSwap(nil, &err) {
		m.ready.Store(false)
		m.log.Error("event stream refused: the read model stops applying from it until an operator has looked and restarted this node",
			"applied", m.applied.Load(), "err", err)
	}
}

// lastChecked is the last sequence under filters, after checking the
// stream when st can (one request for both when there are no filters); it
// refuses the stream for good when it is not the history the model knew.
// Other failures (NATS away) are not refusals.
func (m *Model) lastChecked(ctx context.Context, st store.Store, filters []string) (uint64, error) {
	c, ok := st.(Checker)
	if !ok {
		return lastOf(ctx, st, filters)
	}
	last, err := c.Check(ctx)
	if errors.Is(err, store.ErrRefused) {
		m.refuse(err)
	}
	if err != nil || len(filters) == 0 {
		return last, err
	}
	return lastOf(ctx, st, filters)
}

// Refused is why the model refused the stream, nil while it has not.
func (m *Model) Refused() error {
	if p := m.refused.Load(); p != nil {
		return *p
	}
	return nil
}

// confirmLoop asks the log for its last sequence every confirmEvery, and
// at once when Hold asks: once the model has applied it (waiting up to
// confirmEvery for the follower to get there), the model is confirmed
// current as of when the question was asked; otherwise the difference is
// its lag. When the log cannot be asked (NATS is gone), nothing is
// confirmed and staleness grows. When the stream is refused, it stops
// following (stop) and confirms nothing more.
func (m *Model) confirmLoop(ctx context.Context, stop context.CancelFunc, st store.Store, filters []string) {
	t := time.NewTicker(m.confirmEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kick:
		}
		asked := m.now()
		actx, cancel := context.WithTimeout(ctx, m.confirmEvery)
		last, err := m.lastChecked(actx, st, filters)
		if err == nil {
			if applied := m.applied.Load(); applied < last {
				m.lag.Store(last - applied)
				err = m.WaitFor(actx, last, m.confirmEvery)
			}
		}
		cancel()
		if errors.Is(err, store.ErrRefused) {
			stop()
			return
		}
		if err == nil {
			m.confirm(asked)
		}
	}
}

// Hold waits until the model is confirmed current by a question asked at
// or after since, asking for one at once; at most max (and ctx). It reports
// whether one came. A gateway holds a request with it after a pause (a
// stopped process, a GC stall, a cut link) rather than decide it from a
// model that may have missed what happened meanwhile.
func (m *Model) Hold(ctx context.Context, since time.Time, max time.Duration) bool {
	at := m.since(since)
	return m.await(ctx, max, &m.confirmCh, func() bool {
		if m.confirmed.Load() > at {
			return true
		}
		select {
		case m.kick <- struct{}{}:
		default: // a question is already asked
		}
		return false
	}) == nil
}

// ConfirmedWithin reports whether the model was confirmed current within w
// before now.
func (m *Model) ConfirmedWithin(now time.Time, w time.Duration) bool {
	return m.age(now) <= w
}

// age is how long before now the model was last confirmed current; a
// confirmation never made, or one later than now (a fake clock set back),
// is infinitely old.
func (m *Model) age(now time.Time) time.Duration {
	c := m.confirmed.Load()
	if a := m.since(now) + 1 - c; c != 0 && a >= 0 {
		return time.Duration(a)
	}
	return time.Duration(math.MaxInt64)
}

// since is t in the confirmed field's measure, less one.
func (m *Model) since(t time.Time) int64 { return int64(t.Sub(m.epoch)) }

// Freshness reports the applied sequence, how many messages the log had
// beyond it when last asked, and when the model last confirmed it was
// current (zero before the first confirmation).
func (m *Model) Freshness() (applied, lag uint64, confirmed time.Time) {
	if c := m.confirmed.Load(); c != 0 {
		confirmed = m.epoch.Add(time.Duration(c - 1))
	}
	return m.applied.Load(), m.lag.Load(), confirmed
}

// confirm records that the model was current at: it had applied all the
// log held then. Confirmations come one at a time (the confirm loop, and
// markReady before it runs).
func (m *Model) confirm(at time.Time) {
	m.confirmed.Store(m.since(at) + 1)
	m.lag.Store(0)
	m.wake(&m.confirmCh)
}

// signal wakes whoever waits for a change. Applying an event with nobody
// waiting costs a lock and no allocation: the channel is closed and made
// anew only once someone has taken it.
type signal struct {
	ch    chan struct{}
	taken bool
}

// wait is the channel the next wake closes (chMu held).
func (s *signal) wait() chan struct{} {
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	s.taken = true
	return s.ch
}

// wake wakes whoever awaits *sig (WaitFor: changed, Hold: confirmCh).
func (m *Model) wake(sig *signal) {
	m.chMu.Lock()
	if sig.taken {
		close(sig.ch)
		sig.ch, sig.taken = nil, false
	}
	m.chMu.Unlock()
}

// Stale reports whether the model has not confirmed it was current for
// longer than max: a gateway then answers STALE rather than trust it.
func (m *Model) Stale(max time.Duration) bool {
	return m.age(m.now()) > max || m.refused.Load() != nil
}

func (m *Model) markReady(seq uint64) {
	if m.refused.Load() != nil {
		return
	}
	m.confirm(m.now())
	m.ready.Store(true)
	m.wake(&m.changed) // WaitReady
	m.log.Info("read model caught up", "seq", seq)
}

// Ready reports whether the model has caught up with the log as it was when
// Run started.
func (m *Model) Ready() bool { return m.ready.Load() }

// Applied is the stream sequence of the last message the model applied.
func (m *Model) Applied() uint64 { return m.applied.Load() }

// ErrBehind: the model did not apply the sequence asked for in time.
var ErrBehind = errors.New("readmodel: not caught up with the requested sequence")

// WaitFor blocks until seq is applied, at most max (and ctx).
func (m *Model) WaitFor(ctx context.Context, seq uint64, max time.Duration) error {
	return m.await(ctx, max, &m.changed, func() bool { return m.applied.Load() >= seq })
}

// WaitReady blocks until the model is Ready or ctx ends.
func (m *Model) WaitReady(ctx context.Context) error {
	return m.await(ctx, 0, &m.changed, m.Ready)
}

// await checks done each time the channel *ch (closed and replaced under
// chMu) is closed, until done holds (nil), max passes (ErrBehind; 0: no
// bound) or ctx ends.
func (m *Model) await(ctx context.Context, max time.Duration, sig *signal, done func() bool) error {
	var deadline <-chan time.Time
	if max > 0 {
		t := time.NewTimer(max)
		defer t.Stop()
		deadline = t.C
	}
	for {
		// The channel first: a change after the check below closes it.
		m.chMu.Lock()
		changed := sig.wait()
		m.chMu.Unlock()
		if done() {
			return nil
		}
		select {
		case <-changed:
		case <-deadline:
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

package readmodel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/projections"
)

func TestModelCatchesUpThenFollows(t *testing.T) {
	st := store.NewMemory()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := st.Append(ctx, store.Head{}, storetest.Event("acme", events.TenantAggregate("acme"), events.TenantCreatedV1{Name: "A"}, "c"))
	if err != nil {
		t.Fatal(err)
	}
	st.PublishRaw("keytrail.evt.acme.a.x", []byte("garbage"))
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, st, nil) }()
	if err := m.WaitFor(ctx, 2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !m.Ready() {
		t.Fatal("caught up but not ready")
	}
	u, err := st.Append(ctx, store.Head{}, storetest.Event("acme", events.UserAggregate("bob"), events.UserCreatedV1{}, "u"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitFor(ctx, u[0].Seq, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	m.Read(func(c *projections.Catalog) {
		if _, ok := c.User("acme", "bob"); !ok || c.Skipped != 1 {
			t.Errorf("user missing or garbage not counted (%d)", c.Skipped)
		}
		if _, ok := c.Tenant("acme"); !ok {
			t.Error("tenant missing")
		}
	})
	if m.Applied() != u[0].Seq || r[0].Seq != 1 {
		t.Fatalf("applied %d", m.Applied())
	}
	if err := m.WaitFor(ctx, 99, 20*time.Millisecond); !errors.Is(err, ErrBehind) {
		t.Fatalf("WaitFor a future seq: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestEmptyLogIsReadyAtOnce(t *testing.T) {
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	early, stopEarly := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer stopEarly()
	if err := m.WaitReady(early); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady on a model not running: %v, want its context's end", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, store.NewMemory(), nil) }()
	wait, stopWait := context.WithTimeout(ctx, 5*time.Second)
	defer stopWait()
	// Ready with no event applied: WaitReady is woken all the same.
	if err := m.WaitReady(wait); err != nil || !m.Ready() {
		t.Fatalf("an empty log never became ready: %v", err)
	}
	cancel()
	<-done
}

// flakyStore fails LastSeq while down is set, as a store whose NATS is gone.
type flakyStore struct {
	store.Store
	mu   sync.Mutex
	down bool
}

func (f *flakyStore) set(down bool) { f.mu.Lock(); f.down = down; f.mu.Unlock() }

func (f *flakyStore) LastSeq(ctx context.Context, filter string) (uint64, error) {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return 0, errors.New("nats: connection closed")
	}
	return f.Store.LastSeq(ctx, filter)
}

func TestFreshnessAndStaleness(t *testing.T) {
	_, m, st, clock, advance, r := modelOnAFakeClock(t, 5*time.Millisecond)
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.NewTimer(5 * time.Second)
		defer deadline.Stop()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for !cond() {
			select {
			case <-deadline.C:
				t.Fatalf("never %s", what)
			case <-tick.C:
			}
		}
	}
	waitUntil("confirmed current", func() bool { _, _, c := m.Freshness(); return c.Equal(clock()) })
	if m.Stale(30 * time.Second) {
		t.Fatal("stale right after confirming")
	}
	// NATS goes away: nothing is confirmed while the clock runs on.
	st.set(true)
	advance(31 * time.Second)
	waitUntil("stale", func() bool { return m.Stale(30 * time.Second) })
	// It comes back: the next confirmation makes the model fresh again.
	st.set(false)
	waitUntil("fresh again", func() bool { return !m.Stale(30 * time.Second) })
	if applied, lag, _ := m.Freshness(); applied != r[0].Seq || lag != 0 {
		t.Fatalf("applied %d lag %d", applied, lag)
	}
}

// flaky is a store whose first subscriptions fail after one delivery, as a
// subscription does when NATS goes away.
type flaky struct {
	store.Store
	mu       sync.Mutex
	failures int
	froms    []uint64
}

func (f *flaky) Subscribe(ctx context.Context, opts store.SubscribeOptions) (store.Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.froms = append(f.froms, opts.From)
	sub, err := f.Store.Subscribe(ctx, opts)
	if err != nil || f.failures == 0 {
		return sub, err
	}
	f.failures--
	return &failAfterOne{Subscription: sub}, nil
}

type failAfterOne struct {
	store.Subscription
	n int
}

func (s *failAfterOne) Next(ctx context.Context) (store.Delivery, error) {
	if s.n++; s.n > 1 {
		return store.Delivery{}, errors.New("nats: connection closed")
	}
	return s.Subscription.Next(ctx)
}

// TestModelTakesUpALostSubscription: a failing subscription does not end the
// model: it subscribes again after what it applied, and every event is
// applied exactly once.
func TestModelTakesUpALostSubscription(t *testing.T) {
	mem := store.NewMemory()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var last uint64
	for _, u := range []string{"a", "b", "c", "d"} {
		r, err := mem.Append(ctx, store.Head{}, storetest.Event("acme", events.UserAggregate(u), events.UserCreatedV1{}, u))
		if err != nil {
			t.Fatal(err)
		}
		last = r[0].Seq
	}
	st := &flaky{Store: mem, failures: 3}
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, st, nil) }()
	if err := m.WaitFor(ctx, last, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	m.Read(func(c *projections.Catalog) {
		for _, u := range []string{"a", "b", "c", "d"} {
			if _, ok := c.User("acme", u); !ok {
				t.Errorf("user %s missing", u)
			}
		}
		if c.Skipped != 0 {
			t.Errorf("%d messages skipped: an event applied twice is unlinked", c.Skipped)
		}
	})
	st.mu.Lock()
	froms := fmt.Sprint(st.froms)
	st.mu.Unlock()
	if froms != "[1 2 3 4]" {
		t.Fatalf("subscribed from %s, want after each applied event", froms)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// refusingStore is a memory store that can say its stream is no longer the
// history it saw, as store.JetStream's Check does.
type refusingStore struct {
	*store.Memory
	mu     sync.Mutex
	reason string
}

func (s *refusingStore) Check(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reason != "" {
		return 0, &store.IntegrityError{Reason: s.reason}
	}
	return s.LastSeq(ctx, "")
}

// TestModelRefusesAStreamThatIsNotItsHistory: once the stream is refused,
// the model applies nothing more, is neither ready nor fresh, and says why;
// a store refused at start is never trusted at all.
func TestModelRefusesAStreamThatIsNotItsHistory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := &refusingStore{Memory: store.NewMemory()}
	st.Append(ctx, store.Head{}, storetest.Event("acme", events.TenantAggregate("acme"), events.TenantCreatedV1{Name: "A"}, "c"))
	m := New(slog.New(slog.DiscardHandler), ConfirmEvery(5*time.Millisecond))
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, st, nil) }()
	if err := m.WaitFor(ctx, 1, 5*time.Second); err != nil || !m.Ready() {
		t.Fatalf("caught up: %v, ready %v", err, m.Ready())
	}
	st.mu.Lock()
	st.reason = "made anew"
	st.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for m.Refused() == nil && time.Now().Before(deadline) {
		m.WaitFor(ctx, 2, 5*time.Millisecond) // returns at once or after 5 ms: a bounded poll
	}
	if err := m.Refused(); !errors.Is(err, store.ErrRefused) || m.Ready() || !m.Stale(time.Hour) {
		t.Fatalf("refused %v, ready %v, stale %v", err, m.Ready(), m.Stale(time.Hour))
	}
	st.Append(ctx, store.Head{}, storetest.Event("acme", events.UserAggregate("bob"), events.UserCreatedV1{}, "u"))
	if err := m.WaitFor(ctx, 2, 200*time.Millisecond); !errors.Is(err, ErrBehind) {
		t.Fatalf("applied from a refused stream: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Refused from the start: never ready.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	m2 := New(slog.New(slog.DiscardHandler))
	go m2.Run(ctx2, st, nil)
	if err := m2.WaitFor(ctx2, 1, 200*time.Millisecond); !errors.Is(err, ErrBehind) || m2.Ready() {
		t.Fatalf("a model on a refused stream applied: %v, ready %v", err, m2.Ready())
	}
	if m2.Refused() == nil {
		t.Fatal("no reason given")
	}
}

// TestHoldAsksForAConfirmationAtOnce: with confirmations rare, Hold gets
// one asked after the moment it is given (on the injected clock) without
// waiting for the next tick, and gives up after its bound when the log
// cannot be asked.
func TestHoldAsksForAConfirmationAtOnce(t *testing.T) {
	ctx, m, st, clock, advance, _ := modelOnAFakeClock(t, time.Hour)
	// A pause: the clock runs on and nothing is confirmed.
	advance(2 * time.Second)
	since := clock()
	if m.ConfirmedWithin(since, 100*time.Millisecond) {
		t.Fatal("confirmed within the window after a 2 s pause")
	}
	if !m.Hold(ctx, since, 5*time.Second) {
		t.Fatal("no confirmation came though the log answers")
	}
	if _, _, c := m.Freshness(); c.Before(since) {
		t.Fatalf("confirmed at %v, before the hold began at %v", c, since)
	}
	// The log cannot be asked: Hold gives up after its bound, confirming
	// nothing.
	st.set(true)
	advance(time.Second)
	since = clock()
	if m.Hold(ctx, since, 50*time.Millisecond) {
		t.Fatal("confirmed though the log cannot be asked")
	}
	if m.ConfirmedWithin(since, 0) {
		t.Fatal("a confirmation moved while the log was away")
	}
}

// modelOnAFakeClock runs a model confirming every confirmEvery on a fake
// clock (advance moves it) over a store that can be made to fail, caught
// up with one event (r).
func modelOnAFakeClock(t *testing.T, confirmEvery time.Duration) (ctx context.Context, m *Model, st *flakyStore,
	clock func() time.Time, advance func(time.Duration), r []events.Recorded) {
	t.Helper()
	mem := store.NewMemory()
	st = &flakyStore{Store: mem}
	var clockMu sync.Mutex
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clock = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	advance = func(d time.Duration) { clockMu.Lock(); now = now.Add(d); clockMu.Unlock() }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	m = New(slog.New(slog.DiscardHandler), WithClock(clock), ConfirmEvery(confirmEvery))
	done := make(chan struct{})
	go func() { m.Run(ctx, st, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	r, err := mem.Append(ctx, store.Head{}, storetest.Event("acme", events.TenantAggregate("acme"), events.TenantCreatedV1{Name: "A"}, "c"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitFor(ctx, r[0].Seq, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	return ctx, m, st, clock, advance, r
}

// TestOnlyAQuestionToTheLogConfirms: a message with nothing pending behind
// it, applied after a hold began, does not satisfy the hold: nothing was
// pending when it was sent, which says nothing of the log now.
func TestOnlyAQuestionToTheLogConfirms(t *testing.T) {
	m := New(slog.New(slog.DiscardHandler), ConfirmEvery(time.Hour)) // not running: nobody asks the log
	m.markReady(0)
	since := m.now()
	go m.apply(store.Delivery{Seq: 1}, 0, nil) // Pending 0: caught up when sent
	if m.Hold(context.Background(), since, 200*time.Millisecond) {
		t.Fatal("a delivery applied after the hold began confirmed the model current")
	}
}

// TestAClockSetBackNeverMakesAModelFresh: a confirmation later than the
// clock's now (the clock was set back) counts as none, so a model cut from
// the log goes stale.
func TestAClockSetBackNeverMakesAModelFresh(t *testing.T) {
	_, m, st, _, advance, _ := modelOnAFakeClock(t, 5*time.Millisecond)
	advance(-time.Hour)
	st.set(true) // the link is cut
	advance(30 * time.Minute)
	if !m.Stale(5 * time.Second) {
		t.Fatal("a model cut from the log for 30 min is fresh after the clock was set back an hour")
	}
	if m.ConfirmedWithin(m.now(), 5*time.Second) {
		t.Fatal("confirmed within the window after the clock was set back")
	}
}

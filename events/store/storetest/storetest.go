// Package storetest is the conformance suite every store.Store must pass:
// the in-memory fake and the JetStream store on one node and on a
// three-node cluster run the same tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
)

// Harness adapts an implementation to the suite.
type Harness struct {
	// Store returns the store under test. It may be shared between subtests:
	// each works in a tenant of its own.
	Store func(t *testing.T) store.Store
	// PublishRaw stores bytes on a subject without going through the store,
	// as a misbehaving publisher could.
	PublishRaw func(t *testing.T, subject string, data []byte)
}

var tenantSeq atomic.Uint64

// newTenant returns a tenant id no other subtest of this process uses.
func newTenant() string {
	return fmt.Sprintf("t%d-%d", time.Now().UnixNano()%1_000_000_007, tenantSeq.Add(1))
}

// Now is the fixed time of every event the suite writes.
var Now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// Event builds a valid event of type typ on agg. It panics on a bad type,
// which only a bug in a test can cause.
func Event(tenant string, agg events.Aggregate, data events.Payload, cmd string) events.Event {
	id, err := events.NewEventID(Now)
	if err != nil {
		panic(err)
	}
	return events.Event{
		ID: id, Type: data.EventType(), Tenant: tenant, Aggregate: agg, Actor: "storetest",
		OccurredAt: Now, CommandID: cmd, Data: data,
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAppend(t *testing.T, s store.Store, head store.Head, evs ...events.Event) []events.Recorded {
	t.Helper()
	recs, err := s.Append(ctxFor(t), head, evs...)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(recs) != len(evs) {
		t.Fatalf("Append returned %d records for %d events", len(recs), len(evs))
	}
	return recs
}

func headOf(recs []events.Recorded) store.Head {
	last := recs[len(recs)-1]
	return store.Head{Seq: last.Seq, Hash: last.Hash}
}

func lastSeq(t *testing.T, s store.Store, tenant string) uint64 {
	t.Helper()
	f, _ := events.TenantFilter(tenant)
	seq, err := s.LastSeq(ctxFor(t), f)
	if err != nil {
		t.Fatalf("LastSeq: %v", err)
	}
	return seq
}

func load(t *testing.T, s store.Store, tenant string, agg events.Aggregate) store.History {
	t.Helper()
	h, err := s.Load(ctxFor(t), tenant, agg)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return h
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"AppendLoadAndChain", testAppendLoadAndChain},
		{"NewAggregateExpectsZeroHead", testNewAggregate},
		{"StaleHeadConflictsAndAppendsNothing", testStaleHead},
		{"ConcurrentAppendersOneWins", testConcurrent},
		{"RetriedCommandAppendsOnce", testRetry},
		{"MultiEventAppendIsAtomic", testMulti},
		{"CommandIDsAreScopedByAggregate", testCommandScope},
		{"InvalidAppendChangesNothing", testInvalid},
		{"SubscribeReplaysThenTails", testSubscribe},
		{"SubscribeFromSequenceAndFilter", testSubscribeFrom},
		{"UndecodableMessagesAreReportedNotApplied", testGarbage},
		{"SubscriptionStops", testSubscriptionStops},
		{"AtomicAppendToSeveralAggregates", testAtomic},
		{"ScopeClosesCrossAggregateRaces", testScope},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func testAppendLoadAndChain(t *testing.T, h Harness) {
	s, tenant := h.Store(t), newTenant()
	agg := events.TenantAggregate(tenant)
	if got := load(t, s, tenant, agg); len(got.Events) != 0 || got.Head != (store.Head{}) {
		t.Fatalf("unknown aggregate loads as %+v", got)
	}
	r1 := mustAppend(t, s, store.Head{}, Event(tenant, agg, events.TenantCreatedV1{Name: "A"}, "c1"))
	r2 := mustAppend(t, s, headOf(r1), Event(tenant, agg, events.TenantSuspendedV1{}, "c2"))
	r3 := mustAppend(t, s, headOf(r2), Event(tenant, agg, events.TenantResumedV1{}, "c3"))
	hist := load(t, s, tenant, agg)
	want := []events.Recorded{r1[0], r2[0], r3[0]}
	if len(hist.Events) != 3 {
		t.Fatalf("loaded %d events, want 3", len(hist.Events))
	}
	var prev events.Hash
	for i, got := range hist.Events {
		if got.Seq != want[i].Seq || got.Hash != want[i].Hash || got.ID != want[i].ID || got.Type != want[i].Type {
			t.Fatalf("event %d: loaded seq %d %s %s, appended seq %d %s %s", i, got.Seq, got.Type, got.Hash, want[i].Seq, want[i].Type, want[i].Hash)
		}
		if got.PrevHash != prev {
			t.Fatalf("event %d does not link: prev %s, want %s", i, got.PrevHash, prev)
		}
		if i > 0 && got.Seq <= hist.Events[i-1].Seq {
			t.Fatalf("sequences not increasing: %d after %d", got.Seq, hist.Events[i-1].Seq)
		}
		prev = got.Hash
	}
	if got, err := s.Get(ctxFor(t), r2[0].Seq); err != nil || got.ID != r2[0].ID || got.Hash != r2[0].Hash {
		t.Fatalf("Get(%d) = %v, %v", r2[0].Seq, got.ID, err)
	}
	if _, err := s.Get(ctxFor(t), 1<<40); err == nil {
		t.Fatal("Get of a sequence past the end succeeded")
	}
	if hist.Head != headOf(r3) {
		t.Fatalf("head %+v, want %+v", hist.Head, headOf(r3))
	}
	if got := lastSeq(t, s, tenant); got != r3[0].Seq {
		t.Fatalf("LastSeq %d, want %d", got, r3[0].Seq)
	}
}

func testNewAggregate(t *testing.T, h Harness) {
	s, tenant := h.Store(t), newTenant()
	agg := events.UserAggregate("u1")
	mustAppend(t, s, store.Head{}, Event(tenant, agg, events.UserCreatedV1{Name: "a"}, "a"))
	before := lastSeq(t, s, tenant)
	_, err := s.Append(ctxFor(t), store.Head{}, Event(tenant, agg, events.UserCreatedV1{Name: "b"}, "b"))
	var ce *store.ConflictError
	if !errors.Is(err, store.ErrConflict) || !errors.As(err, &ce) {
		t.Fatalf("second create: %v, want a conflict", err)
	}
	if ce.Expected != 0 || ce.Actual != before {
		t.Fatalf("conflict says expected %d found %d; want 0 and %d", ce.Expected, ce.Actual, before)
	}
	if after := lastSeq(t, s, tenant); after != before {
		t.Fatalf("a conflicting append moved the log from %d to %d", before, after)
	}
}

func testStaleHead(t *testing.T, h Harness) {
	s, tenant := h.Store(t), newTenant()
	agg := events.KeyAggregate("u1", "key_01JDQ8Z6W4M2N9V3X5C7B1A0ZY")
	issued := events.KeyIssuedV1{SecretHash: events.SecretHash{1}, Hint: "kt_…abcd", Scopes: []string{"a"}}
	r1 := mustAppend(t, s, store.Head{}, Event(tenant, agg, issued, "i"))
	mustAppend(t, s, headOf(r1), Event(tenant, agg, events.KeySuspendedV1{}, "s"))
	before := lastSeq(t, s, tenant)
	_, err := s.Append(ctxFor(t), headOf(r1), Event(tenant, agg, events.KeyRevokedV1{}, "r"))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("append on a stale head: %v, want a conflict", err)
	}
	if after := lastSeq(t, s, tenant); after != before {
		t.Fatalf("a conflicting append moved the log from %d to %d", before, after)
	}
	if n := len(load(t, s, tenant, agg).Events); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
}

// testConcurrent is reliability test (a): N appenders, one expected head,
// exactly one wins and every other gets the conflict error.
func testConcurrent(t *testing.T, h Harness) {
	s, tenant := h.Store(t), newTenant()
	agg := events.APIAggregate("orders")
	created := events.APICreatedV1{PathPrefix: "/orders", Upstreams: []string{"http://127.0.0.1:1"}}
	r := mustAppend(t, s, store.Head{}, Event(tenant, agg, created, "create"))
	const n = 16
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.Append(ctxFor(t), headOf(r), Event(tenant, agg, events.APIRetiredV1{}, fmt.Sprintf("retire-%d", i)))
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, store.ErrConflict):
				conflicts.Add(1)
			default:
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("unexpected error: %v", err)
	}
	if wins.Load() != 1 || conflicts.Load() != n-1 {
		t.Fatalf("%d wins and %d conflicts, want 1 and %d", wins.Load(), conflicts.Load(), n-1)
	}
	if got := len(load(t, s, tenant, agg).Events); got != 2 {
		t.Fatalf("%d events, want 2", got)
	}
}

// testRetry is reliability test (b): a retried append with the same command
// id yields one event, whether the retry sees the old head or a newer one.
func testRetry(t *testing.T, h Harness) {
	s, tenant := h.Store(t), newTenant()
	agg := events.TenantAggregate(tenant)
	first := mustAppend(t, s, store.Head{}, Event(tenant, agg, events.TenantCreatedV1{Name: "A"}, "create"))
	// A retry rebuilds its events: new event id, same command id.
	again := mustAppend(t, s, store.Head{}, Event(tenant, agg, events.TenantCreatedV1{Name: "A"}, "create"))
	if again[0].Seq != first[0].Seq || again[0].ID != first[0].ID {
		t.Fatalf("retry recorded seq %d id %s, first was seq %d id %s", again[0].Seq, again[0].ID, first[0].Seq, first[0].ID)
	}
	second := mustAppend(t, s, headOf(first), Event(tenant, agg, events.TenantSuspendedV1{}, "suspend"))
	// A late retry of the first command, after another command moved the head.
	late := mustAppend(t, s, store.Head{}, Event(tenant, agg, events.TenantCreatedV1{Name: "A"}, "create"))
	if late[0].Seq != first[0].Seq {
		t.Fatalf("late retry answered seq %d, want %d", late[0].Seq, first[0].Seq)
	}
	// And a retry of the second with the current head.
	dup := mustAppend(t, s, headOf(second), Event(tenant, agg, events.TenantSuspendedV1{}, "suspend"))
	if dup[0].Seq != second[0].Seq {
		t.Fatalf("retry with the current head answered seq %d, want %d", dup[0].Seq, second[0].Seq)
	}
	if n := len(load(t, s, tenant, agg).Events); n != 2 {
		t.Fatalf("%d events after retries, want 2", n)
	}
}

func testMulti(t *testing.T, h Harness) {
	s, tenant := h.Store(t), newTenant()
	agg := events.UserAggregate("bob")
	batch := func(cmd string) []events.Event {
		return []events.Event{
			Event(tenant, agg, events.UserCreatedV1{Name: "Bob"}, cmd),
			Event(tenant, agg, events.UserDisabledV1{}, cmd),
			Event(tenant, agg, events.UserEnabledV1{}, cmd),
		}
	}
	recs := mustAppend(t, s, store.Head{}, batch("onboard")...)
	for i := 1; i < len(recs); i++ {
		if recs[i].Seq != recs[i-1].Seq+1 || recs[i].PrevHash != recs[i-1].Hash {
			t.Fatalf("batch not contiguous and chained: %+v", recs)
		}
	}
	again := mustAppend(t, s, store.Head{}, batch("onboard")...)
	if again[0].Seq != recs[0].Seq || again[2].Seq != recs[2].Seq {
		t.Fatalf("retried batch answered %d..%d, want %d..%d", again[0].Seq, again[2].Seq, recs[0].Seq, recs[2].Seq)
	}
	before := lastSeq(t, s, tenant)
	if _, err := s.Append(ctxFor(t), store.Head{}, batch("other")...); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("conflicting batch: %v", err)
	}
	if after := lastSeq(t, s, tenant); after != before {
		t.Fatalf("a conflicting batch appended %d messages", after-before)
	}
	if n := len(load(t, s, tenant, agg).Events); n != 3 {
		t.Fatalf("%d events, want 3", n)
	}
}

func testCommandScope(t *testing.T, h Harness) {
	s := h.Store(t)
	a, b := newTenant(), newTenant()
	ra := mustAppend(t, s, store.Head{}, Event(a, events.TenantAggregate(a), events.TenantCreatedV1{Name: "A"}, "same-key"))
	rb := mustAppend(t, s, store.Head{}, Event(b, events.TenantAggregate(b), events.TenantCreatedV1{Name: "B"}, "same-key"))
	if ra[0].Seq == rb[0].Seq {
		t.Fatal("two tenants' equal command ids collapsed into one event")
	}
}

func testInvalid(t *testing.T, h Harness) {
	s, tenant := h.Store(t), newTenant()
	ta := events.TenantAggregate(tenant)
	mustAppend(t, s, store.Head{}, Event(tenant, ta, events.TenantCreatedV1{Name: "A"}, "c"))
	before := lastSeq(t, s, tenant)
	bad := Event(tenant, ta, events.TenantSuspendedV1{}, "x")
	bad.Actor = ""
	other := Event(tenant, events.UserAggregate("u"), events.UserCreatedV1{}, "x")
	otherCmd := Event(tenant, ta, events.TenantResumedV1{}, "y")
	many := make([]events.Event, store.MaxAppend+1)
	for i := range many {
		many[i] = Event(tenant, events.UserAggregate("m"), events.UserDisabledV1{}, "m")
	}
	for name, evs := range map[string][]events.Event{
		"none":                nil,
		"invalid event":       {bad},
		"two aggregates":      {Event(tenant, ta, events.TenantSuspendedV1{}, "x"), other},
		"two commands":        {Event(tenant, ta, events.TenantSuspendedV1{}, "x"), otherCmd},
		"more than MaxAppend": many,
		"dotted user id":      {Event(tenant, events.UserAggregate("a.b"), events.UserCreatedV1{}, "z")},
		"wildcard in tenant":  {Event("t*", events.TenantAggregate("t*"), events.TenantCreatedV1{Name: "x"}, "z")},
		"space in command id": {Event(tenant, ta, events.TenantSuspendedV1{}, "a b")},
	} {
		if _, err := s.Append(ctxFor(t), store.Head{Seq: before}, evs...); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if after := lastSeq(t, s, tenant); after != before {
		t.Fatalf("invalid appends moved the log from %d to %d", before, after)
	}
}

func subscribe(t *testing.T, s store.Store, opts store.SubscribeOptions) store.Subscription {
	t.Helper()
	sub, err := s.Subscribe(ctxFor(t), opts)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub
}

func next(t *testing.T, sub store.Subscription) store.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return d
}

func testSubscribe(t *testing.T, h Harness) {
	s, tenant := h.Store(t), newTenant()
	var appended []events.Recorded
	head := store.Head{}
	for i := range 5 {
		agg := events.UserAggregate(fmt.Sprintf("u%d", i))
		r := mustAppend(t, s, head, Event(tenant, agg, events.UserCreatedV1{}, "c"))
		appended = append(appended, r...)
	}
	f, _ := events.TenantFilter(tenant)
	sub := subscribe(t, s, store.SubscribeOptions{Filters: []string{f}})
	for i, want := range appended {
		d := next(t, sub)
		if d.Err != nil || d.Seq != want.Seq || d.Event.ID != want.ID || d.Event.Hash != want.Hash || d.Event.Seq != want.Seq {
			t.Fatalf("delivery %d: seq %d err %v, want seq %d", i, d.Seq, d.Err, want.Seq)
		}
		if d.CaughtUp() != (i == len(appended)-1) {
			t.Fatalf("delivery %d: pending %d", i, d.Pending)
		}
	}
	live := mustAppend(t, s, store.Head{}, Event(tenant, events.UserAggregate("late"), events.UserCreatedV1{}, "c"))
	if d := next(t, sub); d.Seq != live[0].Seq || !d.CaughtUp() {
		t.Fatalf("tail delivered seq %d pending %d, want %d", d.Seq, d.Pending, live[0].Seq)
	}
}

func testSubscribeFrom(t *testing.T, h Harness) {
	s, a, b := h.Store(t), newTenant(), newTenant()
	var mine, both []events.Recorded
	for i := range 4 {
		u := events.UserAggregate(fmt.Sprintf("u%d", i))
		ra := mustAppend(t, s, store.Head{}, Event(a, u, events.UserCreatedV1{}, "c"))
		rb := mustAppend(t, s, store.Head{}, Event(b, u, events.UserCreatedV1{}, "c"))
		mine = append(mine, ra...)
		both = append(both, ra[0], rb[0])
	}
	fa, _ := events.TenantFilter(a)
	sub := subscribe(t, s, store.SubscribeOptions{From: mine[2].Seq, Filters: []string{fa}})
	for _, want := range mine[2:] {
		if d := next(t, sub); d.Seq != want.Seq || d.Event.Tenant != a {
			t.Fatalf("got seq %d of %s, want seq %d of %s", d.Seq, d.Event.Tenant, want.Seq, a)
		}
	}
	fu, _ := events.UserScopeFilter(a, "u1")
	if all, err := s.LoadAll(ctxFor(t), fu); err != nil || len(all) != 1 || all[0].Seq != mine[1].Seq {
		t.Fatalf("LoadAll(%s) = %d events, %v", fu, len(all), err)
	}
	// Several filters (a gateway serving several tenants): one ordered feed.
	fb, _ := events.TenantFilter(b)
	two := subscribe(t, s, store.SubscribeOptions{From: both[0].Seq, Filters: []string{fa, fb}})
	for _, want := range both {
		if d := next(t, two); d.Seq != want.Seq {
			t.Fatalf("two tenants: got seq %d, want %d", d.Seq, want.Seq)
		}
	}
}

// testGarbage is reliability test (e): a message on an event subject that is
// not a valid event is reported by the reader, which goes on, and by Load,
// and the aggregate stays writable.
func testGarbage(t *testing.T, h Harness) {
	s, tenant := h.Store(t), newTenant()
	agg := events.TenantAggregate(tenant)
	subj, _ := events.Subject(tenant, agg)
	r := mustAppend(t, s, store.Head{}, Event(tenant, agg, events.TenantCreatedV1{Name: "A"}, "c"))
	h.PublishRaw(t, subj, []byte("definitely not an event"))
	// A valid event of another aggregate copied onto this subject.
	stray := Event(tenant, events.APIAggregate("x"), events.APIRetiredV1{}, "stray")
	b, err := events.Encode(&stray)
	if err != nil {
		t.Fatal(err)
	}
	h.PublishRaw(t, subj, b)
	// A well-formed event of this aggregate that does not link (a forgery).
	forged := Event(tenant, agg, events.TenantResumedV1{}, "forged")
	forged.PrevHash = events.HashOf([]byte("not the previous event"))
	if b, err = events.Encode(&forged); err != nil {
		t.Fatal(err)
	}
	h.PublishRaw(t, subj, b)
	hist := load(t, s, tenant, agg)
	if len(hist.Events) != 1 || len(hist.Quarantined) != 3 {
		t.Fatalf("load: %d events, %d quarantined; want 1 and 3", len(hist.Events), len(hist.Quarantined))
	}
	if !errors.Is(hist.Quarantined[2].Err, store.ErrUnlinked) {
		t.Fatalf("the forgery was quarantined for %v, want ErrUnlinked", hist.Quarantined[2].Err)
	}
	if hist.Head.Hash != r[0].Hash || hist.Head.Seq != hist.Quarantined[2].Seq {
		t.Fatalf("head %+v: want the last message's seq and the last event's hash", hist.Head)
	}
	after := mustAppend(t, s, hist.Head, Event(tenant, agg, events.TenantSuspendedV1{}, "s"))
	if after[0].PrevHash != r[0].Hash {
		t.Fatal("the chain links through garbage")
	}
	f, _ := events.TenantFilter(tenant)
	sub := subscribe(t, s, store.SubscribeOptions{Filters: []string{f}})
	// The reader is stateless: it reports what does not decode or sits on
	// the wrong subject; linking is checked by whoever folds (projections).
	want := []bool{true, false, false, true, true} // decodes?
	for i, ok := range want {
		d := next(t, sub)
		if (d.Err == nil) != ok {
			t.Fatalf("delivery %d (seq %d): err %v, want valid=%v", i, d.Seq, d.Err, ok)
		}
		var de *events.DecodeError
		if !ok && !errors.As(d.Err, &de) {
			t.Fatalf("delivery %d: %T is not a *events.DecodeError", i, d.Err)
		}
	}
}

func testSubscriptionStops(t *testing.T, h Harness) {
	s, tenant := h.Store(t), newTenant()
	f, _ := events.TenantFilter(tenant)
	sub := subscribe(t, s, store.SubscribeOptions{Filters: []string{f}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on an idle log: %v, want the context's error", err)
	}
	sub.Close()
	if _, err := sub.Next(context.Background()); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Next after Close: %v, want ErrClosed", err)
	}
}

func issuedKey(hash byte) events.KeyIssuedV1 {
	return events.KeyIssuedV1{SecretHash: events.SecretHash{hash}, Hint: "kt_…abcd", Scopes: []string{"a"}}
}

const (
	keyOld = "key_01JDQ8Z6W4M2N9V3X5C7B1A0ZY"
	keyNew = "key_01JDQ8ZB0000000000000000AB"
)

// testAtomic: a rotation writes the successor and marks the old key in one
// atomic append; a stale expectation on either appends nothing.
func testAtomic(t *testing.T, h Harness) {
	s, tenant := h.Store(t), newTenant()
	oldKey, newKey := events.KeyAggregate("bob", keyOld), events.KeyAggregate("bob", keyNew)
	r := mustAppend(t, s, store.Head{}, Event(tenant, oldKey, issuedKey(1), "issue"))
	rotate := func(cmd string, oldHead store.Head) []store.Write {
		return []store.Write{
			{Expect: store.Head{}, Events: []events.Event{Event(tenant, newKey, events.KeyIssuedV1{SecretHash: events.SecretHash{2}, Hint: "h", RotatedFrom: keyOld}, cmd)}},
			{Expect: oldHead, Events: []events.Event{Event(tenant, oldKey, events.KeyRotatedV1{Successor: keyNew, GraceUntil: Now}, cmd)}},
		}
	}
	before := lastSeq(t, s, tenant)
	if _, err := s.AppendAtomic(ctxFor(t), nil, rotate("stale", store.Head{Seq: r[0].Seq + 1000, Hash: r[0].Hash})...); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale second write: %v", err)
	}
	if after := lastSeq(t, s, tenant); after != before {
		t.Fatalf("a failed atomic append wrote %d messages", after-before)
	}
	recs, err := s.AppendAtomic(ctxFor(t), nil, rotate("rotate", headOf(r))...)
	if err != nil || len(recs) != 2 || recs[1].Seq != recs[0].Seq+1 || recs[1].PrevHash != r[0].Hash || !recs[0].PrevHash.IsZero() {
		t.Fatalf("rotation: %+v, %v", recs, err)
	}
	again, err := s.AppendAtomic(ctxFor(t), nil, rotate("rotate", headOf(r))...)
	if err != nil || again[0].Seq != recs[0].Seq || again[1].Seq != recs[1].Seq {
		t.Fatalf("retried rotation: %+v, %v", again, err)
	}
	if n := len(load(t, s, tenant, newKey).Events) + len(load(t, s, tenant, oldKey).Events); n != 3 {
		t.Fatalf("%d events, want 3", n)
	}
	if user, found, err := s.FindKey(ctxFor(t), tenant, keyNew); err != nil || !found || user != "bob" {
		t.Fatalf("FindKey = %q, %v, %v", user, found, err)
	}
	if _, found, err := s.FindKey(ctxFor(t), newTenant(), keyNew); err != nil || found {
		t.Fatalf("FindKey in another tenant = %v, %v", found, err)
	}
	if _, _, err := s.FindKey(ctxFor(t), tenant, "key_*"); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("FindKey with a wildcard id: %v", err)
	}
	same := store.Write{Expect: store.Head{}, Events: []events.Event{Event(tenant, newKey, events.KeyRevokedV1{}, "x")}}
	if _, err := s.AppendAtomic(ctxFor(t), nil, same, same); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("two writes to one aggregate: %v", err)
	}
}

// testScope: issuing a key checks its user; a scope over the user's subjects
// makes the append fail if the user changed in between.
func testScope(t *testing.T, h Harness) {
	s, tenant := h.Store(t), newTenant()
	user := events.UserAggregate("bob")
	filter, _ := events.UserScopeFilter(tenant, "bob")
	u := mustAppend(t, s, store.Head{}, Event(tenant, user, events.UserCreatedV1{}, "create"))
	scopeSeq, err := s.LastSeq(ctxFor(t), filter)
	if err != nil || scopeSeq != u[0].Seq {
		t.Fatalf("scope last seq %d, %v; want %d", scopeSeq, err, u[0].Seq)
	}
	// Meanwhile the user is disabled.
	mustAppend(t, s, headOf(u), Event(tenant, user, events.UserDisabledV1{}, "disable"))
	before := lastSeq(t, s, tenant)
	issue := func(cmd string) store.Write {
		return store.Write{Events: []events.Event{Event(tenant, events.KeyAggregate("bob", keyOld), issuedKey(3), cmd)}}
	}
	_, err = s.AppendAtomic(ctxFor(t), &store.Scope{Filter: filter, Seq: scopeSeq}, issue("issue"))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("issue after the user changed: %v, want a conflict", err)
	}
	if after := lastSeq(t, s, tenant); after != before {
		t.Fatal("the conflicting issue was appended")
	}
	// Decided again on fresh state, the append goes through; a retry after
	// the scope moved on returns the same event.
	fresh, _ := s.LastSeq(ctxFor(t), filter)
	recs, err := s.AppendAtomic(ctxFor(t), &store.Scope{Filter: filter, Seq: fresh}, issue("issue2"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.AppendAtomic(ctxFor(t), &store.Scope{Filter: filter, Seq: fresh}, issue("issue2"))
	if err != nil || again[0].Seq != recs[0].Seq {
		t.Fatalf("retry: %v", err)
	}
	other := store.Write{Events: []events.Event{Event(tenant, events.UserAggregate("eve"), events.UserCreatedV1{}, "x")}}
	if _, err := s.AppendAtomic(ctxFor(t), &store.Scope{Filter: filter, Seq: fresh}, other); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a write outside the scope: %v", err)
	}
	past := issue("x")
	past.Expect = store.Head{Seq: fresh + 10, Hash: events.Hash{1}}
	if _, err := s.AppendAtomic(ctxFor(t), &store.Scope{Filter: filter, Seq: fresh}, past); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("a head past the scope: %v", err)
	}
}

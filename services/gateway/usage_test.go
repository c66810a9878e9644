package gateway_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/gateway"
	"github.com/keytrail/keytrail/services/natsauth"
)

// TestUsageCountsEveryRequestOnce: requests counted from many goroutines
// while windows are taken are each in exactly one window.
func TestUsageCountsEveryRequestOnce(t *testing.T) {
	u := gateway.NewUsageCounter()
	const workers, each = 8, 5000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				u.Count("acme", "bob", "orders", fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5C7%06d", i%7), projections.CodeValid, time.Unix(int64(w), 0))
			}
		}()
	}
	var total uint64
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		for _, c := range u.Take() {
			total += c.N
		}
	}
	for _, c := range u.Take() {
		total += c.N
	}
	if total != workers*each {
		t.Fatalf("counted %d, want %d", total, workers*each)
	}
}

// TestCountingAllocatesNothing: counting a kind of request seen before
// allocates nothing (the VALID path stays allocation-free).
func TestCountingAllocatesNothing(t *testing.T) {
	u := gateway.NewUsageCounter()
	now := time.Now()
	u.Count("acme", "bob", "orders", "key_1", projections.CodeValid, now)
	if n := testing.AllocsPerRun(1000, func() { u.Count("acme", "bob", "orders", "key_1", projections.CodeValid, now) }); n != 0 {
		t.Fatalf("%v allocations a request", n)
	}
}

// TestGatewayCountsByTenantKeyAndCode: the gateway counts each request by
// tenant, user, API, key and code; one without a key under its API's
// tenant.
func TestGatewayCountsByTenantKeyAndCode(t *testing.T) {
	u := gateway.NewUsageCounter()
	f := newFixture(t, func(c *gateway.Config) { c.Usage = u })
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", nil, nil)
	id, secret := f.key("acme", control.KeySpec{User: "bob"})
	f.sync()
	for range 3 {
		f.do("GET", "/orders/1", map[string]string{"Authorization": "Bearer " + secret})
	}
	f.do("GET", "/orders/1", nil)
	f.do("GET", "/nowhere", nil) // not routed: not a decision, not counted
	// Another tenant's key on acme's API: acme sees a foreign key, beta its
	// key used where it does not belong; neither sees the other's ids.
	f.tenant("beta")
	f.user("beta", "carol")
	betaID, betaSecret := f.key("beta", control.KeySpec{User: "carol"})
	f.sync()
	f.do("GET", "/orders/1", map[string]string{"Authorization": "Bearer " + betaSecret})
	got := map[string]uint64{}
	for _, c := range u.Take() {
		got[fmt.Sprintf("%s/%s/%s/%s/%s", c.Tenant, c.User, c.API, c.Key, c.Code)] += c.N
	}
	want := map[string]uint64{"acme/bob/orders/" + id + "/VALID": 3, "acme//orders//MISSING": 1,
		"acme//orders//TENANT_MISMATCH": 1, "beta/carol//" + betaID + "/TENANT_MISMATCH": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("counted %v, want %v", got, want)
	}
}

// TestUsageReportsEveryWindowOnce: every window is reported, empty ones
// too, numbered without a gap; a window larger than a message is split
// into parts; a part sent again (its acknowledgement lost) is stored once;
// the window closed at a stop is final. The clock is the test's.
func TestUsageReportsEveryWindowOnce(t *testing.T) {
	f := newFixture(t)
	if err := gateway.EnsureUsageStream(f.ctx, f.st.JetStream(), 1); err != nil {
		t.Fatal(err)
	}
	u := gateway.NewUsageCounter()
	t0 := time.Date(2026, 12, 7, 10, 0, 3, 0, time.UTC)
	r := gateway.NewUsageReporter(f.js, u, "gw-1", t0, slog.New(slog.DiscardHandler))
	for i := range events.MaxUsageEntries + 5 {
		u.Count("acme", "bob", "orders", fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5C7%06d", i), projections.CodeValid, t0)
	}
	w1 := t0.Truncate(events.UsageWindow).Add(events.UsageWindow)
	r.Close(f.ctx, w1, false)                         // two parts
	r.Close(f.ctx, w1.Add(events.UsageWindow), false) // empty
	u.Count("acme", "", "orders", "", projections.CodeMissing, w1.Add(11*time.Second))
	r.Close(f.ctx, w1.Add(13*time.Second), true) // stopping
	if r.Reported() != 4 || r.Lost() != 0 {
		t.Fatalf("reported %d, lost %d", r.Reported(), r.Lost())
	}
	reports := readUsage(t, f)
	if len(reports) != 4 {
		t.Fatalf("%d reports", len(reports))
	}
	var n uint64
	for i, want := range []struct {
		window      uint64
		part, parts int
		final       bool
	}{{1, 1, 2, false}, {1, 2, 2, false}, {2, 1, 1, false}, {3, 1, 1, true}} {
		got := reports[i]
		if got.Window != want.window || got.Part != want.part || got.Parts != want.parts || got.Final != want.final || got.Boot != r.Boot() {
			t.Fatalf("report %d: %+v", i, got)
		}
		if err := got.Validate(); err != nil {
			t.Fatal(err)
		}
		for _, c := range got.Counts {
			n += c.N
		}
	}
	if n != events.MaxUsageEntries+5+1 {
		t.Fatalf("reported %d requests", n)
	}
	if !reports[0].Start.Equal(t0) || !reports[0].End.Equal(w1) || !reports[2].Start.Equal(reports[1].End) {
		t.Fatalf("windows %s–%s, %s–%s", reports[0].Start, reports[0].End, reports[2].Start, reports[2].End)
	}
	// The same part again: a duplicate, not a second count.
	data, _ := json.Marshal(reports[3])
	m := nats.NewMsg(events.UsageSubject("gw-1"))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, events.UsageMsgID(&reports[3]))
	ack, err := f.js.PublishMsg(f.ctx, m)
	if err != nil || !ack.Duplicate {
		t.Fatalf("a part sent again: %+v %v", ack, err)
	}
	if got := readUsage(t, f); len(got) != 4 {
		t.Fatalf("%d reports after a part was sent again", len(got))
	}
}

func readUsage(t *testing.T, f *fixture) []events.UsageReport {
	t.Helper()
	nc := f.node.ConnectAs(t, natsauth.Auditor)
	js, _ := jetstream.New(nc)
	cons, err := js.OrderedConsumer(f.ctx, events.UsageStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.UsageReport
	for range info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var r events.UsageReport
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

package integration

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

func TestJetStreamConformanceSingleNode(t *testing.T) {
	node := natstest.RunServer(t)
	nc := node.ConnectAs(t, natsauth.Control)
	s := openStore(t, nc, store.Config{Replicas: 1})
	storetest.Run(t, storetest.Harness{
		Store:      func(*testing.T) store.Store { return s },
		PublishRaw: func(t *testing.T, subject string, data []byte) { publishRaw(t, nc, subject, data) },
	})
}

func TestJetStreamConformanceCluster(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	nc := natstest.Connect(t, c.URLs(), c.Identity(natsauth.Control))
	s := openStore(t, nc, store.Config{Replicas: 3})
	storetest.Run(t, storetest.Harness{
		Store:      func(*testing.T) store.Store { return s },
		PublishRaw: func(t *testing.T, subject string, data []byte) { publishRaw(t, nc, subject, data) },
	})
}

// TestSubscriptionsLeaveNoConsumers: a reader that subscribes again and
// again (an auditor, a model restarted) leaves no consumer on the server.
func TestSubscriptionsLeaveNoConsumers(t *testing.T) {
	node := natstest.RunServer(t)
	nc := node.ConnectAs(t, natsauth.Control)
	st := openStore(t, nc, store.Config{})
	ctx := testCtx(t, time.Minute)
	for i := range 50 {
		sub, err := st.Subscribe(ctx, store.SubscribeOptions{})
		if err != nil {
			t.Fatal(i, err)
		}
		sub.Close()
	}
	s, err := st.JetStream().Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Consumers; n != 0 {
		t.Fatalf("%d consumers left after 50 closed subscriptions", n)
	}
}

// TestTheVersionHeaderIsThePayloads: the Keytrail-Version header of an
// appended event says the version its payload was written in (it said 0
// while the payload said 1), and so does the Recorded the append returns.
func TestTheVersionHeaderIsThePayloads(t *testing.T) {
	node := natstest.RunServer(t)
	st := openStore(t, node.ConnectAs(t, natsauth.Control), store.Config{CreateIfMissing: true})
	ctx := testCtx(t, time.Minute)
	e := storetest.Event("acme", events.TenantAggregate("acme"), events.TenantCreatedV1{Name: "Acme"}, "cmd-version")
	recs, err := st.Append(ctx, store.Head{}, e)
	if err != nil {
		t.Fatal(err)
	}
	s, err := st.JetStream().Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetMsg(ctx, recs[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	var wire struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(msg.Data, &wire); err != nil || wire.V != 1 {
		t.Fatalf("payload version %d: %v", wire.V, err)
	}
	if h := msg.Header.Get(events.HeaderVersion); h != "1" || recs[0].Version != 1 {
		t.Fatalf("header %q, recorded %d; the payload is v%d", h, recs[0].Version, wire.V)
	}
}

// TestWatermarkRefusesARewoundStream: a node that saw the stream hold 100
// events (its watermark) refuses the same stream holding 3 - as a restored
// older backup would - at open and when it checks, and says why.
func TestWatermarkRefusesARewoundStream(t *testing.T) {
	node := natstest.RunServer(t)
	ctx := testCtx(t, time.Minute)
	file := filepath.Join(t.TempDir(), "watermark.json")
	st := openStore(t, node.ConnectAs(t, natsauth.Control), store.Config{WatermarkFile: file})
	for _, u := range []string{"a", "b", "c"} {
		if _, err := st.Append(ctx, store.Head{}, storetest.Event("acme", events.UserAggregate(u), events.UserCreatedV1{}, u)); err != nil {
			t.Fatal(err)
		}
	}
	if last, err := st.Check(ctx); err != nil || last != 3 || st.Watermark().Seq != 3 {
		t.Fatalf("check: %d %v %+v", last, err, st.Watermark())
	}
	var wm store.Watermark
	b, _ := os.ReadFile(file)
	if err := json.Unmarshal(b, &wm); err != nil || wm.Seq != 3 || wm.Created.IsZero() {
		t.Fatalf("watermark file: %s %v", b, err)
	}
	wm.Seq = 100
	b, _ = json.Marshal(wm)
	os.WriteFile(file, b, 0o600)
	_, err := store.OpenJetStream(ctx, node.ConnectAs(t, natsauth.Control), store.Config{WatermarkFile: file, CreateIfMissing: true})
	if !errors.Is(err, store.ErrRefused) || !strings.Contains(err.Error(), "its last sequence is 3, but this node has seen it hold 100") {
		t.Fatalf("open on a rewound stream: %v", err)
	}
	// A running node whose watermark is ahead of the stream refuses it when
	// it checks.
	gw := openStore(t, node.ConnectAs(t, natsauth.Gateway), store.Config{})
	if _, err := gw.Check(ctx); err != nil {
		t.Fatal(err)
	}
	op, _ := jetstream.New(node.ConnectAs(t, natstest.Operator))
	if err := op.DeleteStream(ctx, events.StreamName); err != nil {
		t.Fatal(err)
	}
	// (The server may still be removing the old stream's files: it answers
	// "error creating store" for a moment.)
	testkit.Eventually(t, 10*time.Second, func() error {
		_, err := op.CreateStream(ctx, store.StreamConfig(store.Config{}))
		return err
	})
	if _, err := gw.Check(ctx); !errors.Is(err, store.ErrRefused) || !strings.Contains(err.Error(), "its last sequence is 0, but this node has seen it hold 3") {
		t.Fatalf("check on a stream made anew: %v", err)
	}
}

// TestCheckRefusesAStreamWeakenedWhileRunning: an operator weakens the
// stream under running nodes (an age limit, discard old); their next check
// refuses it and names the weaknesses.
func TestCheckRefusesAStreamWeakenedWhileRunning(t *testing.T) {
	node := natstest.RunServer(t)
	ctx := testCtx(t, time.Minute)
	st := openStore(t, node.ConnectAs(t, natsauth.Control), store.Config{})
	if _, err := st.Check(ctx); err != nil {
		t.Fatal(err)
	}
	op, _ := jetstream.New(node.ConnectAs(t, natstest.Operator))
	cfg := store.StreamConfig(store.Config{})
	cfg.MaxAge, cfg.Discard = time.Hour, jetstream.DiscardOld
	if _, err := op.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	_, err := st.Check(ctx)
	var weak *store.WeakStreamError
	if !errors.Is(err, store.ErrRefused) || !errors.As(err, &weak) || !strings.Contains(err.Error(), "max_age") || !strings.Contains(err.Error(), "discard") {
		t.Fatalf("check on a weakened stream: %v", err)
	}
}

// TestClusterReadsYourWritesOnAFollower: a client connected to a follower
// has its direct gets answered by that follower, which may not yet hold
// what the leader acknowledged (here: it was down for those writes and is
// catching up). Load, LastSeq and a subscription's caught-up mark still
// include every acknowledged write.
func TestClusterReadsYourWritesOnAFollower(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	w := openStore(t, c.ConnectAs(t, natsauth.Control), store.Config{Replicas: 3})
	follower := (c.StreamLeader(events.StreamName) + 1) % len(c.Nodes)
	c.Stop(follower)
	tenant, agg := "t-ryw", events.UserAggregate("late")
	ctx := testCtx(t, time.Minute)
	create := func(agg events.Aggregate) uint64 {
		recs, err := w.Append(ctx, store.Head{}, storetest.Event(tenant, agg, events.UserCreatedV1{}, "c"))
		if err != nil {
			t.Fatal(err)
		}
		return recs[0].Seq
	}
	for i := range 2000 {
		create(events.UserAggregate(fmt.Sprintf("u%d", i)))
	}
	want := create(agg)
	c.Restart(follower)
	nc := natstest.Connect(t, c.Nodes[follower].ClientURL(), c.Identity(natsauth.Control))
	s := openStore(t, nc, store.Config{Replicas: 3})
	h, err := s.Load(ctx, tenant, agg)
	if err != nil || len(h.Events) != 1 || h.Head.Seq != want {
		t.Fatalf("load: %d events, head %d (%v); acknowledged seq %d", len(h.Events), h.Head.Seq, err, want)
	}
	filter, _ := events.TenantFilter(tenant)
	if last, err := s.LastSeq(ctx, filter); err != nil || last != want {
		t.Fatalf("LastSeq %d (%v), acknowledged seq %d", last, err, want)
	}
	sub, err := s.Subscribe(ctx, store.SubscribeOptions{Filters: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for {
		d, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d.CaughtUp() {
			if d.Seq != want {
				t.Fatalf("caught up at seq %d, before the acknowledged seq %d", d.Seq, want)
			}
			break
		}
	}
}

// TestChecksDuringAppendsRefuseNothing: a Check whose answer was sent just
// before an append was acknowledged (and observed) saw a stream "behind"
// what the node had seen, and refused it — a control node stopped serving
// under load ("this node refuses the event stream"). A Check now judges its
// answer against what the node had seen when it asked.
func TestChecksDuringAppendsRefuseNothing(t *testing.T) {
	node := natstest.RunServer(t)
	st := openStore(t, node.ConnectAs(t, natsauth.Control), store.Config{})
	ctx := testCtx(t, 2*time.Minute)
	done := make(chan struct{})
	errc := make(chan error, 4)
	for w := range 4 {
		go func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					errc <- nil
					return
				default:
				}
				agg := events.UserAggregate(fmt.Sprintf("w%d-%d", w, i))
				if _, err := st.Append(ctx, store.Head{}, storetest.Event("acme", agg, events.UserCreatedV1{}, "c")); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var refused error
	for range 3000 {
		if _, err := st.Check(ctx); errors.Is(err, store.ErrRefused) {
			refused = err
			break
		}
	}
	close(done)
	for range 4 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if refused != nil {
		t.Fatalf("a check during appends refused the stream: %v", refused)
	}
}

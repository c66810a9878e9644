package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/egress"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
	"github.com/keytrail/keytrail/services/notices"
	"github.com/keytrail/keytrail/services/readmodel"
	"github.com/keytrail/keytrail/services/webhooks"
)

// clock is a fake clock the test moves.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock(t time.Time) *clock    { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) String() string      { return c.Now().Format(time.RFC3339) }
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// env is a control node's webhook delivery on a real NATS server with the
// role permissions on.
type env struct {
	t     *testing.T
	node  *natstest.Server
	js    jetstream.JetStream
	svc   *control.Service
	model *readmodel.Model
	vault *webhooks.Vault
	clock *clock
}

func newEnv(t *testing.T) *env {
	node := natstest.RunServer(t)
	ctx := ctxFor(t)
	nc := node.ConnectAs(t, natsauth.Control)
	st, err := store.OpenJetStream(ctx, nc, store.Config{CreateIfMissing: true})
	must(t, err)
	js := st.JetStream()
	kek, err := webhooks.LoadOrCreateKEK(t.TempDir() + "/kek")
	must(t, err)
	vault, err := webhooks.OpenVault(ctx, js, kek, 1)
	must(t, err)
	must(t, webhooks.EnsureStream(ctx, js, 1))
	must(t, notices.EnsureStream(ctx, js, 1))
	c := newClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	svc, err := control.New(control.Config{Store: st, Webhooks: vault, Now: c.Now})
	must(t, err)
	model := readmodel.New(slog.New(slog.DiscardHandler))
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); model.Run(runCtx, st, nil) }()
	t.Cleanup(func() { stop(); <-done })
	must(t, svcTenant(ctx, svc))
	return &env{t: t, node: node, js: js, svc: svc, model: model, vault: vault, clock: c}
}

func svcTenant(ctx context.Context, svc *control.Service) error {
	_, _, err := svc.CreateTenant(ctx, control.Meta{Actor: "test"}, "acme", "Acme")
	return err
}

// dispatcher runs a dispatcher on the fake clock until the test ends (or
// stop is called).
func (e *env) dispatcher(ladder []time.Duration) (stop func()) {
	d := webhooks.NewDispatcher(webhooks.Config{JS: e.js, Model: e.model, Vault: e.vault, Now: e.clock.Now, Ladder: ladder,
		Timeout: 2 * time.Second, Reconcile: 50 * time.Millisecond,
		Egress: &egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		Disable: func(ctx context.Context, tenant, id, reason string) (uint64, error) {
			_, res, err := e.svc.DisableWebhook(ctx, control.Meta{Actor: webhooks.Actor, Reason: reason}, tenant, id)
			if err != nil || res.Unchanged {
				return 0, err
			}
			return res.Seq, nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return stop
}

// notice publishes a notice as the scheduler would, once the model has
// applied the log up to now.
func (e *env) notice(id string) {
	e.t.Helper()
	ctx := ctxFor(e.t)
	last, err := e.js.Stream(ctx, events.StreamName)
	must(e.t, err)
	seq := last.CachedInfo().State.LastSeq
	must(e.t, e.model.WaitFor(ctx, seq, 10*time.Second))
	n := events.Notice{ID: id, Type: events.NoticeKeyExpired, Tenant: "acme", KeyID: "key_01JDQ8Z6W4M2N9V3X5C7B1A0ZY", At: e.clock.Now(), Seq: seq, Text: "expired"}
	data, _ := json.Marshal(n)
	m := nats.NewMsg(events.NoticeSubject(&n))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, n.ID)
	_, err = e.js.PublishMsg(ctx, m)
	must(e.t, err)
}

func (e *env) attempts(id string) []webhooks.Attempt {
	as, err := webhooks.NewLog(e.js).Attempts(ctxFor(e.t), "acme", id, webhooks.AttemptQuery{})
	must(e.t, err)
	return as
}

// TestEndpointFailingForFiveDaysIsDisabled: an endpoint that fails every
// attempt is retried on the ladder and given up per message; it is
// disabled at the first failure five days (on the fake clock) after its
// failures began — also by a node started after another gave up, which
// reads when they began from the attempt log — and the tenant is told.
func TestEndpointFailingForFiveDaysIsDisabled(t *testing.T) {
	e := newEnv(t)
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "upstream database down", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	ctx := ctxFor(t)
	w, _, _, err := e.svc.CreateWebhook(ctx, control.Meta{Actor: "test"}, "acme", control.WebhookSpec{URL: srv.URL})
	must(t, err)
	ladder := []time.Duration{0, 20 * time.Millisecond, 20 * time.Millisecond}
	stop := e.dispatcher(ladder)

	e.notice("n1")
	testkit.Eventually(t, 20*time.Second, func() error {
		as := e.attempts(w.ID)
		if len(as) != 3 || as[2].Outcome != webhooks.GaveUp || as[0].Outcome != webhooks.Retrying || as[0].Status != 500 {
			return fmt.Errorf("attempts: %+v", as)
		}
		if as[0].Response != "upstream database down\n" || as[2].FailingSince == nil || !as[2].FailingSince.Equal(e.clock.Now()) {
			return fmt.Errorf("attempt details: %+v", as[2])
		}
		return nil
	})
	stop()

	// Four days later, on another node: failing, not yet disabled.
	e.clock.Add(4 * 24 * time.Hour)
	stop = e.dispatcher(ladder)
	e.notice("n2")
	testkit.Eventually(t, 20*time.Second, func() error {
		if as := e.attempts(w.ID); len(as) != 6 || as[5].Outcome != webhooks.GaveUp {
			return fmt.Errorf("attempts: %+v", as)
		}
		return nil
	})
	stop()
	if got, _ := e.svc.Webhook(ctx, "acme", w.ID); got.Status != projections.WebhookActive {
		t.Fatalf("disabled after four days: %+v", got)
	}

	// A day and a minute later, a third node: its first failure disables it.
	e.clock.Add(24*time.Hour + time.Minute)
	heard := make(chan *nats.Msg, 4)
	sub, err := e.node.ConnectAs(t, natsauth.Service).ChanSubscribe(events.NoticeSubjectPrefix+"acme."+events.NoticeWebhookDisabled+".>", heard)
	must(t, err)
	defer sub.Unsubscribe()
	e.dispatcher(ladder)
	e.notice("n3")
	testkit.Eventually(t, 20*time.Second, func() error {
		got, err := e.svc.Webhook(ctx, "acme", w.ID)
		if err != nil || got.Status != projections.WebhookDisabled {
			return fmt.Errorf("status %+v %v", got.Status, err)
		}
		return nil
	})
	as := e.attempts(w.ID)
	if last := as[len(as)-1]; last.Outcome != webhooks.Disabled || len(as) != 7 {
		t.Fatalf("attempts: %+v", as)
	}
	select {
	case m := <-heard:
		var n events.Notice
		must(t, json.Unmarshal(m.Data, &n))
		if n.Webhook != w.ID || n.CauseActor != webhooks.Actor || n.CauseType != string(events.WebhookDisabled) {
			t.Fatalf("notice: %+v", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook.disabled notice")
	}
	n := hits.Load()
	// Disabled: a new notice is not delivered.
	e.notice("n4")
	testkit.Eventually(t, 5*time.Second, func() error {
		if c, err := e.js.Consumer(ctx, events.NoticeStream, "keytrail-webhooks"); err != nil || c.CachedInfo().NumAckPending != 0 {
			return fmt.Errorf("fan-out not done")
		}
		return nil
	})
	if hits.Load() != n {
		t.Fatalf("a disabled endpoint got %d more requests", hits.Load()-n)
	}
}

// TestTwoControlNodesDeliverEachMessageOnce: two dispatchers share the
// fan-out and the endpoint's consumer; in normal operation each notice
// reaches the endpoint once, with a signature its secret verifies.
func TestTwoControlNodesDeliverEachMessageOnce(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	got := map[string]int{}
	var secret webhooks.Secret
	bad := atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if secret.Verify(r.Header, body, e.clock.Now()) != nil {
			bad.Add(1)
		}
		got[r.Header.Get(webhooks.HeaderID)]++
	}))
	t.Cleanup(srv.Close)
	ctx := ctxFor(t)
	_, whsec, _, err := e.svc.CreateWebhook(ctx, control.Meta{Actor: "test"}, "acme", control.WebhookSpec{URL: srv.URL})
	must(t, err)
	mu.Lock()
	secret, err = webhooks.ParseSecret(whsec)
	mu.Unlock()
	must(t, err)
	e.dispatcher(nil)
	e.dispatcher(nil)
	const n = 20
	for i := range n {
		e.notice(fmt.Sprintf("n%d", i))
	}
	testkit.Eventually(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != n {
			return fmt.Errorf("%d of %d messages delivered", len(got), n)
		}
		return nil
	})
	// Each was delivered once, and every attempt is logged (just after the
	// endpoint answered).
	var attempts []webhooks.Attempt
	testkit.Eventually(t, 10*time.Second, func() error {
		if attempts = e.attempts(mustWebhook(t, e)); len(attempts) < n {
			return fmt.Errorf("%d attempts logged", len(attempts))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for id, c := range got {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
	if bad.Load() != 0 || len(attempts) != n {
		t.Fatalf("%d deliveries did not verify; %d attempts logged for %d messages", bad.Load(), len(attempts), n)
	}
}

func mustWebhook(t *testing.T, e *env) string {
	var id string
	e.model.Read(func(c *projections.Catalog) {
		if ws := c.Webhooks("acme"); len(ws) == 1 {
			id = ws[0].ID
		}
	})
	if id == "" {
		t.Fatal("no webhook in the model")
	}
	return id
}

// TestReenabledEndpointStartsAFreshStreak: an endpoint disabled after five
// days of failures, fixed and enabled again by its admin, is not disabled
// again by its next transient failure (found in review: the old streak was
// read back from the log).
func TestReenabledEndpointStartsAFreshStreak(t *testing.T) {
	e := newEnv(t)
	var down atomic.Bool
	down.Store(true)
	var blips atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() || blips.Add(-1) >= 0 {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
	}))
	t.Cleanup(srv.Close)
	ctx := ctxFor(t)
	w, _, _, err := e.svc.CreateWebhook(ctx, control.Meta{Actor: "test"}, "acme", control.WebhookSpec{URL: srv.URL})
	must(t, err)
	ladder := []time.Duration{0, 20 * time.Millisecond, 20 * time.Millisecond}
	stop := e.dispatcher(ladder)
	e.notice("n1")
	testkit.Eventually(t, 20*time.Second, func() error {
		if as := e.attempts(w.ID); len(as) != 3 {
			return fmt.Errorf("%d attempts", len(as))
		}
		return nil
	})
	e.clock.Add(5*24*time.Hour + time.Minute)
	e.notice("n2")
	testkit.Eventually(t, 20*time.Second, func() error {
		if got, _ := e.svc.Webhook(ctx, "acme", w.ID); got.Status != projections.WebhookDisabled {
			return fmt.Errorf("status %s", got.Status)
		}
		return nil
	})
	stop()
	// An hour later the endpoint is fixed and enabled; the node that
	// delivers to it now started after the disable.
	e.clock.Add(time.Hour)
	e.dispatcher(ladder)
	down.Store(false)
	blips.Store(1) // one transient failure, then fine
	_, _, err = e.svc.EnableWebhook(ctx, control.Meta{Actor: "admin"}, "acme", w.ID)
	must(t, err)
	e.notice("n3")
	msg := webhooks.MessageID("n3")
	testkit.Eventually(t, 20*time.Second, func() error {
		for _, a := range e.attempts(w.ID) {
			if a.MsgID == msg && a.Outcome == webhooks.Delivered {
				return nil
			}
		}
		return fmt.Errorf("n3 not delivered: %+v", e.attempts(w.ID))
	})
	if got, _ := e.svc.Webhook(ctx, "acme", w.ID); got.Status != projections.WebhookActive {
		t.Fatalf("the re-enabled endpoint was disabled again by one failure: %+v", got)
	}
	for _, a := range e.attempts(w.ID) {
		if a.MsgID == msg && a.Outcome == webhooks.Retrying && !a.FailingSince.Equal(e.clock.Now()) {
			t.Fatalf("the streak after enabling began at %v, not now", a.FailingSince)
		}
	}
}

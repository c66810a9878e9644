package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
	"github.com/keytrail/keytrail/services/notices"
	"github.com/keytrail/keytrail/services/readmodel"
)

// TestNoticesAppearOnceAcrossControlNodes: two control nodes' schedulers,
// on the same log and clock, both find a key's notices due and publish
// them at once: each notice is stored once. A service hears it on the bus;
// a gateway may not write one.
func TestNoticesAppearOnceAcrossControlNodes(t *testing.T) {
	node := natstest.RunServer(t)
	ctx := testCtx(t, time.Minute)
	st := openStore(t, node.ConnectAs(t, natsauth.Control), store.Config{})
	svc, err := control.New(control.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	m := control.Meta{Actor: "test"}
	svc.CreateTenant(ctx, m, "acme", "A")
	svc.CreateUser(ctx, m, "acme", "bob", "")
	expires := time.Now().Add(10 * 24 * time.Hour).UTC().Truncate(time.Second)
	for range 3 {
		if _, _, _, err := svc.IssueKey(ctx, m, "acme", control.KeySpec{User: "bob", ExpiresAt: &expires}); err != nil {
			t.Fatal(err)
		}
	}
	if err := notices.EnsureStream(ctx, st.JetStream(), 1); err != nil {
		t.Fatal(err)
	}
	// A service listens on the bus.
	heard := make(chan string, 16)
	sub, err := node.ConnectAs(t, natsauth.Service).Subscribe(events.NoticeSubjects, func(msg *nats.Msg) { heard <- msg.Subject })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	now := expires.Add(-7 * 24 * time.Hour) // the 7-day threshold
	var schedulers []*notices.Scheduler
	for range 2 {
		cst := openStore(t, node.ConnectAs(t, natsauth.Control), store.Config{})
		model := readmodel.New(discard)
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { model.Run(runCtx, cst, nil); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		last, _ := st.LastSeq(ctx, "")
		if err := model.WaitFor(ctx, last, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		schedulers = append(schedulers, notices.New(notices.Config{JS: cst.JetStream(), Model: model, Now: func() time.Time { return now }}))
	}
	var wg sync.WaitGroup
	stored := make([]int, 2)
	for i, s := range schedulers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := s.Tick(ctx)
			if err != nil {
				t.Error(err)
			}
			stored[i] = n
		}()
	}
	wg.Wait()
	for _, s := range schedulers { // again: nothing new
		if n, err := s.Tick(ctx); err != nil || n != 0 {
			t.Fatalf("a second tick stored %d (%v)", n, err)
		}
	}
	js, _ := jetstream.New(node.ConnectAs(t, natsauth.Auditor))
	str, err := js.Stream(ctx, events.NoticeStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := str.Info(ctx)
	if info.State.Msgs != 3 || stored[0]+stored[1] != 3 {
		t.Fatalf("%d notices stored (the schedulers say %d and %d), want 3", info.State.Msgs, stored[0], stored[1])
	}
	raw, err := str.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	var n events.Notice
	if err := json.Unmarshal(raw.Data, &n); err != nil || n.Type != events.NoticeKeyExpiring || n.Before != "7d" || n.Tenant != "acme" {
		t.Fatalf("notice %s: %v", raw.Data, err)
	}
	for range 3 {
		select {
		case <-heard:
		case <-time.After(5 * time.Second):
			t.Fatal("the service heard fewer than 3 notices")
		}
	}
	// A gateway may not tell tenants anything.
	gw := node.ConnectAs(t, natsauth.Gateway)
	gjs, _ := jetstream.New(gw)
	if _, err := gjs.Publish(testCtx(t, 2*time.Second), "keytrail.ntc.acme.key.expired.x", []byte(`{}`)); err == nil {
		t.Fatal("a gateway published a notice")
	}
	if info, _ := str.Info(ctx); info.State.Msgs != 3 {
		t.Fatalf("%d notices after the gateway's attempt", info.State.Msgs)
	}
}

// TestBlockedKeysAreToldOnTheBus: bob's key is in use; bob is disabled;
// his key's next request is denied. A service on the bus hears
// keys.blocked (one key, USER_DISABLED, the disabling event) and
// key.denials-started (the key, the code, the event) — the proactive
// answer to "invalid user associated with this key".
func TestBlockedKeysAreToldOnTheBus(t *testing.T) {
	e := startUsage(t)
	ctx := testCtx(t, time.Minute)
	heard := make(chan events.Notice, 16)
	nc := devConnect(t, e.dev.Addresses().NATS, e.dir, natsauth.Service)
	sub, err := nc.Subscribe("keytrail.ntc.acme.>", func(m *nats.Msg) {
		var n events.Notice
		if json.Unmarshal(m.Data, &n) == nil {
			heard <- n
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	gw := e.dev.Addresses().Gateway + "/orders/1"
	for range 5 {
		requestAnswered(t, gw, e.secret, http.StatusOK)
	}
	disabled := e.must(e.call("POST", "/v1/tenants/acme/users/bob/disable", e.root, map[string]any{"reason": "invoice 2291 unpaid"}), 200)
	seq, _ := strconv.ParseUint(disabled.header.Get("Keytrail-Seq"), 10, 64)
	// Min-Seq: a request the gateway answers before it has applied the
	// disabling would be counted VALID (a flake seen under load).
	requestAnswered(t, gw, e.secret, http.StatusForbidden, "Keytrail-Min-Seq", fmt.Sprint(seq))
	testkit.Eventually(t, 20*time.Second, func() error {
		if got, _ := e.usageByCode(""); got["USER_DISABLED"] != 1 || got["VALID"] != 5 {
			return fmt.Errorf("counted %v", got)
		}
		return nil
	})
	// A scheduler of this control node's kind, on its read model and usage.
	st := e.dev.Store()
	model := readmodel.New(discard)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { model.Run(runCtx, st, nil); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := model.WaitFor(ctx, seq, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s := notices.New(notices.Config{JS: st.JetStream(), Model: model, Usage: e.dev.Usage(), Events: st})
	if _, err := s.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]events.Notice{}
	for len(got) < 2 {
		select {
		case n := <-heard:
			got[n.Type] = n
		case <-time.After(10 * time.Second):
			t.Fatalf("heard only %v", got)
		}
	}
	b, d := got[events.NoticeKeysBlocked], got[events.NoticeDenialsStarted]
	if b.Keys != 1 || b.Code != "USER_DISABLED" || b.CauseSeq != seq || b.User != "bob" || b.CauseActor != "root" ||
		b.CauseReason != "invoice 2291 unpaid" || !strings.Contains(b.Text, `by root ("invoice 2291 unpaid")`) {
		t.Fatalf("keys.blocked: %+v", b)
	}
	if d.KeyID != e.keyID || d.Code != "USER_DISABLED" || d.CauseSeq != seq || !strings.Contains(d.Text, "user.disabled") {
		t.Fatalf("key.denials-started: %+v", d)
	}
}

// TestTenantNoticeSettings: a tenant admin sets its own thresholds and
// unused period (the CLI, the API); bad values are 400 naming the setting
// and append nothing.
func TestTenantNoticeSettings(t *testing.T) {
	e := startAdmin(t)
	e.givenKey()
	out := mustKeytrail(t, e.dir, "tenant", "notices", "acme", "--expiry-before", "14d", "--expiry-before", "2d", "--unused-after", "60d")
	if !strings.Contains(out, "expiry warnings 14d,2d before; unused after 60d") {
		t.Fatalf("tenant notices:\n%s", out)
	}
	r := e.must(e.call("GET", "/v1/tenants/acme", e.root, nil, "Keytrail-Min-Seq", fmt.Sprint(e.last())), 200)
	if fmt.Sprint(field(r, "tenant", "notices", "expiry_before")) != "[14d 2d]" || field(r, "tenant", "notices", "unused_after") != "60d" {
		t.Fatalf("the tenant: %s", r.raw)
	}
	before := e.last()
	for body, name := range map[string]string{
		`{"expiry_before":["soon"]}`:    "expiry_before",
		`{"expiry_before":["7d","7d"]}`: "expiry_before",
		`{"expiry_before":["10m"]}`:     "expiry_before",
		`{"unused_after":"1h"}`:         "unused_after",
		`{"expiry_before":["1d","2d","3d","4d","5d","6d","7d","8d","9d","10d","11d"]}`: "expiry_before",
	} {
		r := e.call("POST", "/v1/tenants/acme/notice-settings", e.root, body)
		e.problem(r, 400, "invalid_argument")
		if !strings.Contains(r.raw, name) {
			t.Errorf("%s: the problem does not name %s: %s", body, name, r.raw)
		}
	}
	if after := e.last(); after != before {
		t.Fatalf("bad settings appended: %d → %d", before, after)
	}
}

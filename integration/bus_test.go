package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/app"
	"github.com/keytrail/keytrail/services/gateway"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
	"github.com/keytrail/keytrail/services/readmodel"
)

// watched is a connection whose asynchronous errors (the server's
// permission violations among them) the test reads.
type watched struct {
	role natsauth.Role
	nc   *nats.Conn
	errs chan error
}

func connectWatched(t *testing.T, url string, id natsauth.Identity) *watched {
	t.Helper()
	w := &watched{role: id.Role, errs: make(chan error, 256)}
	w.nc = natstest.Connect(t, url, id, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case w.errs <- err:
		default:
		}
	}))
	return w
}

// refused does act and waits for the server to refuse it: a permissions
// violation naming subject.
func (w *watched) refused(t *testing.T, what, subject string, act func() error) {
	t.Helper()
	if err := act(); err != nil {
		t.Fatalf("%s %s: %v", w.role, what, err)
	}
	w.nc.Flush()
	timeout := time.NewTimer(5 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case err := <-w.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), fmt.Sprintf("%q", subject)) {
				return
			}
		case <-timeout.C:
			t.Fatalf("%s may %s (%s): the server did not refuse it", w.role, what, subject)
		}
	}
}

// publish refuses a publish (a JetStream API request is one too).
func (w *watched) publish(t *testing.T, what, subject string, body []byte) {
	t.Helper()
	w.refused(t, what, subject, func() error { return w.nc.PublishRequest(subject, w.nc.NewRespInbox(), body) })
}

// subscribe refuses a subscription.
func (w *watched) subscribe(t *testing.T, what, subject string) {
	t.Helper()
	w.refused(t, what, subject, func() error { _, err := w.nc.SubscribeSync(subject); return err })
}

// busState is what an attack must leave as it was: the event stream's
// configuration, state and creation, and the snapshot object.
type busState struct {
	Config   jetstream.StreamConfig
	Msgs     uint64
	LastSeq  uint64
	Created  time.Time
	Snapshot string // the object's NUID: a new write changes it
	Lease    uint64 // the lease's revision
	Usage    uint64 // reports in the usage stream
}

func readBusState(t *testing.T, js jetstream.JetStream) busState {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("the event stream: %v", err)
	}
	info := s.CachedInfo()
	obj, err := js.ObjectStore(ctx, events.SnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	oi, err := obj.GetInfo(ctx, readmodel.VerificationSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, events.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := kv.Get(ctx, "writer")
	if err != nil {
		t.Fatal(err)
	}
	us, err := js.Stream(ctx, events.UsageStream)
	if err != nil {
		t.Fatalf("the usage stream: %v", err)
	}
	return busState{Usage: us.CachedInfo().State.Msgs, Config: info.Config, Msgs: info.State.Msgs, LastSeq: info.State.LastSeq, Created: info.Created,
		Snapshot: oi.NUID, Lease: lease.Revision()}
}

// TestEveryRoleIsRefusedWhatItMayNotDo tries, as each identity, every
// action its role may not take, and checks the server refused each and
// nothing changed: no role (control included) may update, seal, delete or
// purge the event stream or delete a message of it; only control may
// publish events, create streams, write snapshots or the lease, or hear
// commands; only gateways may write decisions and presence; only services
// (and no one else) request revocations; no role may read another's
// replies; anonymous clients cannot connect at all.
func TestEveryRoleIsRefusedWhatItMayNotDo(t *testing.T) {
	node := natstest.RunServer(t)
	ctx := testCtx(t, time.Minute)
	url := node.ClientURL()

	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("anonymous connect: %v", err)
	}

	// What a control node makes: the streams, a history, the buckets, a
	// snapshot and the lease.
	st := openStore(t, node.ConnectAs(t, natsauth.Control), store.Config{})
	givenOrdersKey(t, ctx, st)
	if err := gateway.EnsureUsageStream(ctx, st.JetStream(), 1); err != nil {
		t.Fatal(err)
	}
	model := readmodel.New(discard)
	go model.Run(ctx, st, nil)
	last, _ := st.LastSeq(ctx, "")
	if err := model.WaitFor(ctx, last, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	snaps, err := readmodel.OpenSnapshots(ctx, st.JetStream(), 1, "control")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snaps.Save(ctx, model); err != nil {
		t.Fatal(err)
	}
	operator, _ := jetstream.New(node.ConnectAs(t, natstest.Operator))
	before := readBusState(t, operator)

	weak := before.Config
	weak.MaxMsgs, weak.Discard = 1, jetstream.DiscardOld
	weakBody, _ := json.Marshal(weak)
	sealed := before.Config
	sealed.Sealed = true
	sealBody, _ := json.Marshal(sealed)
	event, _ := json.Marshal(map[string]string{"type": "tenant.created"})
	const api = "$JS.API."
	s := events.StreamName

	for _, role := range natsauth.Roles {
		t.Run(string(role), func(t *testing.T) {
			w := connectWatched(t, url, node.Identity(role))
			// The event stream, for every role.
			w.publish(t, "weaken the event stream (nats stream edit --max-msgs 1 --discard old)", api+"STREAM.UPDATE."+s, weakBody)
			w.publish(t, "seal the event stream", api+"STREAM.UPDATE."+s, sealBody)
			w.publish(t, "delete the event stream", api+"STREAM.DELETE."+s, nil)
			w.publish(t, "purge the event stream", api+"STREAM.PURGE."+s, nil)
			w.publish(t, "delete an event", api+"STREAM.MSG.DELETE."+s, []byte(`{"seq":1}`))
			w.publish(t, "restore over the event stream", api+"STREAM.RESTORE."+s, nil)
			w.publish(t, "delete the decision log", api+"STREAM.DELETE."+events.DecisionStream, nil)
			w.publish(t, "purge the decision log", api+"STREAM.PURGE."+events.DecisionStream, nil)
			w.publish(t, "delete the usage counts", api+"STREAM.DELETE."+events.UsageStream, nil)
			w.publish(t, "purge the usage counts", api+"STREAM.PURGE."+events.UsageStream, nil)
			w.publish(t, "delete a usage report", api+"STREAM.MSG.DELETE."+events.UsageStream, []byte(`{"seq":1}`))
			w.publish(t, "purge the notices", api+"STREAM.PURGE."+events.NoticeStream, nil)
			w.publish(t, "delete the notices", api+"STREAM.DELETE."+events.NoticeStream, nil)
			w.publish(t, "purge the webhook deliveries", api+"STREAM.PURGE."+events.WebhookStream, nil)
			w.publish(t, "delete the webhook deliveries", api+"STREAM.DELETE."+events.WebhookStream, nil)
			w.publish(t, "delete a delivery attempt", api+"STREAM.MSG.DELETE."+events.WebhookStream, []byte(`{"seq":1}`))
			w.publish(t, "purge the checkpoints", api+"STREAM.PURGE."+events.CheckpointStream, nil)
			w.publish(t, "delete a checkpoint", api+"STREAM.MSG.DELETE."+events.CheckpointStream, []byte(`{"seq":1}`))
			for _, other := range natsauth.Roles {
				if other != role {
					w.subscribe(t, "read "+string(other)+"'s replies", other.InboxPrefix()+".>")
				}
			}
			if role != natsauth.Service {
				w.publish(t, "request a revocation", "keytrail.cmd.acme.keys.revoke", []byte(`{"key":"x"}`))
			}
			if role != natsauth.Gateway {
				w.publish(t, "write a decision", events.DecisionSubject(&events.DecisionRecord{Tenant: "acme"}), []byte(`{"code":"VALID"}`))
				w.publish(t, "announce a gateway", events.PresenceSubjectPrefix+"all", []byte("fake"))
				w.publish(t, "report usage", events.UsageSubject("mallory"), []byte(`{"node":"mallory"}`))
			}
			if role == natsauth.Control {
				return
			}
			w.publish(t, "tell a tenant something", "keytrail.ntc.acme.key.expired.x", []byte(`{}`))
			w.publish(t, "publish an event", "keytrail.evt.acme.t", event)
			w.publish(t, "create the event stream", api+"STREAM.CREATE."+s, weakBody)
			w.publish(t, "create another stream", api+"STREAM.CREATE.SHADOW", []byte(`{"name":"SHADOW","subjects":["shadow.>"]}`))
			w.publish(t, "write a snapshot chunk", "$O."+events.SnapshotBucket+".C.forged", []byte("chunk"))
			w.publish(t, "write a snapshot's metadata", "$O."+events.SnapshotBucket+".M.dmVyaWZpY2F0aW9uLWFsbA==", []byte("{}"))
			w.publish(t, "purge the snapshots", api+"STREAM.PURGE.OBJ_"+events.SnapshotBucket, nil)
			w.publish(t, "take the snapshot lease", "$KV."+events.LeaseBucket+".writer", []byte("mallory"))
			w.publish(t, "claim an idempotency key", "$KV."+events.IdempotencyBucket+".k", []byte("x"))
			w.publish(t, "read a sealed webhook secret", api+"DIRECT.GET.KV_"+events.WebhookSecretBucket, []byte(`{"last_by_subj":"$KV.`+events.WebhookSecretBucket+`.acme.x.y"}`))
			w.publish(t, "list the webhook secrets", api+"CONSUMER.CREATE.KV_"+events.WebhookSecretBucket, []byte(`{}`))
			w.publish(t, "plant a webhook secret", "$KV."+events.WebhookSecretBucket+".acme.whk_x.y", []byte("x"))
			w.publish(t, "queue a webhook message", events.WebhookMsgPrefix+"acme.whk_x", []byte(`{}`))
			w.publish(t, "forge a delivery attempt", events.WebhookAttemptPrefix+"acme.whk_x", []byte(`{}`))
			w.publish(t, "publish a checkpoint", events.CheckpointSubject, []byte("keytrail\n1\nAAAA\n"))
			// The webhook fan-out's durable consumer: taking its notices,
			// deleting it or pointing it elsewhere would drop deliveries.
			fanout := natsauth.WebhookFanout
			w.publish(t, "pull the webhook fan-out's notices", api+"CONSUMER.MSG.NEXT."+events.NoticeStream+"."+fanout, []byte(`{"batch":1}`))
			w.publish(t, "ack a notice for the fan-out", "$JS.ACK."+events.NoticeStream+"."+fanout+".1.1.1.1.0", nil)
			w.publish(t, "delete the webhook fan-out", api+"CONSUMER.DELETE."+events.NoticeStream+"."+fanout, nil)
			w.publish(t, "redefine the webhook fan-out", api+"CONSUMER.CREATE."+events.NoticeStream+"."+fanout, []byte(`{"stream_name":"KEYTRAIL_NOTICES","config":{"durable_name":"keytrail-webhooks","filter_subject":"keytrail.ntc.nobody.>"}}`))
			w.publish(t, "redefine the webhook fan-out (filtered form)", api+"CONSUMER.CREATE."+events.NoticeStream+"."+fanout+".keytrail.ntc.nobody.>", []byte(`{}`))
			w.publish(t, "pull a webhook endpoint's messages", api+"CONSUMER.MSG.NEXT."+events.WebhookStream+".webhook_acme_whk_x", []byte(`{"batch":1}`))
			w.publish(t, "delete a webhook endpoint's consumer", api+"CONSUMER.DELETE."+events.WebhookStream+".webhook_acme_whk_x", nil)
			w.subscribe(t, "hear commands (and their bearer keys)", events.CommandSubjects)
			w.subscribe(t, "hear one tenant's revocations", "keytrail.cmd.acme.keys.revoke")
			if role == natsauth.Service {
				w.publish(t, "read the event stream", api+"STREAM.INFO."+s, nil)
				w.publish(t, "read an event", api+"DIRECT.GET."+s, []byte(`{"seq":1}`))
				w.subscribe(t, "hear presence", events.PresenceSubjects)
			}
		})
	}

	// Control may create the event stream, but creating it again with
	// other settings is refused by the server.
	cjs, _ := jetstream.New(node.ConnectAs(t, natsauth.Control))
	if _, err := cjs.CreateStream(ctx, weak); err == nil {
		t.Fatal("control re-created the event stream with weaker settings")
	}
	if after := readBusState(t, operator); !reflect.DeepEqual(after, before) {
		t.Fatalf("the bus changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

// TestForgedLinkedEventWithGatewayCredentials is the first attack on the
// bus: with a gateway's credentials (it may read every event), read a key's
// last event and publish a correctly hash-linked key.issued carrying the
// hash of a self-made secret, and a user.enabled. The server refuses both;
// neither the gateway nor the admin API knows the secret; verify-chain
// still finds nothing, because nothing was appended.
func TestForgedLinkedEventWithGatewayCredentials(t *testing.T) {
	e := startAdmin(t)
	issued := e.givenKey("orders:read")
	keyID := issued.body["key"].(map[string]any)["id"].(string)
	url := e.dev.Addresses().NATS
	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("keytrail dev's NATS accepted an anonymous client")
	}
	ctx := testCtx(t, time.Minute)
	w := connectWatched(t, url, devIdentity(t, e.dir, natsauth.Gateway))
	gst, err := store.OpenJetStream(ctx, w.nc, store.Config{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := gst.Load(ctx, "acme", events.KeyAggregate("bob", keyID))
	if err != nil || len(h.Events) == 0 {
		t.Fatalf("a gateway reads a key's history: %v", err)
	}
	lastBefore, _ := gst.LastSeq(ctx, "")
	self := mustSecret(t)
	forgedID := "key_01JDQ8Z6W4M2N9V3X5C7B1F0RG"
	forged := events.Event{ID: "01JDQ8Z6W4M2N9V3X5C7B1F0RG", Type: events.KeyIssued, Tenant: "acme",
		Aggregate: events.KeyAggregate("bob", forgedID), Actor: "root", OccurredAt: time.Now(), CommandID: "forged",
		Data: events.KeyIssuedV1{Name: "forged", SecretHash: self.Hash(), Hint: "kt_…", Scopes: []string{"orders:read", "keytrail:admin"}}}
	data, err := events.Encode(&forged)
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := events.Subject("acme", forged.Aggregate)
	w.publish(t, "publish a forged key.issued", subject, data)
	userHead, _ := gst.Load(ctx, "acme", events.UserAggregate("bob"))
	enabled := events.Event{ID: "01JDQ8Z6W4M2N9V3X5C7B1F0RH", Type: events.UserEnabled, Tenant: "acme",
		Aggregate: events.UserAggregate("bob"), Actor: "root", OccurredAt: time.Now(), CommandID: "forged-2",
		PrevHash: userHead.Events[len(userHead.Events)-1].Hash, Data: events.UserEnabledV1{}}
	data, _ = events.Encode(&enabled)
	w.publish(t, "publish a forged, linked user.enabled", "keytrail.evt.acme.u.bob.u", data)
	// And through JetStream, as the attacker would: refused, never acknowledged.
	js, _ := jetstream.New(w.nc)
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := js.Publish(pctx, subject, data); err == nil {
		t.Fatal("a gateway's publish of an event was acknowledged")
	}

	if last, _ := gst.LastSeq(ctx, ""); last != lastBefore {
		t.Fatalf("the stream grew from %d to %d", lastBefore, last)
	}
	up := upstream(t)
	e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "orders", "path_prefix": "/orders",
		"upstreams": []string{up.URL}, "scopes": []string{"orders:read"}}), 201)
	e.waitReady()
	testkit.Eventually(t, 10*time.Second, func() error {
		if s, code := through(e.dev.Addresses().Gateway, "/orders", self.Reveal()); s != http.StatusUnauthorized || code != "NOT_FOUND" {
			return fmt.Errorf("the self-made secret through the gateway: %d %s", s, code)
		}
		return nil
	})
	if r := e.call("GET", "/v1/tenants/acme", self.Reveal(), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("the self-made secret as an admin key: %d", r.status)
	}
	if out, code := runCLI("audit", "verify-chain", "--data", e.dir); code != 0 || !strings.Contains(out, "0 problems") {
		t.Fatalf("verify-chain: exit %d\n%s", code, out)
	}
}

// TestPresenceCannotShrinkLimitsBelowTheFloor: presence comes only from
// gateway identities (the matrix above), and even a gateway identity
// announcing 63 invented gateways shrinks no shared limit below its floor.
func TestPresenceCannotShrinkLimitsBelowTheFloor(t *testing.T) {
	node := natstest.RunServer(t)
	ctx := testCtx(t, time.Minute)
	nc := node.ConnectAs(t, natsauth.Gateway)
	p := gateway.NewPresence(nc, "gw-1", nil, 50*time.Millisecond, nil)
	go p.Run(ctx)
	limits := gateway.NewLimits(p)
	attacker := node.ConnectAs(t, natsauth.Gateway)
	testkit.Eventually(t, 10*time.Second, func() error {
		for i := range 63 {
			attacker.Publish(events.PresenceSubjectPrefix+"all", fmt.Appendf(nil, "fake-%d", i))
		}
		if n := limits.Peers(); n < gateway.MaxSharingPeers {
			return fmt.Errorf("%d peers counted", n)
		}
		return nil
	})
	if n := limits.Peers(); n != gateway.MaxSharingPeers {
		t.Fatalf("%d peers: the floor is 1/%d of a limit", n, gateway.MaxSharingPeers)
	}
}

// TestStreamDeletedAndMadeAnewBehindTheNodesBack: an operator (the only
// identity that can) deletes the event stream under a running keytrail dev,
// then makes an empty one. The node notices and says so - admin and gateway
// readyz 503, the refusal metrics, the gateway answers STALE, admin calls
// answer 503 within their timeout - appends nothing to the new stream,
// stops within 10 s, and refuses to start again on it; it never creates an
// empty stream over the history it knew.
func TestStreamDeletedAndMadeAnewBehindTheNodesBack(t *testing.T) {
	op, err := natsauth.NewIdentity(natstest.Operator)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testkit.Buffer{}
	cfg := app.DevConfig{OperatorKey: op.PublicKey(), Logger: slog.New(slog.NewJSONHandler(logs, nil)), MinSeqWait: time.Second,
		Gateway: app.GatewayConfig{MaxStaleness: 30 * time.Second}}
	e := startAdminWith(t, cfg, logs)
	issued := e.givenKey("orders:read")
	sec := issued.body["secret"].(string)
	up := upstream(t)
	e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "orders", "path_prefix": "/orders",
		"upstreams": []string{up.URL}, "scopes": []string{"orders:read"}}), 201)
	gw := e.dev.Addresses().Gateway
	testkit.Eventually(t, 10*time.Second, func() error {
		if s, code := through(gw, "/orders", sec); s != 200 {
			return fmt.Errorf("%d %s", s, code)
		}
		return nil
	})
	ctx := testCtx(t, 2*time.Minute)
	js, _ := jetstream.New(natstest.Connect(t, e.dev.Addresses().NATS, op))
	if err := js.DeleteStream(ctx, events.StreamName); err != nil {
		t.Fatal(err)
	}

	testkit.Eventually(t, 10*time.Second, func() error {
		if s := e.call("GET", "/readyz", "", nil).status; s != http.StatusServiceUnavailable {
			return fmt.Errorf("admin readyz %d", s)
		}
		if s := readyz(gw); s != http.StatusServiceUnavailable {
			return fmt.Errorf("gateway readyz %d", s)
		}
		if s, code := through(gw, "/orders", sec); s != http.StatusServiceUnavailable || code != "STALE" {
			return fmt.Errorf("gateway: %d %s", s, code)
		}
		return nil
	})
	if v := gatewayMetric(t, e.dev.Addresses().Metrics, "keytrail_gateway_stream_refused"); v != 1 {
		t.Fatalf("keytrail_gateway_stream_refused %d", v)
	}
	if m := e.call("GET", "/metrics", "", nil); !strings.Contains(m.raw, "keytrail_readmodel_stream_refused 1") {
		t.Fatal("keytrail_readmodel_stream_refused is not 1")
	}
	if !strings.Contains(logs.String(), "event stream refused") || !strings.Contains(logs.String(), "the stream is gone") {
		t.Fatalf("the log does not say why: %s", logs.String())
	}

	// The operator makes an empty stream with Keytrail's own settings.
	if _, err := js.CreateStream(ctx, store.StreamConfig(store.Config{})); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := e.call("POST", "/v1/tenants", e.root, map[string]any{"id": "beta", "name": "Beta"})
	if r.status != http.StatusServiceUnavailable || time.Since(start) > 11*time.Second {
		t.Fatalf("a command on a refused stream: %d after %v: %s", r.status, time.Since(start), r.raw)
	}
	if r := e.call("GET", "/v1/tenants/acme", e.root, nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("a read on a refused stream: %d", r.status)
	}
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil || s.CachedInfo().State.Msgs != 0 {
		t.Fatalf("the node wrote to the new stream: %v", err)
	}

	start = time.Now()
	e.dev.Close()
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("stopping took %v", d)
	}
	cfg.DataDir, cfg.AdminListen, cfg.GatewayListen, cfg.NATSListen = e.dir, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if d, err := app.StartDev(ctx, cfg); !errors.Is(err, store.ErrRefused) || !strings.Contains(err.Error(), "made anew") {
		if d != nil {
			d.Close()
		}
		t.Fatalf("restart on the new stream: %v", err)
	}
}

// TestRestartNeverCreatesAnEmptyStreamOverAKnownHistory: the event stream
// deleted while keytrail dev was down; the restart refuses to start rather
// than create an empty one, and creates nothing.
func TestRestartNeverCreatesAnEmptyStreamOverAKnownHistory(t *testing.T) {
	op, err := natsauth.NewIdentity(natstest.Operator)
	if err != nil {
		t.Fatal(err)
	}
	cfg := app.DevConfig{OperatorKey: op.PublicKey(), Logger: slog.New(slog.DiscardHandler)}
	e := startAdminWith(t, cfg, nil)
	e.givenKey()
	ctx := testCtx(t, time.Minute)
	e.dev.Close()
	// Down: the operator removes the stream from the store directly, as
	// `nats stream rm` on a server of its own would.
	cfg.DataDir, cfg.AdminListen, cfg.GatewayListen, cfg.NATSListen = e.dir, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	node, err := natsnode.Start(natsnode.Config{Name: "operator", StoreDir: filepath.Join(e.dir, "nats"), Listen: "127.0.0.1:0",
		Users: []natsnode.User{{PublicKey: op.PublicKey()}}})
	if err != nil {
		t.Fatal(err)
	}
	ojs, _ := jetstream.New(natstest.Connect(t, node.ClientURL(), op))
	if err := ojs.DeleteStream(ctx, events.StreamName); err != nil {
		t.Fatal(err)
	}
	node.Shutdown()

	if d, err := app.StartDev(ctx, cfg); !errors.Is(err, store.ErrRefused) || !strings.Contains(err.Error(), "gone") {
		if d != nil {
			d.Close()
		}
		t.Fatalf("restart without the stream: %v", err)
	}
	node, err = natsnode.Start(natsnode.Config{Name: "operator", StoreDir: filepath.Join(e.dir, "nats"), Listen: "127.0.0.1:0",
		Users: []natsnode.User{{PublicKey: op.PublicKey()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Shutdown()
	ojs, _ = jetstream.New(natstest.Connect(t, node.ClientURL(), op))
	if _, err := ojs.Stream(ctx, events.StreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("the restart made a stream: %v", err)
	}
}

// TestEveryModeStopsWithinTenSecondsWithItsStreamGone: keytrail serve and
// keytrail gateway, their stream deleted under them, refuse it and stop
// within 10 s of being told to (SIGTERM cancels the same context).
func TestEveryModeStopsWithinTenSecondsWithItsStreamGone(t *testing.T) {
	node := natstest.RunServer(t)
	ctx := testCtx(t, 2*time.Minute)
	type mode struct {
		name   string
		cancel context.CancelFunc
		done   chan int
		logs   *testkit.Buffer
	}
	start := func(name, ready string, args ...string) *mode {
		mctx, cancel := context.WithCancel(ctx)
		m := &mode{name: name, cancel: cancel, done: make(chan int, 1), logs: &testkit.Buffer{}}
		go func() { m.done <- app.Main(mctx, args, &bytes.Buffer{}, m.logs) }()
		t.Cleanup(func() { cancel() })
		testkit.Eventually(t, 30*time.Second, func() error {
			if !strings.Contains(m.logs.String(), ready) {
				return fmt.Errorf("%s not up: %s", name, m.logs.String())
			}
			return nil
		})
		return m
	}
	dir := t.TempDir()
	serve := start("serve", "event stream ensured", "serve", "--nats", node.ClientURL(), "--nats-nkey", node.SeedFile(t, natsauth.Control),
		"--admin-listen", "127.0.0.1:0", "--root-key", filepath.Join(dir, "root.key"))
	gw := start("gateway", "read model caught up", "gateway", "--nats", node.ClientURL(), "--nats-nkey", node.SeedFile(t, natsauth.Gateway),
		"--gateway-listen", "127.0.0.1:0")
	op, _ := jetstream.New(node.ConnectAs(t, natstest.Operator))
	if err := op.DeleteStream(ctx, events.StreamName); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*mode{serve, gw} {
		testkit.Eventually(t, 10*time.Second, func() error {
			if !strings.Contains(m.logs.String(), "event stream refused") {
				return fmt.Errorf("%s has not refused the stream", m.name)
			}
			return nil
		})
		began := time.Now()
		m.cancel()
		select {
		case code := <-m.done:
			if code != app.ExitOK {
				t.Fatalf("%s exited %d", m.name, code)
			}
			t.Logf("%s stopped in %v", m.name, time.Since(began))
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not stop within 10 s", m.name)
		}
	}
}

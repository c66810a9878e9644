package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/app"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/gateway"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

// upstream is a real HTTP server on loopback answering 200 "ok".
func upstream(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(s.Close)
	return s
}

// through sends GET path through a gateway with a key and returns the status
// and the outcome code (empty when proxied).
func through(gw, path, secret string, hdr ...string) (int, string) {
	req, _ := http.NewRequest("GET", gw+path, nil)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var p struct{ Code string }
	json.NewDecoder(resp.Body).Decode(&p)
	return resp.StatusCode, p.Code
}

func readyz(gw string) int {
	resp, err := http.Get(gw + "/_keytrail/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestGatewaysJoinAndEnforceRevocations: `keytrail dev` serves a gateway; a
// second and a third gateway process join the deployment; a key revoked
// through the admin API is denied by all three; a gateway restarted while
// keys were issued is ready only once it has them.
func TestGatewaysJoinAndEnforceRevocations(t *testing.T) {
	e := startAdmin(t)
	up := upstream(t)
	issued := e.givenKey("orders:read")
	secret, keyID := issued.body["secret"].(string), issued.body["key"].(map[string]any)["id"].(string)
	e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "orders", "path_prefix": "/orders",
		"upstreams": []string{up.URL}, "scopes": []string{"orders:read"}}), 201)

	nats := e.dev.Addresses().NATS
	gateways := []string{e.dev.Addresses().Gateway}
	var procs []*process
	for range 2 {
		p, url := startKeytrail(t, "gateway ", "gateway", "--allow-upstream", "127.0.0.0/8", "--nats", nats, "--data", e.dir, "--gateway-listen", "127.0.0.1:0")
		procs = append(procs, p)
		gateways = append(gateways, url)
	}
	for _, gw := range gateways {
		testkit.Eventually(t, 20*time.Second, func() error {
			if s, code := through(gw, "/orders/1", secret); s != 200 {
				return fmt.Errorf("%s: %d %s", gw, s, code)
			}
			return nil
		})
	}

	// Revoke through the admin API; every gateway denies from then on.
	r := e.must(e.call("POST", "/v1/tenants/acme/keys/"+keyID+"/revoke", e.root, nil), 200)
	ack := time.Now()
	seq := r.header.Get("Keytrail-Seq")
	for _, gw := range gateways {
		testkit.Eventually(t, 5*time.Second, func() error {
			if s, code := through(gw, "/orders/1", secret); s != 403 || code != "REVOKED" {
				return fmt.Errorf("%s after the revocation: %d %s", gw, s, code)
			}
			return nil
		})
		// Keytrail-Min-Seq makes the answer certain, not just eventual.
		if s, code := through(gw, "/orders/1", secret, "Keytrail-Min-Seq", seq); s != 403 || code != "REVOKED" {
			t.Fatalf("%s with Min-Seq %s: %d %s", gw, seq, s, code)
		}
	}
	t.Logf("revocation enforced by %d gateways within %v of the acknowledgement", len(gateways), time.Since(ack))

	// A gateway serving only tenant beta knows nothing of acme's APIs.
	// Next to a dev data directory a gateway finds the NATS address and its seed by itself.
	_, betaOnly := startKeytrail(t, "gateway ", "gateway", "--allow-upstream", "127.0.0.0/8", "--data", e.dir, "--gateway-listen", "127.0.0.1:0", "--tenants", "beta")
	testkit.Eventually(t, 20*time.Second, func() error {
		if s := readyz(betaOnly); s != 200 {
			return fmt.Errorf("readyz %d", s)
		}
		return nil
	})
	if s, code := through(betaOnly, "/orders/1", secret); s != 404 || code != "NO_API" {
		t.Fatalf("a beta-only gateway routed acme's API: %d %s", s, code)
	}

	// A gateway restarted while keys were issued: once it is ready it knows
	// every one of them.
	if err := procs[0].stop(); err != nil {
		t.Fatalf("gateway stopped with %v", err)
	}
	var fresh []string
	for range 20 {
		k := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob", "scopes": []string{"orders:read"}}), 201)
		fresh = append(fresh, k.body["secret"].(string))
	}
	_, url := startKeytrail(t, "gateway ", "gateway", "--allow-upstream", "127.0.0.0/8", "--nats", nats, "--data", e.dir, "--gateway-listen", "127.0.0.1:0")
	testkit.Eventually(t, 20*time.Second, func() error {
		if s := readyz(url); s != 200 {
			return fmt.Errorf("readyz %d", s)
		}
		return nil
	})
	for _, sec := range fresh {
		if s, code := through(url, "/orders/1", sec); s != 200 {
			t.Fatalf("restarted gateway, ready, a key issued while it was down: %d %s", s, code)
		}
	}
}

// TestGatewayStaleWithoutNATS: NATS goes away; once the staleness bound has
// passed the gateway answers STALE (fail closed); when NATS is back it
// serves again without a restart.
func TestGatewayStaleWithoutNATS(t *testing.T) {
	dir := t.TempDir()
	auth := natstest.NewAuth(t)
	node, err := natsnode.Start(natsnode.Config{Name: "n", StoreDir: dir, Listen: "127.0.0.1:0", Users: auth.Users()})
	if err != nil {
		t.Fatal(err)
	}
	url := node.ClientURL()
	listen := url[len("nats://"):]
	ctx := testCtx(t, 2*time.Minute)
	_, _, sec := givenOrdersKey(t, ctx, openStore(t, natstest.Connect(t, url, auth.Identity(natsauth.Control)), store.Config{}))
	gw := runGatewayInProcess(t, ctx, sec, "--nats", url, "--nats-nkey", auth.SeedFile(t, natsauth.Gateway), "--max-staleness", "2s")

	node.Shutdown()
	down := time.Now()
	testkit.Eventually(t, 20*time.Second, func() error {
		if s, code := through(gw, "/orders", sec); s != 503 || code != "STALE" {
			return fmt.Errorf("NATS down %v: %d %s", time.Since(down), s, code)
		}
		return nil
	})
	// The bound runs from the last confirmation, at most one confirmation
	// interval (1 s) before NATS went away.
	if since := time.Since(down); since < time.Second {
		t.Fatalf("STALE after %v: before the 2 s bound", since)
	}
	if s := readyz(gw); s != 503 {
		t.Fatalf("readyz while stale: %d", s)
	}

	node, err = natsnode.Start(natsnode.Config{Name: "n", StoreDir: dir, Listen: listen, Users: auth.Users()})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Shutdown()
	testkit.Eventually(t, 30*time.Second, func() error {
		if s, code := through(gw, "/orders", sec); s != 200 {
			return fmt.Errorf("NATS back: %d %s", s, code)
		}
		return nil
	})
}

// TestGatewayOnAClusterThroughLeaderLoss: a gateway on a three-node cluster
// with R3 streams keeps enforcing while the event stream's leader is shut
// down, and a revocation made on the new leader reaches it.
func TestGatewayOnAClusterThroughLeaderLoss(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	ctx := testCtx(t, 2*time.Minute)
	svc, keyID, sec := givenOrdersKey(t, ctx, openStore(t, c.ConnectAs(t, natsauth.Control), store.Config{Replicas: 3}))
	gw := runGatewayInProcess(t, ctx, sec, "--nats", c.AllURLs(), "--nats-nkey", c.SeedFile(t, natsauth.Gateway))

	leader := c.StreamLeader(events.StreamName)
	c.Stop(leader)
	// Still serving from its model while the cluster elects a new leader.
	if s, code := through(gw, "/orders", sec); s != 200 {
		t.Fatalf("during the election: %d %s", s, code)
	}
	var seq uint64
	testkit.Eventually(t, 30*time.Second, func() error {
		_, res, err := svc.RevokeKey(ctx, control.Meta{Actor: "test"}, "acme", keyID, nil)
		seq = res.Seq
		return err
	})
	testkit.Eventually(t, 30*time.Second, func() error {
		if s, code := through(gw, "/orders", sec, "Keytrail-Min-Seq", fmt.Sprint(seq)); s != 403 || code != "REVOKED" {
			return fmt.Errorf("after the revocation on the new leader: %d %s", s, code)
		}
		return nil
	})
	c.Restart(leader)
}

// givenOrdersKey writes tenant acme, user bob, API /orders in front of a
// loopback upstream and a key of bob's through the control plane, and
// returns the control plane, the key's id and its secret.
func givenOrdersKey(t *testing.T, ctx context.Context, st *store.JetStream) (*control.Service, string, string) {
	t.Helper()
	svc, err := control.New(control.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	// What a control node creates for the gateways.
	s, err := st.JetStream().Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.EnsureDecisionStream(ctx, st.JetStream(), gateway.DecisionStreamConfig{Replicas: s.CachedInfo().Config.Replicas}); err != nil {
		t.Fatal(err)
	}
	m := control.Meta{Actor: "test"}
	svc.CreateTenant(ctx, m, "acme", "A")
	svc.CreateUser(ctx, m, "acme", "bob", "")
	if _, _, err := svc.CreateAPI(ctx, m, "acme", control.APISpec{ID: "orders", PathPrefix: "/orders", Upstreams: []string{upstream(t).URL}}); err != nil {
		t.Fatal(err)
	}
	k, sec, _, err := svc.IssueKey(ctx, m, "acme", control.KeySpec{User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	return svc, k.ID, sec.Reveal()
}

// runGatewayInProcess runs `keytrail gateway args...` in this process until
// the test ends, and returns its URL once it lets secret through to /orders.
func runGatewayInProcess(t *testing.T, ctx context.Context, secret string, args ...string) string {
	t.Helper()
	runCtx, stop := context.WithCancel(ctx)
	out := &testkit.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- app.Main(runCtx, append([]string{"gateway", "--gateway-listen", "127.0.0.1:0", "--allow-upstream", "127.0.0.0/8"}, args...), out, io.Discard)
	}()
	t.Cleanup(func() { stop(); <-done })
	var gw string
	testkit.Eventually(t, 30*time.Second, func() error {
		if _, err := fmt.Sscanf(out.String(), "gateway %s", &gw); err != nil {
			return fmt.Errorf("no address yet: %q", out.String())
		}
		if s, code := through(gw, "/orders", secret); s != 200 {
			return fmt.Errorf("%d %s", s, code)
		}
		return nil
	})
	return gw
}

// TestATightStalenessBoundGivesNoFalseStale: with --max-staleness 250ms a
// healthy gateway confirms often enough that no request is answered STALE
// (at 500 ms about half were, when confirmation ran every second).
func TestATightStalenessBoundGivesNoFalseStale(t *testing.T) {
	e := startAdminWith(t, app.DevConfig{Gateway: app.GatewayConfig{MaxStaleness: 250 * time.Millisecond}, Logger: slog.New(slog.DiscardHandler)}, nil)
	issued := e.givenKey()
	sec := issued.body["secret"].(string)
	up := upstream(t)
	created := e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "orders", "path_prefix": "/orders", "upstreams": []string{up.URL}}), 201)
	gw := e.dev.Addresses().Gateway
	if s, code := through(gw, "/orders/1", sec, "Keytrail-Min-Seq", created.header.Get("Keytrail-Seq")); s != 200 {
		t.Fatalf("%d %s", s, code)
	}
	stale, total := 0, 0
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end) && total < 50_000; total++ {
		if _, code := through(gw, "/orders/1", sec); code == "STALE" {
			stale++
		}
	}
	if stale > 0 || total < 100 {
		t.Fatalf("%d of %d requests answered STALE with a 250 ms bound on a healthy link", stale, total)
	}
	t.Logf("%d requests, none STALE", total)
}

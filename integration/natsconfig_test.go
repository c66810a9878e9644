package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/client"
	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/app"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

// TestClusterFromNATSConfig: `keytrail nats-config` writes the seeds and
// the configuration fragment; three nats-server nodes are configured from
// that very fragment by nats-server's own loader (what an operator's
// servers do); every role runs on the cluster with its own seed: a control
// node with R3 streams, a gateway, a service revoking over NATS, an
// auditor; anonymous clients are refused.
func TestClusterFromNATSConfig(t *testing.T) {
	dir := t.TempDir()
	if out, code := runCLI("nats-config", "--out", dir); code != 0 || !strings.Contains(out, app.AuthFragment) {
		t.Fatalf("nats-config: exit %d\n%s", code, out)
	}
	seed := func(r natsauth.Role) string { return filepath.Join(dir, r.SeedFile()) }

	// Run again: the seeds are kept, the fragment is the same.
	first, _ := os.ReadFile(filepath.Join(dir, app.AuthFragment))
	if _, code := runCLI("nats-config", "--out", dir); code != 0 {
		t.Fatal("nats-config on an existing directory")
	}
	if again, _ := os.ReadFile(filepath.Join(dir, app.AuthFragment)); !bytes.Equal(first, again) {
		t.Fatal("a second nats-config changed the fragment")
	}

	// The ports are chosen free, then bound by the servers: another process
	// may take one in between (a server then fails to listen, and a client
	// of "the cluster" may reach that other process). Each node must listen
	// where configured; if one does not, the cluster starts again on other
	// ports.
	var servers []*server.Server
	var routes, urls []string
	for attempt := 0; ; attempt++ {
		clientPorts, routePorts := natstest.FreePorts(t, 3), natstest.FreePorts(t, 3)
		servers, routes, urls = nil, nil, nil
		for i := range 3 {
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i]))
			urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
		}
		for i := range 3 {
			conf := filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
			text := fmt.Sprintf(`server_name: n%d
listen: 127.0.0.1:%d
jetstream { store_dir: %q, sync_interval: always }
cluster { name: keytrail, listen: 127.0.0.1:%d, routes: [%s] }
include ./%s
`, i+1, clientPorts[i], t.TempDir(), routePorts[i], strings.Join(routes, ", "), app.AuthFragment)
			if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			opts, err := server.ProcessConfigFile(conf)
			if err != nil {
				t.Fatalf("nats-server's loader on the fragment: %v", err)
			}
			opts.NoLog, opts.NoSigs = true, true
			if i == 0 {
				checkFragmentPermissions(t, opts, dir)
			}
			s, err := server.NewServer(opts)
			if err != nil {
				t.Fatal(err)
			}
			go s.Start()
			t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
			servers = append(servers, s)
		}
		listening := true
		for i, s := range servers {
			if !s.ReadyForConnections(10*time.Second) || s.Addr() == nil || s.Addr().(*net.TCPAddr).Port != clientPorts[i] {
				listening = false
			}
		}
		if listening {
			break
		}
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
		if attempt == 2 {
			t.Fatal("the cluster never listened on the ports chosen for it")
		}
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		leaders := 0
		for _, s := range servers {
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("%s not current", s.Name())
			}
			if s.JetStreamIsLeader() {
				leaders++
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d meta leaders", leaders)
		}
		return nil
	})
	all := strings.Join(urls, ",")
	if nc, err := nats.Connect(all); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected to the cluster")
	}

	// control
	ctx, cancel := context.WithCancel(testCtx(t, 3*time.Minute))
	defer cancel()
	rootKey := filepath.Join(t.TempDir(), "root.key")
	admin := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	logs := &testkit.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- app.Main(ctx, []string{"serve", "--nats", all, "--nats-nkey", seed(natsauth.Control), "--replicas", "3",
			"--admin-listen", admin, "--root-key", rootKey, "--allow-upstream", "127.0.0.0/8"}, &bytes.Buffer{}, logs)
	}()
	t.Cleanup(func() { cancel(); <-done })
	testkit.Eventually(t, 60*time.Second, func() error {
		if !strings.Contains(logs.String(), "event stream ensured") {
			return fmt.Errorf("control node not up: %s", logs.String())
		}
		return nil
	})
	root, _ := os.ReadFile(rootKey)
	c := client.New("http://"+admin, strings.TrimSpace(string(root)), nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := c.CreateTenant(ctx, "acme", "Acme", nil)
	must(err)
	_, _, err = c.CreateUser(ctx, "acme", "bob", "", nil)
	must(err)
	_, _, err = c.CreateAPI(ctx, "acme", client.APISpec{ID: "orders", PathPrefix: "/orders", Upstreams: []string{upstream(t).URL}}, nil)
	must(err)
	k, err := c.IssueKey(ctx, "acme", client.KeySpec{User: "bob"}, nil)
	must(err)

	// gateway
	gw := runGatewayInProcess(t, ctx, k.Secret, "--nats", all, "--nats-nkey", seed(natsauth.Gateway))

	// a service revokes over NATS
	opts, err := client.ServiceOptions(seed(natsauth.Service))
	must(err)
	svc, err := nats.Connect(all, opts...)
	must(err)
	defer svc.Close()
	if _, err := client.NewRevoker(svc, strings.TrimSpace(string(root))).RevokeKey(ctx, "acme", k.Key.ID, "leaked", nil); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if s, code := through(gw, "/orders", k.Secret); code != "REVOKED" {
			return fmt.Errorf("after the revocation: %d %s", s, code)
		}
		return nil
	})

	// auditor
	if out, code := runCLI("audit", "verify-chain", "--nats", all, "--nats-nkey", seed(natsauth.Auditor)); code != 0 || !strings.Contains(out, "0 problems") {
		t.Fatalf("verify-chain: exit %d\n%s", code, out)
	}
	if out, code := runCLI("audit", "history", k.Key.ID, "--nats", all, "--nats-nkey", seed(natsauth.Auditor)); code != 0 || !strings.Contains(out, string(events.KeyRevoked)) {
		t.Fatalf("history: exit %d\n%s", code, out)
	}
}

// checkFragmentPermissions: the permissions nats-server loaded from the
// fragment are natsauth's, role by role.
func checkFragmentPermissions(t *testing.T, opts *server.Options, dir string) {
	t.Helper()
	loaded := map[string]*server.Permissions{}
	for _, u := range opts.Nkeys {
		loaded[u.Nkey] = u.Permissions
	}
	for _, r := range natsauth.Roles {
		id, err := natsauth.ReadSeedFile(r, filepath.Join(dir, r.SeedFile()))
		if err != nil {
			t.Fatal(err)
		}
		p, ok := loaded[id.PublicKey()]
		if !ok || p == nil {
			t.Fatalf("the fragment has no %s identity", r)
		}
		want := natsauth.For(r)
		if !reflect.DeepEqual(p.Publish.Allow, want.PublishAllow) || !reflect.DeepEqual(p.Publish.Deny, want.PublishDeny) ||
			!reflect.DeepEqual(p.Subscribe.Allow, want.SubscribeAllow) || !equalOrEmpty(p.Subscribe.Deny, want.SubscribeDeny) ||
			(p.Response != nil) != want.Responses {
			t.Fatalf("%s: loaded %+v %+v, want %+v", r, p.Publish, p.Subscribe, want)
		}
	}
}

func equalOrEmpty(a, b []string) bool { return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b) }

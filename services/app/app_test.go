package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/cli"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
	"os/exec"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestMainUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, ExitUsage, "Usage"},
		{[]string{"help"}, ExitOK, "Usage"},
		{[]string{"launch"}, ExitUsage, `unknown command "launch"`},
		{[]string{"dev", "--no-such-flag"}, ExitUsage, "no-such-flag"},
		{[]string{"dev", "extra"}, ExitUsage, "unexpected arguments"},
		{[]string{"dev", "-h"}, ExitOK, "-nats-listen"},
		{[]string{"dev", "--nats-listen", "nocolon", "--data", "DIR"}, ExitUsage, "nats-listen"},
		{[]string{"dev", "--log-level", "loud"}, ExitUsage, "log-level"},
		{[]string{"serve", "--replicas", "0"}, ExitUsage, "replicas"},
		{[]string{"serve", "--nats", " "}, ExitUsage, "-nats"},
		{[]string{"serve", "--nats-tls-cert", "c.pem"}, ExitUsage, "go together"},
		{[]string{"gateway", "--tenants", "acme,Bad.Tenant"}, ExitUsage, "not a tenant id"},
		{[]string{"gateway", "--max-staleness", "0s"}, ExitUsage, "max-staleness"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		for i, a := range c.args {
			if a == "DIR" {
				c.args[i] = t.TempDir()
			}
		}
		code := Main(ctxFor(t), c.args, &out, &errb)
		if code != c.code || !strings.Contains(errb.String()+out.String(), c.want) {
			t.Errorf("Main(%q) = %d, output %q; want %d and %q", c.args, code, errb.String(), c.code, c.want)
		}
	}
}

// TestHelpListsEveryCommand: asked for, the help goes to stdout (it went to
// stderr) and names every verb of every noun's table and of audit (it left
// out audit decision and tenant revoke-keys); --version says which build.
func TestHelpListsEveryCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(ctxFor(t), []string{"--help"}, &out, &errb); code != ExitOK || errb.Len() != 0 {
		t.Fatalf("--help: %d, stderr %q", code, errb.String())
	}
	help := out.String()
	for _, n := range cli.Nouns() {
		for _, v := range n.Verbs() {
			if !strings.Contains(help, v) {
				t.Errorf("the help leaves out %s %s", n.Name, v)
			}
		}
	}
	for _, v := range append(auditVerbs, "revoke-keys", "version") {
		if !strings.Contains(help, v) {
			t.Errorf("the help leaves out %s", v)
		}
	}
	out.Reset()
	if code := Main(ctxFor(t), []string{"--version"}, &out, &errb); code != ExitOK || !strings.HasPrefix(out.String(), "keytrail ") || !strings.Contains(out.String(), "go1.") {
		t.Fatalf("--version: %d %q", code, out.String())
	}
}

// TestFlagsAreTheCommandsOwn: a read offers no write's flags (verify -h
// listed -if-match), a write no read's; a bad flag is said once (it was
// printed twice).
func TestFlagsAreTheCommandsOwn(t *testing.T) {
	var out, errb bytes.Buffer
	Main(ctxFor(t), []string{"verify", "-h"}, &out, &errb)
	if help := errb.String() + out.String(); strings.Contains(help, "if-match") || strings.Contains(help, "idempotency-key") || !strings.Contains(help, "min-seq") {
		t.Fatalf("verify -h:\n%s", help)
	}
	out.Reset()
	errb.Reset()
	Main(ctxFor(t), []string{"key", "revoke", "-h"}, &out, &errb)
	if help := errb.String() + out.String(); !strings.Contains(help, "if-match") || strings.Contains(help, "min-seq") {
		t.Fatalf("key revoke -h:\n%s", help)
	}
	out.Reset()
	errb.Reset()
	code := Main(ctxFor(t), []string{"key", "list", "--tenant", "acme", "--bogus"}, &out, &errb)
	if n := strings.Count(errb.String(), "flag provided but not defined: -bogus"); code != ExitUsage || n != 1 {
		t.Fatalf("a bad flag: exit %d, said %d times:\n%s", code, n, errb.String())
	}
}

func startDev(t *testing.T, dir string) *Dev {
	t.Helper()
	d, err := StartDev(ctxFor(t), DevConfig{DataDir: dir, AdminListen: "127.0.0.1:0", GatewayListen: "127.0.0.1:0", NATSListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDevKeepsEventsAcrossRestartsAndPublishesItsAddresses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d := startDev(t, dir)
	var addrs Addresses
	b, err := os.ReadFile(filepath.Join(dir, "addresses.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &addrs); err != nil || addrs != d.Addresses() || !strings.HasPrefix(addrs.NATS, "nats://127.0.0.1:") {
		t.Fatalf("addresses.json = %s (%v), want %+v", b, err, d.Addresses())
	}
	// Another node joins over the client listener and sees a safe stream.
	gw, err := natsauth.ReadSeedFile(natsauth.Gateway, filepath.Join(dir, "nats", "gateway.nk"))
	if err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t, addrs.NATS, gw)
	if _, err := store.OpenJetStream(ctxFor(t), nc, store.Config{}); err != nil {
		t.Fatalf("joining node: %v", err)
	}
	e := events.Event{ID: "01JDQ8Z6W4M2N9V3X5C7B1A0ZZ", Type: events.TenantCreated, Tenant: "acme",
		Aggregate: events.TenantAggregate("acme"), Actor: "test", OccurredAt: time.Now(), CommandID: "c1",
		Data: events.TenantCreatedV1{Name: "Acme"}}
	if _, err := d.Store().Append(ctxFor(t), store.Head{}, e); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	d.Close()

	d = startDev(t, dir)
	defer d.Close()
	h, err := d.Store().Load(ctxFor(t), "acme", events.TenantAggregate("acme"))
	if err != nil || len(h.Events) != 1 || h.Events[0].ID != e.ID {
		t.Fatalf("after restart: %+v, %v", h, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data directory mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
}

func TestDevRefusesADataDirectoryInUse(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, dir)
	defer d.Close()
	_, err := StartDev(ctxFor(t), DevConfig{DataDir: dir, AdminListen: "127.0.0.1:0", GatewayListen: "127.0.0.1:0", NATSListen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second dev on one directory: %v", err)
	}
}

func TestDevRunsUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	dir := t.TempDir()
	done := make(chan int)
	var out, errb bytes.Buffer
	go func() {
		done <- Main(ctx, []string{"dev", "--data", dir, "--nats-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0"}, &out, &errb)
	}()
	testkit.Eventually(t, 20*time.Second, func() error {
		_, err := os.Stat(filepath.Join(dir, "addresses.json"))
		return err
	})
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "nats://127.0.0.1:") {
		t.Fatalf("dev did not print its addresses: %q", out.String())
	}
}

func TestServeRefusesAWeakStreamAndGatewayAMissingOne(t *testing.T) {
	node := natstest.RunServer(t)
	var out, errb bytes.Buffer
	if code := Main(ctxFor(t), []string{"gateway", "--nats", node.ClientURL(), "--nats-nkey", node.SeedFile(t, natsauth.Gateway)}, &out, &errb); code != ExitError || !strings.Contains(errb.String(), "does not exist") {
		t.Fatalf("gateway without a stream: exit %d, %q", code, errb.String())
	}
	// A weak stream can only be made by an operator outside Keytrail.
	js, err := jetstream.New(node.ConnectAs(t, natstest.Operator))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctxFor(t), jetstream.StreamConfig{Name: events.StreamName, Subjects: []string{events.AllSubjects}, Storage: jetstream.MemoryStorage, MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	code := Main(ctxFor(t), []string{"serve", "--nats", node.ClientURL(), "--nats-nkey", node.SeedFile(t, natsauth.Control), "--root-key", filepath.Join(t.TempDir(), "root.key")}, &out, &errb)
	for _, want := range []string{"weaker settings", "storage is Memory", "discard policy", "max_age", "deny_delete", "deny_purge"} {
		if code != ExitError || !strings.Contains(errb.String(), want) {
			t.Fatalf("serve on a weak stream: exit %d, %q lacks %q", code, errb.String(), want)
		}
	}
}

func TestServeEnsuresTheStreamThenGatewayJoins(t *testing.T) {
	node := natstest.RunServer(t)
	run := func(ready string, args ...string) {
		ctx, cancel := context.WithCancel(ctxFor(t))
		done := make(chan int)
		var errb testkit.Buffer
		go func() { done <- Main(ctx, args, &bytes.Buffer{}, &errb) }()
		testkit.Eventually(t, 20*time.Second, func() error {
			if !strings.Contains(errb.String(), ready) {
				return fmt.Errorf("%v has not logged %q: %s", args, ready, errb.String())
			}
			return nil
		})
		cancel()
		if code := <-done; code != ExitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
	}
	run("event stream ensured", "serve", "--nats", node.ClientURL(), "--nats-nkey", node.SeedFile(t, natsauth.Control), "--admin-listen", "127.0.0.1:0", "--root-key", filepath.Join(t.TempDir(), "root.key"))
	run("gateway started", "gateway", "--nats", node.ClientURL(), "--nats-nkey", node.SeedFile(t, natsauth.Gateway), "--tenants", "acme,beta", "--gateway-listen", "127.0.0.1:0")
	js, _ := jetstream.New(node.ConnectAs(t, natsauth.Auditor))
	s, err := js.Stream(ctxFor(t), events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if w := store.Weaknesses(s.CachedInfo().Config, store.Config{}); len(w) != 0 {
		t.Fatalf("serve created a weak stream: %v", w)
	}
}

// TestShellCompletion: the bash script completes commands, a noun's verbs
// and a verb's flags, read from the command tables, in a real bash.
func TestShellCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash here")
	}
	var out, errb bytes.Buffer
	if code := Main(ctxFor(t), []string{"completion", "bash"}, &out, &errb); code != ExitOK {
		t.Fatalf("completion bash: %d %s", code, errb.String())
	}
	script := filepath.Join(t.TempDir(), "keytrail.bash")
	if err := os.WriteFile(script, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		cmd := exec.Command(bash, "-c", `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _keytrail; echo "${COMPREPLY[*]}"`, "-", script)
		cmd.Args = append(cmd.Args, words...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", words, err, b)
		}
		return strings.TrimSpace(string(b))
	}
	for _, c := range []struct {
		words []string
		want  string
	}{
		{[]string{"keytrail", "ten"}, "tenant"},
		{[]string{"keytrail", "key", "is"}, "issue"},
		{[]string{"keytrail", "key", "issue", "--us"}, "--user"},
		{[]string{"keytrail", "user", "list", "--al"}, "--all"},
		{[]string{"keytrail", "audit", "dec"}, "decision decisions"},
		{[]string{"keytrail", "audit", "decisions", "--co"}, "--code"},
	} {
		if got := complete(c.words...); got != c.want {
			t.Errorf("%v: %q, want %q", c.words, got, c.want)
		}
	}
	out.Reset()
	if code := Main(ctxFor(t), []string{"completion", "zsh"}, &out, &errb); code != ExitOK || !strings.Contains(out.String(), "bashcompinit") {
		t.Fatalf("completion zsh: %d", code)
	}
}

// TestNounHelp: `keytrail tenant -h` lists the noun's verbs on stdout with
// exit 0 (it said `unknown command "-h"`, while the help told to run it).
func TestNounHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "help"} {
		var out, errb bytes.Buffer
		if code := Main(ctxFor(t), []string{"tenant", arg}, &out, &errb); code != ExitOK || !strings.Contains(out.String(), "keytrail tenant create ID --name NAME") {
			t.Fatalf("tenant %s: exit %d\n%s%s", arg, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := Main(ctxFor(t), []string{"tenant", "create", "acme", "--token", "kt_x"}, &out, &errb); code != ExitUsage || !strings.Contains(errb.String(), "--name is required") {
		t.Fatalf("tenant create without --name: exit %d\n%s", code, errb.String())
	}
	if code := Main(ctxFor(t), []string{"audit", "decisions", "--code", "bogus"}, &out, &errb); code != ExitUsage || !strings.Contains(errb.String(), "not an outcome code") {
		t.Fatalf("audit decisions --code bogus: exit %d\n%s", code, errb.String())
	}
}

// startMain runs Main with args until it logs ready (or exits), and
// returns what stops it: its exit code and what it logged.
func startMain(t *testing.T, ready string, args ...string) (stop func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxFor(t))
	done := make(chan int, 1)
	var errb testkit.Buffer
	go func() { done <- Main(ctx, args, &bytes.Buffer{}, &errb) }()
	testkit.Eventually(t, 20*time.Second, func() error {
		select {
		case code := <-done:
			done <- code
			return nil
		default:
		}
		if !strings.Contains(errb.String(), ready) {
			return fmt.Errorf("%v has not logged %q: %s", args, ready, errb.String())
		}
		return nil
	})
	return func() (int, string) {
		cancel()
		return <-done, errb.String()
	}
}

// healthyOnNewConnections checks that a gateway at base answers healthz on
// eight new connections, which the kernel spreads among the processes
// sharing its port.
func healthyOnNewConnections(base string) func() error {
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return func() error {
		for range 8 {
			resp, err := fresh.Get(base + "/_keytrail/healthz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("healthz: %d", resp.StatusCode)
			}
		}
		return nil
	}
}

// ensureStream has `keytrail serve` create the event stream on node, as a
// gateway needs it.
func ensureStream(t *testing.T, node *natstest.Server) {
	t.Helper()
	stop := startMain(t, "event stream ensured", "serve", "--nats", node.ClientURL(), "--nats-nkey", node.SeedFile(t, natsauth.Control),
		"--admin-listen", "127.0.0.1:0", "--root-key", filepath.Join(t.TempDir(), "root.key"))
	if code, out := stop(); code != ExitOK {
		t.Fatalf("serve: exit %d: %s", code, out)
	}
}

// TestGatewaysShareAPortWithReusePort: two gateway processes' worth of
// gateways listen on one address with --reuse-port, and either serves;
// without it, the second is refused the address.
func TestGatewaysShareAPortWithReusePort(t *testing.T) {
	node := natstest.RunServer(t)
	start := func(ready string, args ...string) func() (int, string) { return startMain(t, ready, args...) }
	ensureStream(t, node)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	gateway := func(extra ...string) func() (int, string) {
		return start("gateway started", append([]string{"gateway", "--nats", node.ClientURL(), "--nats-nkey", node.SeedFile(t, natsauth.Gateway),
			"--gateway-listen", addr, "--metrics-listen", "127.0.0.1:0"}, extra...)...)
	}
	first := gateway("--reuse-port")
	second := gateway("--reuse-port")
	healthy := healthyOnNewConnections("http://" + addr)
	testkit.Eventually(t, 10*time.Second, healthy)
	// Without --reuse-port, the address is taken.
	if code, out := gateway()(); code == ExitOK || !strings.Contains(out, "address already in use") {
		t.Fatalf("a third gateway without --reuse-port: exit %d: %s", code, out)
	}
	if code, out := first(); code != ExitOK {
		t.Fatalf("first gateway: exit %d: %s", code, out)
	}
	// The other still serves the address alone.
	testkit.Eventually(t, 10*time.Second, healthy)
	if code, out := second(); code != ExitOK {
		t.Fatalf("second gateway: exit %d: %s", code, out)
	}
}

// TestGatewayWorkers: `keytrail gateway --workers 2` runs two worker
// processes on one address, each with its own metrics listener; a worker
// killed is started again while the other serves; stopping the supervisor
// stops both. A worker that cannot start stops the command with its error.
func TestGatewayWorkers(t *testing.T) {
	node := natstest.RunServer(t)
	ensureStream(t, node)
	ctx, cancel := context.WithCancel(ctxFor(t))
	done := make(chan int, 1)
	var out, errb testkit.Buffer
	mport := freePortPair(t)
	args := []string{"gateway", "--workers", "2", "--nats", node.ClientURL(), "--nats-nkey", node.SeedFile(t, natsauth.Gateway),
		"--gateway-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:" + strconv.Itoa(mport), "--max-staleness", "5s"}
	go func() { done <- Main(ctx, args, &out, &errb) }()
	var gw string
	var metrics []string
	testkit.Eventually(t, 30*time.Second, func() error {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		metrics = nil
		for _, l := range lines {
			if u, ok := strings.CutPrefix(l, "gateway "); ok {
				gw = u
			} else if u, ok := strings.CutPrefix(l, "metrics "); ok {
				metrics = append(metrics, u)
			}
		}
		if gw == "" || len(metrics) != 2 {
			return fmt.Errorf("not ready: %q; %s", out.String(), errb.String())
		}
		return nil
	})
	if metrics[0] == metrics[1] {
		t.Fatalf("the workers share a metrics listener: %v", metrics)
	}
	for _, m := range metrics {
		resp, err := http.Get(m)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	healthy := healthyOnNewConnections(gw)
	testkit.Eventually(t, 10*time.Second, healthy)
	workers := workerPIDs(t)
	if len(workers) != 2 {
		t.Fatalf("worker processes: %v", workers)
	}
	// One killed: started again.
	syscall.Kill(workers[0], syscall.SIGKILL)
	testkit.Eventually(t, 30*time.Second, func() error {
		now := workerPIDs(t)
		if len(now) != 2 || slices.Contains(now, workers[0]) {
			return fmt.Errorf("workers %v (killed %d)", now, workers[0])
		}
		return healthy()
	})
	testkit.Eventually(t, 5*time.Second, func() error { // the supervisor's log is written every 100 ms
		if !strings.Contains(errb.String(), "gateway worker exited; starting it again") {
			return fmt.Errorf("the restart was not logged: %s", errb.String())
		}
		return nil
	})
	// SIGHUP without TLS: passed on, and no worker's end.
	before := workerPIDs(t)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-time.After(300 * time.Millisecond): // a worker ended by it would be gone by now
	case <-done:
		t.Fatalf("the supervisor exited on SIGHUP: %s", errb.String())
	}
	if err := healthy(); err != nil {
		t.Fatal(err)
	}
	if after := workerPIDs(t); !slices.Equal(after, before) {
		t.Fatalf("SIGHUP ended a worker: %v, then %v: %s", before, after, errb.String())
	}
	// Every worker down at once: the port stays the supervisor's (no one
	// else can listen on it) until they are back.
	for _, pid := range before {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if now := workerPIDs(t); slices.ContainsFunc(now, func(p int) bool { return slices.Contains(before, p) }) {
			return fmt.Errorf("workers %v not yet gone", now)
		}
		return nil
	})
	for _, addr := range []string{strings.TrimPrefix(gw, "http://"), "127.0.0.1:" + strconv.Itoa(mport), "127.0.0.1:" + strconv.Itoa(mport+1)} {
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			t.Fatalf("with every worker down, another listener took %s (gateway %s)", addr, gw)
		}
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if now := workerPIDs(t); len(now) != 2 {
			return fmt.Errorf("workers %v", now)
		}
		return healthy()
	})
	now := workerPIDs(t)
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, pid := range now {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("worker %d outlived its supervisor", pid)
		}
	}

	// More workers than processors, or fewer than one: refused.
	for _, n := range []int{0, runtime.NumCPU() + 1} {
		var usage testkit.Buffer
		if code := Main(ctxFor(t), []string{"gateway", "--workers", strconv.Itoa(n)}, io.Discard, &usage); code != ExitUsage {
			t.Errorf("--workers %d: exit %d: %s", n, code, usage.String())
		}
	}

	// A worker that cannot start: its error is the command's.
	var bad testkit.Buffer
	code := Main(ctxFor(t), []string{"gateway", "--workers", "2", "--nats", node.ClientURL(), "--nats-nkey", filepath.Join(t.TempDir(), "missing.nk"),
		"--gateway-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"}, io.Discard, &bad)
	if code == ExitOK || !strings.Contains(bad.String(), "exited before it was ready") {
		t.Fatalf("exit %d: %s", code, bad.String())
	}
}

// freePortPair is a port P of 127.0.0.1 with P+1 free too (at the time).
func freePortPair(t *testing.T) int {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		next, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1))
		ln.Close()
		if err == nil {
			next.Close()
			return p
		}
	}
	t.Fatal("no two free ports in a row")
	return 0
}

// workerPIDs are this test process's gateway worker children.
func workerPIDs(t *testing.T) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil || !bytes.Contains(env, []byte(workerEnv+"=")) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) > 1 && f[0] != "Z" && f[1] == strconv.Itoa(os.Getpid()) {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

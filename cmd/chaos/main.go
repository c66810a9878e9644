// Command chaos runs a fault campaign on a real Keytrail deployment (issue
// 18, docs/reliability.md): three nats-server processes (the nats-server
// module's own binary, built here) with the role permissions, two
// `keytrail serve` control nodes and three `keytrail gateway` nodes, each on
// its own loopback address and user id; a workload of writes through both
// control nodes and traffic through every gateway, each recording what it
// was told and when; a seeded, randomised nemesis (kill -9 and restart,
// SIGSTOP/SIGCONT of the stream leader, partitions and packet loss by
// packet-filter rules); then a checker, independent of the code under test,
// that reads the log with a plain NATS client and its own decoding.
//
//	go run ./cmd/chaos [-duration 10m] [-seed N] [-dir DIR]
//
// It needs root (user ids, iptables) and exits 1 when it finds an anomaly.
// Every process and rule it made is removed on exit, interrupted or not.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/services/trust"
)

// The deployment's addresses: each process its own loopback address.
func natsAddr(i int) string    { return fmt.Sprintf("127.0.1.%d", i+1) }
func controlAddr(i int) string { return fmt.Sprintf("127.0.2.%d", i+1) }
func gatewayAddr(i int) string { return fmt.Sprintf("127.0.3.%d", i+1) }

const (
	upstreamAddr  = "127.0.5.1"
	natsPort      = "4222"
	clusterPort   = "6222"
	adminPort     = "7470"
	gatewayPort   = "7480"
	metricsPort   = "9480"
	maxStaleness  = 2 * time.Second
	confirmWindow = 100 * time.Millisecond
)

type run struct {
	dir      string
	bin      string
	seed     uint64
	rng      *rand.Rand
	nats     []*proc
	controls []*proc
	gateways []*proc
	// proxies[g] are gateway g's ways to the NATS nodes (delay faults).
	proxies  [][]*delayProxy
	net      *netfilter
	rootKey  string // the admin API's root bearer key
	natsURLs string
	nc       *nats.Conn // the runner's own connection (auditor)
	js       jetstream.JetStream
	w        *workload
	faults   []fault
	exits    []string
	started  time.Time
}

func logf(format string, args ...any) { log.Printf(format, args...) }

func main() {
	duration := flag.Duration("duration", 10*time.Minute, "how long the workload and the nemesis run")
	seed := flag.Uint64("seed", 0, "seed of the nemesis and the workload (0: from the clock; printed)")
	dir := flag.String("dir", "", "working directory (default: a new temporary one, removed unless the run finds an anomaly)")
	flag.Parse()
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.Printf("chaos: seed %d, duration %s (reproduce: go run ./cmd/chaos -seed %d -duration %s)", *seed, *duration, *seed, *duration)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := campaign(ctx, *seed, *duration, *dir)
	stop()
	os.Exit(code)
}

func campaign(ctx context.Context, seed uint64, duration time.Duration, dir string) int {
	r := &run{seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	keep := dir != ""
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "keytrail-chaos-"); err != nil {
			log.Print(err)
			return 2
		}
	}
	r.dir = dir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Print(err)
		return 2
	}
	os.Chmod(dir, 0o755)
	defer r.teardown()
	if err := r.deploy(ctx); err != nil {
		log.Printf("chaos: deploy: %v", err)
		return 2
	}
	rep, err := r.exercise(ctx, duration)
	if err != nil {
		log.Printf("chaos: %v", err)
		return 2
	}
	rep.print(os.Stdout)
	if b, err := json.MarshalIndent(rep, "", "  "); err == nil {
		os.WriteFile(filepath.Join(dir, "report.json"), b, 0o644)
	}
	if len(rep.Anomalies) > 0 {
		log.Printf("chaos: %d anomalies; everything is kept in %s (seed %d)", len(rep.Anomalies), dir, seed)
		return 1
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	return 0
}

// deploy builds the binaries, writes the configuration and starts the
// deployment.
func (r *run) deploy(ctx context.Context) error {
	r.bin = filepath.Join(r.dir, "bin")
	for _, b := range []struct{ out, pkg string }{{"nats-server", "github.com/nats-io/nats-server/v2"}, {"keytrail", "./cmd/keytrail"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(r.bin, b.out), b.pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build %s: %w", b.pkg, err)
		}
	}
	os.Chmod(r.bin, 0o755)
	log.Printf("chaos: built")
	var err error
	if r.net, err = setupNet(); err != nil {
		return fmt.Errorf("packet filter (run as root, with iptables): %w", err)
	}
	// The identities and the servers' authorization fragment.
	auth := filepath.Join(r.dir, "auth")
	if out, err := exec.Command(filepath.Join(r.bin, "keytrail"), "nats-config", "--out", auth).CombinedOutput(); err != nil {
		return fmt.Errorf("nats-config: %v: %s", err, out)
	}
	os.Chmod(auth, 0o755)
	// The root of signed history.
	rootPriv, err := trust.LoadOrCreateKey(filepath.Join(r.dir, "trust.key"))
	if err != nil {
		return err
	}
	if err := trust.WritePublic(filepath.Join(r.dir, "trust.pub"), rootPriv.Public().(ed25519.PublicKey)); err != nil {
		return err
	}
	var urls []string
	for i := range 3 {
		urls = append(urls, "nats://"+natsAddr(i)+":"+natsPort)
	}
	r.natsURLs = strings.Join(urls, ",")

	for i := range 3 {
		p := r.newProc("nats", i, natsAddr(i), "nats-server")
		var routes []string
		for j := range 3 {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://%s:%s", natsAddr(j), clusterPort))
			}
		}
		conf := fmt.Sprintf(`server_name: n%d
listen: %s:%s
jetstream { store_dir: %q, max_file_store: 2G, max_memory_store: 64M }
cluster { name: keytrail, listen: %s:%s, routes: [%s] }
include keytrail-auth.conf
`, i+1, natsAddr(i), natsPort, filepath.Join(p.dir, "js"), natsAddr(i), clusterPort, strings.Join(routes, ", "))
		if _, err := r.ownCopy(filepath.Join(auth, "keytrail-auth.conf"), p); err != nil {
			return err
		}
		if err := writeOwned(filepath.Join(p.dir, "nats.conf"), []byte(conf), 0o644, p.uid); err != nil {
			return err
		}
		p.args = []string{"-c", filepath.Join(p.dir, "nats.conf")}
		r.nats = append(r.nats, p)
	}
	for _, p := range r.nats {
		if err := p.start(); err != nil {
			return err
		}
	}
	if r.nc, err = nats.Connect(r.natsURLs, nats.Name("chaos"), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true),
		nats.CustomInboxPrefix("_INBOX.auditor"), nkeyOption(filepath.Join(auth, "auditor.nk"))); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	r.js, _ = jetstream.New(r.nc)
	if err := poll(ctx, time.Minute, func() error {
		_, err := r.js.AccountInfo(ctx)
		return err
	}); err != nil {
		return fmt.Errorf("JetStream never came up: %w", err)
	}

	// Control nodes: the first makes the stream (R3) and the root key.
	for i := range 2 {
		p := r.newProc("control", i, controlAddr(i), "keytrail")
		seed, err := r.ownCopy(filepath.Join(auth, "control.nk"), p)
		if err != nil {
			return err
		}
		tk, err := r.ownCopy(filepath.Join(r.dir, "trust.key"), p)
		if err != nil {
			return err
		}
		p.args = []string{"serve", "--nats", r.natsURLs, "--nats-nkey", seed, "--admin-listen", controlAddr(i) + ":" + adminPort,
			"--replicas", "3", "--root-key", filepath.Join(p.dir, "root.key"), "--signing-key", filepath.Join(p.dir, "signer.key"), "--trust-key", tk,
			"--watermark", filepath.Join(p.dir, "watermark.json"), "--allow-upstream", "127.0.0.0/8",
			"--decision-max-bytes", "268435456"}
		r.controls = append(r.controls, p)
	}
	// The root key is made by the first node; the second gets a copy.
	log.Printf("chaos: NATS up; starting the control nodes")
	if err := r.startControl(ctx, r.controls[0]); err != nil {
		return err
	}
	rootKeyFile := filepath.Join(r.controls[0].dir, "root.key")
	b, err := os.ReadFile(rootKeyFile)
	if err != nil {
		return err
	}
	r.rootKey = strings.TrimSpace(string(b))
	if _, err := r.ownCopy(rootKeyFile, r.controls[1]); err != nil {
		return err
	}
	if err := r.startControl(ctx, r.controls[1]); err != nil {
		return err
	}

	log.Printf("chaos: control nodes up; starting the gateways")
	// Gateways, each with a signing key the root adds as a signer of
	// decisions.
	for i := range 3 {
		p := r.newProc("gateway", i, gatewayAddr(i), "keytrail")
		seed, err := r.ownCopy(filepath.Join(auth, "gateway.nk"), p)
		if err != nil {
			return err
		}
		key, err := trust.LoadOrCreateKey(filepath.Join(p.dir, "gateway.key"))
		if err != nil {
			return err
		}
		os.Chown(filepath.Join(p.dir, "gateway.key"), p.uid, p.uid)
		// Its way to each NATS node passes a proxy that can delay it.
		var via []string
		var proxies []*delayProxy
		for n := range 3 {
			addr := fmt.Sprintf("127.0.6.%d:%s", 3*i+n+1, natsPort)
			dp, err := startDelayProxy(addr, natsAddr(n)+":"+natsPort)
			if err != nil {
				return err
			}
			proxies, via = append(proxies, dp), append(via, "nats://"+addr)
		}
		r.proxies = append(r.proxies, proxies)
		add := exec.CommandContext(ctx, filepath.Join(r.bin, "keytrail"), "trust", "add-signer", "--role", "decisions", "--name", p.name,
			"--public-key", base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)), "--trust-key", filepath.Join(r.dir, "trust.key"),
			"--nats", r.natsURLs, "--nats-nkey", filepath.Join(auth, "control.nk"))
		if out, err := add.CombinedOutput(); err != nil {
			return fmt.Errorf("add %s's signer: %v: %s", p.name, err, out)
		}
		p.args = []string{"gateway", "--nats", strings.Join(via, ","), "--nats-nkey", seed, "--gateway-listen", gatewayAddr(i) + ":" + gatewayPort,
			"--metrics-listen", gatewayAddr(i) + ":" + metricsPort, "--trust", filepath.Join(r.dir, "trust.pub"),
			"--signing-key", filepath.Join(p.dir, "gateway.key"), "--watermark", filepath.Join(p.dir, "watermark.json"),
			"--max-staleness", maxStaleness.String(), "--confirm-window", confirmWindow.String(), "--allow-upstream", "127.0.0.0/8",
			"--decision-sample", "0.01"}
		r.gateways = append(r.gateways, p)
		if err := p.start(); err != nil {
			return err
		}
	}
	for _, p := range r.gateways {
		if err := waitHTTP(ctx, "http://"+p.addr+":"+gatewayPort+"/_keytrail/readyz", time.Minute, p); err != nil {
			return fmt.Errorf("%s never ready: %w", p.name, err)
		}
	}
	log.Printf("chaos: deployed in %s: 3 NATS nodes, 2 control nodes, 3 gateways", r.dir)
	return nil
}

// newProc makes a process's directory (owned by its own user id).
func (r *run) newProc(kind string, i int, addr, bin string) *proc {
	base := map[string]int{"nats": 2100, "control": 2200, "gateway": 2300}[kind]
	p := &proc{name: fmt.Sprintf("%s-%d", kind, i+1), kind: kind, idx: i, uid: base + i + 1, addr: addr, bin: filepath.Join(r.bin, bin)}
	p.dir = filepath.Join(r.dir, p.name)
	os.MkdirAll(p.dir, 0o755)
	os.Chown(p.dir, p.uid, p.uid)
	return p
}

// ownCopy copies a secret file into p's directory, owned by p's user.
func (r *run) ownCopy(src string, p *proc) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(p.dir, filepath.Base(src))
	return dst, writeOwned(dst, b, 0o600, p.uid)
}

func writeOwned(path string, b []byte, mode os.FileMode, uid int) error {
	if err := os.WriteFile(path, b, mode); err != nil {
		return err
	}
	return os.Chown(path, uid, uid)
}

func (r *run) startControl(ctx context.Context, p *proc) error {
	if err := p.start(); err != nil {
		return err
	}
	if err := waitHTTP(ctx, "http://"+p.addr+":"+adminPort+"/readyz", 2*time.Minute, p); err != nil {
		return fmt.Errorf("%s never ready: %w (see %s)", p.name, err, p.logPath())
	}
	return nil
}

var errExited = errors.New("it exited")

// teardown stops every process and removes every rule.
func (r *run) teardown() {
	for _, ps := range [][]*proc{r.gateways, r.controls, r.nats} {
		for _, p := range ps {
			p.signal(syscall.SIGCONT)
			p.kill9()
		}
	}
	for _, ps := range r.proxies {
		for _, dp := range ps {
			dp.close()
		}
	}
	if r.nc != nil {
		r.nc.Close()
	}
	teardownNet()
}

// waitHTTP polls url until it answers 200 (or p, when given, exits).
func waitHTTP(ctx context.Context, url string, max time.Duration, p *proc) error {
	c := &http.Client{Timeout: 2 * time.Second}
	return poll(ctx, max, func() error {
		if p != nil && p.exitedOnItsOwn() {
			return errExited
		}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %d", url, resp.StatusCode)
		}
		return nil
	})
}

// poll calls fn until it succeeds, ctx ends or max passes.
func poll(ctx context.Context, max time.Duration, fn func() error) error {
	deadline := time.Now().Add(max)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func nkeyOption(seedFile string) nats.Option {
	opt, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		return func(*nats.Options) error { return err }
	}
	return opt
}

// dialFrom is a dialer whose connections leave from addr (the clients of
// the workload, which a partition can cut from a control node).
func dialFrom(addr string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: 2 * time.Second}
}

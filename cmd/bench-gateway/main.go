// Command bench-gateway is the data plane's standing baseline (`make
// bench-gateway`): nginx as a plain reverse proxy (the floor), a bare Go
// httputil.ReverseProxy and the Keytrail gateway (key verification, rate
// limit, JSON access log to a file), all in front of the same upstream (an
// nginx instance of its own answering a small body), each loaded in turn by wrk
// in interleaved passes. It prints requests per second, the ratio to
// nginx, p99 and its difference to nginx's, the gateway's CPU time per
// request and resident memory; then legitimate traffic alone and under a
// flood of unknown keys from another address (flood.go); then the time
// from a revocation's acknowledgement to three loaded gateways denying the
// key, and the STALE answers under a 250 ms staleness bound
// (revocation.go). Everything listens on loopback (127.0.0.1, and
// 127.0.0.2 for the flood); every run is bounded by -d.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keytrail/keytrail/client"
)

func main() {
	bin := flag.String("keytrail", "bin/keytrail", "the keytrail binary")
	conns := flag.String("c", "8,32", "wrk connections, comma-separated")
	dur := flag.Duration("d", 10*time.Second, "length of one wrk pass")
	passes := flag.Int("passes", 3, "interleaved passes per target and concurrency")
	phases := flag.String("phases", "throughput,flood,revocation", "which phases to run, comma-separated (hold: set everything up, print the targets and wait for an interrupt — for perf and pprof by hand)")
	variantWorkers := flag.Int("variant-workers", 1, "run the variant gateway with --workers N")
	sharedUpstream := flag.Bool("shared-upstream", false, "serve the upstream from the proxy nginx's own workers (the layout before 2026-12-07)")
	variant := flag.String("variant", "", "environment of a second gateway measured beside the first in the throughput phase, e.g. GOMAXPROCS=1,GOGC=200")
	flag.Parse()
	// Interrupted, the run stops what it started before it exits.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	want := map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		want[strings.TrimSpace(p)] = true
	}
	var variantEnv []string
	if *variant != "" {
		variantEnv = strings.Split(*variant, ",")
	}
	if err := run(ctx, *bin, *conns, *dur, *passes, want, variantEnv, *sharedUpstream, *variantWorkers); err != nil {
		stop()
		fmt.Fprintln(os.Stderr, "bench-gateway:", err)
		os.Exit(1) // run has stopped its processes

	}
}

type target struct {
	name, url string
	headers   []string
	pid       int   // the process whose CPU time is reported per request (0: none)
	more      []int // more processes behind the same port (their CPU time added: --workers)
}

type result struct {
	rps []float64
	p99 []time.Duration
	cpu []time.Duration // CPU time per request
	sys []float64       // read and write system calls per request
}

func run(ctx context.Context, bin, conns string, dur time.Duration, passes int, phases map[string]bool, variant []string, sharedUpstream bool, variantWorkers int) error {
	for _, tool := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (make bench-gateway installs it)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "keytrail-bench-gateway-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	upPort, proxyPort, barePort := freePort(), freePort(), freePort()
	upstream := fmt.Sprintf("http://127.0.0.1:%d", upPort)

	// nginx: the upstream, and the plain reverse proxy — two instances
	// (each its own master and workers), so that the proxy is measured as
	// the gateway is: a process of its own in front of another. In one
	// instance (-shared-upstream, the layout before 2026-12-07) a worker
	// often serves both ends of a request itself, with no wake-up of
	// another process on the upstream leg, which no deployment has.
	var ps procs
	defer ps.stop() // before the directory goes: every process we started, stopped and waited for
	instances := [][2]string{{"upstream", upstreamServer(upPort)}, {"proxy", proxyServer(dir, upPort, proxyPort)}}
	if sharedUpstream {
		instances = [][2]string{{"nginx", upstreamServer(upPort) + proxyServer(dir, upPort, proxyPort)}}
	}
	for _, in := range instances {
		prefix := filepath.Join(dir, in[0])
		if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o700); err != nil {
			return err
		}
		conf := filepath.Join(prefix, "nginx.conf")
		if err := os.WriteFile(conf, []byte(nginxConf(prefix, in[1])), 0o600); err != nil {
			return err
		}
		ngx := exec.Command("nginx", "-p", prefix, "-c", conf)
		ngx.Stderr = os.Stderr
		if _, err := ps.start(ngx); err != nil {
			return err
		}
	}

	// The bare Go proxy, tuned as the gateway's transport is.
	u, _ := url.Parse(upstream)
	bare := httputil.NewSingleHostReverseProxy(u)
	bare.Transport = &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}
	bare.ErrorLog = log.New(io.Discard, "", 0) // wrk ends a pass with requests in flight
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", barePort))
	if err != nil {
		return err
	}
	go http.Serve(ln, bare)

	// Keytrail: dev (NATS, control plane) and a gateway process of its own
	// (so that its memory is the gateway's alone), logging to a file.
	data := filepath.Join(dir, "kt")
	dev := exec.Command(bin, "dev", "--data", data, "--admin-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0",
		"--nats-listen", "127.0.0.1:0", "--log-level", "warn")
	dev.Stdout, dev.Stderr = nil, os.Stderr
	if _, err := ps.start(dev); err != nil {
		return err
	}
	addrs, err := waitAddresses(filepath.Join(data, "addresses.json"))
	if err != nil {
		return err
	}
	root, err := os.ReadFile(filepath.Join(data, "root.key"))
	if err != nil {
		return err
	}
	secret, err := setUp(ctx, httpURL(addrs.Admin), strings.TrimSpace(string(root)), upstream)
	if err != nil {
		return err
	}
	e := &env{ctx: ctx, ps: &ps, bin: bin, dir: dir, data: data, admin: httpURL(addrs.Admin), root: strings.TrimSpace(string(root)), secret: secret}
	gw, gwURL, err := e.gateway("gateway")
	if err != nil {
		return err
	}
	if err := waitOK(fmt.Sprintf("http://127.0.0.1:%d/bench/1", proxyPort)); err != nil {
		return fmt.Errorf("nginx never answered: %w", err)
	}

	targets := []target{
		{name: "nginx", url: fmt.Sprintf("http://127.0.0.1:%d/bench/1", proxyPort)},
		{name: "bare Go proxy", url: fmt.Sprintf("http://127.0.0.1:%d/bench/1", barePort)},
		{name: "keytrail gateway", url: gwURL + "/bench/1", headers: []string{"Authorization: Bearer " + secret}, pid: gw.Process.Pid},
	}
	if (variant != nil || variantWorkers > 1) && (phases["throughput"] || phases["hold"]) {
		var extra []string
		name := "keytrail gateway " + strings.Join(variant, " ")
		if variantWorkers > 1 {
			extra = []string{"--workers", strconv.Itoa(variantWorkers)}
			name = fmt.Sprintf("keytrail gateway --workers %d %s", variantWorkers, strings.Join(variant, " "))
		}
		vgw, vURL, err := e.gatewayWith("gateway-variant", variant, extra...)
		if err != nil {
			return err
		}
		tg := target{name: name, url: vURL + "/bench/1",
			headers: []string{"Authorization: Bearer " + secret}, pid: vgw.Process.Pid}
		if variantWorkers > 1 {
			// Every worker ready: new connections, spread by the kernel,
			// all answered; their CPU time counted with the supervisor's.
			fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			if err := waitOKOn(fresh, 8*variantWorkers, vURL+"/bench/1", "Authorization", "Bearer "+secret); err != nil {
				return fmt.Errorf("the variant's workers never all served the key: %w", err)
			}
			tg.more = children(vgw.Process.Pid)
			if len(tg.more) != variantWorkers {
				return fmt.Errorf("the variant runs %d workers, not %d", len(tg.more), variantWorkers)
			}
		}
		targets = append(targets, tg)
	}
	if phases["hold"] {
		for _, t := range targets {
			fmt.Printf("%s: %s %q pid %d %v\n", t.name, t.url, t.headers, t.pid, t.more)
		}
		fmt.Println("holding; interrupt to stop")
		<-ctx.Done()
		return nil
	}
	if phases["throughput"] {
		if err := throughput(ctx, targets, conns, dur, passes); err != nil {
			return err
		}
		if rss, err := rssMB(gw.Process.Pid); err == nil {
			fmt.Printf("gateway resident memory: %.1f MB\n\n", rss)
		}
	}
	if phases["flood"] {
		if err := e.flood(gwURL, dur, passes); err != nil {
			return fmt.Errorf("flood: %w", err)
		}
	}
	if phases["revocation"] {
		return e.revocation(dur)
	}
	return nil
}

// throughput loads each target with wrk at each concurrency, passes
// interleaved, and prints the medians against nginx's (targets[0]).
func throughput(ctx context.Context, targets []target, conns string, dur time.Duration, passes int) error {
	fmt.Printf("wrk -t1, %s per pass, %d interleaved passes; upstream: nginx on loopback\n\n", dur, passes)
	for _, c := range strings.Split(conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n <= 0 {
			return fmt.Errorf("-c: %q is not a connection count", c)
		}
		results := make([]result, len(targets))
		for range passes {
			for i, t := range targets {
				before, sysBefore := cpuTime(t.pid), syscalls(t.pid)
				for _, p := range t.more {
					before, sysBefore = before+cpuTime(p), sysBefore+syscalls(p)
				}
				rps, p99, err := wrk(ctx, t, n, dur)
				if err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
				if t.pid != 0 {
					after, sysAfter := cpuTime(t.pid), syscalls(t.pid)
					for _, p := range t.more {
						after, sysAfter = after+cpuTime(p), sysAfter+syscalls(p)
					}
					results[i].cpu = append(results[i].cpu, (after-before)/time.Duration(rps*dur.Seconds()))
					results[i].sys = append(results[i].sys, float64(sysAfter-sysBefore)/(rps*dur.Seconds()))
				}
				results[i].rps = append(results[i].rps, rps)
				results[i].p99 = append(results[i].p99, p99)
			}
		}
		floorRPS, floorP99 := median(results[0].rps), medianD(results[0].p99)
		fmt.Printf("-c%d | req/s (median) | vs nginx | p99 (median) | p99 - nginx's | CPU per request\n", n)
		fmt.Println("---|---|---|---|---|---")
		for i, t := range targets {
			rps, p99 := median(results[i].rps), medianD(results[i].p99)
			cpu := "–"
			if len(results[i].cpu) > 0 {
				cpu = fmt.Sprintf("%.1f µs, %.1f reads and writes", float64(medianD(results[i].cpu).Nanoseconds())/1000, median(results[i].sys))
			}
			fmt.Printf("%s | %.0f | %.2f | %.2f ms | %+.2f ms | %s\n", t.name, rps, rps/floorRPS,
				float64(p99.Microseconds())/1000, float64((p99-floorP99).Microseconds())/1000, cpu)
		}
		fmt.Println()
	}
	return nil
}

// env is a running Keytrail (dev) the phases start gateways beside.
type env struct {
	ctx                 context.Context
	ps                  *procs
	bin, dir, data      string
	admin, root, secret string
}

// gateway starts a gateway process beside dev, logging to name.log, and
// returns it and its URL once it serves the bench key.
func (e *env) gateway(name string, args ...string) (*exec.Cmd, string, error) {
	return e.gatewayWith(name, nil, args...)
}

// gatewayWith is gateway with env added to the process's environment.
func (e *env) gatewayWith(name string, env []string, args ...string) (*exec.Cmd, string, error) {
	accessLog, err := os.Create(filepath.Join(e.dir, name+".log"))
	if err != nil {
		return nil, "", err
	}
	gw := exec.Command(e.bin, append([]string{"gateway", "--data", e.data, "--nats-nkey", filepath.Join(e.data, "nats", "gateway.nk"),
		"--gateway-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--allow-upstream", "127.0.0.0/8"}, args...)...)
	if env != nil {
		gw.Env = append(os.Environ(), env...)
	}
	gw.Stderr = accessLog
	out, err := gw.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	done, err := e.ps.start(gw)
	if err != nil {
		return nil, "", err
	}
	go func() { <-done; accessLog.Close() }()
	u, err := readyLine(out, "gateway ")
	if err != nil {
		return nil, "", err
	}
	if err := waitOK(u+"/bench/1", "Authorization", "Bearer "+e.secret); err != nil {
		return nil, "", fmt.Errorf("%s never served the key: %w", name, err)
	}
	return gw, u, nil
}

// nginxConf is an nginx configuration with prefix as its directory and
// servers as its http block's servers.
func nginxConf(prefix, servers string) string {
	return fmt.Sprintf(`daemon off;
worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path %[1]s/tmp;
    proxy_temp_path %[1]s/tmp;
    fastcgi_temp_path %[1]s/tmp;
    uwsgi_temp_path %[1]s/tmp;
    scgi_temp_path %[1]s/tmp;
%[2]s}
`, prefix, servers)
}

// upstreamServer answers every request with a 12-byte body.
func upstreamServer(port int) string {
	return fmt.Sprintf(`    server {
        listen 127.0.0.1:%d;
        access_log off;
        keepalive_requests 1000000;
        location / { default_type text/plain; return 200 "upstream ok\n"; }
    }
`, port)
}

// proxyServer is the plain reverse proxy to the upstream, with keep-alive
// and an access log to a file.
func proxyServer(dir string, upPort, proxyPort int) string {
	return fmt.Sprintf(`    upstream origin { server 127.0.0.1:%[2]d; keepalive 256; }
    server {
        listen 127.0.0.1:%[3]d;
        access_log %[1]s/nginx-access.log;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
`, dir, upPort, proxyPort)
}

// setUp creates a tenant, a user, an API in front of upstream and a key
// through the admin API, returning the key's secret.
func setUp(ctx context.Context, admin, root, upstream string) (string, error) {
	c := client.New(admin, root, nil)
	if _, _, err := c.CreateTenant(ctx, "bench", "Bench", nil); err != nil {
		return "", err
	}
	if _, _, err := c.CreateUser(ctx, "bench", "load", "Load", nil); err != nil {
		return "", err
	}
	if _, _, err := c.CreateAPI(ctx, "bench", client.APISpec{ID: "bench", PathPrefix: "/bench", Upstreams: []string{upstream},
		RateLimit: &client.RateLimit{PerSecond: 1_000_000, Burst: 1_000_000}}, nil); err != nil {
		return "", err
	}
	k, err := c.IssueKey(ctx, "bench", client.KeySpec{User: "load", Name: "load"}, nil)
	if err != nil {
		return "", err
	}
	return k.Secret, nil
}

var (
	rpsLine = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	p99Line = regexp.MustCompile(`(?m)^\s+99%\s+([0-9.]+)(us|ms|s)\s*$`)
)

// wrk loads t with n connections for d and returns req/s and p99; an
// answer other than 2xx or 3xx is an error.
func wrk(ctx context.Context, t target, n int, d time.Duration) (float64, time.Duration, error) {
	r, err := wrkRun(ctx, t, n, d)
	if err == nil && r.non2xx > 0 {
		err = fmt.Errorf("%d non-2xx answers", r.non2xx)
	}
	return r.rps, r.p99, err
}

// wrkResult is what one wrk run measured.
type wrkResult struct {
	rps              float64
	p99              time.Duration
	requests, non2xx int
}

var (
	requestsLine = regexp.MustCompile(`(\d+) requests in`)
	non2xxLine   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func wrkRun(ctx context.Context, t target, n int, d time.Duration) (wrkResult, error) {
	args := []string{"-t1", "-c" + strconv.Itoa(n), "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--latency"}
	for _, h := range t.headers {
		args = append(args, "-H", h)
	}
	cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, "wrk", append(args, t.url)...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	m, p, q := rpsLine.FindSubmatch(out), p99Line.FindSubmatch(out), requestsLine.FindSubmatch(out)
	if m == nil || p == nil || q == nil {
		return wrkResult{}, fmt.Errorf("cannot read wrk's output: %s", out)
	}
	var r wrkResult
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	v, _ := strconv.ParseFloat(string(p[1]), 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(p[2])]
	r.p99 = time.Duration(v * float64(unit))
	r.requests, _ = strconv.Atoi(string(q[1]))
	if x := non2xxLine.FindSubmatch(out); x != nil {
		r.non2xx, _ = strconv.Atoi(string(x[1]))
	}
	return r, nil
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func httpURL(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	return "http://" + addr
}

type addresses struct {
	Admin string `json:"admin"`
}

func waitAddresses(path string) (addresses, error) {
	var a addresses
	err := poll(30*time.Second, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &a); err != nil || a.Admin == "" {
			return errors.New("no admin address yet")
		}
		return nil
	})
	return a, err
}

// readyLine reads out until a line starting with prefix and returns the
// rest of it; the remaining output is drained.
func readyLine(out io.Reader, prefix string) (string, error) {
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("the gateway exited before it listened: %w", err)
		}
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			go io.Copy(io.Discard, r)
			return strings.TrimSpace(rest), nil
		}
	}
}

// waitOK polls u (with header: name, value, …) until it answers 200.
func waitOK(u string, header ...string) error {
	return waitOKOn(http.DefaultClient, 1, u, header...)
}

// waitOKOn is waitOK through c, until n requests in a row are answered 200.
func waitOKOn(c *http.Client, n int, u string, header ...string) error {
	return poll(30*time.Second, func() error {
		for range n {
			req, _ := http.NewRequest("GET", u, nil)
			for i := 0; i+1 < len(header); i += 2 {
				req.Header.Set(header[i], header[i+1])
			}
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		return nil
	})
}

// poll calls f until it succeeds or d has passed.
func poll(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianD(v []time.Duration) time.Duration {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// procs are the processes a run started; stop ends them all.
type procs struct {
	cmds  []*exec.Cmd
	dones []chan struct{}
}

// start starts cmd; the channel closes when it has exited.
func (p *procs) start(cmd *exec.Cmd) (chan struct{}, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.cmds, p.dones = append(p.cmds, cmd), append(p.dones, done)
	return done, nil
}

// stop interrupts each process, newest first (gateways before the dev
// they read from), and waits for it (10 s at most, then kills it).
func (p *procs) stop() {
	for i := len(p.cmds) - 1; i >= 0; i-- {
		p.cmds[i].Process.Signal(os.Interrupt)
		select {
		case <-p.dones[i]:
		case <-time.After(10 * time.Second):
			p.cmds[i].Process.Kill()
			<-p.dones[i]
		}
	}
}

// syscalls is how many read and write system calls a process has made (0
// when /proc cannot say).
func syscalls(pid int) int64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && (k == "syscr" || k == "syscw") {
			c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			n += c
		}
	}
	return n
}

// children are the processes whose parent is pid.
func children(pid int) []int {
	dirs, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range dirs {
		child, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:])); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// cpuTime is the user and system time a process has used (0 for pid 0 or
// when it cannot be read).
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

func rssMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

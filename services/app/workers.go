package app

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// workerEnv marks a gateway process started by `keytrail gateway
// --workers N`; its value is the worker's number, from 1.
const workerEnv = "KEYTRAIL_GATEWAY_WORKER"

// workerStopWait is how long workers have to stop after SIGTERM before
// they are killed.
const workerStopWait = 30 * time.Second

// gatewayWorkers runs n gateway processes on one address, as nginx runs a
// worker per core: this process supervises, each worker is `keytrail
// gateway` with the same flags, --reuse-port, its own metrics listener and
// GOMAXPROCS=1 (unless the environment sets it). On a machine shared with
// other busy processes, processes of one processor answer with a shorter
// tail than one process of several (docs/operations.md). Workers get SIGHUP
// when this process does, once they are ready (certificates reloaded),
// SIGTERM when it stops; one
// that exits is started again, after a pause that grows while it keeps
// failing. A worker that exits before it is ready stops them all: its
// error is the command's.
type gatewayWorkers struct {
	n              int
	args           func(i int) []string // a worker's flags
	stdout, stderr io.Writer
	log            *slog.Logger
	events         chan workerEvent
}

type workerEvent struct {
	i                int
	gateway, metrics string // ready
	exited           bool
	err              error
	ranFor           time.Duration
}

// superviseGateway runs n workers with the flags fs was given (but
// --workers), until ctx ends.
func superviseGateway(ctx context.Context, n int, fs *flag.FlagSet, listen, metrics string, stdout, stderr io.Writer, log *slog.Logger) error {
	// The port is this process's for as long as it runs (port 0: chosen
	// once), even while every worker is down: no other user can take it
	// and the connections meant for the gateway.
	held, listen, err := holdPort(listen)
	if err != nil {
		return fmt.Errorf("gateway listen: %w", err)
	}
	defer held.Close()
	mhost, mport, err := net.SplitHostPort(metrics)
	if err != nil {
		return usageError{fmt.Errorf("-metrics-listen %q: %w", metrics, err)}
	}
	mbase, err := strconv.Atoi(mport)
	if err != nil {
		return usageError{fmt.Errorf("-metrics-listen %q: the port must be a number", metrics)}
	}
	if mbase != 0 {
		if mbase+n-1 > 65535 {
			return usageError{fmt.Errorf("-metrics-listen %q: %d workers need ports %d to %d", metrics, n, mbase, mbase+n-1)}
		}
		// Fixed metrics ports are held too: while a worker restarts, no one
		// else can answer the scraper on its port.
		for i := range n {
			m, _, err := holdPort(net.JoinHostPort(mhost, strconv.Itoa(mbase+i)))
			if err != nil {
				return fmt.Errorf("metrics listen: %w", err)
			}
			defer m.Close()
		}
	}
	var shared []string
	watermark := ""
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "workers", "gateway-listen", "metrics-listen", "reuse-port":
		case "watermark":
			watermark = f.Value.String()
		default:
			shared = append(shared, "--"+f.Name+"="+f.Value.String())
		}
	})
	w := &gatewayWorkers{n: n, stdout: stdout, stderr: stderr, log: log, events: make(chan workerEvent, 4*n)}
	w.args = func(i int) []string {
		args := append([]string{"gateway"}, shared...)
		// Each its own metrics port (the next ports after the one given) and
		// watermark (the file, then FILE.2, FILE.3…).
		mp := 0
		if mbase != 0 {
			mp = mbase + i - 1
		}
		args = append(args, "--gateway-listen="+listen, "--reuse-port", "--metrics-listen="+net.JoinHostPort(mhost, strconv.Itoa(mp)))
		if watermark != "" {
			if i > 1 {
				args = append(args, "--watermark="+watermark+"."+strconv.Itoa(i))
			} else {
				args = append(args, "--watermark="+watermark)
			}
		}
		return args
	}
	return w.run(ctx)
}

func (w *gatewayWorkers) run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	procs := make([]*os.Process, w.n+1) // running workers by number
	// serving: the worker has said it is ready, and takes SIGHUP (a
	// process just started would die of it); hupLater: one came while it
	// was starting, to be passed on once it is ready.
	serving, hupLater := make([]bool, w.n+1), make([]bool, w.n+1)
	backoff := make([]time.Duration, w.n+1)
	restart := make(chan int, w.n)
	stopping := make(chan struct{})
	defer close(stopping)
	for i := 1; i <= w.n; i++ {
		if ctx.Err() != nil {
			w.stop(procs)
			return nil
		}
		p, err := w.start(i)
		if err != nil {
			w.stop(procs)
			return err
		}
		procs[i] = p
	}
	ready := map[int]string{}
	var gatewayURL string
	for {
		select {
		case <-ctx.Done():
			w.stop(procs)
			return nil
		case <-hup:
			for i, p := range procs {
				switch {
				case p != nil && serving[i]:
					p.Signal(syscall.SIGHUP)
				case p != nil:
					hupLater[i] = true
				}
			}
		case i := <-restart:
			p, err := w.start(i)
			if err != nil {
				w.log.Error("gateway worker not started", "worker", i, "err", err)
				w.later(i, backoff, restart, stopping)
				continue
			}
			procs[i] = p
		case e := <-w.events:
			switch {
			case e.exited:
				procs[e.i], serving[e.i], hupLater[e.i] = nil, false, false // a new one reads the certificate anew
				if len(ready) < w.n {
					w.stop(procs)
					return fmt.Errorf("gateway worker %d exited before it was ready (%v); its log above says why", e.i, e.err)
				}
				w.log.Error("gateway worker exited; starting it again", "worker", e.i, "err", e.err, "ran_for", e.ranFor.Round(time.Millisecond).String())
				if e.ranFor > time.Minute {
					backoff[e.i] = 0
				}
				w.later(e.i, backoff, restart, stopping)
			case e.gateway != "":
				serving[e.i] = true
				if hupLater[e.i] && procs[e.i] != nil {
					hupLater[e.i] = false
					procs[e.i].Signal(syscall.SIGHUP)
				}
				if len(ready) == w.n {
					w.log.Info("gateway worker ready again", "worker", e.i, "metrics", e.metrics)
					continue
				}
				ready[e.i] = e.metrics
				if gatewayURL == "" {
					gatewayURL = e.gateway
				}
				if len(ready) == w.n {
					fmt.Fprintf(w.stdout, "gateway %s\n", gatewayURL)
					for i := 1; i <= w.n; i++ {
						fmt.Fprintf(w.stdout, "metrics %s\n", ready[i])
					}
					w.log.Info("gateway started", "workers", w.n, "gateway", gatewayURL)
				}
			}
		}
	}
}

// later asks for worker i to be started again after its back-off, which
// doubles from 100 ms up to 10 s while it keeps failing.
func (w *gatewayWorkers) later(i int, backoff []time.Duration, restart chan<- int, stopping <-chan struct{}) {
	backoff[i] = min(max(2*backoff[i], 100*time.Millisecond), 10*time.Second)
	time.AfterFunc(backoff[i], func() {
		select {
		case restart <- i:
		case <-stopping:
		}
	})
}

// start starts worker i; its events (ready, exited) come on w.events.
func (w *gatewayWorkers) start(i int) (*os.Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, w.args(i)...)
	cmd.Env = append(os.Environ(), workerEnv+"="+strconv.Itoa(i))
	if os.Getenv("GOMAXPROCS") == "" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	}
	cmd.Stderr = w.stderr
	endWithParent(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("gateway worker %d: %w", i, err)
	}
	began := time.Now()
	go func() {
		br := bufio.NewReader(out)
		var gw, metrics string
		for gw == "" || metrics == "" {
			line, err := br.ReadString('\n')
			if err != nil {
				break
			}
			if u, ok := strings.CutPrefix(line, "gateway "); ok {
				gw = strings.TrimSpace(u)
			} else if u, ok := strings.CutPrefix(line, "metrics "); ok {
				metrics = strings.TrimSpace(u)
			}
		}
		if gw != "" && metrics != "" {
			w.events <- workerEvent{i: i, gateway: gw, metrics: metrics}
		}
		io.Copy(w.stdout, br) // a worker prints nothing more; passed on if it does
		err := cmd.Wait()
		w.events <- workerEvent{i: i, exited: true, err: err, ranFor: time.Since(began)}
	}()
	return cmd.Process, nil
}

// stop sends SIGTERM to the running workers (procs not nil) and waits for
// them, killing those still running after workerStopWait.
func (w *gatewayWorkers) stop(procs []*os.Process) {
	running := 0
	for _, p := range procs {
		if p != nil {
			p.Signal(syscall.SIGTERM)
			running++
		}
	}
	kill := time.NewTimer(workerStopWait)
	defer kill.Stop()
	for running > 0 {
		select {
		case e := <-w.events:
			if e.exited {
				procs[e.i] = nil
				running--
			}
		case <-kill.C:
			for _, p := range procs {
				if p != nil {
					p.Kill()
				}
			}
		}
	}
}

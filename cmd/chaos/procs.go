package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// proc is one process of the deployment: a nats-server, a control node or
// a gateway, run as its own user id (so that packet-filter rules can tell
// its connections apart on loopback), its output in a log file.
type proc struct {
	name string
	kind string // "nats", "control", "gateway"
	idx  int
	uid  int
	addr string // its own loopback address
	args []string
	bin  string
	dir  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	stopped bool // SIGSTOPped
	starts  int
	// lives are its runs: the pid (what its node name holds) and when
	// the nemesis killed it.
	lives []life
}

type life struct {
	pid    int
	killed time.Time
}

// killedAround reports whether the run with pid was killed within d after t.
func (p *proc) killedAround(pid int, t time.Time, d time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lives {
		if l.pid == pid && !l.killed.IsZero() && !l.killed.Before(t) && l.killed.Sub(t) <= d {
			return true
		}
	}
	return false
}

func (p *proc) logPath() string { return filepath.Join(p.dir, "log") }

// start runs the process (again), appending to its log.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s is running", p.name)
	}
	logf, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "\n=== chaos: start %d at %s\n", p.starts+1, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(p.uid), Gid: uint32(p.uid)}, Setpgid: true,
		Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.starts++
	p.lives = append(p.lives, life{pid: cmd.Process.Pid})
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	p.cmd, p.done, p.stopped = cmd, done, false
	return nil
}

// kill9 kills the process with SIGKILL and waits for it.
func (p *proc) kill9() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	if cmd != nil && len(p.lives) > 0 {
		p.lives[len(p.lives)-1].killed = time.Now()
	}
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// signal sends SIGSTOP or SIGCONT.
func (p *proc) signal(s syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(s)
	p.stopped = s == syscall.SIGSTOP
}

func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// exitedOnItsOwn reports whether the process ended without being killed.
func (p *proc) exitedOnItsOwn() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

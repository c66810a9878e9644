package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/services/app"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

// Environment variables that turn the test binary into a child process.
const (
	// appenderEnv: append until killed (the kill -9 test).
	appenderEnv      = "KEYTRAIL_TEST_APPENDER"
	appenderRoundEnv = "KEYTRAIL_TEST_APPENDER_ROUND"
	// serverEnv: run a NATS node on the given store directory, print its
	// URL, and stop when standard input closes; seedsEnv is the directory of
	// the identities it accepts.
	serverEnv = "KEYTRAIL_TEST_SERVER"
	seedsEnv  = "KEYTRAIL_TEST_SEEDS"
	// gatewayEnv: run `keytrail` with these arguments (separated by \x1f),
	// stopping on SIGTERM.
	gatewayEnv = "KEYTRAIL_TEST_KEYTRAIL"
)

// TestMain lets the test binary double as a child process.
func TestMain(m *testing.M) {
	if dir := os.Getenv(appenderEnv); dir != "" {
		os.Exit(runAppender(dir, os.Getenv(appenderRoundEnv)))
	}
	if dir := os.Getenv(serverEnv); dir != "" {
		os.Exit(runServer(dir, os.Getenv(seedsEnv)))
	}
	if args := os.Getenv(gatewayEnv); args != "" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		code := app.Main(ctx, strings.Split(args, "\x1f"), os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func runServer(dir, seeds string) int {
	ids, err := natsauth.LoadOrCreateDir(seeds)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	users := natsnode.Users(ids)
	// An identity without permissions, for benchmarks that measure what the
	// role permissions cost.
	if op, err := natsauth.ReadSeedFile(natstest.Operator, filepath.Join(seeds, "operator.nk")); err == nil {
		users = append(users, natsnode.User{PublicKey: op.PublicKey()})
	}
	node, err := natsnode.Start(natsnode.Config{Name: "child", StoreDir: dir, Listen: "127.0.0.1:0", Users: users})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer node.Shutdown()
	fmt.Println(node.ClientURL())
	io.Copy(io.Discard, os.Stdin) // until the parent closes it, or dies
	return 0
}

// serverProcess is a NATS node in a child process: its URL, and the
// identities it accepts (the roles', and an operator's with every
// permission) with the directory of their seed files.
type serverProcess struct {
	URL      string
	Seeds    string
	IDs      natsauth.Set
	Operator natsauth.Identity
}

// Connect connects to the node as role (natstest.Operator included).
func (p serverProcess) Connect(tb testing.TB, role natsauth.Role) *nats.Conn {
	tb.Helper()
	id := p.IDs[role]
	if role == natstest.Operator {
		id = p.Operator
	}
	return natstest.Connect(tb, p.URL, id)
}

// startServerProcess runs a NATS node in a child process, as a production
// gateway or control node sees its server: CPU and garbage collection of the
// server are not the reader's.
func startServerProcess(tb testing.TB) serverProcess {
	tb.Helper()
	seeds := tb.TempDir()
	ids, err := natsauth.LoadOrCreateDir(seeds)
	if err != nil {
		tb.Fatal(err)
	}
	op, err := natsauth.NewIdentity(natstest.Operator)
	if err != nil {
		tb.Fatal(err)
	}
	if err := op.Write(filepath.Join(seeds, "operator.nk")); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serverEnv+"="+tb.TempDir(), seedsEnv+"="+seeds)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("server process: %v", err)
	}
	return serverProcess{URL: strings.TrimSpace(url), Seeds: seeds, IDs: ids, Operator: op}
}

// process is a keytrail role running in a child process.
type process struct {
	cmd     *exec.Cmd
	out     *bufio.Reader
	done    chan error
	once    sync.Once
	exitErr error
}

// startKeytrail runs `keytrail args...` in a child process (the test binary
// doubles as it) and returns once it printed a line starting with ready,
// returning the rest of that line.
func startKeytrail(tb testing.TB, ready string, args ...string) (*process, string) {
	tb.Helper()
	return startKeytrailEnv(tb, nil, ready, args...)
}

// startKeytrailEnv is startKeytrail with env added to the child's
// environment.
func startKeytrailEnv(tb testing.TB, env []string, ready string, args ...string) (*process, string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), env...), gatewayEnv+"="+strings.Join(args, "\x1f"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &process{cmd: cmd, out: bufio.NewReader(stdout), done: make(chan error, 1)}
	tb.Cleanup(func() { p.stop() })
	for {
		line, err := p.out.ReadString('\n')
		if err != nil {
			p.done <- cmd.Wait()
			tb.Fatalf("keytrail %v exited before %q: %v", args, ready, err)
		}
		if rest, ok := strings.CutPrefix(line, ready); ok {
			go func() { io.Copy(io.Discard, p.out); p.done <- cmd.Wait() }()
			return p, strings.TrimSpace(rest)
		}
	}
}

// stop sends SIGTERM and waits for the process to exit.
func (p *process) stop() error {
	p.once.Do(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case p.exitErr = <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			p.exitErr = <-p.done
		}
	})
	return p.exitErr
}

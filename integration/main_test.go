package integration

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/keytrail/keytrail/services/natsnode"
)

// Environment variables that turn the test binary into a child process.
const (
	// appenderEnv: append until killed (the kill -9 test).
	appenderEnv      = "KEYTRAIL_TEST_APPENDER"
	appenderRoundEnv = "KEYTRAIL_TEST_APPENDER_ROUND"
	// serverEnv: run a NATS node on the given store directory, print its
	// URL, and stop when standard input closes.
	serverEnv = "KEYTRAIL_TEST_SERVER"
)

// TestMain lets the test binary double as a child process.
func TestMain(m *testing.M) {
	if dir := os.Getenv(appenderEnv); dir != "" {
		os.Exit(runAppender(dir, os.Getenv(appenderRoundEnv)))
	}
	if dir := os.Getenv(serverEnv); dir != "" {
		os.Exit(runServer(dir))
	}
	os.Exit(m.Run())
}

func runServer(dir string) int {
	node, err := natsnode.Start(natsnode.Config{Name: "child", StoreDir: dir, Listen: "127.0.0.1:0"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer node.Shutdown()
	fmt.Println(node.ClientURL())
	io.Copy(io.Discard, os.Stdin) // until the parent closes it, or dies
	return 0
}

// startServerProcess runs a NATS node in a child process, as a production
// gateway or control node sees its server: CPU and garbage collection of the
// server are not the reader's. It returns the node's URL.
func startServerProcess(tb testing.TB) string {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serverEnv+"="+tb.TempDir())
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
	return strings.TrimSpace(url)
}

// Package leakcheck finds goroutines a package's tests left running: call
// Main from TestMain. It owns nothing else and imports no NATS, so that any
// package's tests can use it.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// module is whose goroutines are looked for: Keytrail's own code.
const module = "github.com/keytrail/keytrail/"

// Main runs the tests, then fails the run if a goroutine started by
// Keytrail's code is still running 5 s after they ended (goroutines wind
// down after their tests' cleanups: the check polls until then).
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := wait(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leakcheck: goroutines left running after the tests:\n\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// wait polls until no goroutine runs Keytrail's code, or d has passed; it
// returns the stacks of those still running.
func wait(d time.Duration) string {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		leaked := Running()
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		<-tick.C
	}
}

// Running returns the stacks of the goroutines, other than this one and
// the test runner's, with a frame of Keytrail's code.
func Running() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, module) || strings.Contains(g, module+"internal/leakcheck.") || strings.Contains(g, "testing.(*M).") {
			continue
		}
		out = append(out, g)
	}
	return out
}

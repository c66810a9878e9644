package app

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/keytrail/keytrail/internal/leakcheck"
)

// TestMain fails the run if a test leaves a goroutine of Keytrail's running.
// Started as a gateway worker (`keytrail gateway --workers N` execs its own
// binary, here the test binary), it is keytrail.
func TestMain(m *testing.M) {
	if os.Getenv(workerEnv) != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	leakcheck.Main(m)
}

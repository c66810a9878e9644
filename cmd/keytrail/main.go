// Command keytrail is Keytrail's one binary: the service in its modes and the
// command-line client. All it does is hand its arguments to app.Main and stop
// cleanly on SIGINT or SIGTERM.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/keytrail/keytrail/services/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := app.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

package verifier

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/keytrail/keytrail/services/readmodel"
)

// TestCloseAfterAFailedRun: when following the log fails, WaitReady says
// why, and Close returns the same error at once — it used to wait for ever
// once WaitReady had taken the error.
func TestCloseAfterAFailedRun(t *testing.T) {
	boom := errors.New("readmodel: last sequence: boom")
	_, cancel := context.WithCancel(context.Background())
	v := &Verifier{model: readmodel.New(slog.New(slog.DiscardHandler)), cancel: cancel, stopped: make(chan struct{})}
	go func() { v.runErr = boom; close(v.stopped) }()
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := v.WaitReady(ctx); !errors.Is(err, boom) {
		t.Fatalf("WaitReady: %v", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- v.Close() }()
	select {
	case err := <-closed:
		if !errors.Is(err, boom) {
			t.Fatalf("Close: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Close blocked after WaitReady returned the run's error")
	}
}

package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/natsauth"
)

// buildBinary builds cmd/keytrail once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "keytrail")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/keytrail")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestDevBinaryStopsCleanlyOnSignals runs the real binary: `keytrail dev`
// serves NATS to another node, stops with status 0 on SIGTERM and on SIGINT,
// and a restart on the same data directory has every event.
func TestDevBinaryStopsCleanlyOnSignals(t *testing.T) {
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "data")
	var appended []events.Recorded
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(bin, "dev", "--data", dir, "--nats-listen", "127.0.0.1:0",
			"--admin-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		os.Remove(filepath.Join(dir, "addresses.json"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var addrs struct{ NATS string }
		testkit.Eventually(t, 30*time.Second, func() error {
			b, err := os.ReadFile(filepath.Join(dir, "addresses.json"))
			if err != nil {
				return err
			}
			return json.Unmarshal(b, &addrs)
		})
		nc := devConnect(t, addrs.NATS, dir, natsauth.Control)
		s := openStore(t, nc, store.Config{})
		h, err := s.Load(testCtx(t, 10*time.Second), "acme", events.UserAggregate("bob"))
		if err != nil {
			t.Fatal(err)
		}
		if len(h.Events) != len(appended) {
			t.Fatalf("start %d: %d events after restart, want %d", i, len(h.Events), len(appended))
		}
		var p events.Payload = events.UserDisabledV1{}
		if i == 0 {
			p = events.UserCreatedV1{Name: "Bob"}
		}
		recs, err := s.Append(testCtx(t, 10*time.Second), h.Head, storetest.Event("acme", events.UserAggregate("bob"), p, "c"+sig.String()[:3]))
		if err != nil {
			t.Fatal(err)
		}
		appended = append(appended, recs...)
		nc.Close()

		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: exit %v\n%s", sig, err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%s: still running after 20s", sig)
		}
		if !strings.Contains(stderr.String(), "keytrail dev stopping") {
			t.Fatalf("%s: no clean stop in the log:\n%s", sig, stderr.String())
		}
	}
}

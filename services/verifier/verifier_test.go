package verifier

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

// TestFailsClosed: the verifier answers STALE once its model has not been
// confirmed current for longer than MaxStaleness — here because NATS went
// away while the clock ran on.
func TestFailsClosed(t *testing.T) {
	node := natstest.RunServer(t)
	nc := node.ConnectAs(t, natsauth.Gateway)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := store.OpenJetStream(ctx, node.ConnectAs(t, natsauth.Control), store.Config{CreateIfMissing: true}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	v, err := Start(ctx, Config{NATS: nc, MaxStaleness: time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if d := v.Verify(projections.Request{Secret: "kt_nope"}); d.Code != projections.CodeMalformed {
		t.Fatalf("ready and current: %s", d.Code)
	}
	node.Shutdown()
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	testkit.Eventually(t, 10*time.Second, func() error {
		if d := v.Verify(projections.Request{Secret: "kt_nope"}); d.Code != projections.CodeStale {
			return errStill(d.Code)
		}
		return nil
	})
}

type errStill projections.Code

func (e errStill) Error() string { return "still " + string(e) }

package integration

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/readmodel"
)

// BenchmarkReadyFromSnapshot: how long a gateway with a million keys takes
// from start to ready when a snapshot exists: fetch it from the object store
// (a server in a child process), restore it, subscribe, catch up (goal
// ≤ 2 s). KEYTRAIL_READY_KEYS sets the number of keys (default 1M).
func BenchmarkReadyFromSnapshot(b *testing.B) {
	keys := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("KEYTRAIL_READY_KEYS")); err == nil && v > 0 {
		keys = v
	}
	srv := startServerProcess(b)
	st := openStore(b, srv.Connect(b, natsauth.Control), store.Config{})
	gst := openStore(b, srv.Connect(b, natsauth.Gateway), store.Config{})
	ctx := testCtx(b, 10*time.Minute)
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))

	// A catalog as a gateway holds it, saved as the snapshot writer would.
	writer := readmodel.New(discard, readmodel.VerificationOnly())
	writer.Restore(bigCatalog(b, keys))
	snaps, err := readmodel.OpenSnapshots(ctx, st.JetStream(), 1, "writer")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := snaps.Save(ctx, writer); err != nil {
		b.Fatal(err)
	}

	for b.Loop() {
		m := readmodel.New(discard, readmodel.VerificationOnly())
		c, err := readmodel.LoadSnapshot(ctx, gst.JetStream(), gst, m, nil)
		if err != nil || c == nil {
			b.Fatal("no snapshot", err)
		}
		m.Restore(c)
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- m.Run(runCtx, st, nil) }()
		if err := m.WaitFor(ctx, c.Seq, time.Minute); err != nil || !waitReady(ctx, m) {
			b.Fatal("not ready", err)
		}
		stop()
		<-done
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "ready-s")
}

// waitReady polls m until it reports ready or ctx ends.
func waitReady(ctx context.Context, m *readmodel.Model) bool {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for !m.Ready() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// bigCatalog folds n keys of 100 users into a verification catalog, events
// chained as the store would have recorded them.
func bigCatalog(tb testing.TB, n int) *projections.Catalog {
	c := projections.NewVerificationCatalog()
	var seq uint64
	apply := func(agg events.Aggregate, p events.Payload) {
		seq++
		subject, _ := events.Subject("bench", agg)
		r := events.Recorded{Seq: seq, Subject: subject, Hash: sha256.Sum256([]byte(subject)), Event: events.Event{
			Type: p.EventType(), Tenant: "bench", Aggregate: agg, OccurredAt: time.Unix(1_700_000_000, 0).UTC(), Data: p}}
		if err := c.Apply(r); err != nil {
			tb.Fatal(err)
		}
	}
	apply(events.TenantAggregate("bench"), events.TenantCreatedV1{Name: "B"})
	for u := range 100 {
		apply(events.UserAggregate(fmt.Sprintf("u%d", u)), events.UserCreatedV1{})
	}
	for i := range n {
		apply(events.KeyAggregate(fmt.Sprintf("u%d", i%100), fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5%08d", i)),
			events.KeyIssuedV1{SecretHash: sha256.Sum256([]byte(strconv.Itoa(i))), Hint: "kt_…abcd", Scopes: []string{"orders:read"}})
	}
	return c
}

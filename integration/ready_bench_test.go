package integration

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/readmodel"
)

// BenchmarkReadyFromSnapshot: how long a gateway with a million keys takes
// from start to ready when a snapshot exists and the log has moved on
// since: fetch the snapshot from the object store (a server in a child
// process), verify its signed manifest and check it against the log,
// restore it, subscribe after it, and fold the tail by its checkpoints — 10 000 events written after the snapshot — before it
// reports ready (goal ≤ 2 s). The snapshot is the real one: the log is
// written, folded by a read model and saved with Snapshots.Save, as a
// control node does. KEYTRAIL_READY_KEYS sets the number of keys (default
// 1M), KEYTRAIL_READY_TAIL the tail (default 10 000).
func BenchmarkReadyFromSnapshot(b *testing.B) {
	keys, tail := 1_000_000, 10_000
	if v, err := strconv.Atoi(os.Getenv("KEYTRAIL_READY_KEYS")); err == nil && v > 0 {
		keys = v
	}
	if v, err := strconv.Atoi(os.Getenv("KEYTRAIL_READY_TAIL")); err == nil && v >= 0 {
		tail = v
	}
	srv := startServerProcess(b)
	nc := srv.Connect(b, natsauth.Control)
	st := openStore(b, nc, store.Config{})
	gst := openStore(b, srv.Connect(b, natsauth.Gateway), store.Config{})
	ctx := testCtx(b, 30*time.Minute)
	discard := slog.New(slog.DiscardHandler)

	// The log up to the snapshot: the tenant, 100 users, keys issued.
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	lw := newLogWriter(b, ctx, js)
	root := lw.sign() // signed, as production writes it
	catchUp := readmodel.CatchUpBy(func(ctx context.Context, after uint64) ([][]byte, error) {
		return store.ReadCheckpointsAfter(ctx, gst.JetStream(), after)
	})
	lw.prelude()
	lw.keys(0, keys, false)
	covered := uint64(lw.done())

	// A control node's model folds it and saves the snapshot, its
	// manifest signed.
	writer := readmodel.New(discard, readmodel.VerificationOnly(), readmodel.Trust(root), catchUp)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- writer.Run(runCtx, st, nil) }()
	if err := writer.WaitFor(ctx, covered, 10*time.Minute); err != nil {
		b.Fatal(err)
	}
	stop()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	snaps, err := readmodel.OpenSnapshots(ctx, st.JetStream(), 1, "writer")
	if err != nil {
		b.Fatal(err)
	}
	snaps.SignWith(lw.signer, lw.origin)
	if seq, err := snaps.Save(ctx, writer); err != nil || seq != covered {
		b.Fatalf("snapshot covers %d, want %d (%v)", seq, covered, err)
	}
	writer = nil

	// The tail: keys issued and updated after the snapshot.
	lw.keys(keys, tail/2, true)
	lw.keys(keys+tail/2, tail%2, false)
	last := uint64(lw.done())
	if last != covered+uint64(tail) {
		b.Fatalf("the log ends at %d, want %d", last, covered+uint64(tail))
	}

	var load, fold time.Duration
	for b.Loop() {
		runtime.GC() // the previous iteration's model is garbage
		start := time.Now()
		m := readmodel.New(discard, readmodel.VerificationOnly(), readmodel.Trust(root), catchUp)
		c, err := readmodel.LoadSnapshot(ctx, gst.JetStream(), gst, m, nil)
		if err != nil || c == nil {
			b.Fatal("no snapshot: ", err)
		}
		if c.Seq != covered {
			b.Fatalf("snapshot covers %d, want %d", c.Seq, covered)
		}
		m.Restore(c)
		restored := time.Now()
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- m.Run(runCtx, gst, nil) }()
		if !waitReady(ctx, m) {
			b.Fatal("not ready")
		}
		ready := time.Now()
		load, fold = load+restored.Sub(start), fold+ready.Sub(restored)
		// Ready is set just before the last event's position: wait for it
		// (untimed) to check that the tail was folded.
		if err := m.WaitFor(ctx, last, time.Minute); err != nil {
			b.Fatalf("ready, but the tail's end %d not applied (at %d)", last, m.Applied())
		}
		stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	n := float64(b.N)
	b.ReportMetric((load+fold).Seconds()/n, "ready-s")
	b.ReportMetric(load.Seconds()/n, "snapshot-s")
	b.ReportMetric(fold.Seconds()/n, "tail-s")
	if tail > 0 {
		b.ReportMetric(float64(tail)*n/fold.Seconds(), "tail-events/s")
	}
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

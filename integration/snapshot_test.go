package integration

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
	"github.com/keytrail/keytrail/services/readmodel"
)

// TestSnapshotsInTheObjectStore: one node writes a snapshot (another,
// holding no lease, may not); a third starts from it, tails the log, and
// ends with the same catalog as the writer.
func TestSnapshotsInTheObjectStore(t *testing.T) {
	nc := natstest.Connect(t, natstest.RunServer(t).ClientURL())
	st := openStore(t, nc, store.Config{})
	ctx := testCtx(t, time.Minute)
	svc, _ := control.New(control.Config{Store: st})
	m := control.Meta{Actor: "root"}
	svc.CreateTenant(ctx, m, "acme", "A")
	svc.CreateUser(ctx, m, "acme", "bob", "")
	for range 20 {
		if _, _, _, err := svc.IssueKey(ctx, m, "acme", control.KeySpec{User: "bob"}); err != nil {
			t.Fatal(err)
		}
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	writer := readmodel.New(discard)
	go writer.Run(ctx, st, nil)
	last, _ := st.LastSeq(ctx, "")
	if err := writer.WaitFor(ctx, last, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	a, err := readmodel.OpenSnapshots(ctx, st.JetStream(), 1, "node-a", writer, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := readmodel.OpenSnapshots(ctx, st.JetStream(), 1, "node-b", writer, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := a.Load(ctx); err != nil || got != nil {
		t.Fatalf("a snapshot before any was written: %v %v", got, err)
	}
	seq, err := a.Save(ctx, writer)
	if err != nil || seq != last {
		t.Fatalf("save: %d, %v", seq, err)
	}
	if _, err := b.Save(ctx, writer); !errors.Is(err, readmodel.ErrNotWriter) {
		t.Fatalf("a second writer: %v", err)
	}
	if _, err := a.Save(ctx, writer); err != nil {
		t.Fatalf("the lease holder renews: %v", err)
	}

	// More events after the snapshot.
	svc.SuspendTenant(ctx, m, "acme")
	svc.CreateUser(ctx, m, "acme", "eve", "")
	last, _ = st.LastSeq(ctx, "")

	snap, err := b.Load(ctx)
	if err != nil || snap == nil || snap.Seq != seq {
		t.Fatalf("load: %v %v", snap, err)
	}
	reader := readmodel.New(discard)
	reader.Restore(snap)
	go reader.Run(ctx, st, nil)
	if err := reader.WaitFor(ctx, last, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := writer.WaitFor(ctx, last, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var dw, dr [32]byte
	writer.Read(func(c *projections.Catalog) { dw = c.Digest() })
	reader.Read(func(c *projections.Catalog) { dr = c.Digest() })
	if dw != dr {
		t.Fatal("snapshot + tail differs from the writer's catalog")
	}
	if !reader.Ready() {
		t.Fatal("the restored model is not ready")
	}

	// A gateway's verification-only model has snapshots of its own kind.
	gw := readmodel.New(discard, readmodel.VerificationOnly())
	go gw.Run(ctx, st, nil)
	if err := gw.WaitFor(ctx, last, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c, err := readmodel.OpenSnapshots(ctx, st.JetStream(), 1, "node-c", gw, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Load(ctx); err != nil || got != nil {
		t.Fatalf("a full catalog's snapshot offered to a gateway: %v %v", got, err)
	}
	if _, err := c.Save(ctx, gw); err != nil {
		t.Fatal(err)
	}
	gsnap, err := c.Load(ctx)
	if err != nil || gsnap == nil || !gsnap.VerifyOnly() {
		t.Fatalf("gateway snapshot: %v %v", gsnap, err)
	}
	var dg [32]byte
	gw.Read(func(c *projections.Catalog) { dg = c.Digest() })
	if gsnap.Digest() != dg {
		t.Fatal("the gateway's snapshot differs from its catalog")
	}
}

package integration

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
	"github.com/keytrail/keytrail/services/readmodel"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestSnapshotsInTheObjectStore: one control node writes the snapshots
// (another, holding no lease, may not); a control node starts from the full
// one and a gateway, with its read-only identity, from the verification
// one; each tails the log and ends with the catalog of a full replay.
func TestSnapshotsInTheObjectStore(t *testing.T) {
	node := natstest.RunServer(t)
	st := openStore(t, node.ConnectAs(t, natsauth.Control), store.Config{})
	gst := openStore(t, node.ConnectAs(t, natsauth.Gateway), store.Config{})
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
	writer := readmodel.New(discard)
	go writer.Run(ctx, st, nil)
	last, _ := st.LastSeq(ctx, "")
	if err := writer.WaitFor(ctx, last, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, err := readmodel.LoadSnapshot(ctx, gst.JetStream(), gst, readmodel.New(discard, readmodel.VerificationOnly()), nil); err != nil || got != nil {
		t.Fatalf("a snapshot before the bucket exists: %v %v", got, err)
	}
	a, err := readmodel.OpenSnapshots(ctx, st.JetStream(), 1, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := readmodel.OpenSnapshots(ctx, st.JetStream(), 1, "node-b")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readmodel.LoadSnapshot(ctx, st.JetStream(), st, writer, nil); err != nil || got != nil {
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
	if err := writer.WaitFor(ctx, last, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	var want [32]byte
	writer.Read(func(c *projections.Catalog) { want = c.Digest() })
	gwWant := fold(t, st, projections.NewVerificationCatalog()).Digest()

	for _, tc := range []struct {
		name  string
		st    *store.JetStream
		model *readmodel.Model
		want  [32]byte
	}{
		{"control", st, readmodel.New(discard), want},
		{"gateway", gst, readmodel.New(discard, readmodel.VerificationOnly()), gwWant},
	} {
		snap, err := readmodel.LoadSnapshot(ctx, tc.st.JetStream(), tc.st, tc.model, nil)
		if err != nil || snap == nil || snap.Seq != seq || snap.VerifyOnly() != tc.model.VerifyOnly() {
			t.Fatalf("%s: load: %v %v", tc.name, snap, err)
		}
		tc.model.Restore(snap)
		go tc.model.Run(ctx, tc.st, nil)
		if err := tc.model.WaitFor(ctx, last, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		var got [32]byte
		tc.model.Read(func(c *projections.Catalog) { got = c.Digest() })
		if got != tc.want {
			t.Fatalf("%s: snapshot + tail differs from a full replay", tc.name)
		}
		if !tc.model.Ready() {
			t.Fatalf("%s: the restored model is not ready", tc.name)
		}
	}
}

// fold replays the whole log into c.
func fold(t *testing.T, st *store.JetStream, c *projections.Catalog) *projections.Catalog {
	t.Helper()
	last, _ := st.LastSeq(testCtx(t, 10*time.Second), "")
	all, err := st.LoadAll(testCtx(t, 10*time.Second), events.AllSubjects)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		c.Take(r.Seq, r.Hash, r, nil)
	}
	c.Seq = last
	return c
}

// TestForgedSnapshotIsRefused is the attack on the snapshot store: a
// catalog holding a key that is in no event (and, in one variant, claiming
// a sequence of 10^12, so that every later event would be ignored) is put
// where gateways look for their snapshot. A gateway starting then refuses
// it, folds the log, never honours the invented key, enforces a later
// revocation, and is ready and current.
func TestForgedSnapshotIsRefused(t *testing.T) {
	node := natstest.RunServer(t)
	ctx := testCtx(t, 2*time.Minute)
	st := openStore(t, node.ConnectAs(t, natsauth.Control), store.Config{})
	svc, keyID, sec := givenOrdersKey(t, ctx, st)
	last, _ := st.LastSeq(ctx, "")

	// The forgery: another history (same ids, plus a key the attacker made)
	// folded into a verification catalog.
	mem := store.NewMemory()
	forger, _ := control.New(control.Config{Store: mem})
	fm := control.Meta{Actor: "attacker"}
	forger.CreateTenant(ctx, fm, "acme", "A")
	forger.CreateUser(ctx, fm, "acme", "bob", "")
	forger.CreateAPI(ctx, fm, "acme", control.APISpec{ID: "orders", PathPrefix: "/orders", Upstreams: []string{upstream(t).URL}})
	_, forgedSecret, _, err := forger.IssueKey(ctx, fm, "acme", control.KeySpec{User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	forged := projections.NewVerificationCatalog()
	all, _ := mem.LoadAll(ctx, events.AllSubjects)
	for _, r := range all {
		forged.Apply(r)
	}
	// The buckets, as a control node makes them.
	if _, err := readmodel.OpenSnapshots(ctx, st.JetStream(), 1, "control"); err != nil {
		t.Fatal(err)
	}
	obj, err := st.JetStream().ObjectStore(ctx, events.SnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	plant := func(seq uint64) {
		forged.Seq = seq
		var b bytes.Buffer
		if err := forged.WriteSnapshot(&b); err != nil {
			t.Fatal(err)
		}
		if _, err := obj.Put(ctx, jetstream.ObjectMeta{Name: readmodel.VerificationSnapshot}, &b); err != nil {
			t.Fatal(err)
		}
	}
	for _, seq := range []uint64{1_000_000_000_000, last} {
		plant(seq)
		_, err := readmodel.LoadSnapshot(ctx, st.JetStream(), st, readmodel.New(discard, readmodel.VerificationOnly()), nil)
		if !errors.Is(err, readmodel.ErrSnapshotInconsistent) {
			t.Fatalf("forged snapshot at seq %d: %v", seq, err)
		}
		t.Logf("seq %d: %v", seq, err)
	}

	// A real gateway started over the forged snapshot (seq 10^12).
	plant(1_000_000_000_000)
	gw := runGatewayInProcess(t, ctx, sec, "--nats", node.ClientURL(), "--nats-nkey", node.SeedFile(t, natsauth.Gateway))
	if s, code := through(gw, "/orders", forgedSecret.Reveal()); s != http.StatusUnauthorized || code != "NOT_FOUND" {
		t.Fatalf("the invented key: %d %s", s, code)
	}
	if _, _, err := svc.RevokeKey(ctx, control.Meta{Actor: "test"}, "acme", keyID, nil); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if s, code := through(gw, "/orders", sec); s != http.StatusForbidden || code != "REVOKED" {
			return errors.New("the revocation after the snapshot is not enforced: " + code)
		}
		return nil
	})
	if s := readyz(gw); s != http.StatusOK {
		t.Fatalf("readyz %d", s)
	}
}

package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/audit"
	"github.com/keytrail/keytrail/services/gateway"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
	"github.com/keytrail/keytrail/services/readmodel"
	"github.com/keytrail/keytrail/services/trust"
)

// TestAnUnsignedEventIsHonouredByNoReader is issue 17's attack: with the
// control NATS identity but no signing key, publish a correctly linked,
// possible event — a key.resumed of a suspended key. keytrail dev signs its
// history and its readers pin the root key: the gateway goes on denying the
// key SUSPENDED (no window in which the forgery is honoured), the admin API
// shows it suspended, a real resume afterwards counts everywhere, and
// verify-chain names the forgery as unsigned. Before signing, all took it.
func TestAnUnsignedEventIsHonouredByNoReader(t *testing.T) {
	e := startAdmin(t)
	keyID, sec := e.givenSuspendedKey()
	gw := e.dev.Addresses().Gateway + "/orders/1"
	requestAnswered(t, gw, sec, http.StatusForbidden)

	last := e.forgeResume(keyID)

	// The gateway has read past it, and still denies the key.
	testkit.Eventually(t, 10*time.Second, func() error {
		req, _ := http.NewRequest("GET", gw, nil)
		req.Header.Set("Authorization", "Bearer "+sec)
		req.Header.Set("Keytrail-Min-Seq", fmt.Sprint(last))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Keytrail-Code") == "VALID" {
			t.Fatalf("the gateway honours an unsigned key.resumed: %d %s", resp.StatusCode, resp.Header.Get("Keytrail-Code"))
		}
		return nil
	})
	// It is counted: the gateway skipped one message.
	if n := gatewayMetric(t, e.dev.Addresses().Metrics, "keytrail_gateway_events_skipped_total"); n != 1 {
		t.Fatalf("the gateway counts %d skipped messages", n)
	}
	// The control node's own reads refuse it too: the API shows the key
	// suspended, and a real resume after the forgery links to the last
	// signed event, so every reader takes it.
	if k := e.must(e.call("GET", "/v1/tenants/acme/keys/"+keyID, e.root, nil), 200); field(k, "key", "status") != "suspended" {
		t.Fatalf("the admin API honours an unsigned key.resumed: %s", k.raw)
	}
	// So do an auditor's explanation and the key's history it shows.
	nats := e.dev.Addresses().NATS
	if out, code := runCLI("audit", "explain", keyID, "--nats", nats, "--data", e.dir); code != 0 || !strings.Contains(out, "SUSPENDED") {
		t.Fatalf("audit explain honours an unsigned key.resumed: exit %d\n%s", code, out)
	}
	if out, code := runCLI("audit", "history", keyID, "--nats", nats, "--data", e.dir); code != 0 || strings.Contains(out, "key.resumed") {
		t.Fatalf("audit history shows an unsigned key.resumed as history: exit %d\n%s", code, out)
	}
	res := e.must(e.call("POST", "/v1/tenants/acme/keys/"+keyID+"/resume", e.root, map[string]any{"reason": "checked"}), 200)
	if k := e.must(e.call("GET", "/v1/tenants/acme/keys/"+keyID, e.root, nil, "Keytrail-Min-Seq", res.header.Get("Keytrail-Seq")), 200); field(k, "key", "status") != "active" {
		t.Fatalf("after a real resume: %s", k.raw)
	}
	requestAnswered(t, gw, sec, http.StatusOK)
	out, code := runCLI("audit", "verify-chain", "--nats", e.dev.Addresses().NATS, "--data", e.dir)
	if code != 1 || !strings.Contains(out, fmt.Sprintf("PROBLEM seq %d", last)) || !strings.Contains(out, "has no signature") ||
		strings.Count(out, "PROBLEM") != 1 {
		t.Fatalf("verify-chain: exit %d\n%s", code, out)
	}
}

// TestSignerRotation: `keytrail trust add-signer` trusts a new signing key
// (signed by the root key); events it signs count; after `remove-signer`,
// what it signed before stays and what it signs after is refused by every
// reader and named by verify-chain.
func TestSignerRotation(t *testing.T) {
	e := startAdmin(t)
	e.must(e.call("POST", "/v1/tenants", e.root, map[string]any{"id": "acme", "name": "Acme"}), 201)
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	id := events.SignerID(key.Public().(ed25519.PublicKey))
	if out, code := runCLI("trust", "add-signer", "--data", e.dir, "--public-key", pub, "--name", "second"); code != 0 || !strings.Contains(out, "added "+id) {
		t.Fatalf("add-signer: exit %d\n%s", code, out)
	}
	if out, code := runCLI("trust", "signers", "--data", e.dir); code != 0 || !strings.Contains(out, id) || strings.Count(out, "\n") != 3 {
		t.Fatalf("signers: exit %d\n%s", code, out)
	}
	ctx := testCtx(t, 30*time.Second)
	st := openStore(t, devConnect(t, e.dev.Addresses().NATS, e.dir, natsauth.Control), store.Config{})
	create := func(user string) uint64 {
		t.Helper()
		recs, err := st.AppendAs(ctx, key, nil, store.Write{Events: []events.Event{storetest.Event("acme", events.UserAggregate(user), events.UserCreatedV1{Name: user}, "c-"+user)}})
		if err != nil {
			t.Fatal(err)
		}
		return recs[0].Seq
	}
	seq := create("carol")
	if r := e.call("GET", "/v1/tenants/acme/users", e.root, nil, "Keytrail-Min-Seq", fmt.Sprint(seq)); !strings.Contains(r.raw, `"carol"`) {
		t.Fatalf("an event of a trusted signer did not count: %s", r.raw)
	}
	if out, code := runCLI("trust", "remove-signer", "--data", e.dir, "--id", id); code != 0 || !strings.Contains(out, "removed "+id) {
		t.Fatalf("remove-signer: exit %d\n%s", code, out)
	}
	seq = create("dave")
	if r := e.call("GET", "/v1/tenants/acme/users", e.root, nil, "Keytrail-Min-Seq", fmt.Sprint(seq)); strings.Contains(r.raw, `"dave"`) || !strings.Contains(r.raw, `"carol"`) {
		t.Fatalf("after the removal: %s", r.raw)
	}
	out, code := runCLI("audit", "verify-chain", "--nats", e.dev.Addresses().NATS, "--data", e.dir)
	if code != 1 || strings.Count(out, "PROBLEM") != 1 || !strings.Contains(out, fmt.Sprintf("seq %d", seq)) || !strings.Contains(out, "removed at seq") {
		t.Fatalf("verify-chain: exit %d\n%s", code, out)
	}
	// A gateway's signer (of decisions) signs no events.
	gw, err := trust.ReadKey(filepath.Join(e.dir, trust.GatewayKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	key = gw
	seq = create("erin")
	if r := e.call("GET", "/v1/tenants/acme/users", e.root, nil, "Keytrail-Min-Seq", fmt.Sprint(seq)); strings.Contains(r.raw, `"erin"`) {
		t.Fatalf("an event a gateway's signer signed counted: %s", r.raw)
	}
	// The dev's own signer is the last signer of events left; it is never
	// removed.
	devID := events.SignerID(func() ed25519.PublicKey {
		k, err := trust.ReadKey(filepath.Join(e.dir, trust.SignerKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		return k.Public().(ed25519.PublicKey)
	}())
	if out, code := runCLI("trust", "remove-signer", "--data", e.dir, "--id", devID); code == 0 || !strings.Contains(out, "last trusted signer") {
		t.Fatalf("removing the last signer: exit %d\n%s", code, out)
	}
}

// TestASignedEventReplayedElsewhereIsRefused: a holder of the control
// identity copies a real, signed event — the key.suspended an admin made —
// to another key's subject, and again to its own subject later in the log.
// Its signature binds it to its subject and, through prev_hash, to its
// place: both copies are refused by the readers, and named by verify-chain.
func TestASignedEventReplayedElsewhereIsRefused(t *testing.T) {
	e := startAdmin(t)
	issued := e.givenKey()
	keyID := field(issued, "key", "id").(string)
	other := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob"}), 201)
	otherID := field(other, "key", "id").(string)
	sus := e.must(e.call("POST", "/v1/tenants/acme/keys/"+keyID+"/suspend", e.root, map[string]any{"reason": "x"}), 200)
	e.must(e.call("POST", "/v1/tenants/acme/keys/"+keyID+"/resume", e.root, map[string]any{"reason": "y"}), 200)
	ctx := testCtx(t, 30*time.Second)
	js, _ := jetstream.New(devConnect(t, e.dev.Addresses().NATS, e.dir, natsauth.Control))
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	var seq uint64
	fmt.Sscan(sus.header.Get("Keytrail-Seq"), &seq)
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	nc := devConnect(t, e.dev.Addresses().NATS, e.dir, natsauth.Control)
	publishRaw(t, nc, "keytrail.evt.acme.u.bob.k."+otherID, m.Data) // another subject
	publishRaw(t, nc, m.Subject, m.Data)                            // its own, later: it no longer links
	last, _ := e.dev.Store().LastSeq(ctx, "")
	for _, id := range []string{keyID, otherID} {
		k := e.must(e.call("GET", "/v1/tenants/acme/keys/"+id, e.root, nil, "Keytrail-Min-Seq", fmt.Sprint(last)), 200)
		if field(k, "key", "status") != "active" {
			t.Fatalf("a replayed key.suspended counted for %s: %s", id, k.raw)
		}
	}
	out, code := runCLI("audit", "verify-chain", "--nats", e.dev.Addresses().NATS, "--data", e.dir)
	if code != 1 || strings.Count(out, "PROBLEM") != 2 || !strings.Contains(out, "stored on subject") || !strings.Contains(out, "does not link") {
		t.Fatalf("verify-chain: exit %d\n%s", code, out)
	}
}

// TestCheckpointsAreCheckedAgainstTheLog: a control node publishes signed
// checkpoints of the global chain (at every 1 024th sequence and when the
// log is quiet); verify-chain recomputes the chain and checks each against
// it and the signers trusted then. A checkpoint signed by a stranger, and
// one the node's own key signed over another chain value (a history that
// differs from what was signed), are named.
func TestCheckpointsAreCheckedAgainstTheLog(t *testing.T) {
	e := startAdmin(t)
	e.givenKey()
	nats := e.dev.Addresses().NATS
	var last uint64
	testkit.Eventually(t, 20*time.Second, func() error {
		last, _ = e.dev.Store().LastSeq(testCtx(t, 5*time.Second), "")
		out, code := runCLI("audit", "verify-chain", "--nats", nats, "--data", e.dir)
		if code != 0 || !strings.Contains(out, " 0 problems") || strings.Contains(out, " 0 checkpoints") {
			return fmt.Errorf("verify-chain: exit %d\n%s", code, out)
		}
		return nil
	})
	// Forged checkpoints of the last sequence.
	ctx := testCtx(t, 30*time.Second)
	js, _ := jetstream.New(devConnect(t, nats, e.dir, natsauth.Control))
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	origin := trust.Origin(s.CachedInfo().Created)
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	own, err := trust.ReadKey(filepath.Join(e.dir, trust.SignerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, forged := range []struct {
		key   ed25519.PrivateKey
		chain events.Hash
	}{{stranger, events.Hash{1}}, {own, events.Hash{2}}} {
		b, err := events.SignCheckpoint(forged.key, events.Checkpoint{Origin: origin, Seq: last, Chain: forged.chain})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, events.CheckpointSubject, b); err != nil {
			t.Fatal(err)
		}
	}
	out, code := runCLI("audit", "verify-chain", "--nats", nats, "--data", e.dir)
	if code != 1 || strings.Count(out, "PROBLEM") != 2 || !strings.Contains(out, "not signed by a signer trusted then") ||
		!strings.Contains(out, "the history differs from what was signed") {
		t.Fatalf("verify-chain with forged checkpoints: exit %d\n%s", code, out)
	}
}

// TestAFreshLogIsCheckpointedClean: a new keytrail dev's log holds only
// its two signer.added (its node's and its gateway's); the checkpoint of
// the last sequence is signed by the node's signer it added, and verify-chain finds nothing wrong (found by hand: the
// signer was judged as of the sequence before its own addition).
func TestAFreshLogIsCheckpointedClean(t *testing.T) {
	e := startAdmin(t)
	testkit.Eventually(t, 20*time.Second, func() error {
		out, code := runCLI("audit", "verify-chain", "--nats", e.dev.Addresses().NATS, "--data", e.dir)
		if code != 0 || !strings.Contains(out, "2 messages, 1 aggregates, 1 checkpoints, 0 problems") {
			return fmt.Errorf("verify-chain: exit %d\n%s", code, out)
		}
		return nil
	})
}

// forgeResume publishes, with the control NATS identity and no signing
// key, a correctly linked key.resumed of bob's key keyID, and returns its
// sequence.
func (e *adminEnv) forgeResume(keyID string) uint64 {
	t := e.t
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	h, err := e.dev.Store().Load(ctx, "acme", events.KeyAggregate("bob", keyID))
	if err != nil {
		t.Fatal(err)
	}
	forged := storetest.Event("acme", events.KeyAggregate("bob", keyID), events.KeyResumedV1{}, "forged-resume")
	forged.PrevHash = h.Events[len(h.Events)-1].Hash
	data, err := events.Encode(&forged)
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, devConnect(t, e.dev.Addresses().NATS, e.dir, natsauth.Control), "keytrail.evt.acme.u.bob.k."+keyID, data)
	last, _ := e.dev.Store().LastSeq(ctx, "")
	return last
}

// suspendedKeyAndForgery: keytrail dev with an API, bob's key suspended
// and an unsigned key.resumed of it published after; an active key of
// bob's too. It returns the suspended key's id and secret, the active
// key's secret, and the forgery's sequence.
func suspendedKeyAndForgery(t *testing.T, e *adminEnv) (keyID, suspended, active string, forgery uint64) {
	keyID, suspended = e.givenSuspendedKey()
	active = field(e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob"}), 201), "secret").(string)
	return keyID, suspended, active, e.forgeResume(keyID)
}

// givenSuspendedKey: tenant acme, user bob, API /orders in front of an
// upstream that answers 200, and a key of bob's, suspended.
func (e *adminEnv) givenSuspendedKey() (keyID, secret string) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	e.t.Cleanup(up.Close)
	issued := e.givenKey()
	secret, keyID = field(issued, "secret").(string), field(issued, "key", "id").(string)
	e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "orders", "path_prefix": "/orders", "upstreams": []string{up.URL}}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/keys/"+keyID+"/suspend", e.root, map[string]any{"reason": "fraud check"}), 200)
	return keyID, secret
}

// TestAForgedSnapshotIsRefusedUnderSigning: with the control identity,
// an attacker puts where gateways look a verification snapshot folded
// from the log without judging signatures — it honours an unsigned
// key.resumed, yet every chain head in it is the stream's, so the old
// consistency check passed it. A reader with the root pinned refuses it
// unsigned, signed by a stranger, and under a genuine manifest of other
// bytes; a gateway started over it folds the log and denies the key
// SUSPENDED. A snapshot a control node's signer signed is restored.
func TestAForgedSnapshotIsRefusedUnderSigning(t *testing.T) {
	e := startAdmin(t)
	keyID, suspended, active, _ := suspendedKeyAndForgery(t, e)
	ctx := testCtx(t, time.Minute)
	nats := e.dev.Addresses().NATS
	root, err := trust.ReadPublic(filepath.Join(e.dir, trust.RootPubFile))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := trust.ReadKey(filepath.Join(e.dir, trust.SignerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	cst := openStore(t, devConnect(t, nats, e.dir, natsauth.Control), store.Config{})
	gst := openStore(t, devConnect(t, nats, e.dir, natsauth.Gateway), store.Config{})
	forged := fold(t, cst, projections.NewVerificationCatalog()) // no root pinned: the forgery counts
	if d := forged.VerifyHash(events.SecretHash(sha256.Sum256([]byte(suspended))), projections.Request{}, time.Now()); d.Code != projections.CodeValid {
		t.Fatalf("the forged catalog does not honour the forgery: %s", d.Code)
	}
	var forgedBytes bytes.Buffer
	if err := forged.WriteSnapshot(&forgedBytes); err != nil {
		t.Fatal(err)
	}
	// A genuine snapshot, signed by the node's signer, from a model that
	// judges signatures.
	honest := readmodel.New(discard, readmodel.Trust(root))
	go honest.Run(ctx, cst, nil)
	if err := honest.WaitFor(ctx, forged.Seq, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	snaps, err := readmodel.OpenSnapshots(ctx, cst.JetStream(), 1, "test-writer")
	if err != nil {
		t.Fatal(err)
	}
	str, err := cst.JetStream().Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	origin := trust.Origin(str.CachedInfo().Created)
	load := func() (*projections.Catalog, error) {
		return readmodel.LoadSnapshot(ctx, gst.JetStream(), gst, readmodel.New(discard, readmodel.VerificationOnly(), readmodel.Trust(root)), nil)
	}
	// Signed by a trusted signer, but for another log (a staging log
	// signed with the same key, say).
	if _, err := snaps.SignWith(signer, "keytrail/KEYTRAIL_EVENTS/1").Save(ctx, honest); err != nil {
		t.Fatal(err)
	}
	if c, err := load(); !errors.Is(err, readmodel.ErrSnapshotUnsigned) {
		t.Fatalf("a snapshot signed for another log: loaded %v, %v", c != nil, err)
	}
	if _, err := snaps.SignWith(signer, origin).Save(ctx, honest); err != nil {
		t.Fatal(err)
	}
	genuine, err := load()
	if err != nil || genuine == nil || genuine.Seq != forged.Seq {
		t.Fatalf("the signed snapshot: %v %v", genuine, err)
	}
	if d := genuine.VerifyHash(events.SecretHash(sha256.Sum256([]byte(suspended))), projections.Request{}, time.Now()); d.Code != projections.CodeSuspended {
		t.Fatalf("the signed snapshot: %s", d.Code)
	}
	obj, err := cst.JetStream().ObjectStore(ctx, events.SnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obj.GetInfo(ctx, readmodel.VerificationSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	strangerNote, err := events.SignNote(stranger, fmt.Sprintf("keytrail/snapshot/v1\n%s\n%s\n%d\n%s\n%s\n", origin, readmodel.VerificationSnapshot, forged.Seq,
		base64.StdEncoding.EncodeToString(forged.Chain[:]), base64.StdEncoding.EncodeToString(sha256Of(forgedBytes.Bytes()))))
	if err != nil {
		t.Fatal(err)
	}
	for name, manifest := range map[string]string{"unsigned": "", "signed by a stranger": base64.StdEncoding.EncodeToString(strangerNote),
		"under the genuine manifest": info.Metadata["manifest"]} {
		meta := map[string]string{}
		if manifest != "" {
			meta["manifest"] = manifest
		}
		if _, err := obj.Put(ctx, jetstream.ObjectMeta{Name: readmodel.VerificationSnapshot, Metadata: meta}, bytes.NewReader(forgedBytes.Bytes())); err != nil {
			t.Fatal(err)
		}
		if c, err := load(); !errors.Is(err, readmodel.ErrSnapshotUnsigned) {
			t.Fatalf("a forged snapshot %s: loaded %v, %v", name, c != nil, err)
		}
	}
	// A gateway started over the last forgery refuses it and folds the log.
	gw := runGatewayInProcess(t, ctx, active, "--nats", nats, "--nats-nkey", filepath.Join(e.dir, "nats", "gateway.nk"),
		"--trust", filepath.Join(e.dir, trust.RootPubFile))
	if s, code := through(gw, "/orders", suspended); s != http.StatusForbidden || code != "SUSPENDED" {
		t.Fatalf("a gateway over a forged snapshot: %d %s (key %s)", s, code, keyID)
	}
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// TestCatchUpTakesCheckpointsNotEverySignature: a gateway-kind model
// catching up on a signed log of some thousand events verifies one
// checkpoint per span instead of every signature — and still refuses the
// unsigned event in the middle of a span, which the checkpoint names. A
// checkpoint signed by a stranger that vouches for that span with no
// refusal is not taken: the span's signatures are verified one by one,
// and the forgery is refused all the same.
func TestCatchUpTakesCheckpointsNotEverySignature(t *testing.T) {
	e := startAdmin(t)
	keyID, suspended, _, forgery := suspendedKeyAndForgery(t, e)
	ctx := testCtx(t, 2*time.Minute)
	// Four writers at once (plain requests: the test's API helper is one
	// caller's).
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 600 {
				body := strings.NewReader(fmt.Sprintf(`{"id":"u%d-%d"}`, w, i))
				req, _ := http.NewRequest("POST", e.base+"/v1/tenants/acme/users", body)
				req.Header.Set("Authorization", "Bearer "+e.root)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 201 {
					t.Errorf("create user: %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	nats := e.dev.Addresses().NATS
	cst := openStore(t, devConnect(t, nats, e.dir, natsauth.Control), store.Config{})
	last, _ := cst.LastSeq(ctx, "")
	js := cst.JetStream()
	testkit.Eventually(t, 20*time.Second, func() error { // the quiet checkpoint of the last sequence
		notes, err := store.ReadCheckpoints(ctx, js)
		if err != nil || len(notes) == 0 {
			return fmt.Errorf("no checkpoints: %v", err)
		}
		if cp, _ := events.ParseCheckpoint(events.NoteText(notes[len(notes)-1])); cp.Seq != last {
			return fmt.Errorf("last checkpoint at %d, log at %d", cp.Seq, last)
		}
		return nil
	})
	root, err := trust.ReadPublic(filepath.Join(e.dir, trust.RootPubFile))
	if err != nil {
		t.Fatal(err)
	}
	gst := openStore(t, devConnect(t, nats, e.dir, natsauth.Gateway), store.Config{})
	catchUp := func(read func(context.Context, uint64) ([][]byte, error)) (vouched, verified uint64) {
		t.Helper()
		m := readmodel.New(discard, readmodel.VerificationOnly(), readmodel.Trust(root), readmodel.CatchUpBy(read))
		mctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go m.Run(mctx, gst, nil)
		if err := m.WaitFor(ctx, last, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		m.Read(func(c *projections.Catalog) {
			if d := c.VerifyHash(events.SecretHash(sha256.Sum256([]byte(suspended))), projections.Request{}, time.Now()); d.Code != projections.CodeSuspended {
				t.Fatalf("the forgery at seq %d counted: key %s is %s", forgery, keyID, d.Code)
			}
		})
		return m.CatchUp()
	}
	vouched, verified := catchUp(func(ctx context.Context, after uint64) ([][]byte, error) {
		return store.ReadCheckpointsAfter(ctx, gst.JetStream(), after)
	})
	if vouched < last/2 || verified > last/2 {
		t.Fatalf("caught up on %d events: %d vouched by checkpoints, %d verified one by one", last, vouched, verified)
	}
	t.Logf("caught up on %d events: %d vouched by checkpoints, %d verified one by one", last, vouched, verified)

	// A stranger's checkpoint vouching for the whole log, forgery included.
	notes, _ := store.ReadCheckpoints(ctx, gst.JetStream())
	cp, err := events.ParseCheckpoint(events.NoteText(notes[len(notes)-1]))
	if err != nil {
		t.Fatal(err)
	}
	var chain events.Hash
	sub, err := gst.Subscribe(ctx, store.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= last; seq++ {
		d, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		chain = events.ChainNext(chain, d.Seq, d.Raw)
	}
	sub.Close()
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	lie, err := events.SignCheckpoint(stranger, events.Checkpoint{Origin: cp.Origin, Seq: last, Chain: chain, Judged: true})
	if err != nil {
		t.Fatal(err)
	}
	vouched, verified = catchUp(func(context.Context, uint64) ([][]byte, error) { return [][]byte{lie}, nil })
	if vouched != 0 || verified < last-1 {
		t.Fatalf("a stranger's checkpoint was taken: %d vouched, %d verified", vouched, verified)
	}
}

// TestADecisionNoGatewayWroteIsNamed: keytrail dev's gateway signs
// checkpoints of the decisions it writes. With the gateway NATS identity
// (any gateway's), an attacker files a copy of a real denial under a new
// request id — its content re-derives exactly, so verify-decisions passed
// it — and a checkpoint naming it, signed by a key of its own on the
// gateway's checkpoint subject. verify-decisions names both; audit
// decision says the forgery is signed by no gateway and the real one by
// the dev gateway's signer.
func TestADecisionNoGatewayWroteIsNamed(t *testing.T) {
	e := startAdmin(t)
	keyID, sec := e.givenSuspendedKey()
	rid := requestAnswered(t, e.dev.Addresses().Gateway+"/orders/1", sec, http.StatusForbidden)
	nats := e.dev.Addresses().NATS
	auditCLI := func(args ...string) (string, int) {
		return runCLI(append(append([]string{"audit"}, args...), "--nats", nats, "--data", e.dir, "--unsigned-grace", "0s")...)
	}
	gwKey, err := trust.ReadKey(filepath.Join(e.dir, trust.GatewayKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	gwID := events.SignerID(gwKey.Public().(ed25519.PublicKey))
	testkit.Eventually(t, 20*time.Second, func() error { // the gateway's checkpoint, within a second
		out, code := auditCLI("verify-decisions")
		if code != 0 || !strings.Contains(out, "1 signed by a gateway's checkpoint") {
			return fmt.Errorf("exit %d\n%s", code, out)
		}
		return nil
	})
	if out, code := auditCLI("decision", rid); code != 0 || !strings.Contains(out, "signed: named by a checkpoint of gateway signer "+gwID) {
		t.Fatalf("audit decision %s: exit %d\n%s", rid, code, out)
	}

	ctx := testCtx(t, 30*time.Second)
	gjs, _ := jetstream.New(devConnect(t, nats, e.dir, natsauth.Gateway))
	var real events.LoggedDecision
	testkit.Eventually(t, 10*time.Second, func() error {
		page, _, err := audit.New(e.dev.Store()).PageDecisions(ctx, events.DecisionQuery{KeyID: keyID}, time.Time{}, time.Time{}, 0, 10)
		if err != nil || len(page) != 1 {
			return fmt.Errorf("%d decisions: %v", len(page), err)
		}
		real = page[0]
		return nil
	})
	forged := real.DecisionRecord
	forged.RequestID = "forged-1"
	data, _ := json.Marshal(forged)
	if _, err := gjs.Publish(ctx, events.DecisionSubject(&forged), data); err != nil {
		t.Fatal(err)
	}
	_, mallory, _ := ed25519.GenerateKey(rand.Reader)
	note, err := events.SignNote(mallory, events.DecisionCheckpoint{Node: "mallory", Digests: []events.DecisionDigest{events.DigestDecision(data)}}.Text())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gjs.Publish(ctx, events.DecisionCheckpointSubject(gwID), note); err != nil {
		t.Fatal(err)
	}
	out, code := auditCLI("verify-decisions")
	if code != 1 || !strings.Contains(out, "forged-1") || !strings.Contains(out, "written by no gateway") ||
		!strings.Contains(out, "that it did not sign") || strings.Count(out, "MISMATCH") != 2 {
		t.Fatalf("verify-decisions with a forged decision: exit %d\n%s", code, out)
	}
	if out, code := auditCLI("decision", "forged-1"); code != 1 || !strings.Contains(out, "NOT SIGNED: written by no gateway") {
		t.Fatalf("audit decision forged-1: exit %d\n%s", code, out)
	}
}

// TestCheckpointsAreReadWholeFromACluster: the fault campaign's auditor
// failed verify-chain with "no responders" reading a replicated checkpoint
// stream of 711 notes a message at a time (its consumer gone after a dozen);
// the checkpoints are read with one iterator, like the log.
func TestCheckpointsAreReadWholeFromACluster(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	ctx := testCtx(t, time.Minute)
	js, _ := jetstream.New(natstest.Connect(t, c.URLs(), c.Identity(natsauth.Control)))
	if err := trust.EnsureCheckpointStream(ctx, js, 3); err != nil {
		t.Fatal(err)
	}
	const n = 700
	for i := range n {
		if _, err := js.PublishAsync(events.CheckpointSubject, []byte(fmt.Sprintf("keytrail/x\n%d\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("publishing timed out")
	}
	auditor, _ := jetstream.New(natstest.Connect(t, c.URLs(), c.Identity(natsauth.Auditor)))
	for _, after := range []uint64{0, 500} {
		notes, err := store.ReadCheckpointsAfter(ctx, auditor, after)
		if err != nil || len(notes) < n-int(after) {
			t.Fatalf("after %d: %d notes, %v", after, len(notes), err)
		}
	}
}

// TestDecisionsWhoseAcknowledgementIsLostAreStillSigned: the fault
// campaign found ~4 000 decisions per gateway cut from NATS that no
// checkpoint named: the gateway vouched only for decisions whose
// acknowledgement came back, and a partition stores decisions whose
// acknowledgement never does. Here every acknowledgement times out (the
// decisions are stored all the same): the gateway's checkpoints still name
// every decision it published.
func TestDecisionsWhoseAcknowledgementIsLostAreStillSigned(t *testing.T) {
	node := natstest.RunServer(t)
	ctx := testCtx(t, time.Minute)
	cjs, _ := jetstream.New(node.ConnectAs(t, natsauth.Control))
	if err := gateway.EnsureDecisionStream(ctx, cjs, gateway.DecisionStreamConfig{}); err != nil {
		t.Fatal(err)
	}
	gjs, _ := jetstream.New(node.ConnectAs(t, natsauth.Gateway), jetstream.WithPublishAsyncTimeout(time.Nanosecond))
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	dl := gateway.NewDecisionLog(gjs, 100).SignWith(key, "gw-1")
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { dl.Run(runCtx); close(done) }()
	const n = 20
	for i := range n {
		dl.Offer(&events.DecisionRecord{Code: "REVOKED", Tenant: "acme", KeyID: fmt.Sprintf("key_%d", i), Method: "GET", Path: "/x",
			Node: "gw-1", RequestID: fmt.Sprintf("r%d", i), Now: time.Now()})
	}
	id := events.SignerID(key.Public().(ed25519.PublicKey))
	str, _ := cjs.Stream(ctx, events.DecisionStream)
	vouched := map[events.DecisionDigest]bool{}
	var stored [][]byte
	testkit.Eventually(t, 10*time.Second, func() error {
		info, err := str.Info(ctx)
		if err != nil {
			return err
		}
		stored, vouched = nil, map[events.DecisionDigest]bool{}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
			m, err := str.GetMsg(ctx, seq)
			if err != nil {
				return err
			}
			if m.Subject != events.DecisionCheckpointSubject(id) {
				stored = append(stored, m.Data)
				continue
			}
			text, err := events.OpenNote(m.Data, map[string]ed25519.PublicKey{id: key.Public().(ed25519.PublicKey)})
			if err != nil {
				t.Fatal(err)
			}
			cp, err := events.ParseDecisionCheckpoint(text)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range cp.Digests {
				vouched[d] = true
			}
		}
		if len(stored) != n || len(vouched) < n || dl.Pending() != 0 {
			return fmt.Errorf("%d decisions stored, %d vouched for, %d awaiting a checkpoint", len(stored), len(vouched), dl.Pending())
		}
		return nil
	})
	for _, d := range stored {
		if !vouched[events.DigestDecision(d)] {
			t.Fatalf("a stored decision no checkpoint names: %s", d)
		}
	}
	stop()
	<-done
	if dl.Written() != 0 {
		t.Fatalf("%d acknowledgements came back: the reproduction needs them lost", dl.Written())
	}
}

// TestALostAcknowledgementDoesNotStopTheDecisionLog: the fault campaign
// found a gateway whose decision log had stopped for good: one decision's
// acknowledgement never came (lost on a cut link; no publish timeout), the
// counter waited for it for ever, the queues filled, and every later
// decision was dropped and no checkpoint signed. Here something swallows
// every decision without answering: each is counted dropped after the
// acknowledgement wait, and the log goes on.
func TestALostAcknowledgementDoesNotStopTheDecisionLog(t *testing.T) {
	node := natstest.RunServer(t)
	ctx := testCtx(t, time.Minute)
	sink := node.ConnectAs(t, natstest.Operator)
	if _, err := sink.Subscribe(events.DecisionSubjects, func(*nats.Msg) {}); err != nil { // no stream: no acknowledgement
		t.Fatal(err)
	}
	sink.Flush()
	gjs, _ := jetstream.New(node.ConnectAs(t, natsauth.Gateway))
	dl := gateway.NewDecisionLog(gjs, 8)
	dl.AckWait = 100 * time.Millisecond
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { dl.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()
	offer := func(n int) {
		for i := range n {
			dl.Offer(&events.DecisionRecord{Code: "REVOKED", Tenant: "acme", KeyID: fmt.Sprintf("key_%d", i), Method: "GET", Path: "/x", Node: "gw", RequestID: fmt.Sprint(i), Now: time.Now()})
		}
	}
	offer(5)
	testkit.Eventually(t, 10*time.Second, func() error {
		if got := dl.Written() + dl.Dropped(); got != dl.Offered() {
			return fmt.Errorf("offered %d, written %d, dropped %d: the log waits", dl.Offered(), dl.Written(), dl.Dropped())
		}
		return nil
	})
	offer(5) // and it goes on
	testkit.Eventually(t, 10*time.Second, func() error {
		if got := dl.Written() + dl.Dropped(); got != 10 {
			return fmt.Errorf("offered %d, written %d, dropped %d", dl.Offered(), dl.Written(), dl.Dropped())
		}
		return nil
	})
}

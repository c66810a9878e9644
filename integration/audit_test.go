package integration

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/client"
	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/app"
	"github.com/keytrail/keytrail/services/audit"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/readmodel"
	"github.com/keytrail/keytrail/services/trust"
)

// auditEnv is `keytrail dev` whose gateway logs every decision, and an
// admin client with the root key.
type auditEnv struct {
	dir   string // the dev data directory
	dev   *app.Dev
	admin *client.Client
	root  string
	ctx   context.Context
}

func startAudited(t *testing.T) *auditEnv {
	a := startAdminWith(t, app.DevConfig{Logger: slog.New(slog.DiscardHandler), MinSeqWait: 50 * time.Millisecond,
		Gateway: app.GatewayConfig{Sample: 1}}, nil)
	e := &auditEnv{dir: a.dir, dev: a.dev, root: a.root, ctx: testCtx(t, 3*time.Minute), admin: client.New(a.base, a.root, nil)}
	testkit.Eventually(t, 20*time.Second, func() error {
		if s := readyz(a.dev.Addresses().Gateway); s != 200 {
			return fmt.Errorf("gateway readyz %d", s)
		}
		return nil
	})
	return e
}

func (e *auditEnv) must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestVerifyDecisions records thousands of gateway decisions across every
// outcome code, many of them made while events that change the outcome are
// being applied, then re-derives every one from the event history; a forged
// and a garbage entry in the decision log are named.
func TestVerifyDecisions(t *testing.T) {
	e := startAudited(t)
	ctx := e.ctx
	up := upstream(t)
	for _, ten := range []string{"acme", "beta", "gamma", "delta", "sus"} {
		_, _, err := e.admin.CreateTenant(ctx, ten, ten, nil)
		e.must(t, err)
		for _, u := range []string{"bob", "eve", "dan"} {
			_, _, err := e.admin.CreateUser(ctx, ten, u, "", nil)
			e.must(t, err)
		}
		_, _, err = e.admin.CreateAPI(ctx, ten, client.APISpec{ID: "api", PathPrefix: "/" + ten, Upstreams: []string{up.URL},
			Scopes: []string{"read"}}, nil)
		e.must(t, err)
	}
	later := time.Now().Add(time.Hour)
	soon := time.Now().Add(300 * time.Millisecond)
	var keys []client.IssuedKey
	issue := func(tenant string, spec client.KeySpec) client.IssuedKey {
		k, err := e.admin.IssueKey(ctx, tenant, spec, nil)
		e.must(t, err)
		keys = append(keys, k)
		return k
	}
	read := []string{"read"}
	for _, ten := range []string{"acme", "beta", "gamma"} {
		for _, u := range []string{"bob", "eve", "dan"} {
			issue(ten, client.KeySpec{User: u, Scopes: read})
		}
		issue(ten, client.KeySpec{User: "bob"})                                  // INSUFFICIENT_SCOPE
		issue(ten, client.KeySpec{User: "bob", Scopes: read, NotBefore: &later}) // NOT_YET_VALID
		issue(ten, client.KeySpec{User: "bob", Scopes: read, ExpiresAt: &soon})  // EXPIRED, later
	}
	// Tenants the changes below leave alone: delta's keys stay valid (one
	// of them rate limited), sus is suspended before the traffic starts.
	issue("delta", client.KeySpec{User: "bob", Scopes: read})
	issue("delta", client.KeySpec{User: "dan"})                                                                     // INSUFFICIENT_SCOPE
	issue("delta", client.KeySpec{User: "eve", Scopes: read, RateLimit: &client.RateLimit{PerSecond: 5, Burst: 2}}) // RATE_LIMITED
	issue("sus", client.KeySpec{User: "bob", Scopes: read})
	if _, err := e.admin.Do(ctx, "POST", "/v1/tenants/sus/suspend", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	// USER_UNKNOWN: a key whose user has no events, written past the
	// control plane.
	sec := mustSecret(t)
	if _, err := e.dev.Store().Append(ctx, store.Head{}, storetest.Event("acme", events.KeyAggregate("ghost", "key_01JDQ8Z6W4M2N9V3X5C7B1GHST"),
		events.KeyIssuedV1{SecretHash: sec.Hash(), Hint: "h", Scopes: read}, "ghost")); err != nil {
		t.Fatal(err)
	}
	secrets := []string{"", "kt_short", mustSecret(t).Reveal(), sec.Reveal()}
	for _, k := range keys {
		secrets = append(secrets, k.Secret)
	}
	gw := e.dev.Addresses().Gateway
	paths := []string{"/acme/x", "/beta/x", "/gamma/x", "/delta/x", "/sus/x"}

	// Traffic and changes at once.
	// Each worker sends at least perWorker requests, and goes on (up to
	// maxPerWorker) until every change below has been made.
	const workers, perWorker, maxPerWorker = 6, 400, 5000
	changed := make(chan struct{})
	var sent sync.WaitGroup
	var total, stale int64
	var mu sync.Mutex
	hc := &http.Client{Timeout: 10 * time.Second}
	for w := range workers {
		sent.Add(1)
		go func() {
			defer sent.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range maxPerWorker {
				if i >= perWorker {
					select {
					case <-changed:
						return
					default:
					}
				}
				req, _ := http.NewRequestWithContext(ctx, "GET", gw+paths[rng.IntN(len(paths))], nil)
				if s := secrets[rng.IntN(len(secrets))]; s != "" {
					req.Header.Set("Authorization", "Bearer "+s)
				}
				if i%97 == 0 {
					req.Header.Set("Keytrail-Min-Seq", "999999999") // STALE: the gateway cannot reach it in time
					mu.Lock()
					stale++
					mu.Unlock()
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				mu.Lock()
				total++
				mu.Unlock()
			}
		}()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	m := adminCommand(t, e)
	changing := keys[:len(keys)-4] // not delta's or sus's
	for range 60 {
		k := changing[rng.IntN(len(changing))]
		switch rng.IntN(6) {
		case 0:
			m("POST", "/v1/tenants/"+k.Key.Tenant+"/keys/"+k.Key.ID+"/suspend")
		case 1:
			m("POST", "/v1/tenants/"+k.Key.Tenant+"/keys/"+k.Key.ID+"/resume")
		case 2:
			m("POST", "/v1/tenants/"+k.Key.Tenant+"/users/"+k.Key.User+"/disable")
		case 3:
			m("POST", "/v1/tenants/"+k.Key.Tenant+"/users/"+k.Key.User+"/enable")
		case 4:
			m("POST", "/v1/tenants/gamma/suspend")
		case 5:
			m("POST", "/v1/tenants/gamma/resume")
		}
	}
	m("POST", "/v1/tenants/acme/keys/"+keys[0].Key.ID+"/revoke")
	m("DELETE", "/v1/tenants/beta/users/dan")
	m("POST", "/v1/tenants/gamma/revoke-keys")
	close(changed)
	sent.Wait()

	// Every request's decision reaches the log, or is counted as dropped
	// (the decision log never holds a request up; on a busy machine it may
	// shed a few).
	js, _ := jetstream.New(devConnect(t, e.dev.Addresses().NATS, e.dir, natsauth.Auditor))
	var dropped int64
	testkit.Eventually(t, 30*time.Second, func() error {
		s, err := js.Stream(ctx, events.DecisionStream)
		if err != nil {
			return err
		}
		dropped = gatewayMetric(t, e.dev.Addresses().Metrics, "keytrail_gateway_decisions_dropped_total")
		if n := int64(s.CachedInfo().State.Msgs); n+dropped < total {
			return fmt.Errorf("%d decisions logged and %d dropped of %d requests", n, dropped, total)
		}
		return nil
	})
	if dropped > total/20 {
		t.Fatalf("%d of %d decisions dropped", dropped, total)
	}
	auditor, err := store.OpenJetStream(ctx, devConnect(t, e.dev.Addresses().NATS, e.dir, natsauth.Auditor), store.Config{AcceptWeak: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.New(auditor).VerifyDecisions(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mm := range rep.Mismatches {
		t.Errorf("mismatch: %+v", mm)
	}
	for _, code := range []string{"MISSING", "MALFORMED", "NOT_FOUND", "REVOKED", "EXPIRED", "USER_DELETED", "USER_UNKNOWN",
		"TENANT_SUSPENDED", "USER_DISABLED", "SUSPENDED", "NOT_YET_VALID", "TENANT_MISMATCH", "INSUFFICIENT_SCOPE",
		"RATE_LIMITED", "STALE", "VALID"} {
		if rep.ByCode[code] == 0 {
			t.Errorf("no %s decision in the run: %v", code, rep.ByCode)
		}
	}
	t.Logf("%d decisions: %d matched, %d not re-derivable, by code %v", rep.Decisions, rep.Matched, rep.Unverifiable, rep.ByCode)
	if rep.Matched < 1000 {
		t.Fatalf("only %d decisions re-derived", rep.Matched)
	}

	// The CLI agrees, then finds a forged entry and a garbage one.
	nats := e.dev.Addresses().NATS
	if out, code := runCLI("audit", "verify-decisions", "--nats", nats, "--data", e.dir); code != 0 {
		t.Fatalf("verify-decisions on a clean log: exit %d\n%s", code, out)
	}
	// Only a gateway identity may write decisions: a compromised gateway.
	gjs, _ := jetstream.New(devConnect(t, nats, e.dir, natsauth.Gateway))
	revoked := keys[0].Key
	last, _ := e.dev.Store().LastSeq(ctx, "")
	forged, _ := json.Marshal(events.DecisionRecord{Code: "VALID", KeyID: revoked.ID, Tenant: "acme", User: revoked.User, API: "api",
		APITenant: "acme", Method: "GET", Path: "/acme/x", Node: "mallory", RequestID: "forged-1", Now: time.Now(), Seq: last})
	// Filed where it belongs: its content is what betrays it.
	var rec events.DecisionRecord
	e.must(t, json.Unmarshal(forged, &rec))
	if _, err := gjs.Publish(ctx, events.DecisionSubject(&rec), forged); err != nil {
		t.Fatal(err)
	}
	if _, err := gjs.Publish(ctx, events.DecisionSubject(&events.DecisionRecord{Tenant: "acme"}), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	// A true decision filed under another key's subject would hide it from
	// a search by key.
	rec.Code, rec.RequestID = "REVOKED", "misfiled-1"
	misfiled, _ := json.Marshal(rec)
	if _, err := gjs.Publish(ctx, events.DecisionSubject(&events.DecisionRecord{Tenant: "acme", KeyID: "key_other", Code: "VALID"}), misfiled); err != nil {
		t.Fatal(err)
	}
	out, code := runCLI("audit", "verify-decisions", "--nats", nats, "--data", e.dir)
	if code != 1 || !strings.Contains(out, "forged-1") || !strings.Contains(out, "the history gives REVOKED") ||
		!strings.Contains(out, "not a decision") || !strings.Contains(out, "misfiled-1") ||
		!strings.Contains(out, "filed under keytrail.dec.acme._.key_other._.VALID") || strings.Count(out, "MISMATCH") != 3 {
		t.Fatalf("verify-decisions with a forged entry: exit %d\n%s", code, out)
	}
}

// gatewayMetric reads one unlabelled counter or gauge from a gateway's
// metrics URL (its operator listener).
func gatewayMetric(t *testing.T, metricsURL, name string) int64 {
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int64(f)
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// adminCommand returns a function that sends an admin command and fails the test
// on anything but success or a harmless conflict.
func adminCommand(t *testing.T, e *auditEnv) func(method, path string) {
	return func(method, path string) {
		t.Helper()
		_, err := e.admin.Do(e.ctx, method, path, map[string]string{"reason": "audit test"}, nil, nil)
		var p *client.Problem
		if err != nil && !(errors.As(err, &p) && (p.Code == client.CodeFailedPrecondition || p.Code == client.CodeConflict)) {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// runCLI runs the keytrail command line in-process.
func runCLI(args ...string) (string, int) {
	var out bytes.Buffer
	code := app.Main(context.Background(), args, &out, &out)
	return out.String(), code
}

// TestAuditHistoryExplainAndChain: a key's history and explanations as of
// before and after its revocation, through the CLI; verify-chain is clean
// until garbage, a forgery and an event on another aggregate's subject are
// published to event subjects, and names each of them.
func TestAuditHistoryExplainAndChain(t *testing.T) {
	e := startAudited(t)
	ctx := e.ctx
	nats := e.dev.Addresses().NATS
	_, _, err := e.admin.CreateTenant(ctx, "acme", "Acme", nil)
	e.must(t, err)
	_, _, err = e.admin.CreateUser(ctx, "acme", "bob", "", nil)
	e.must(t, err)
	k, err := e.admin.IssueKey(ctx, "acme", client.KeySpec{User: "bob"}, nil)
	e.must(t, err)
	_, err = e.admin.Do(ctx, "POST", "/v1/tenants/acme/users/bob/disable", map[string]string{"reason": "left the team"}, nil, nil)
	e.must(t, err)
	_, res, err := e.admin.RevokeKey(ctx, "acme", k.Key.ID, "leaked", nil)
	e.must(t, err)

	out, code := runCLI("audit", "history", k.Key.ID, "--nats", nats, "--data", e.dir)
	if code != 0 || strings.Count(out, "\n") != 6 || !strings.Contains(out, "user.disabled") || !strings.Contains(out, "left the team") ||
		!strings.Contains(out, "key.revoked") {
		t.Fatalf("history: exit %d\n%s", code, out)
	}
	out, code = runCLI("audit", "history", k.Key.ID, "--tenant", "acme", "--nats", nats, "--data", e.dir, "-o", "json")
	if code != 0 || strings.Count(out, "\n") != 5 || strings.Contains(out, "secret_sha256") || strings.Contains(out, k.Secret) {
		t.Fatalf("history -o json: exit %d\n%s", code, out)
	}
	out, code = runCLI("audit", "explain", k.Key.ID, "--seq", strconv.FormatUint(k.Seq, 10), "--nats", nats, "--data", e.dir)
	if code != 0 || !strings.HasPrefix(out, "VALID for key "+k.Key.ID) {
		t.Fatalf("explain before: exit %d\n%s", code, out)
	}
	out, code = runCLI("audit", "explain", k.Key.ID, "--seq", strconv.FormatUint(res.Seq, 10), "--nats", nats, "--data", e.dir)
	if code != 0 || !strings.HasPrefix(out, "REVOKED for key") || !strings.Contains(out, "also: USER_DISABLED") ||
		!strings.Contains(out, fmt.Sprintf("because: key.revoked at seq %d, by root (\"leaked\")", res.Seq)) {
		t.Fatalf("explain after: exit %d\n%s", code, out)
	}
	if out, code := runCLI("audit", "explain", "key_01JDQ8Z6W4M2N9V3X5C7B1D2E3", "--nats", nats, "--data", e.dir); code != 1 || !strings.Contains(out, "no key key_01JDQ8Z6W4M2N9V3X5C7B1D2E3 in the event log at nats://") || strings.Contains(out, "audit: audit") {
		t.Fatalf("explain an unknown key: exit %d\n%s", code, out)
	}
	// Why was this request denied? From its request id to the event.
	req, _ := http.NewRequest("GET", e.dev.Addresses().Gateway+"/nowhere", nil)
	req.Header.Set("Authorization", "Bearer "+k.Secret)
	_, err = http.DefaultClient.Do(req) // no API there: 404, not a decision on the key
	e.must(t, err)
	_, _, err = e.admin.CreateAPI(ctx, "acme", client.APISpec{ID: "orders", PathPrefix: "/orders", Upstreams: []string{"http://127.0.0.1:1"}}, nil)
	e.must(t, err)
	rid := requestAnswered(t, e.dev.Addresses().Gateway+"/orders/1", k.Secret, http.StatusForbidden)
	testkit.Eventually(t, 10*time.Second, func() error {
		out, code := runCLI("audit", "decision", rid, "--nats", nats, "--data", e.dir)
		if code != 0 || !strings.Contains(out, "decided REVOKED (also USER_DISABLED) for key "+k.Key.ID) ||
			!strings.Contains(out, "the history gives the same decision") ||
			!strings.Contains(out, fmt.Sprintf("because: key.revoked at seq %d, by root (\"leaked\")", res.Seq)) {
			return fmt.Errorf("audit decision: exit %d\n%s", code, out)
		}
		return nil
	})
	if out, code := runCLI("audit", "decision", "no-such-request", "--nats", nats, "--data", e.dir); code != 1 || !strings.Contains(out, "no such decision") {
		t.Fatalf("an unknown request id: exit %d\n%s", code, out)
	}

	if out, code := runCLI("audit", "verify-chain", "--nats", nats, "--data", e.dir); code != 0 || !strings.Contains(out, "0 problems") {
		t.Fatalf("verify-chain on a clean log: exit %d\n%s", code, out)
	}

	// Garbage, a forgery that does not link, an event on another's subject:
	// only a holder of the control identity can still publish them.
	nc := devConnect(t, nats, e.dir, natsauth.Control)
	publishRaw(t, nc, "keytrail.evt.acme.u.bob.u", []byte("{not an event"))
	forged := storetest.Event("acme", events.UserAggregate("bob"), events.UserEnabledV1{}, "forged")
	forged.PrevHash = events.Hash{1, 2, 3}
	data, err := events.Encode(&forged)
	e.must(t, err)
	publishRaw(t, nc, "keytrail.evt.acme.u.bob.u", data)
	elsewhere := storetest.Event("acme", events.UserAggregate("eve"), events.UserCreatedV1{}, "misfiled")
	data, err = events.Encode(&elsewhere)
	e.must(t, err)
	publishRaw(t, nc, "keytrail.evt.acme.u.bob.u", data)
	// A correctly linked key.resumed of the revoked key: every reader
	// refuses it (revoked is final), and so must verify-chain (issue 17: it
	// reported 0 problems for one).
	h, err := e.dev.Store().Load(ctx, "acme", events.KeyAggregate(k.Key.User, k.Key.ID))
	e.must(t, err)
	resumed := storetest.Event("acme", events.KeyAggregate(k.Key.User, k.Key.ID), events.KeyResumedV1{}, "resumed")
	resumed.PrevHash = h.Events[len(h.Events)-1].Hash
	data, err = events.Encode(&resumed)
	e.must(t, err)
	publishRaw(t, nc, "keytrail.evt.acme.u."+k.Key.User+".k."+k.Key.ID, data)
	last, _ := e.dev.Store().LastSeq(ctx, "")

	out, code = runCLI("audit", "verify-chain", "--nats", nats, "--data", e.dir)
	// keytrail dev signs its history (docs/signing.md), and verify-chain
	// pins its root key (<data>/trust.pub): each of these, published with
	// the control identity but no signing key, is refused as unsigned —
	// the linked key.resumed as much as the rest.
	if code != 1 || strings.Count(out, "PROBLEM") != 4 || !strings.Contains(out, fmt.Sprintf("seq %d", last)) ||
		strings.Count(out, "has no signature") != 2 || strings.Count(out, "not an event") != 2 {
		t.Fatalf("verify-chain with forgeries: exit %d\n%s", code, out)
	}
	// Without the root key pinned it judges as readers without one do: the
	// linked key.resumed is still refused (revoked is final), the forgery
	// does not link.
	noTrust := filepath.Join(t.TempDir(), "elsewhere")
	out, code = runCLI("audit", "verify-chain", "--nats", nats, "--data", noTrust, "--nats-nkey", filepath.Join(e.dir, "nats", "auditor.nk"))
	if code != 1 || strings.Count(out, "PROBLEM") != 4 || !strings.Contains(out, "does not link") || !strings.Contains(out, "the key is revoked") {
		t.Fatalf("verify-chain without trust: exit %d\n%s", code, out)
	}
	out, code = runCLI("audit", "verify-chain", "--nats", nats, "--data", e.dir, "-o", "json")
	if code != 1 || strings.Count(out, "\n") != 5 {
		t.Fatalf("verify-chain -o json: exit %d\n%s", code, out)
	}
	// One judgement: a reader of the same log refuses exactly the messages
	// verify-chain names.
	root, err := trust.ReadPublic(filepath.Join(e.dir, trust.RootPubFile))
	e.must(t, err)
	reader := readmodel.New(slog.New(slog.DiscardHandler), readmodel.Trust(root))
	readCtx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	go reader.Run(readCtx, e.dev.Store(), nil)
	e.must(t, reader.WaitFor(ctx, last, 10*time.Second))
	var refused []uint64
	reader.Read(func(c *projections.Catalog) {
		for _, p := range c.Problems {
			refused = append(refused, p.Seq)
		}
	})
	var named []uint64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var p struct {
			Seq     uint64
			Problem string
		}
		if json.Unmarshal([]byte(line), &p) == nil && p.Problem != "" {
			named = append(named, p.Seq)
		}
	}
	if fmt.Sprint(refused) != fmt.Sprint(named) {
		t.Fatalf("readers refuse %v, verify-chain names %v", refused, named)
	}
}

func mustSecret(t *testing.T) secret.Secret {
	s, err := secret.Generate(secret.DefaultPrefix, crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestExplainNamesTheDecidingFact: an EXPIRED explanation names the expiry
// and the event that set it, with the key's scopes beside it (it named the
// event only, not the time, so "when did it expire?" needed another look).
func TestExplainNamesTheDecidingFact(t *testing.T) {
	e := startAudited(t)
	nats := e.dev.Addresses().NATS
	e.acmeBob(t)
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	k, err := e.admin.IssueKey(e.ctx, "acme", client.KeySpec{User: "bob", Scopes: []string{"orders:read"}, ExpiresAt: &expires}, nil)
	e.must(t, err)
	at := expires.Add(time.Minute).Format(time.RFC3339)
	out, code := runCLI("audit", "explain", k.Key.ID, "--at", at, "--nats", nats, "--data", e.dir)
	if code != 0 || !strings.HasPrefix(out, "EXPIRED for key") || !strings.Contains(out, "expires "+expires.Format(time.RFC3339)) ||
		!strings.Contains(out, "key scopes orders:read") {
		t.Fatalf("explain after the expiry: exit %d\n%s", code, out)
	}
	out, code = runCLI("audit", "explain", k.Key.ID, "--at", at, "--nats", nats, "--data", e.dir, "-o", "json")
	if code != 0 || !strings.Contains(out, `"fact":"key scopes orders:read; expires `+expires.Format(time.RFC3339)+`"`) {
		t.Fatalf("explain -o json: exit %d\n%s", code, out)
	}
}

// TestARateLimitedDecisionIsToldAsWhatItIs: audit decision on a request a
// rate limit denied says the history gives VALID and names the limit that
// denied it, whose it is and its window (its text said "the history gives
// the same decision" while its JSON said derived VALID, and it did not say
// which limit).
func TestARateLimitedDecisionIsToldAsWhatItIs(t *testing.T) {
	e := startAudited(t)
	nats := e.dev.Addresses().NATS
	e.acmeBob(t)
	var err error
	_, _, err = e.admin.CreateAPI(e.ctx, "acme", client.APISpec{ID: "orders", PathPrefix: "/orders", Upstreams: []string{"http://127.0.0.1:1"}}, nil)
	e.must(t, err)
	_, _, err = e.admin.CreateAPI(e.ctx, "acme", client.APISpec{ID: "billing", PathPrefix: "/billing", Upstreams: []string{"http://127.0.0.1:1"},
		RateLimit: &client.RateLimit{PerSecond: 0.02, Burst: 1}}, nil)
	e.must(t, err)
	k, err := e.admin.IssueKey(e.ctx, "acme", client.KeySpec{User: "bob", RateLimit: &client.RateLimit{PerSecond: 0.01, Burst: 1}}, nil)
	e.must(t, err)
	free, err := e.admin.IssueKey(e.ctx, "acme", client.KeySpec{User: "bob"}, nil)
	e.must(t, err)
	for _, c := range []struct {
		secret, path, text, json string
	}{
		{k.Secret, "/orders/1", "limit: the key's rate limit, 0.01 requests/s with bursts of 1 (a full burst refills in 1m40s)",
			`"limit":"the key's rate limit, 0.01 requests/s with bursts of 1 (a full burst refills in 1m40s)"`},
		{free.Secret, "/billing/1", "limit: the API's rate limit, 0.02 requests/s with bursts of 1 (a full burst refills in 50s)",
			`"limit":"the API's rate limit`},
	} {
		rid := requestAnswered(t, e.dev.Addresses().Gateway+c.path, c.secret, http.StatusTooManyRequests)
		testkit.Eventually(t, 10*time.Second, func() error {
			out, code := runCLI("audit", "decision", rid, "--nats", nats, "--data", e.dir)
			if code != 0 || !strings.Contains(out, "decided RATE_LIMITED") || !strings.Contains(out, "the history gives VALID") ||
				strings.Contains(out, "the same decision") || !strings.Contains(out, c.text) {
				return fmt.Errorf("audit decision: exit %d\n%s", code, out)
			}
			return nil
		})
		out, code := runCLI("audit", "decision", rid, "--nats", nats, "--data", e.dir, "-o", "json")
		if code != 0 || !strings.Contains(out, c.json) || !strings.Contains(out, `"derived":"VALID"`) {
			t.Fatalf("audit decision -o json: exit %d\n%s", code, out)
		}
	}
}

// TestInsufficientScopeNamesTheMissingScope: audit decision on an
// INSUFFICIENT_SCOPE denial names the scopes the key lacked, what the API
// required and what the key held, with the events that set them (it named
// the events only).
func TestInsufficientScopeNamesTheMissingScope(t *testing.T) {
	e := startAudited(t)
	nats := e.dev.Addresses().NATS
	e.acmeBob(t)
	_, _, err := e.admin.CreateAPI(e.ctx, "acme", client.APISpec{ID: "orders", PathPrefix: "/orders", Upstreams: []string{"http://127.0.0.1:1"},
		Scopes: []string{"orders:read", "orders:write"}}, nil)
	e.must(t, err)
	k, err := e.admin.IssueKey(e.ctx, "acme", client.KeySpec{User: "bob", Scopes: []string{"orders:read"}}, nil)
	e.must(t, err)
	rid := requestAnswered(t, e.dev.Addresses().Gateway+"/orders/1", k.Secret, http.StatusForbidden)
	testkit.Eventually(t, 10*time.Second, func() error {
		out, code := runCLI("audit", "decision", rid, "--nats", nats, "--data", e.dir)
		if code != 0 || !strings.Contains(out, "decided INSUFFICIENT_SCOPE") ||
			!strings.Contains(out, "missing scopes: orders:write (API acme/orders requires orders:read, orders:write; the key holds orders:read)") ||
			!strings.Contains(out, "because: key.issued") || !strings.Contains(out, "because: api.created") {
			return fmt.Errorf("audit decision: exit %d\n%s", code, out)
		}
		return nil
	})
	out, code := runCLI("audit", "decision", rid, "--nats", nats, "--data", e.dir, "-o", "json")
	if code != 0 || !strings.Contains(out, `"scopes":{"required":["orders:read","orders:write"],"held":["orders:read"],"missing":["orders:write"]}`) {
		t.Fatalf("audit decision -o json: exit %d\n%s", code, out)
	}
}

// TestDecisionsAreFoundByKey: `audit decisions --key` lists a key's
// decisions, and only its, without a request id; the server filters them
// (the search reads no one else's), by code too; bad input is named. There
// was no way to find decisions but by request id, over the whole log.
func TestDecisionsAreFoundByKey(t *testing.T) {
	e := startAudited(t)
	nats := e.dev.Addresses().NATS
	e.acmeBob(t)
	_, _, err := e.admin.CreateAPI(e.ctx, "acme", client.APISpec{ID: "orders", PathPrefix: "/orders", Upstreams: []string{"http://127.0.0.1:1"},
		Scopes: []string{"orders:write"}}, nil)
	e.must(t, err)
	mine, err := e.admin.IssueKey(e.ctx, "acme", client.KeySpec{User: "bob"}, nil)
	e.must(t, err)
	other, err := e.admin.IssueKey(e.ctx, "acme", client.KeySpec{User: "bob", Scopes: []string{"orders:write"}}, nil)
	e.must(t, err)
	gw := e.dev.Addresses().Gateway
	var rids []string
	for range 3 {
		rids = append(rids, requestAnswered(t, gw+"/orders/1", mine.Secret, http.StatusForbidden))
	}
	for range 20 {
		requestAnswered(t, gw+"/orders/1", other.Secret, http.StatusBadGateway) // upstream down: decided VALID, logged (sample 1)
	}
	auditor, err := store.OpenJetStream(e.ctx, devConnect(t, nats, e.dir, natsauth.Auditor), store.Config{})
	e.must(t, err)
	a := audit.New(auditor)
	var page audit.DecisionPage
	testkit.Eventually(t, 10*time.Second, func() error {
		page, err = a.SearchDecisions(e.ctx, audit.DecisionSearch{DecisionQuery: events.DecisionQuery{KeyID: mine.Key.ID}, Limit: 100})
		if err != nil || page.Matched != 3 {
			return fmt.Errorf("%d matched (%v)", page.Matched, err)
		}
		theirs, err := a.SearchDecisions(e.ctx, audit.DecisionSearch{DecisionQuery: events.DecisionQuery{KeyID: other.Key.ID}, Limit: 100})
		if err != nil || theirs.Matched != 20 {
			return fmt.Errorf("the other key: %d matched (%v)", theirs.Matched, err)
		}
		return nil
	})
	if page.Read != 3 {
		t.Fatalf("the search read %d entries for a key with 3 decisions: the server did not filter", page.Read)
	}
	for i, d := range page.Decisions {
		if d.KeyID != mine.Key.ID || d.RequestID != rids[i] || d.Code != "INSUFFICIENT_SCOPE" {
			t.Fatalf("decision %d: %+v", i, d)
		}
	}
	out, code := runCLI("audit", "decisions", "--key", mine.Key.ID, "--nats", nats, "--data", e.dir)
	if code != 0 || strings.Count(out, "INSUFFICIENT_SCOPE") != 3 || strings.Contains(out, other.Key.ID) || !strings.Contains(out, rids[2]) ||
		!strings.Contains(out, "3 decisions since") {
		t.Fatalf("audit decisions --key: exit %d\n%s", code, out)
	}
	out, code = runCLI("audit", "decisions", "--user", "bob", "--tenant", "acme", "--code", "VALID", "--limit", "5", "--since", "1h", "-o", "json",
		"--nats", nats, "--data", e.dir)
	if code != 0 || strings.Count(out, "\n") != 5 || strings.Contains(out, mine.Key.ID) || !strings.Contains(out, other.Key.ID) {
		t.Fatalf("audit decisions --user --code VALID --limit 5: exit %d\n%s", code, out)
	}
	out, code = runCLI("audit", "decisions", "--key", mine.Key.ID, "--until", "1h", "--nats", nats, "--data", e.dir)
	if code != 0 || !strings.Contains(out, "0 decisions") {
		t.Fatalf("audit decisions --until an hour ago: exit %d\n%s", code, out)
	}
	// A range that ended an hour ago stops at the first decision stored
	// after it (it read the whole log to the end).
	past, err := a.SearchDecisions(e.ctx, audit.DecisionSearch{DecisionQuery: events.DecisionQuery{Tenant: "acme"},
		Since: time.Now().Add(-2 * time.Hour), Until: time.Now().Add(-time.Hour), Limit: 100})
	if err != nil || past.Matched != 0 || past.Read != 0 {
		t.Fatalf("a range that ended an hour ago: read %d, matched %d (%v)", past.Read, past.Matched, err)
	}
	// The admin API's search: the same filtering, paged by cursor.
	type apiPage struct {
		Decisions []events.LoggedDecision `json:"decisions"`
		Next      string                  `json:"next_cursor"`
	}
	var first, second, third apiPage
	_, err = e.admin.Do(e.ctx, "GET", "/v1/tenants/acme/decisions?limit=2&key="+mine.Key.ID, nil, nil, &first)
	e.must(t, err)
	_, err = e.admin.Do(e.ctx, "GET", "/v1/tenants/acme/decisions?limit=2&key="+mine.Key.ID+"&cursor="+first.Next, nil, nil, &second)
	e.must(t, err)
	if len(first.Decisions) != 2 || first.Next == "" || len(second.Decisions) != 1 || second.Decisions[0].RequestID != rids[2] ||
		first.Decisions[0].RequestID != rids[0] || first.Decisions[0].LogSeq == 0 {
		t.Fatalf("pages: %+v / %+v", first, second)
	}
	_, err = e.admin.Do(e.ctx, "GET", "/v1/tenants/acme/decisions?code=VALID&since=1h", nil, nil, &third)
	e.must(t, err)
	if len(third.Decisions) != 20 || third.Decisions[0].KeyID != other.Key.ID {
		t.Fatalf("VALID decisions: %d", len(third.Decisions))
	}
	var beta apiPage
	_, created, err := e.admin.CreateTenant(e.ctx, "beta", "Beta", nil)
	e.must(t, err)
	_, err = e.admin.Do(e.ctx, "GET", "/v1/tenants/beta/decisions?since=1h", nil, &client.Call{MinSeq: created.Seq}, &beta)
	if err != nil || len(beta.Decisions) != 0 {
		t.Fatalf("beta's decisions: %v %+v", err, beta)
	}
	for q, name := range map[string]string{"key=a.b": "key", "code=NOPE": "code", "cursor=x": "cursor", "since=soon": "since", "color=red": "color"} {
		_, err := e.admin.Do(e.ctx, "GET", "/v1/tenants/acme/decisions?"+q, nil, nil, nil)
		var p *client.Problem
		if !errors.As(err, &p) || p.Status != 400 || !strings.Contains(p.Detail, name) {
			t.Errorf("%s: %v", q, err)
		}
	}
	for _, bad := range [][]string{{"--key", "a.b"}, {"--code", "*"}, {"--limit", "0"}, {"--since", "yesterday"}} {
		out, code := runCLI(append([]string{"audit", "decisions", "--nats", nats, "--data", e.dir}, bad...)...)
		if code != 2 || !strings.Contains(out, strings.TrimPrefix(bad[0], "--")) {
			t.Fatalf("audit decisions %v: exit %d\n%s", bad, code, out)
		}
	}
}

// requestAnswered sends GET url with secret until it is answered with
// status (10 s at most) and returns that request's id. hdr are more
// headers, name then value (Keytrail-Min-Seq: so that no request before
// the gateway has applied a change is answered, and counted, at all).
func requestAnswered(t *testing.T, url, secret string, status int, hdr ...string) string {
	t.Helper()
	var rid string
	testkit.Eventually(t, 10*time.Second, func() error {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		rid = resp.Header.Get("Keytrail-Request-Id")
		return nil
	})
	return rid
}

// acmeBob creates tenant acme and its user bob.
func (e *auditEnv) acmeBob(t *testing.T) {
	t.Helper()
	_, _, err := e.admin.CreateTenant(e.ctx, "acme", "Acme", nil)
	e.must(t, err)
	_, _, err = e.admin.CreateUser(e.ctx, "acme", "bob", "", nil)
	e.must(t, err)
}

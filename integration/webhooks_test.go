package integration

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/app"
	"github.com/keytrail/keytrail/services/natsauth"
)

// verifyStandardWebhook is a receiver's check, written from the Standard
// Webhooks specification (not Keytrail's signer): the HMAC-SHA256 of
// "id.timestamp.body" under the whsec_ secret, base64, after "v1,", one of
// the space-separated signatures; the timestamp within five minutes.
func verifyStandardWebhook(secret string, h http.Header, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	ts, err2 := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	if err != nil || err2 != nil || math.Abs(time.Since(time.Unix(ts, 0)).Minutes()) > 5 {
		return false
	}
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.%s", h.Get("webhook-id"), ts, body)
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}

// delivery is one request a receiver got.
type delivery struct {
	id, sigs string
	header   http.Header
	body     []byte
	payload  struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	at time.Time
}

// receiver is a webhook endpoint on loopback: it keeps every request and
// answers with what answer says for the n-th one (from 1).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	got    []delivery
	answer func(n int, d delivery) int
}

func newReceiver(t *testing.T, answer func(n int, d delivery) int) *receiver {
	r := &receiver{t: t, answer: answer}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		d := delivery{id: req.Header.Get("webhook-id"), sigs: req.Header.Get("webhook-signature"), header: req.Header.Clone(), body: body, at: time.Now()}
		json.Unmarshal(body, &d.payload)
		r.mu.Lock()
		r.got = append(r.got, d)
		n := len(r.got)
		r.mu.Unlock()
		status := http.StatusOK
		if r.answer != nil {
			status = r.answer(n, d)
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, "answer %d to request %d", status, n)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// waitFor waits until the receiver got a request matching ok, and returns
// it.
func (r *receiver) waitFor(what string, ok func(d delivery) bool) delivery {
	r.t.Helper()
	var found delivery
	testkit.Eventually(r.t, 30*time.Second, func() error {
		for _, d := range r.deliveries() {
			if ok(d) {
				found = d
				return nil
			}
		}
		return fmt.Errorf("no %s among %d requests", what, len(r.deliveries()))
	})
	return found
}

// startWebhooks is `keytrail dev` deriving notices every 200 ms and
// retrying deliveries after 200 ms, with tenant acme and user bob.
func startWebhooks(t *testing.T) *adminEnv {
	e := startAdminWith(t, app.DevConfig{Logger: slog.New(slog.DiscardHandler), MinSeqWait: 2 * time.Second, NoticeEvery: 200 * time.Millisecond,
		Webhooks: app.WebhookConfig{Timeout: 2 * time.Second, Ladder: []time.Duration{0, 200 * time.Millisecond, 200 * time.Millisecond}}}, nil)
	e.must(e.call("POST", "/v1/tenants", e.root, map[string]any{"id": "acme", "name": "Acme"}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/users", e.root, map[string]any{"id": "bob"}), 201)
	return e
}

// expiringKey issues bob a key that expires in two days: its 7-day notice
// is due at once.
func (e *adminEnv) expiringKey() string {
	r := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob", "ttl": "48h"}), 201)
	return field(r, "key", "id").(string)
}

// addWebhook creates an endpoint and returns its id and secret.
func (e *adminEnv) addWebhook(url string, types ...string) (string, string) {
	e.t.Helper()
	body := map[string]any{"url": url}
	if len(types) > 0 {
		body["types"] = types
	}
	r := e.must(e.call("POST", "/v1/tenants/acme/webhooks", e.root, body), 201)
	sec, _ := field(r, "secret").(string)
	if !strings.HasPrefix(sec, "whsec_") {
		e.t.Fatalf("no whsec_ secret: %s", r.raw)
	}
	return field(r, "webhook", "id").(string), sec
}

// attempts reads an endpoint's attempt log.
func (e *adminEnv) attempts(id string) []map[string]any {
	e.t.Helper()
	r := e.must(e.call("GET", "/v1/tenants/acme/webhooks/"+id+"/deliveries", e.root, nil), 200)
	var out []map[string]any
	for _, a := range r.body["attempts"].([]any) {
		out = append(out, a.(map[string]any))
	}
	return out
}

// TestWebhooksDeliverNoticesSigned: a key expiring in two days is told to
// the endpoints that want key.expiring, each request signed as Standard
// Webhooks says (checked by a receiver written from the specification);
// an endpoint that holds its requests does not delay another's; the secret
// is shown once; a rotated secret signs beside the new one for the overlap;
// a failing endpoint is retried on the ladder; one that answers 410 is
// disabled and the tenant is told; a message is replayed with its id; and
// every attempt is in the log.
func TestWebhooksDeliverNoticesSigned(t *testing.T) {
	e := startWebhooks(t)
	release := make(chan struct{})
	slow := newReceiver(t, func(n int, d delivery) int {
		<-release // holds every request until the end of the test
		return 200
	})
	t.Cleanup(func() { close(release) })
	fast := newReceiver(t, nil)
	flaky := newReceiver(t, func(n int, _ delivery) int {
		if n == 1 {
			return 503
		}
		return 204
	})
	gone := newReceiver(t, func(int, delivery) int { return 410 })
	everything := newReceiver(t, nil)

	slowID, _ := e.addWebhook(slow.srv.URL, "key.expiring")
	fastID, fastSecret := e.addWebhook(fast.srv.URL+"/hooks?team=billing", "key.expiring")
	flakyID, _ := e.addWebhook(flaky.srv.URL, "key.expiring")
	goneID, _ := e.addWebhook(gone.srv.URL, "key.expiring")
	_, everythingSecret := e.addWebhook(everything.srv.URL)

	// The secret is never shown again.
	for _, path := range []string{"/v1/tenants/acme/webhooks", "/v1/tenants/acme/webhooks/" + fastID} {
		if r := e.must(e.call("GET", path, e.root, nil), 200); strings.Contains(r.raw, "whsec_") || strings.Contains(r.raw, fastSecret[6:20]) {
			t.Fatalf("%s shows a secret: %s", path, r.raw)
		}
	}

	keyID := e.expiringKey()
	expiring := func(d delivery) bool { return d.payload.Type == "key.expiring" && d.payload.Data["key_id"] == keyID }
	got := fast.waitFor("key.expiring", expiring)
	if !verifyStandardWebhook(fastSecret, got.header, got.body) {
		t.Fatalf("the signature does not verify: %v %s", got.header, got.body)
	}
	if !strings.HasPrefix(got.id, "msg_") || got.payload.Data["before"] != "7d" || got.header.Get("Content-Type") != "application/json" {
		t.Fatalf("delivery: %v %s", got.header, got.body)
	}
	// The tenant reads its notices back through the API.
	if r := e.must(e.call("GET", "/v1/tenants/acme/notices?type=key.expiring", e.root, nil), 200); !strings.Contains(r.raw, keyID) ||
		!strings.Contains(r.raw, `"before":"7d"`) {
		t.Fatalf("notices: %s", r.raw)
	}
	// The slow endpoint got its request, and holds it still: the fast one
	// was served meanwhile.
	slow.waitFor("key.expiring (held)", expiring)

	// The flaky endpoint: 503, then 204 on the next rung of the ladder,
	// with the same webhook-id.
	testkit.Eventually(t, 20*time.Second, func() error {
		ds := flaky.deliveries()
		if len(ds) < 2 {
			return fmt.Errorf("%d requests", len(ds))
		}
		if ds[0].id != ds[1].id || ds[0].id != got.id {
			return fmt.Errorf("retry with another id: %s %s %s", ds[0].id, ds[1].id, got.id)
		}
		return nil
	})
	testkit.Eventually(t, 10*time.Second, func() error {
		as := e.attempts(flakyID)
		if len(as) != 2 || as[0]["outcome"] != "retrying" || as[0]["status"] != 503.0 || as[1]["outcome"] != "delivered" || as[1]["attempt"] != 2.0 {
			return fmt.Errorf("flaky's attempts: %v", as)
		}
		if !strings.Contains(as[0]["response"].(string), "answer 503") {
			return fmt.Errorf("no response excerpt: %v", as[0])
		}
		return nil
	})

	// 410: disabled by Keytrail, and the tenant is told (to the endpoint
	// that takes every type).
	testkit.Eventually(t, 20*time.Second, func() error {
		r := e.must(e.call("GET", "/v1/tenants/acme/webhooks/"+goneID, e.root, nil), 200)
		if field(r, "webhook", "status") != "disabled" || field(r, "webhook", "status_by") != "webhook.disabled" {
			return fmt.Errorf("410 endpoint: %s", r.raw)
		}
		return nil
	})
	told := everything.waitFor("webhook.disabled", func(d delivery) bool {
		return d.payload.Type == "webhook.disabled" && d.payload.Data["webhook"] == goneID
	})
	if !verifyStandardWebhook(everythingSecret, told.header, told.body) || !strings.Contains(fmt.Sprint(told.payload.Data["text"]), "410") ||
		told.payload.Data["cause_actor"] != "keytrail-webhooks" {
		t.Fatalf("webhook.disabled notice: %s", told.body)
	}
	if as := e.attempts(goneID); len(as) != 1 || as[0]["outcome"] != "gone" {
		t.Fatalf("gone's attempts: %v", as)
	}

	// Rotation: the new secret and the old both sign, for the overlap.
	r := e.must(e.call("POST", "/v1/tenants/acme/webhooks/"+fastID+"/rotate-secret", e.root, map[string]any{"overlap": "1h"}), 201)
	newSecret := field(r, "secret").(string)
	if newSecret == fastSecret || field(r, "webhook", "previous_secret_until") == nil {
		t.Fatalf("rotate: %s", r.raw)
	}
	second := e.expiringKey()
	rotated := fast.waitFor("a notice after the rotation", func(d delivery) bool { return d.payload.Data["key_id"] == second })
	if len(strings.Fields(rotated.sigs)) != 2 || !verifyStandardWebhook(newSecret, rotated.header, rotated.body) ||
		!verifyStandardWebhook(fastSecret, rotated.header, rotated.body) {
		t.Fatalf("after the rotation: signatures %q", rotated.sigs)
	}

	// Replay: the first message again, with its id.
	before := len(fast.deliveries())
	e.must(e.call("POST", "/v1/tenants/acme/webhooks/"+fastID+"/replay", e.root, map[string]any{"msg_id": got.id}), 202)
	testkit.Eventually(t, 20*time.Second, func() error {
		ds := fast.deliveries()
		if len(ds) <= before || ds[len(ds)-1].id != got.id {
			return fmt.Errorf("no replay of %s yet", got.id)
		}
		return nil
	})
	// The attempt is recorded just after the endpoint answered.
	testkit.Eventually(t, 10*time.Second, func() error {
		if as := e.attempts(fastID); len(as) < 3 || as[len(as)-1]["replay"] != true || as[len(as)-1]["outcome"] != "delivered" {
			return fmt.Errorf("fast's attempts: %v", as)
		}
		return nil
	})
	// Replay since: both notices again.
	rs := e.must(e.call("POST", "/v1/tenants/acme/webhooks/"+fastID+"/replay", e.root, map[string]any{"since": time.Now().Add(-time.Hour)}), 202)
	if field(rs, "queued") != 2.0 {
		t.Fatalf("replay since: %s", rs.raw)
	}
	// No endpoint other than the slow one holds anything back: nothing
	// was delivered to the 410 one after it was disabled.
	if n := len(gone.deliveries()); n != 1 {
		t.Fatalf("the disabled endpoint got %d requests", n)
	}
	_ = slowID
}

// TestWebhookEndpointsRefuseBadInputAndStayTheTenants: bad bodies and URLs
// are 400 problems naming the field and append nothing; another tenant's
// admin cannot see, change or replay an endpoint; the signing secret is in
// no event, log line, file or other answer.
func TestWebhookEndpointsRefuseBadInputAndStayTheTenants(t *testing.T) {
	logs := &testkit.Buffer{}
	e := startAdminWith(t, app.DevConfig{Logger: slog.New(slog.NewJSONHandler(logs, nil)), MinSeqWait: 2 * time.Second}, logs)
	e.must(e.call("POST", "/v1/tenants", e.root, map[string]any{"id": "acme", "name": "Acme"}), 201)
	created := e.must(e.call("POST", "/v1/tenants/acme/webhooks", e.root, map[string]any{"url": "https://hooks.example/k"}), 201)
	id, sec := field(created, "webhook", "id").(string), field(created, "secret").(string)
	one := "/v1/tenants/acme/webhooks/" + id
	before := e.last()
	long := "https://hooks.example/" + strings.Repeat("a", 2100)
	for _, c := range []struct {
		name, method, path string
		body               any
		status             int
		names              string
	}{
		{"no url", "POST", "/v1/tenants/acme/webhooks", `{}`, 400, "url"},
		{"not http", "POST", "/v1/tenants/acme/webhooks", `{"url":"ftp://hooks.example/x"}`, 400, "url"},
		{"relative", "POST", "/v1/tenants/acme/webhooks", `{"url":"/hooks"}`, 400, "url"},
		{"credentials", "POST", "/v1/tenants/acme/webhooks", `{"url":"https://user:pw@hooks.example/x"}`, 400, "credentials"},
		{"fragment", "POST", "/v1/tenants/acme/webhooks", `{"url":"https://hooks.example/x#y"}`, 400, "fragment"},
		{"control character", "POST", "/v1/tenants/acme/webhooks", `{"url":"https://hooks.example/x\u0007"}`, 400, "url"},
		{"too long", "POST", "/v1/tenants/acme/webhooks", map[string]any{"url": long}, 400, "url"},
		{"cloud metadata", "POST", "/v1/tenants/acme/webhooks", `{"url":"http://169.254.169.254/latest"}`, 400, "link-local"},
		{"private address", "POST", "/v1/tenants/acme/webhooks", `{"url":"http://10.0.0.8/hook"}`, 400, "private"},
		{"the admin API itself", "POST", "/v1/tenants/acme/webhooks", map[string]any{"url": e.base + "/v1/tenants"}, 400, "own listeners"},
		{"unknown type", "POST", "/v1/tenants/acme/webhooks", `{"url":"https://hooks.example/x","types":["key.stolen"]}`, 400, "types"},
		{"type twice", "POST", "/v1/tenants/acme/webhooks", `{"url":"https://hooks.example/x","types":["key.expired","key.expired"]}`, 400, "types"},
		{"unknown field", "POST", "/v1/tenants/acme/webhooks", `{"url":"https://hooks.example/x","secret":"whsec_mine"}`, 400, "secret"},
		{"wrong type", "POST", "/v1/tenants/acme/webhooks", `{"url":["https://hooks.example/x"]}`, 400, "url"},
		{"patch nothing", "PATCH", one, `{}`, 400, "nothing"},
		{"patch bad url", "PATCH", one, `{"url":"gopher://x"}`, 400, "url"},
		{"overlap too long", "POST", one + "/rotate-secret", `{"overlap":"8d"}`, 400, "overlap"},
		{"overlap not a duration", "POST", one + "/rotate-secret", `{"overlap":"soon"}`, 400, "overlap"},
		{"replay nothing", "POST", one + "/replay", `{}`, 400, "msg_id"},
		{"replay both", "POST", one + "/replay", map[string]any{"msg_id": "msg_1", "since": time.Now().Add(-time.Hour)}, 400, "msg_id"},
		{"replay the future", "POST", one + "/replay", map[string]any{"since": time.Now().Add(time.Hour)}, 400, "since"},
		{"replay not a message", "POST", one + "/replay", `{"msg_id":"../../x"}`, 400, "msg_id"},
		{"replay an unknown message", "POST", one + "/replay", `{"msg_id":"msg_00000000000000000000000000000000"}`, 404, "msg_id"},
		{"attempts bad since", "GET", one + "/deliveries?since=yesterday", nil, 400, "since"},
		{"attempts unknown parameter", "GET", one + "/deliveries?status=500", nil, 400, "status"},
		{"no such webhook", "GET", "/v1/tenants/acme/webhooks/whk_01JDQ8Z6W4M2N9V3X5C7B1D2E3", nil, 404, "no webhook"},
		{"not a webhook id", "POST", "/v1/tenants/acme/webhooks/..%2Fkeys/disable", nil, 404, ""},
	} {
		r := e.call(c.method, c.path, e.root, c.body)
		if r.status != c.status || !strings.Contains(fmt.Sprint(field(r, "detail")), c.names) {
			t.Errorf("%s: %d %s, want %d naming %q", c.name, r.status, r.raw, c.status, c.names)
		}
	}
	if after := e.last(); after != before {
		t.Fatalf("bad requests appended %d events", after-before)
	}

	// Another tenant's admin sees none of it and changes nothing.
	e.must(e.call("POST", "/v1/tenants", e.root, map[string]any{"id": "beta", "name": "Beta"}), 201)
	e.must(e.call("POST", "/v1/tenants/beta/users", e.root, map[string]any{"id": "eve"}), 201)
	adm := e.must(e.call("POST", "/v1/tenants/beta/keys", e.root, map[string]any{"user": "eve", "scopes": []string{"keytrail:admin"}}), 201)
	eve, seq := field(adm, "secret").(string), adm.header.Get("Keytrail-Seq")
	before = e.last()
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/tenants/acme/webhooks"}, {"GET", one}, {"PATCH", one}, {"DELETE", one}, {"POST", one + "/disable"},
		{"POST", one + "/rotate-secret"}, {"GET", one + "/deliveries"}, {"POST", one + "/replay"},
		{"POST", "/v1/tenants/acme/webhooks"},
	} {
		r := e.call(c.method, c.path, eve, map[string]any{"url": "https://evil.example/x", "since": time.Now().Add(-time.Hour)}, "Keytrail-Min-Seq", seq)
		if r.status != 404 || strings.Contains(r.raw, "hooks.example") { // another tenant is not found, as for every object
			t.Errorf("beta's admin: %s %s → %d %s", c.method, c.path, r.status, r.raw)
		}
	}
	// Its own list is empty: the endpoint is acme's only.
	if r := e.must(e.call("GET", "/v1/tenants/beta/webhooks", eve, nil, "Keytrail-Min-Seq", seq), 200); strings.Contains(r.raw, id) {
		t.Fatalf("beta lists acme's endpoint: %s", r.raw)
	}
	if r := e.call("GET", "/v1/tenants/beta/webhooks/"+id, eve, nil); r.status != 404 {
		t.Fatalf("acme's endpoint under beta: %d %s", r.status, r.raw)
	}
	if after := e.last(); after != before {
		t.Fatalf("another tenant's admin appended %d events", after-before)
	}
	e.checkSecretsStayPut(sec, created.raw)

	// Refused creations and retries leave no secret behind (found in
	// review: each left a sealed secret in the bucket for ever).
	js, _ := jetstream.New(devConnect(t, e.dev.Addresses().NATS, e.dir, natsauth.Control))
	kv, err := js.KeyValue(testCtx(t, 10*time.Second), events.WebhookSecretBucket)
	if err != nil {
		t.Fatal(err)
	}
	secrets := func() int {
		keys, err := kv.ListKeys(testCtx(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range keys.Keys() {
			n++
		}
		return n
	}
	e.must(e.call("POST", "/v1/tenants/acme/webhooks", e.root, map[string]any{"url": "https://hooks.example/retry"}, "Idempotency-Key", "hook-1"), 201)
	for range 18 {
		e.must(e.call("POST", "/v1/tenants/acme/webhooks", e.root, map[string]any{"url": "https://hooks.example/k"}), 201)
	}
	have := secrets()
	if have != 20 {
		t.Fatalf("%d sealed secrets for 20 endpoints", have)
	}
	if r := e.call("POST", "/v1/tenants/acme/webhooks", e.root, map[string]any{"url": "https://hooks.example/one-too-many"}); r.status != 422 {
		t.Fatalf("the 21st endpoint: %d %s", r.status, r.raw)
	}
	if r := e.call("POST", "/v1/tenants/acme/webhooks", e.root, map[string]any{"url": "https://hooks.example/retry"}, "Idempotency-Key", "hook-1"); r.status != 409 || strings.Contains(r.raw, "whsec_") {
		t.Fatalf("a retried creation: %d %s", r.status, r.raw)
	}
	if n := secrets(); n != have {
		t.Fatalf("refused requests left %d sealed secrets", n-have)
	}
}

// TestWebhookDeliveryOutlivesSIGKILL: `keytrail dev` is killed with
// SIGKILL while a delivery is in flight (the endpoint holds the request);
// started again on the same data directory, it delivers the message — the
// same webhook-id, a valid signature — and the attempt log says so.
func TestWebhookDeliveryOutlivesSIGKILL(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	args := []string{"dev", "--data", dir, "--admin-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--webhook-timeout", "2s"}
	first, admin := startKeytrail(t, "  admin:    ", args...)
	root, err := os.ReadFile(filepath.Join(dir, app.RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	e := &adminEnv{t: t, base: admin, root: strings.TrimSpace(string(root)), dir: dir, doc: loadAPIDoc(t, admin)}
	e.waitReady()
	arrived, release := make(chan string, 8), make(chan struct{})
	rcv := newReceiver(t, func(n int, d delivery) int {
		arrived <- d.id
		if n == 1 {
			<-release // in flight when the node dies
		}
		return 200
	})
	t.Cleanup(func() { close(release) })
	e.must(e.call("POST", "/v1/tenants", e.root, map[string]any{"id": "acme", "name": "Acme"}), 201)
	hook, sec := e.addWebhook(rcv.srv.URL)

	// A notice, as a control node publishes it.
	var addrs app.Addresses
	b, _ := os.ReadFile(filepath.Join(dir, "addresses.json"))
	if err := json.Unmarshal(b, &addrs); err != nil {
		t.Fatal(err)
	}
	nc := devConnect(t, addrs.NATS, dir, natsauth.Control)
	seq := e.last2(nc)
	n := events.Notice{ID: "key.expired:test:1", Type: events.NoticeKeyExpired, Tenant: "acme", KeyID: "key_01JDQ8Z6W4M2N9V3X5C7B1A0ZY", At: time.Now().UTC(), Seq: seq, Text: "expired"}
	data, _ := json.Marshal(n)
	publishRaw(t, nc, events.NoticeSubject(&n), data)
	nc.Close()

	var id string
	select {
	case id = <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("nothing delivered")
	}
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.stop() // reaps it

	_, admin = startKeytrail(t, "  admin:    ", args...)
	e.base, e.doc = admin, loadAPIDoc(t, admin)
	e.waitReady()
	again := rcv.waitFor("the message again after the restart", func(d delivery) bool { return d.id == id && len(rcv.deliveries()) > 1 })
	if !verifyStandardWebhook(sec, again.header, again.body) || again.payload.Data["id"] != n.ID {
		t.Fatalf("after the restart: %v %s", again.header, again.body)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		as := e.attempts(hook)
		if len(as) == 0 || as[len(as)-1]["outcome"] != "delivered" || as[len(as)-1]["msg_id"] != id {
			return fmt.Errorf("attempts: %v", as)
		}
		return nil
	})
}

// last2 is the event log's last sequence, read on nc.
func (e *adminEnv) last2(nc *nats.Conn) uint64 {
	e.t.Helper()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(testCtx(e.t, 10*time.Second), events.StreamName)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

// TestWebhookCLI: the CLI adds, lists, rotates, disables and deletes an
// endpoint, shows the secret once, and reads the attempt log.
func TestWebhookCLI(t *testing.T) {
	e := startWebhooks(t)
	rcv := newReceiver(t, nil)
	out := mustKeytrail(t, e.dir, "webhook", "create", "--tenant", "acme", rcv.srv.URL, "--type", "key.expiring")
	id := between(out, "id:", "\n")
	if !strings.HasPrefix(id, "whk_") || !strings.Contains(out, "\nsecret: whsec_") || !strings.Contains(out, "shown once") {
		t.Fatalf("create:\n%s", out)
	}
	sec := between(out, "secret: ", "\n")
	testkit.Eventually(t, 10*time.Second, func() error { // the list is the read model's
		if out := mustKeytrail(t, e.dir, "webhook", "list", "--tenant", "acme"); !strings.Contains(out, id) || strings.Contains(out, "whsec_") {
			return fmt.Errorf("list:\n%s", out)
		}
		return nil
	})
	keyID := e.expiringKey()
	got := rcv.waitFor("key.expiring", func(d delivery) bool { return d.payload.Data["key_id"] == keyID })
	if !verifyStandardWebhook(sec, got.header, got.body) {
		t.Fatal("the CLI's secret does not verify the delivery")
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		out := mustKeytrail(t, e.dir, "webhook", "deliveries", "--tenant", "acme", id)
		if !strings.Contains(out, got.id) || !strings.Contains(out, "delivered") || !strings.Contains(out, "OUTCOME") {
			return fmt.Errorf("deliveries:\n%s", out)
		}
		return nil
	})
	if out := mustKeytrail(t, e.dir, "webhook", "replay", "--tenant", "acme", id, "--msg", got.id); !strings.Contains(out, "queued:  1") {
		t.Fatalf("replay:\n%s", out)
	}
	if out := mustKeytrail(t, e.dir, "webhook", "rotate-secret", "--tenant", "acme", id, "--overlap", "2h"); !strings.Contains(out, "previous_secret_until") ||
		strings.Contains(out, sec) || !strings.Contains(out, "secret: whsec_") {
		t.Fatalf("rotate-secret:\n%s", out)
	}
	if out := mustKeytrail(t, e.dir, "webhook", "disable", "--tenant", "acme", id, "--reason", "maintenance"); !strings.Contains(out, "status:                 disabled") {
		t.Fatalf("disable:\n%s", out)
	}
	if out := mustKeytrail(t, e.dir, "webhook", "delete", "--tenant", "acme", id); !strings.Contains(out, "deleted") {
		t.Fatalf("delete:\n%s", out)
	}
	if out, code := keytrail(t, e.dir, "webhook", "create", "--tenant", "acme", "ftp://x"); code == 0 || !strings.Contains(out, "url") {
		t.Fatalf("a bad URL: %d\n%s", code, out)
	}
}

// between is the text of s after start, up to end, trimmed.
func between(s, start, end string) string {
	_, after, _ := strings.Cut(s, start)
	v, _, _ := strings.Cut(after, end)
	return strings.TrimSpace(v)
}

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keytrail/keytrail/client"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/app"
)

// adminEnv is a running `keytrail dev` and a client of its admin API.
type adminEnv struct {
	t     *testing.T
	dev   *app.Dev
	dir   string
	root  string
	base  string
	logs  *testkit.Buffer
	seen  []string // every response body, to look for secrets
	store store.Store
	// doc validates every answer against /openapi.json.
	doc *apiDoc
}

func startAdmin(t *testing.T) *adminEnv {
	t.Helper()
	logs := &testkit.Buffer{}
	return startAdminWith(t, app.DevConfig{Logger: slog.New(slog.NewJSONHandler(logs, nil)), MinSeqWait: 2 * time.Second}, logs)
}

// startAdminWith starts `keytrail dev` with cfg on loopback ports and a data
// directory of the test's, and waits until its admin API is ready.
func startAdminWith(t *testing.T, cfg app.DevConfig, logs *testkit.Buffer) *adminEnv {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	cfg.DataDir, cfg.AdminListen, cfg.GatewayListen, cfg.NATSListen = dir, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	d, err := app.StartDev(testCtx(t, 30*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	root, err := os.ReadFile(filepath.Join(dir, app.RootKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, app.RootKeyFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("root.key mode %v", fi.Mode().Perm())
	}
	e := &adminEnv{t: t, dev: d, dir: dir, root: strings.TrimSpace(string(root)), base: d.Addresses().Admin, logs: logs, store: d.Store()}
	e.doc = loadAPIDoc(t, e.base)
	e.waitReady()
	return e
}

func (e *adminEnv) waitReady() {
	testkit.Eventually(e.t, 20*time.Second, func() error {
		resp, err := http.Get(e.base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// call sends a request with token (none when empty) and headers.
func (e *adminEnv) call(method, path, token string, body any, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	e.seen = append(e.seen, string(raw))
	if e.doc != nil {
		e.doc.check(e.t, req, resp.StatusCode, resp.Header, raw)
	}
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	json.Unmarshal(raw, &r.body)
	return r
}

func (e *adminEnv) must(r response, status int) response {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d: %s", r.status, status, r.raw)
	}
	return r
}

func (e *adminEnv) last() uint64 {
	seq, err := e.store.LastSeq(testCtx(e.t, 10*time.Second), "")
	if err != nil {
		e.t.Fatal(err)
	}
	return seq
}

// givenKey creates tenant acme and its user bob with the root key, issues
// bob a key with scopes, and returns the issuing answer.
func (e *adminEnv) givenKey(scopes ...string) response {
	e.t.Helper()
	e.must(e.call("POST", "/v1/tenants", e.root, map[string]any{"id": "acme", "name": "Acme"}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/users", e.root, map[string]any{"id": "bob"}), 201)
	return e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob", "scopes": scopes}), 201)
}

func field(r response, path ...string) any {
	var v any = r.body
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	return v
}

func TestAdminAPIEveryRoute(t *testing.T) {
	e := startAdmin(t)
	root := e.root
	r := e.must(e.call("POST", "/v1/tenants", root, map[string]any{"id": "acme", "name": "Acme"}), 201)
	if r.header.Get("Keytrail-Seq") == "" || field(r, "seq") == nil || field(r, "tenant", "status") != "active" {
		t.Fatalf("create tenant: %s", r.raw)
	}
	e.must(e.call("GET", "/v1/tenants/acme", root, nil), 200)
	e.must(e.call("POST", "/v1/tenants/acme/suspend", root, map[string]any{"reason": "billing"}), 200)
	e.must(e.call("POST", "/v1/tenants/acme/resume", root, nil), 200)
	e.must(e.call("POST", "/v1/tenants/acme/users", root, map[string]any{"id": "bob", "name": "Bob"}), 201)
	e.must(e.call("GET", "/v1/tenants/acme/users/bob", root, nil), 200)
	e.must(e.call("POST", "/v1/tenants/acme/users/bob/disable", root, map[string]any{"reason": "leave"}), 200)
	e.must(e.call("POST", "/v1/tenants/acme/users/bob/enable", root, nil), 200)
	e.must(e.call("POST", "/v1/tenants/acme/users/bob/revoke-keys", root, map[string]any{"reason": "rotation"}), 200)
	issued := e.must(e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{
		"user": "bob", "name": "ci", "scopes": []string{"orders:read"}, "ttl": "24h",
		"rate_limit": map[string]any{"per_second": 5, "burst": 10}, "metadata": map[string]string{"team": "a"}}), 201)
	keyID, _ := field(issued, "key", "id").(string)
	sec, _ := field(issued, "secret").(string)
	if !strings.HasPrefix(sec, "kt_") || keyID == "" || strings.Contains(issued.raw, "secret_sha256") {
		t.Fatalf("issue: %s", issued.raw)
	}
	seq := issued.header.Get("Keytrail-Seq")
	list := e.must(e.call("GET", "/v1/tenants/acme/keys?user=bob&status=active&expiring_within=48h", root, nil, "Keytrail-Min-Seq", seq), 200)
	if keys, _ := field(list, "keys").([]any); len(keys) != 1 {
		t.Fatalf("list: %s", list.raw)
	}
	k := e.must(e.call("GET", "/v1/tenants/acme/keys/"+keyID, root, nil), 200)
	version := fmt.Sprint(field(k, "key", "version"))
	e.must(e.call("PATCH", "/v1/tenants/acme/keys/"+keyID, root, map[string]any{"name": "renamed"}, "If-Match", version), 200)
	e.must(e.call("POST", "/v1/tenants/acme/keys/"+keyID+"/suspend", root, map[string]any{"reason": "check"}), 200)
	e.must(e.call("POST", "/v1/tenants/acme/keys/"+keyID+"/resume", root, nil), 200)
	rot := e.must(e.call("POST", "/v1/tenants/acme/keys/"+keyID+"/rotate", root, map[string]any{"grace": "1h"}), 201)
	newID, _ := field(rot, "key", "id").(string)
	if field(rot, "previous", "rotated_to") != newID || !strings.HasPrefix(fmt.Sprint(field(rot, "secret")), "kt_") {
		t.Fatalf("rotate: %s", rot.raw)
	}
	e.must(e.call("POST", "/v1/tenants/acme/keys/"+newID+"/revoke", root, map[string]any{"reason": "leaked"}), 200)
	e.must(e.call("POST", "/v1/tenants/acme/apis", root, map[string]any{"id": "orders", "path_prefix": "/orders",
		"upstreams": []string{"http://127.0.0.1:9001"}, "scopes": []string{"orders:read"}}), 201)
	e.must(e.call("GET", "/v1/tenants/acme/apis/orders", root, nil), 200)
	e.must(e.call("PATCH", "/v1/tenants/acme/apis/orders", root, map[string]any{"upstreams": []string{"http://127.0.0.1:9002"}}), 200)
	e.must(e.call("POST", "/v1/tenants/acme/apis/orders/deprecate", root, map[string]any{"sunset": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}), 200)
	e.must(e.call("POST", "/v1/tenants/acme/apis/orders/retire", root, nil), 200)
	e.must(e.call("DELETE", "/v1/tenants/acme/users/bob", root, nil), 200)
	e.must(e.call("GET", "/healthz", "", nil), 200)
	e.must(e.call("GET", "/readyz", "", nil), 200)
	if doc := e.must(e.call("GET", "/openapi.json", "", nil), 200); field(doc, "openapi") != "3.1.0" {
		t.Fatalf("openapi: %.200s", doc.raw)
	}
	m := e.must(e.call("GET", "/metrics", "", nil), 200)
	for _, want := range []string{`keytrail_admin_requests_total{route="POST /v1/tenants/{tenant}/keys",status="201"} 1`, "keytrail_readmodel_applied_sequence", "keytrail_readmodel_ready 1"} {
		if !strings.Contains(m.raw, want) {
			t.Fatalf("metrics lack %q", want)
		}
	}
	e.checkSecretsStayPut(sec, issued.raw)
}

// checkSecretsStayPut: a secret appears in the response that issued it and
// nowhere else: no event, log line, file under the data directory, or other
// response.
func (e *adminEnv) checkSecretsStayPut(sec, issuing string) {
	e.t.Helper()
	needles := []string{sec, sec[3:20]}
	for _, r := range readAll(e.t, e.store) {
		b, _ := json.Marshal(r.Event)
		for _, n := range needles {
			if strings.Contains(string(b), n) {
				e.t.Fatalf("event %d holds the secret", r.Seq)
			}
		}
	}
	for _, n := range needles {
		if strings.Contains(e.logs.String(), n) {
			e.t.Fatal("a log line holds the secret")
		}
	}
	filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := os.ReadFile(path)
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				e.t.Fatalf("%s holds the secret", path)
			}
		}
		return nil
	})
	for _, body := range e.seen {
		if body != issuing && strings.Contains(body, sec[3:20]) {
			e.t.Fatalf("a response other than the issuing one holds the secret: %s", body)
		}
	}
}

// TestVerifyHistoryAndExplain: a key verifies VALID, then is suspended;
// verify says SUSPENDED with the event as evidence (time, actor, reason);
// history lists its events without the secret's hash; explain as of the
// issue's sequence re-derives VALID.
func TestVerifyHistoryAndExplain(t *testing.T) {
	e := startAdmin(t)
	root := e.root
	issued := e.givenKey("orders:read")
	sec, keyID := fmt.Sprint(field(issued, "secret")), fmt.Sprint(field(issued, "key", "id"))
	issueSeq := issued.header.Get("Keytrail-Seq")
	v := e.must(e.call("POST", "/v1/verify", root, map[string]any{"key": sec, "scopes": []string{"orders:read"}}, "Keytrail-Min-Seq", issueSeq), 200)
	if field(v, "code") != "VALID" || field(v, "key_id") != keyID {
		t.Fatalf("verify: %s", v.raw)
	}
	s := e.must(e.call("POST", "/v1/tenants/acme/keys/"+keyID+"/suspend", root, map[string]any{"reason": "investigating"}), 200)
	v = e.must(e.call("POST", "/v1/verify", root, map[string]any{"key": sec, "scopes": []string{"billing"}}, "Keytrail-Min-Seq", s.header.Get("Keytrail-Seq")), 200)
	ev, _ := field(v, "evidence").([]any)
	if field(v, "code") != "SUSPENDED" || len(ev) != 1 || fmt.Sprint(field(v, "also")) != "[INSUFFICIENT_SCOPE]" {
		t.Fatalf("verify after suspend: %s", v.raw)
	}
	first, _ := ev[0].(map[string]any)
	if first["type"] != "key.suspended" || first["actor"] != "root" || first["reason"] != "investigating" || fmt.Sprint(first["seq"]) != s.header.Get("Keytrail-Seq") {
		t.Fatalf("evidence: %v", first)
	}
	h := e.must(e.call("GET", "/v1/tenants/acme/keys/"+keyID+"/history", root, nil), 200)
	events, _ := field(h, "events").([]any)
	if len(events) != 4 || strings.Contains(h.raw, "secret_sha256") || strings.Contains(h.raw, sec[3:20]) {
		t.Fatalf("history: %s", h.raw)
	}
	x := e.must(e.call("GET", "/v1/tenants/acme/keys/"+keyID+"/explain?seq="+issueSeq+"&scope=orders:read", root, nil), 200)
	if field(x, "code") != "VALID" || fmt.Sprint(field(x, "seq")) != issueSeq {
		t.Fatalf("explain: %s", x.raw)
	}
	x = e.must(e.call("GET", "/v1/tenants/acme/keys/"+keyID+"/explain?at="+time.Now().UTC().Format(time.RFC3339Nano), root, nil), 200)
	if field(x, "code") != "SUSPENDED" {
		t.Fatalf("explain now: %s", x.raw)
	}
	e.problem(e.call("GET", "/v1/tenants/acme/keys/"+keyID+"/explain", root, nil), 400, "invalid_argument")
	// A verify-only key of another tenant learns nothing about acme's key.
	e.must(e.call("POST", "/v1/tenants", root, map[string]any{"id": "globex", "name": "G"}), 201)
	e.must(e.call("POST", "/v1/tenants/globex/users", root, map[string]any{"id": "svc"}), 201)
	g := e.must(e.call("POST", "/v1/tenants/globex/keys", root, map[string]any{"user": "svc", "scopes": []string{"keytrail:verify"}}), 201)
	gv := e.must(e.call("POST", "/v1/verify", fmt.Sprint(field(g, "secret")), map[string]any{"key": sec}, "Keytrail-Min-Seq", g.header.Get("Keytrail-Seq")), 200)
	if field(gv, "code") != "NOT_FOUND" || field(gv, "key_id") != nil {
		t.Fatalf("cross-tenant verify: %s", gv.raw)
	}
	// ...and may not administer anything.
	e.problem(e.call("GET", "/v1/tenants/globex/keys", fmt.Sprint(field(g, "secret")), nil), 403, "permission_denied")
	e.checkSecretsStayPut(sec, issued.raw)
}

// TestRotationKeepsEveryAttribute: the successor of a rotated key has
// every attribute of its predecessor but those a rotation is meant to
// change, field by field over client.Key — so a field added to keys that
// rotation forgets fails here rather than being lost silently.
func TestRotationKeepsEveryAttribute(t *testing.T) {
	e := startAdmin(t)
	c := client.New(e.base, e.root, nil)
	ctx := testCtx(t, 30*time.Second)
	if _, _, err := c.CreateTenant(ctx, "acme", "Acme", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.CreateUser(ctx, "acme", "bob", "", nil); err != nil {
		t.Fatal(err)
	}
	expires := time.Now().Add(72 * time.Hour).UTC().Truncate(time.Second)
	notBefore := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	old, err := c.IssueKey(ctx, "acme", client.KeySpec{User: "bob", Name: "billing", Scopes: []string{"orders:read", "orders:write"},
		ExpiresAt: &expires, NotBefore: &notBefore, RateLimit: &client.RateLimit{PerSecond: 5, Burst: 10},
		Metadata: map[string]string{"team": "payments"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rotated struct {
		Key      client.Key `json:"key"`
		Previous client.Key `json:"previous"`
		Seq      uint64     `json:"seq"`
	}
	if _, err := c.Do(ctx, "POST", "/v1/tenants/acme/keys/"+old.Key.ID+"/rotate", map[string]string{"grace": "1h"}, nil, &rotated); err != nil {
		t.Fatal(err)
	}
	next, err := c.Key(ctx, "acme", rotated.Key.ID, &client.Call{MinSeq: rotated.Seq})
	if err != nil {
		t.Fatal(err)
	}
	// What a rotation changes, on purpose.
	differ := map[string]bool{"ID": true, "Hint": true, "CreatedAt": true, "Version": true, "RotatedFrom": true, "RotatedTo": true,
		"GraceUntil": true, "Status": true}
	a, b := reflect.ValueOf(old.Key), reflect.ValueOf(next)
	for i := range a.NumField() {
		name := a.Type().Field(i).Name
		if differ[name] {
			continue
		}
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			t.Errorf("rotation lost %s: %v, then %v", name, a.Field(i).Interface(), b.Field(i).Interface())
		}
	}
	if next.RotatedFrom != old.Key.ID || next.Status != "active" {
		t.Fatalf("the successor: %+v", next)
	}
}

package integration

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keytrail/keytrail/client"
	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/app"
	"github.com/keytrail/keytrail/services/usage"
)

// usageEnv is `keytrail dev` with one-second usage windows, an API on an
// upstream that answers 200, and bob's key.
type usageEnv struct {
	*adminEnv
	secret, keyID string
}

func startUsage(t *testing.T) *usageEnv {
	e := startAdminWith(t, app.DevConfig{Logger: slog.New(slog.DiscardHandler), MinSeqWait: 2 * time.Second,
		Gateway: app.GatewayConfig{UsageWindow: time.Second}}, nil)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	t.Cleanup(up.Close)
	issued := e.givenKey()
	e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "orders", "path_prefix": "/orders", "upstreams": []string{up.URL}}), 201)
	return &usageEnv{adminEnv: e, secret: field(issued, "secret").(string), keyID: field(issued, "key", "id").(string)}
}

// load sends n requests to a gateway, with the key or without, and counts
// the answers it got by status.
func load(t *testing.T, gateway, secret string, n int, answers map[int]int, mu *sync.Mutex) {
	t.Helper()
	for range n {
		req, _ := http.NewRequest("GET", gateway+"/orders/1", nil)
		if secret != "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mu.Lock()
		answers[resp.StatusCode]++
		mu.Unlock()
	}
}

// usageByCode reads the tenant's usage grouped by code over the last hour.
func (e *usageEnv) usageByCode(query string) (map[string]uint64, response) {
	r := e.must(e.call("GET", "/v1/tenants/acme/usage?group_by=code&bucket=minute&since=1h"+query, e.root, nil), 200)
	got := map[string]uint64{}
	series, _ := r.body["series"].([]any)
	for _, s := range series {
		m := s.(map[string]any)
		got[m["group"].(string)] = uint64(m["total"].(float64))
	}
	return got, r
}

// TestUsageCountsEqualTheLoad: three gateways (the dev's, and two
// processes of their own) serve a load generator; the counts the API
// reports equal the generator's own count exactly. One gateway process is
// killed with SIGKILL with requests in its current window: those are not
// counted, the gap is reported, and nothing is counted twice; the other
// stops cleanly and leaves no gap.
func TestUsageCountsEqualTheLoad(t *testing.T) {
	e := startUsage(t)
	killed, killedURL := startKeytrail(t, "gateway ", "gateway", "--allow-upstream", "127.0.0.0/8", "--data", e.dir,
		"--gateway-listen", "127.0.0.1:0", "--usage-window", "1s")
	clean, cleanURL := startKeytrail(t, "gateway ", "gateway", "--allow-upstream", "127.0.0.0/8", "--data", e.dir,
		"--gateway-listen", "127.0.0.1:0", "--usage-window", "1s")
	gateways := []string{e.dev.Addresses().Gateway, killedURL, cleanURL}
	for _, gw := range gateways {
		requestAnswered(t, gw+"/orders/1", e.secret, http.StatusOK) // each has caught up
	}
	var mu sync.Mutex
	answers := map[int]int{}
	var wg sync.WaitGroup
	for _, gw := range gateways {
		wg.Add(2)
		go func() { defer wg.Done(); load(t, gw, e.secret, 300, answers, &mu) }()
		go func() { defer wg.Done(); load(t, gw, "", 50, answers, &mu) }()
	}
	wg.Wait()
	answers[200] += len(gateways) // the requests that saw each gateway ready
	want := map[string]uint64{"VALID": uint64(answers[200]), "MISSING": uint64(answers[401])}
	testkit.Eventually(t, 20*time.Second, func() error {
		if got, _ := e.usageByCode(""); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("counted %v, the load generator %v", got, want)
		}
		return nil
	})

	// Requests the killed gateway counts in a window it never reports.
	var lost sync.Mutex
	lostAnswers := map[int]int{}
	load(t, killedURL, e.secret, 20, lostAnswers, &lost)
	if err := killed.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := clean.stop(); err != nil {
		t.Fatal(err)
	}
	// The dev's gateway goes on reporting (empty windows): the killed
	// one's silence becomes a gap.
	var r response
	testkit.Eventually(t, 20*time.Second, func() error {
		_, r = e.usageByCode("")
		if !strings.Contains(r.raw, "stopped reporting without a final window") {
			return fmt.Errorf("no gap reported: %s", r.raw)
		}
		return nil
	})
	gaps, _ := r.body["gaps"].([]any)
	if len(gaps) != 1 {
		t.Fatalf("gaps: %s", r.raw)
	}
	// The killed window's requests are lost (those before a window boundary
	// the kill came after were reported); nothing is counted twice.
	got, _ := e.usageByCode("")
	if got["MISSING"] != want["MISSING"] || got["VALID"] < want["VALID"] || got["VALID"] > want["VALID"]+uint64(lostAnswers[200]) {
		t.Fatalf("after the kill: counted %v, want %v plus at most the %d requests of the killed window", got, want, lostAnswers[200])
	}
	// The key's last use and its counts.
	k := e.must(e.call("GET", "/v1/tenants/acme/keys?with=usage", e.root, nil), 200)
	keys := k.body["keys"].([]any)
	kv := keys[0].(map[string]any)
	if kv["last_used_at"] == nil || kv["usage"].(map[string]any)["requests_24h"].(float64) < float64(want["VALID"]) {
		t.Fatalf("the key's use: %s", k.raw)
	}
	if un := e.must(e.call("GET", "/v1/tenants/acme/keys?unused_for=1h", e.root, nil), 200); len(un.body["keys"].([]any)) != 0 {
		t.Fatalf("a key used a moment ago is listed as unused for an hour: %s", un.raw)
	}
	// The same through the CLI (it showed none of it).
	out := mustKeytrail(t, e.dir, "key", "list", "--tenant", "acme", "--with-usage")
	if !strings.Contains(out, "LAST_USED_AT") || !strings.Contains(out, "REQUESTS_24H") || strings.Contains(out, e.keyID+"  bob  -") {
		t.Fatalf("key list --with-usage:\n%s", out)
	}
	if out := mustKeytrail(t, e.dir, "key", "get", "--tenant", "acme", e.keyID); !strings.Contains(out, "last_used:") || !strings.Contains(out, "VALID via") {
		t.Fatalf("key get:\n%s", out)
	}
	if out := mustKeytrail(t, e.dir, "key", "list", "--tenant", "acme", "--unused-for", "1h"); strings.Contains(out, e.keyID) {
		t.Fatalf("key list --unused-for 1h lists a key used a moment ago:\n%s", out)
	}
}

// TestUsageIsTheTenantsOwn: a tenant admin sees its tenant's usage and no
// other's, and bad parameters are 400 problems naming the parameter.
func TestUsageIsTheTenantsOwn(t *testing.T) {
	e := startUsage(t)
	requestAnswered(t, e.dev.Addresses().Gateway+"/orders/1", e.secret, http.StatusOK)
	testkit.Eventually(t, 20*time.Second, func() error {
		if got, _ := e.usageByCode(""); got["VALID"] != 1 {
			return fmt.Errorf("counted %v", got)
		}
		return nil
	})
	e.must(e.call("POST", "/v1/tenants", e.root, map[string]any{"id": "beta", "name": "Beta"}), 201)
	e.must(e.call("POST", "/v1/tenants/beta/users", e.root, map[string]any{"id": "eve"}), 201)
	beta := e.must(e.call("POST", "/v1/tenants/beta/keys", e.root, map[string]any{"user": "eve", "scopes": []string{"keytrail:admin"}}), 201)
	betaAdmin, seen := field(beta, "secret").(string), beta.header.Get("Keytrail-Seq")
	e.must(e.call("GET", "/v1/tenants/beta", e.root, nil, "Keytrail-Min-Seq", seen), 200) // the model knows beta's key
	e.problem(e.call("GET", "/v1/tenants/acme/usage", betaAdmin, nil), 404, "not_found")  // as every other tenant's object
	if r := e.must(e.call("GET", "/v1/tenants/beta/usage?since=1h", betaAdmin, nil), 200); r.body["total"].(float64) != 0 {
		t.Fatalf("beta sees acme's requests: %s", r.raw)
	}
	for q, name := range map[string]string{"bucket=week": "bucket", "group_by=color": "group_by", "since=yesterday": "since",
		"code=NOPE": "code", "key=a.b": "key", "since=30d&bucket=minute": "since", "until=2h&since=1h": "since", "colour=red": "colour",
		"user=a%20b": "user", "key=a&key=b": "given 2 times", "since=1h&until=2030-01-01T00:00:00Z&bucket=minute": "until"} {
		r := e.call("GET", "/v1/tenants/acme/usage?"+q, e.root, nil)
		e.problem(r, 400, "invalid_argument")
		if !strings.Contains(r.raw, name) {
			t.Errorf("%s: the problem does not name %s: %s", q, name, r.raw)
		}
	}
	// The CLI: a table with a sparkline, and the same numbers in JSON.
	out := mustKeytrail(t, e.dir, "usage", "--tenant", "acme", "--bucket", "minute", "--since", "1h")
	if !strings.Contains(out, "VALID") || !strings.Contains(out, "BY MINUTE") || !strings.ContainsAny(out, "▁▂▃▄▅▆▇█") {
		t.Fatalf("keytrail usage:\n%s", out)
	}
	out = mustKeytrail(t, e.dir, "usage", "--tenant", "acme", "--group-by", "key", "-o", "json")
	if !strings.Contains(out, `"group": "`+e.keyID+`"`) || !strings.Contains(out, `"total": 1`) {
		t.Fatalf("keytrail usage -o json:\n%s", out)
	}
	if out, code := keytrail(t, e.dir, "usage", "--tenant", "acme", "--bucket", "week"); code != 1 || !strings.Contains(out, "bucket") {
		t.Fatalf("keytrail usage --bucket week: exit %d\n%s", code, out)
	}
	// Decisions: the same rules, and a range that ends before it starts.
	for q, name := range map[string]string{"since=1h&until=2h": "since", "cursor=18446744073709551615": "cursor", "code=a&code=b": "given 2 times"} {
		r := e.call("GET", "/v1/tenants/acme/decisions?"+q, e.root, nil)
		e.problem(r, 400, "invalid_argument")
		if !strings.Contains(r.raw, name) {
			t.Errorf("decisions?%s: the problem does not name %s: %s", q, name, r.raw)
		}
	}
	// A hostile value is not echoed whole.
	if r := e.call("GET", "/v1/tenants/acme/usage?bucket="+strings.Repeat("x", 5000), e.root, nil); r.status != 400 || len(r.raw) > 1000 {
		t.Errorf("a 5000-byte bucket: %d, %d bytes back", r.status, len(r.raw))
	}
	// A tenant that does not exist, or cannot: 404, as its keys (root got
	// 500 for "*").
	for _, tenant := range []string{"nosuch", "*", "a.b"} {
		for _, route := range []string{"usage", "decisions"} {
			e.problem(e.call("GET", "/v1/tenants/"+tenant+"/"+route, e.root, nil), 404, "not_found")
		}
	}
	for _, q := range []string{"with=everything", "unused_for=soon"} {
		e.problem(e.call("GET", "/v1/tenants/acme/keys?"+q, e.root, nil), 400, "invalid_argument")
	}
}

// TestUsageSurvivesARestart: a control node restarted on its data folds
// only the reports after its saved rollups — the counts are the same after
// the restart, not doubled, and go on from there.
func TestUsageSurvivesARestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := app.DevConfig{Logger: slog.New(slog.DiscardHandler), MinSeqWait: 2 * time.Second, DataDir: dir,
		AdminListen: "127.0.0.1:0", GatewayListen: "127.0.0.1:0", NATSListen: "127.0.0.1:0",
		Gateway: app.GatewayConfig{UsageWindow: time.Second}}
	d, err := app.StartDev(testCtx(t, 30*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := os.ReadFile(filepath.Join(dir, app.RootKeyFile))
	admin := client.New(d.Addresses().Admin, strings.TrimSpace(string(root)), nil)
	ctx := testCtx(t, time.Minute)
	if _, _, err := admin.CreateTenant(ctx, "acme", "Acme", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := admin.CreateUser(ctx, "acme", "bob", "", nil); err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	if _, _, err := admin.CreateAPI(ctx, "acme", client.APISpec{ID: "orders", PathPrefix: "/orders", Upstreams: []string{up.URL}}, nil); err != nil {
		t.Fatal(err)
	}
	k, err := admin.IssueKey(ctx, "acme", client.KeySpec{User: "bob"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	valid := func(admin *client.Client) uint64 {
		last, err := d.Store().LastSeq(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		// After the log's last event: a node just started knows acme.
		u, err := admin.Usage(ctx, "acme", client.UsageQuery{Code: "VALID", Bucket: "minute", Since: "1h"}, &client.Call{MinSeq: last})
		if err != nil {
			t.Fatal(err)
		}
		return u.Total
	}
	send := func(gw string, n int) {
		requestAnswered(t, gw+"/orders/1", k.Secret, http.StatusOK)
		var mu sync.Mutex
		load(t, gw, k.Secret, n-1, map[int]int{}, &mu)
	}
	send(d.Addresses().Gateway, 25)
	testkit.Eventually(t, 20*time.Second, func() error {
		if n := valid(admin); n != 25 {
			return fmt.Errorf("counted %d", n)
		}
		return nil
	})
	d.Close()

	d, err = app.StartDev(testCtx(t, 30*time.Second), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	admin = client.New(d.Addresses().Admin, strings.TrimSpace(string(root)), nil)
	// The first node saved its rollups when it stopped: the second starts
	// from them.
	obj, err := d.Store().JetStream().ObjectStore(ctx, events.SnapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := obj.GetBytes(ctx, usage.SnapshotObject)
	if err != nil || !strings.Contains(string(saved), `"seq":`) || strings.Contains(string(saved), `"seq":0,`) {
		t.Fatalf("the saved rollups: %v %.200s", err, saved)
	}
	last, err := d.Store().JetStream().Stream(ctx, events.UsageStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Usage().WaitFor(ctx, last.CachedInfo().State.LastSeq); err != nil {
		t.Fatal(err)
	}
	if n := valid(admin); n != 25 {
		t.Fatalf("after the restart: counted %d, want 25", n)
	}
	send(d.Addresses().Gateway, 5)
	testkit.Eventually(t, 20*time.Second, func() error {
		if n := valid(admin); n != 30 {
			return fmt.Errorf("counted %d", n)
		}
		return nil
	})
}

// TestGatewaysReportTheirReadModel: each gateway's usage reports carry its
// read model's applied sequence, lag and last confirmation, which
// GET /v1/gateways (and the console's overview) shows.
func TestGatewaysReportTheirReadModel(t *testing.T) {
	e := startUsage(t)
	last := e.last()
	testkit.Eventually(t, 20*time.Second, func() error {
		r := e.must(e.call("GET", "/v1/gateways", e.root, nil), 200)
		gws, _ := r.body["gateways"].([]any)
		if len(gws) != 1 {
			return fmt.Errorf("gateways: %s", r.raw)
		}
		g := gws[0].(map[string]any)
		if g["applied"].(float64) < float64(last) || g["staleness_ms"].(float64) < 0 || g["silent"] != false || g["node"] == "" {
			return fmt.Errorf("the gateway: %s", r.raw)
		}
		return nil
	})
}

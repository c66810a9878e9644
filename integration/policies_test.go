package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keytrail/keytrail/internal/testkit"
)

// minSeq is the Keytrail-Min-Seq of a write's answer: a read after it sees it.
func minSeq(r response) []string { return []string{"Keytrail-Min-Seq", r.header.Get("Keytrail-Seq")} }

// TestPoliciesOverHTTP: a policy's scopes reach the keys that reference it
// at verification; a change to it reaches every such key at once, already
// used or not; explain names the change, history shows it; what a key may
// reference is checked.
func TestPoliciesOverHTTP(t *testing.T) {
	e := startAdmin(t)
	root := e.root
	e.givenKey()
	pol := e.must(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": "billing-ro", "name": "Billing, read-only",
		"scopes": []string{"orders:read", "orders:write"}, "max_ttl": "90d"}), 201)
	if field(pol, "policy", "revision") != 1.0 || field(pol, "policy", "max_ttl") != "90d" {
		t.Fatalf("created: %s", pol.raw)
	}
	k := e.must(e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{"user": "bob", "policies": []string{"billing-ro"}}), 201)
	sec, keyID := fmt.Sprint(field(k, "secret")), fmt.Sprint(field(k, "key", "id"))
	if fmt.Sprint(field(k, "key", "policies")) != "[billing-ro]" || fmt.Sprint(field(k, "key", "scopes")) != "[]" {
		t.Fatalf("a key's policies are referenced, never copied into it: %s", k.raw)
	}
	verify := func(after response, scopes ...string) response {
		t.Helper()
		return e.must(e.call("POST", "/v1/verify", root, map[string]any{"key": sec, "scopes": scopes}, minSeq(after)...), 200)
	}
	if v := verify(k, "orders:write"); field(v, "code") != "VALID" || fmt.Sprint(field(v, "policies")) != "[billing-ro]" {
		t.Fatalf("a scope of the key's policy: %s", v.raw)
	}
	// The policy loses orders:write: the key, used already, is denied.
	u := e.must(e.call("PATCH", "/v1/tenants/acme/policies/billing-ro", root, map[string]any{"scopes": []string{"orders:read"}, "reason": "least privilege"}), 200)
	if v := verify(u, "orders:write"); field(v, "code") != "INSUFFICIENT_SCOPE" {
		t.Fatalf("after the policy lost the scope: %s", v.raw)
	}
	seq := u.header.Get("Keytrail-Seq")
	x := e.must(e.call("GET", "/v1/tenants/acme/keys/"+keyID+"/explain?seq="+seq+"&scope=orders:write", root, nil), 200)
	want := "INSUFFICIENT_SCOPE: orders:write removed from policy billing-ro v2 at seq " + seq + " by root"
	if because, _ := field(x, "because").([]any); len(because) != 1 || because[0] != want {
		t.Fatalf("explain does not name the policy change (want %q): %s", want, x.raw)
	}
	if !strings.Contains(x.raw, `"type":"policy.updated"`) || !strings.Contains(x.raw, `"reason":"least privilege"`) {
		t.Fatalf("explain's evidence lacks the policy's update: %s", x.raw)
	}
	// Another policy, which the key never referenced, is not in its history.
	e.must(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": "other", "scopes": []string{"x"}}), 201)
	e.must(e.call("PATCH", "/v1/tenants/acme/policies/other", root, map[string]any{"scopes": []string{"y"}}), 200)
	h := e.must(e.call("GET", "/v1/tenants/acme/keys/"+keyID+"/history", root, nil), 200)
	var types []string
	for _, ev := range field(h, "events").([]any) {
		types = append(types, fmt.Sprint(ev.(map[string]any)["type"]))
	}
	if !slices.Equal(types, []string{"tenant.created", "user.created", "policy.created", "key.issued", "policy.updated"}) {
		t.Fatalf("history: %v", types)
	}
	// Retired, the policy grants nothing; the denial names the retirement.
	ret := e.must(e.call("POST", "/v1/tenants/acme/policies/billing-ro/retire", root, map[string]any{"reason": "replaced"}), 200)
	if v := verify(ret, "orders:read"); field(v, "code") != "INSUFFICIENT_SCOPE" {
		t.Fatalf("after the policy retired: %s", v.raw)
	}
	x = e.must(e.call("GET", "/v1/tenants/acme/keys/"+keyID+"/explain?seq="+ret.header.Get("Keytrail-Seq")+"&scope=orders:read", root, nil), 200)
	if !strings.Contains(x.raw, "orders:read was granted by policy billing-ro, retired (v3) at seq "+ret.header.Get("Keytrail-Seq")) {
		t.Fatalf("explain after the retirement: %s", x.raw)
	}
	r := e.must(e.call("GET", "/v1/tenants/acme/reports/retired-policy-keys", root, nil, minSeq(ret)...), 200)
	if rows, _ := field(r, "keys").([]any); len(rows) != 1 || rows[0].(map[string]any)["key"] != keyID || rows[0].(map[string]any)["policy"] != "billing-ro" {
		t.Fatalf("report: %s", r.raw)
	}

	// The audit, reading the log itself, names the policy and its
	// retirement too.
	out, code := runCLI("audit", "explain", keyID, "--seq", ret.header.Get("Keytrail-Seq"), "--nats", e.dev.Addresses().NATS, "--data", e.dir)
	if code != 0 || !strings.Contains(out, "policies: billing-ro") || !strings.Contains(out, "policy.retired at seq "+ret.header.Get("Keytrail-Seq")) {
		t.Fatalf("audit explain (exit %d): %s", code, out)
	}
	out, code = runCLI("audit", "history", keyID, "--nats", e.dev.Addresses().NATS, "--data", e.dir)
	if code != 0 || !strings.Contains(out, "policy.updated") || !strings.Contains(out, "least privilege") || strings.Contains(out, "policy other") {
		t.Fatalf("audit history (exit %d): %s", code, out)
	}

	// What a key may reference, each refused with nothing appended.
	before := e.last()
	e.problem(e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{"user": "bob", "policies": []string{"ghost"}}), 400, "invalid_argument")
	e.problem(e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{"user": "bob", "policies": []string{"billing-ro"}}), 422, "failed_precondition")
	e.problem(e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{"user": "bob", "policies": []string{"Bad.Id"}}), 400, "invalid_argument")
	e.problem(e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{"user": "bob", "policies": []string{"other", "other"}}), 400, "invalid_argument")
	e.must(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": "short", "max_ttl": "1d"}), 201)
	before = e.last()
	far := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	p := e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{"user": "bob", "policies": []string{"short"}, "expires_at": far})
	e.problem(p, 400, "invalid_argument")
	if !strings.Contains(p.raw, "expires_at") || !strings.Contains(p.raw, "short") {
		t.Fatalf("the problem names neither the field nor the policy: %s", p.raw)
	}
	e.problem(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": "bad", "max_ttl": "forever"}), 400, "invalid_argument")
	e.problem(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": "short"}), 409, "conflict")
	e.problem(e.call("PATCH", "/v1/tenants/acme/policies/billing-ro", root, map[string]any{"scopes": []string{}}), 422, "failed_precondition")
	if after := e.last(); after != before {
		t.Fatalf("refused requests appended: %d → %d", before, after)
	}
	// A retired policy a key references already does not stop its other
	// changes.
	e.must(e.call("PATCH", "/v1/tenants/acme/keys/"+keyID, root, map[string]any{"name": "renamed"}), 200)

	// Explain for a request to an API: the policy confines the key to
	// another one, and says so.
	for _, api := range []string{"orders", "billing"} {
		e.must(e.call("POST", "/v1/tenants/acme/apis", root, map[string]any{"id": api, "path_prefix": "/" + api, "upstreams": []string{"http://127.0.0.1:9"}}), 201)
	}
	e.must(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": "orders-only", "scopes": []string{"orders:read"}, "apis": []string{"orders"}}), 201)
	ko := e.must(e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{"user": "bob", "policies": []string{"orders-only"}}), 201)
	if ends := field(ko, "key", "ends_at"); ends != nil {
		t.Fatalf("a key nothing bounds ends at %v", ends)
	}
	x = e.must(e.call("GET", "/v1/tenants/acme/keys/"+fmt.Sprint(field(ko, "key", "id"))+"/explain?seq="+ko.header.Get("Keytrail-Seq")+"&api=billing", root, nil), 200)
	if field(x, "code") != "INSUFFICIENT_SCOPE" || !strings.Contains(x.raw, "API billing is not among those the key's policies allow: orders-only v1 (orders)") {
		t.Fatalf("explain on another API: %s", x.raw)
	}
	x = e.must(e.call("GET", "/v1/tenants/acme/keys/"+fmt.Sprint(field(ko, "key", "id"))+"/explain?seq="+ko.header.Get("Keytrail-Seq")+"&api=orders", root, nil), 200)
	if field(x, "code") != "VALID" {
		t.Fatalf("explain on its API: %s", x.raw)
	}
	// A key bounded by a policy says when it ends, in the write's answer.
	e.must(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": "day", "max_ttl": "1d"}), 201)
	kd := e.must(e.call("PATCH", "/v1/tenants/acme/keys/"+fmt.Sprint(field(ko, "key", "id")), root, map[string]any{"policies": []string{"orders-only", "day"}}), 200)
	ends, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(field(kd, "key", "ends_at")))
	created, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(field(kd, "key", "created_at")))
	if !ends.Equal(created.Add(24 * time.Hour)) {
		t.Fatalf("ends_at %v, created %v: %s", ends, created, kd.raw)
	}
}

// TestATenantAdminGrantsOnlyWhatItHolds: policies grant scopes, so a tenant
// admin's key may define, and reference, only policies within its own
// scopes (as it may only issue such keys).
func TestATenantAdminGrantsOnlyWhatItHolds(t *testing.T) {
	e := startAdmin(t)
	root := e.root
	e.givenKey()
	admin := e.must(e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{"user": "bob", "scopes": []string{"keytrail:admin", "orders:read"}}), 201)
	asAdmin := fmt.Sprint(field(admin, "secret"))
	wide := e.must(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": "wide", "scopes": []string{"orders:write"}}), 201)
	e.must(e.call("GET", "/v1/tenants/acme/policies", root, nil, minSeq(wide)...), 200)
	before := e.last()
	e.problem(e.call("POST", "/v1/tenants/acme/policies", asAdmin, map[string]any{"id": "mine", "scopes": []string{"orders:write"}}), 403, "permission_denied")
	e.problem(e.call("PATCH", "/v1/tenants/acme/policies/wide", asAdmin, map[string]any{"scopes": []string{"orders:write", "orders:delete"}}), 403, "permission_denied")
	e.problem(e.call("POST", "/v1/tenants/acme/keys", asAdmin, map[string]any{"user": "bob", "policies": []string{"wide"}}), 403, "permission_denied")
	e.problem(e.call("PATCH", "/v1/tenants/acme/keys/"+fmt.Sprint(field(admin, "key", "id")), asAdmin, map[string]any{"policies": []string{"wide"}}), 403, "permission_denied")
	if after := e.last(); after != before {
		t.Fatalf("refused requests appended: %d → %d", before, after)
	}
	// Within its scopes it may.
	mine := e.must(e.call("POST", "/v1/tenants/acme/policies", asAdmin, map[string]any{"id": "mine", "scopes": []string{"orders:read"}}), 201)
	e.must(e.call("GET", "/v1/tenants/acme/policies/mine", root, nil, minSeq(mine)...), 200)
	e.must(e.call("POST", "/v1/tenants/acme/keys", asAdmin, map[string]any{"user": "bob", "policies": []string{"mine"}}), 201)
}

// TestPoliciesAreATenantsOwn: a key of globex cannot take a policy of
// acme's by naming it, and globex's admin sees none of acme's (the routes'
// isolation is TestAdminAPIAuthorization's).
func TestPoliciesAreATenantsOwn(t *testing.T) {
	e := startAdmin(t)
	root := e.root
	e.givenKey()
	e.must(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": "readers", "scopes": []string{"orders:read"}}), 201)
	e.must(e.call("POST", "/v1/tenants", root, map[string]any{"id": "globex", "name": "G"}), 201)
	e.must(e.call("POST", "/v1/tenants/globex/users", root, map[string]any{"id": "svc"}), 201)
	e.problem(e.call("POST", "/v1/tenants/globex/keys", root, map[string]any{"user": "svc", "policies": []string{"readers"}}), 400, "invalid_argument")
	g := e.must(e.call("POST", "/v1/tenants/globex/keys", root, map[string]any{"user": "svc", "scopes": []string{"keytrail:admin"}}), 201)
	list := e.must(e.call("GET", "/v1/tenants/globex/policies", fmt.Sprint(field(g, "secret")), nil, minSeq(g)...), 200)
	if ps, _ := field(list, "policies").([]any); len(ps) != 0 {
		t.Fatalf("globex lists acme's policies: %s", list.raw)
	}
	e.problem(e.call("GET", "/v1/tenants/acme/policies/readers", fmt.Sprint(field(g, "secret")), nil), 404, "not_found")
}

// TestAPolicyChangeReachesEveryGateway: a key used through three gateways
// (the dev one and two `keytrail gateway` processes) is denied by each of
// them once the policy it takes its scopes from loses the API's scope —
// the incumbent bug of a policy applied only at a key's first use, or on
// one node only. Propagation figures: BenchmarkRevocationPropagation
// (policy-*), docs/benchmarks.md.
func TestAPolicyChangeReachesEveryGateway(t *testing.T) {
	e := startAdmin(t)
	up := upstream(t)
	e.givenKey()
	e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "orders", "path_prefix": "/orders",
		"upstreams": []string{up.URL}, "scopes": []string{"orders:read"}}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/policies", e.root, map[string]any{"id": "readers", "scopes": []string{"orders:read"}}), 201)
	k := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob", "policies": []string{"readers"}}), 201)
	sec := fmt.Sprint(field(k, "secret"))
	gateways := []string{e.dev.Addresses().Gateway}
	for range 2 {
		_, url := startKeytrail(t, "gateway ", "gateway", "--allow-upstream", "127.0.0.0/8", "--nats", e.dev.Addresses().NATS, "--data", e.dir, "--gateway-listen", "127.0.0.1:0")
		gateways = append(gateways, url)
	}
	for _, gw := range gateways {
		testkit.Eventually(t, 20*time.Second, func() error {
			if s, code := through(gw, "/orders/1", sec); s != 200 {
				return fmt.Errorf("%s: %d %s", gw, s, code)
			}
			return nil
		})
	}
	u := e.must(e.call("PATCH", "/v1/tenants/acme/policies/readers", e.root, map[string]any{"scopes": []string{"invoices:read"}}), 200)
	for _, gw := range gateways {
		if s, code := through(gw, "/orders/1", sec, minSeq(u)...); s != 403 || code != "INSUFFICIENT_SCOPE" {
			t.Fatalf("%s after the policy change: %d %s", gw, s, code)
		}
	}
	// Each denial the gateways logged is re-derived by the audit from the
	// log alone: the policy's events are in its fold, and in the evidence.
	testkit.Eventually(t, 20*time.Second, func() error {
		out, code := runCLI("audit", "verify-decisions", "--nats", e.dev.Addresses().NATS, "--data", e.dir, "-o", "json")
		if code != 0 || !strings.Contains(out, `"INSUFFICIENT_SCOPE":3`) {
			return fmt.Errorf("verify-decisions (exit %d): %s", code, out)
		}
		return nil
	})
	// And back: the scope restored on the policy is honoured everywhere.
	u = e.must(e.call("PATCH", "/v1/tenants/acme/policies/readers", e.root, map[string]any{"scopes": []string{"orders:read"}}), 200)
	for _, gw := range gateways {
		if s, code := through(gw, "/orders/1", sec, minSeq(u)...); s != 200 {
			t.Fatalf("%s after the scope came back: %d %s", gw, s, code)
		}
	}
}

// TestATenantAdminCannotEscapeThroughPolicies: what an attacker holding a
// tenant admin key (keytrail:admin, orders:read) tried, each refused with
// nothing appended:
//   - referencing a policy granting billing:admin in the moment after the
//     root key created it (the read model had not seen it, and the check
//     that read the model let it through: the command now judges the
//     policy it reads from the log);
//   - lifting a policy's lifetime bound off its own key, and issuing keys
//     that outlive that bound;
//   - loosening or retiring a policy that limits keys holding billing:admin.
func TestATenantAdminCannotEscapeThroughPolicies(t *testing.T) {
	e := startAdmin(t)
	root := e.root
	e.givenKey()
	e.must(e.call("POST", "/v1/tenants/acme/apis", root, map[string]any{"id": "billing", "path_prefix": "/billing",
		"upstreams": []string{"http://127.0.0.1:9"}, "scopes": []string{"billing:admin"}}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": "short", "max_ttl": "1h"}), 201)
	adm := e.must(e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{"user": "bob", "scopes": []string{"keytrail:admin", "orders:read"},
		"policies": []string{"short"}}), 201)
	admID, admSecret := fmt.Sprint(field(adm, "key", "id")), fmt.Sprint(field(adm, "secret"))
	e.must(e.call("GET", "/v1/tenants/acme/keys/"+admID, root, nil, minSeq(adm)...), 200)

	// The race: four writers reference race-N while the root key creates it.
	patch := func(policy string) int {
		b, _ := json.Marshal(map[string]any{"policies": []string{policy}})
		req, _ := http.NewRequest("PATCH", e.base+"/v1/tenants/acme/keys/"+admID, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+admSecret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for round := range 10 {
		id := fmt.Sprintf("race-%d", round)
		var wg sync.WaitGroup
		var accepted atomic.Int32
		stop := make(chan struct{})
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if patch(id) == 200 {
						accepted.Add(1)
					}
				}
			}()
		}
		e.must(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": id, "scopes": []string{"billing:admin"}}), 201)
		for range 20 { // a few more attempts once it exists
			if patch(id) == 200 {
				accepted.Add(1)
			}
		}
		close(stop)
		wg.Wait()
		if n := accepted.Load(); n > 0 {
			t.Fatalf("round %d: a tenant admin took a policy granting billing:admin %d times", round, n)
		}
	}
	if k := e.must(e.call("GET", "/v1/tenants/acme/keys/"+admID, root, nil), 200); fmt.Sprint(field(k, "key", "policies")) != "[short]" {
		t.Fatalf("the admin key's policies: %s", k.raw)
	}

	before := e.last()
	// Its own key, bounded by short (1h): the bound stays.
	e.problem(e.call("PATCH", "/v1/tenants/acme/keys/"+admID, admSecret, map[string]any{"policies": []string{}}), 403, "permission_denied")
	e.problem(e.call("POST", "/v1/tenants/acme/keys", admSecret, map[string]any{"user": "bob", "scopes": []string{"orders:read"}}), 403, "permission_denied")
	e.problem(e.call("POST", "/v1/tenants/acme/keys", admSecret, map[string]any{"user": "bob", "ttl": "3650d"}), 403, "permission_denied")
	// A policy that limits keys holding billing:admin is not its to loosen.
	lim := e.must(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": "billing-limits", "max_ttl": "1d", "apis": []string{"billing"},
		"rate_limit": map[string]any{"per_second": 1, "burst": 1}}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/keys", root, map[string]any{"user": "bob", "scopes": []string{"billing:admin"}, "policies": []string{"billing-limits"}}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/policies", root, map[string]any{"id": "billing-admin", "scopes": []string{"billing:admin"}, "max_ttl": "1d"}), 201)
	before = e.last()
	e.must(e.call("GET", "/v1/tenants/acme/policies", root, nil, minSeq(lim)...), 200)
	e.must(e.call("GET", "/v1/tenants/acme", root, nil, "Keytrail-Min-Seq", fmt.Sprint(before)), 200)
	e.problem(e.call("PATCH", "/v1/tenants/acme/policies/billing-limits", admSecret, map[string]any{"apis": []string{}, "max_ttl": nil, "rate_limit": nil}), 403, "permission_denied")
	e.problem(e.call("POST", "/v1/tenants/acme/policies/billing-limits/retire", admSecret, nil), 403, "permission_denied")
	e.problem(e.call("PATCH", "/v1/tenants/acme/policies/billing-admin", admSecret, map[string]any{"max_ttl": nil}), 403, "permission_denied")
	e.problem(e.call("POST", "/v1/tenants/acme/policies/billing-admin/retire", admSecret, nil), 403, "permission_denied")
	if after := e.last(); after != before {
		t.Fatalf("refused requests appended: %d → %d", before, after)
	}
}

// A PATCH of a policy says which member it refuses: null is a value only
// for the limits (rate_limit, max_ttl: removed).
func TestAPolicyPatchNamesWhatItRefuses(t *testing.T) {
	e := startAdmin(t)
	e.givenKey()
	e.must(e.call("POST", "/v1/tenants/acme/policies", e.root, map[string]any{"id": "p", "scopes": []string{"a"}, "max_ttl": "1d"}), 201)
	before := e.last()
	for member, body := range map[string]string{"scopes": `{"scopes":null}`, "apis": `{"apis":null}`, "name": `{"name":null}`,
		"max_ttl": `{"max_ttl":"0d"}`, "rate_limit": `{"rate_limit":{"per_second":0,"burst":1}}`, "apis[0]": `{"apis":[7]}`} {
		r := e.call("PATCH", "/v1/tenants/acme/policies/p", e.root, body)
		e.problem(r, 400, "invalid_argument")
		if !strings.Contains(fmt.Sprint(field(r, "detail")), strings.TrimSuffix(member, "[0]")) {
			t.Errorf("%s: the problem does not name it: %s", body, r.raw)
		}
	}
	if after := e.last(); after != before {
		t.Fatalf("refused requests appended: %d → %d", before, after)
	}
}

// TestATenantAdminMakesOnlyKeysItCouldHaveIssued: the second review's ways
// around the confinement, each refused with nothing appended — by one rule
// (projections.Exceeds): a tenant admin's write is judged on its own plan,
// and no key it changes may end up granted a scope, a later end or an API
// the admin's own key is not.
func TestATenantAdminMakesOnlyKeysItCouldHaveIssued(t *testing.T) {
	e := startAdmin(t)
	root := e.root
	e.givenKey()
	for _, api := range []string{"orders", "billing"} {
		e.must(e.call("POST", "/v1/tenants/acme/apis", root, map[string]any{"id": api, "path_prefix": "/" + api,
			"upstreams": []string{"http://127.0.0.1:9"}, "scopes": []string{api + ":read"}}), 201)
	}
	policy := func(body map[string]any) { e.must(e.call("POST", "/v1/tenants/acme/policies", root, body), 201) }
	key := func(body map[string]any) (string, string) {
		body["user"] = "bob"
		r := e.must(e.call("POST", "/v1/tenants/acme/keys", root, body), 201)
		return fmt.Sprint(field(r, "key", "id")), fmt.Sprint(field(r, "secret"))
	}
	policy(map[string]any{"id": "billing-adm", "scopes": []string{"billing:read", "billing:admin"}})
	policy(map[string]any{"id": "short", "max_ttl": "1h"})
	policy(map[string]any{"id": "ordonly", "scopes": []string{"billing:read"}, "apis": []string{"orders"}})
	policy(map[string]any{"id": "slow", "rate_limit": map[string]any{"per_second": 1, "burst": 1}})
	policy(map[string]any{"id": "billonly", "apis": []string{"billing"}})
	policy(map[string]any{"id": "anyapi"})
	bobBilling, _ := key(map[string]any{"policies": []string{"billing-adm"}})
	b2, _ := key(map[string]any{"scopes": []string{"billing:admin", "billing:read"}, "policies": []string{"slow", "billonly"}})
	b3, _ := key(map[string]any{"scopes": []string{"billing:admin"}, "ttl": "1h"})
	_, adm := key(map[string]any{"scopes": []string{"keytrail:admin", "orders:read"}, "policies": []string{"short"}})
	adm2ID, adm2 := key(map[string]any{"scopes": []string{"keytrail:admin"}, "policies": []string{"ordonly"}})
	e.must(e.call("GET", "/v1/tenants/acme", root, nil, "Keytrail-Min-Seq", fmt.Sprint(e.last())), 200)

	before := e.last()
	refused := func(why, method, path, token string, body any) {
		t.Helper()
		r := e.call(method, path, token, body)
		if r.status != 403 && r.status != 400 {
			t.Fatalf("%s: %s %s answered %d: %s", why, method, path, r.status, r.raw)
		}
	}
	// Rotating a key whose policy grants what the admin lacks: the
	// successor would hold it (and the dry run says so as the write would).
	refused("rotate", "POST", "/v1/tenants/acme/keys/"+bobBilling+"/rotate", adm, map[string]any{"grace": "1m"})
	refused("rotate, dry run", "POST", "/v1/tenants/acme/keys/"+bobBilling+"/rotate?dry_run=true", adm, map[string]any{"grace": "1m"})
	// Lifting the bound of its own key's policy, from the policy's side.
	refused("max_ttl removed", "PATCH", "/v1/tenants/acme/policies/short", adm, map[string]any{"max_ttl": nil})
	refused("max_ttl raised", "PATCH", "/v1/tenants/acme/policies/short", adm, map[string]any{"max_ttl": "3650d"})
	refused("bound retired", "POST", "/v1/tenants/acme/policies/short/retire", adm, nil)
	// Reaching an API its key may not: another policy, a wider policy, a
	// key of its own scope.
	refused("a policy allowing any API", "PATCH", "/v1/tenants/acme/keys/"+adm2ID, adm2, map[string]any{"policies": []string{"ordonly", "anyapi"}})
	refused("the policy's APIs widened", "PATCH", "/v1/tenants/acme/policies/ordonly", adm2, map[string]any{"apis": []string{}})
	refused("a key for any API", "POST", "/v1/tenants/acme/keys", adm2, map[string]any{"user": "bob", "scopes": []string{"billing:read"}})
	// Loosening keys that hold what it lacks, from the key's side.
	refused("limits detached", "PATCH", "/v1/tenants/acme/keys/"+b2, adm, map[string]any{"policies": []string{}})
	refused("expiry extended", "PATCH", "/v1/tenants/acme/keys/"+b3, adm, map[string]any{"expires_at": "2036-01-01T00:00:00Z"})
	// A dry run asked for in a way the query drops.
	for _, q := range []string{"?dry_run=true;reason=x", "?dry-run=true", "?DRY_RUN=true"} {
		e.problem(e.call("POST", "/v1/tenants/acme/keys/"+b3+"/revoke"+q, root, nil), 400, "invalid_argument")
	}
	if after := e.last(); after != before {
		t.Fatalf("refused requests appended: %d → %d", before, after)
	}
	// Within its own grant it may: a key of its scopes, bounded as it is.
	e.must(e.call("POST", "/v1/tenants/acme/keys", adm, map[string]any{"user": "bob", "scopes": []string{"orders:read"}, "ttl": "30m"}), 201)
}

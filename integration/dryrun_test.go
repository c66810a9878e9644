package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keytrail/keytrail/internal/testkit"
)

// TestDryRunsPredictTheChange is a property test over random histories: in
// each round a tenant gets random users, APIs, policies and keys and a few
// random state changes; then a random write that can deny is sent with
// ?dry_run=true, then for real. The dry run must append nothing and name
// the events the real write appends (by type and aggregate), and its
// impact must be exactly what the real write does: for every key and every
// API (and requests without one, asking for each scope or none), the code
// the gateway and POST /v1/verify answer afterwards is the predicted one — changed where the preview said,
// unchanged everywhere else. KEYTRAIL_DRYRUN_SEED replays a seed.
func TestDryRunsPredictTheChange(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("KEYTRAIL_DRYRUN_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (KEYTRAIL_DRYRUN_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	e := startAdmin(t)
	root, gw, up := e.root, e.dev.Addresses().Gateway, upstream(t)
	scopePool := []string{"s1", "s2", "s3"}
	subset := func(pool []string) []string {
		out := []string{}
		for _, s := range pool {
			if rng.IntN(2) == 0 {
				out = append(out, s)
			}
		}
		return out
	}
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	changed := 0
	for round := range 12 {
		ten := fmt.Sprintf("r%d", round)
		base := "/v1/tenants/" + ten
		do := func(method, path string, body any, status ...int) response {
			t.Helper()
			r := e.call(method, path, root, body)
			if !slices.Contains(status, r.status) {
				t.Fatalf("round %d: %s %s: %d %s", round, method, path, r.status, r.raw)
			}
			return r
		}
		do("POST", "/v1/tenants", map[string]any{"id": ten, "name": ten}, 201)
		users := []string{"u0", "u1", "u2"}
		for _, u := range users {
			do("POST", base+"/users", map[string]any{"id": u}, 201)
		}
		apis := []string{"a0", "a1", "a2"}
		for _, a := range apis {
			do("POST", base+"/apis", map[string]any{"id": a, "path_prefix": "/" + ten + "-" + a, "upstreams": []string{up.URL}, "scopes": subset(scopePool)}, 201)
		}
		policies := []string{"p0", "p1", "p2"}
		for _, p := range policies {
			body := map[string]any{"id": p, "scopes": subset(scopePool)}
			if rng.IntN(3) == 0 {
				body["apis"] = subset(apis)
			}
			do("POST", base+"/policies", body, 201)
		}
		type key struct{ id, secret, user string }
		var keys []key
		for range 6 {
			u := pick(users)
			r := do("POST", base+"/keys", map[string]any{"user": u, "scopes": subset(scopePool), "policies": subset(policies)}, 201)
			keys = append(keys, key{fmt.Sprint(field(r, "key", "id")), fmt.Sprint(field(r, "secret")), u})
		}
		// A few changes before the one previewed.
		for range rng.IntN(4) {
			switch rng.IntN(4) {
			case 0:
				do("POST", base+"/keys/"+keys[rng.IntN(len(keys))].id+"/suspend", nil, 200)
			case 1:
				do("POST", base+"/users/"+pick(users)+"/disable", nil, 200)
			case 2:
				do("POST", base+"/policies/"+pick(policies)+"/retire", nil, 200)
			case 3:
				do("POST", base+"/apis/"+pick(apis)+"/deprecate", map[string]any{"sunset": "2999-01-01T00:00:00Z"}, 200)
			}
		}
		// The decisions now, for every key, on every API and on none.
		observe := func(seq string) map[[2]string]string {
			t.Helper()
			out := map[[2]string]string{}
			for _, k := range keys {
				v := e.must(e.call("POST", "/v1/verify", root, map[string]any{"key": k.secret}, "Keytrail-Min-Seq", seq), 200)
				out[[2]string{k.id, ""}] = fmt.Sprint(field(v, "code"))
				for _, sc := range scopePool {
					v := e.must(e.call("POST", "/v1/verify", root, map[string]any{"key": k.secret, "scopes": []string{sc}}, "Keytrail-Min-Seq", seq), 200)
					out[[2]string{k.id, "scope:" + sc}] = fmt.Sprint(field(v, "code"))
				}
				for _, a := range apis {
					s, code := through(gw, "/"+ten+"-"+a+"/x", k.secret, "Keytrail-Min-Seq", seq)
					if s == 200 {
						code = "VALID"
					}
					out[[2]string{k.id, a}] = code
				}
			}
			return out
		}
		k := keys[rng.IntN(len(keys))]
		var method, path string
		var body any
		switch rng.IntN(12) {
		case 0:
			method, path = "POST", base+"/suspend"
		case 1:
			method, path, body = "POST", base+"/revoke-keys", map[string]any{"reason": "leak"}
		case 2:
			method, path = "POST", base+"/users/"+k.user+"/disable"
		case 3:
			method, path = "DELETE", base+"/users/"+k.user
		case 4:
			method, path = "POST", base+"/users/"+k.user+"/revoke-keys"
		case 5:
			method, path, body = "PATCH", base+"/keys/"+k.id, map[string]any{"scopes": subset(scopePool), "policies": subset(policies)}
		case 6:
			method, path = "POST", base+"/keys/"+k.id+"/"+pick([]string{"suspend", "revoke"})
		case 7:
			method, path, body = "POST", base+"/keys/"+k.id+"/rotate", map[string]any{"grace": pick([]string{"0s", "1h"})}
		case 8:
			method, path, body = "PATCH", base+"/apis/"+pick(apis), map[string]any{"scopes": subset(scopePool)}
		case 9:
			method, path = "POST", base+"/apis/"+pick(apis)+"/retire"
		case 10:
			patch := map[string]any{"scopes": subset(scopePool)}
			if rng.IntN(2) == 0 {
				patch["apis"] = subset(apis)
			}
			method, path, body = "PATCH", base+"/policies/"+pick(policies), patch
		case 11:
			method, path = "POST", base+"/policies/"+pick(policies)+"/retire"
		}
		lastSetup := e.last()
		before := observe(strconv.FormatUint(lastSetup, 10))
		dry := e.call(method, path+"?dry_run=true", root, body)
		if dry.status != 200 {
			// Refused (a retired policy changed, a rotated key rotated
			// again): the real write must be refused alike.
			if real := e.call(method, path, root, body); real.status != dry.status || field(real, "code") != field(dry, "code") {
				t.Fatalf("round %d: %s %s: the dry run answered %d %s, the write %d %s", round, method, path, dry.status, dry.raw, real.status, real.raw)
			}
			continue
		}
		if after := e.last(); after != lastSetup {
			t.Fatalf("round %d: the dry run of %s %s appended (%d → %d)", round, method, path, lastSetup, after)
		}
		real := do(method, path, body, 200, 201)
		after := observe(real.header.Get("Keytrail-Seq"))

		// The events: the same types on the same aggregates.
		var planned, appended []string
		for _, ev := range field(dry, "events").([]any) {
			m := ev.(map[string]any)
			planned = append(planned, fmt.Sprint(m["type"], " ", m["subject"]))
		}
		for seq := lastSetup + 1; seq <= e.last(); seq++ {
			r, err := e.store.Get(testCtx(t, 5*time.Second), seq)
			if err != nil {
				t.Fatal(err)
			}
			appended = append(appended, fmt.Sprint(r.Type, " ", r.Subject))
		}
		if method == "POST" && len(path) > 7 && path[len(path)-7:] == "/rotate" {
			// A rotation's new key has a new id each time: compare types.
			for i := range planned {
				planned[i], appended[i] = planned[i][:12], appended[i][:12]
			}
		}
		if !slices.Equal(planned, appended) {
			t.Fatalf("round %d: %s %s: the dry run planned %v, the write appended %v", round, method, path, planned, appended)
		}

		// The impact: exactly the changes that happened.
		predicted, listed := map[[2]string]string{}, map[[2]string]bool{}
		for probe, code := range before {
			predicted[probe] = code
		}
		var requests float64
		for _, ki := range field(dry, "impact", "keys").([]any) {
			changed++
			m := ki.(map[string]any)
			requests += m["requests_24h"].(float64)
			for _, c := range m["changes"].([]any) {
				ch := c.(map[string]any)
				probe := [2]string{fmt.Sprint(m["key"]), fmt.Sprint(ch["api"])}
				if sc, ok := ch["scope"].(string); ok {
					probe[1] = "scope:" + sc
				}
				if _, known := before[probe]; !known {
					continue // a rotation's successor: its id in the dry run is not the real one's
				}
				if before[probe] != ch["before"] {
					t.Fatalf("round %d: %s %s: the preview says %v was %v, it was %s", round, method, path, probe, ch["before"], before[probe])
				}
				predicted[probe], listed[probe] = fmt.Sprint(ch["after"]), true
			}
		}
		// A request for a scope the key holds neither before nor after is
		// not listed (docs/policies.md): it is denied before and after, its
		// code the no-scope request's (INSUFFICIENT_SCOPE where that is
		// VALID).
		for probe, was := range before {
			if !strings.HasPrefix(probe[1], "scope:") || was == "VALID" || listed[probe] {
				continue
			}
			ns := predicted[[2]string{probe[0], ""}]
			if ns == "VALID" {
				ns = "INSUFFICIENT_SCOPE"
			}
			predicted[probe] = ns
		}
		for probe, want := range predicted {
			if got := after[probe]; got != want {
				t.Fatalf("round %d: %s %s %v: the preview predicted %s, the write gave %s (before: %s)\npreview: %s",
					round, method, path, probe, want, got, before[probe], dry.raw)
			}
		}
		if total := field(dry, "impact", "requests_24h").(float64); total != requests {
			t.Fatalf("round %d: requests_24h %v, the keys' sum %v", round, total, requests)
		}
	}
	if changed == 0 {
		t.Fatal("no round previewed a change: the property was never put to the test")
	}
}

// TestADryRunCountsTheTrafficItWouldDeny: a key served 40 requests to an
// API in the last day; a dry run of its revocation says so (requests_24h),
// a dry run of an unused key's says 0, and neither appends.
func TestADryRunCountsTheTrafficItWouldDeny(t *testing.T) {
	e := startUsage(t)
	idle := e.must(e.call("POST", "/v1/tenants/acme/keys", e.root, map[string]any{"user": "bob"}), 201)
	var mu sync.Mutex
	answers := map[int]int{}
	load(t, e.dev.Addresses().Gateway, e.secret, 40, answers, &mu)
	if answers[200] != 40 {
		t.Fatalf("answers %v", answers)
	}
	testkit.Eventually(t, 20*time.Second, func() error {
		if got, _ := e.usageByCode(""); got["VALID"] != 40 {
			return fmt.Errorf("counted %v", got)
		}
		return nil
	})
	before := e.last()
	dry := e.must(e.call("POST", "/v1/tenants/acme/keys/"+e.keyID+"/revoke?dry_run=true", e.root, map[string]any{"reason": "leaked"}), 200)
	keys, _ := field(dry, "impact", "keys").([]any)
	if len(keys) != 1 || field(dry, "impact", "requests_24h") != 40.0 || keys[0].(map[string]any)["requests_24h"] != 40.0 ||
		fmt.Sprint(field(dry, "impact", "users")) != "[bob]" || fmt.Sprint(field(dry, "impact", "apis")) != "[orders]" {
		t.Fatalf("preview of the revocation: %s", dry.raw)
	}
	if evs, _ := field(dry, "events").([]any); len(evs) != 1 || evs[0].(map[string]any)["type"] != "key.revoked" ||
		evs[0].(map[string]any)["reason"] != "leaked" {
		t.Fatalf("planned events: %s", dry.raw)
	}
	dry = e.must(e.call("POST", "/v1/tenants/acme/keys/"+fmt.Sprint(field(idle, "key", "id"))+"/suspend?dry_run=true", e.root, nil), 200)
	if field(dry, "impact", "requests_24h") != 0.0 {
		t.Fatalf("an unused key's preview: %s", dry.raw)
	}
	// A write that cannot deny takes no dry run; a dry run is true or false.
	e.problem(e.call("POST", "/v1/tenants/acme/keys/"+e.keyID+"/resume?dry_run=true", e.root, nil), 400, "invalid_argument")
	e.problem(e.call("POST", "/v1/tenants/acme/keys/"+e.keyID+"/revoke?dry_run=maybe", e.root, nil), 400, "invalid_argument")
	e.problem(e.call("POST", "/v1/tenants/acme/keys/"+e.keyID+"/suspend?dry_run=false&dry_run=true", e.root, nil), 400, "invalid_argument")
	if after := e.last(); after != before {
		t.Fatalf("dry runs appended: %d → %d", before, after)
	}
	// A dry run claims no Idempotency-Key: the real request may use it.
	e.must(e.call("POST", "/v1/tenants/acme/keys/"+e.keyID+"/revoke?dry_run=true", e.root, nil, "Idempotency-Key", "rev-1"), 200)
	e.must(e.call("POST", "/v1/tenants/acme/keys/"+e.keyID+"/revoke", e.root, nil, "Idempotency-Key", "rev-1"), 200)
}

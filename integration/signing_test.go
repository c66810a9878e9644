package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/natsauth"
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
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	issued := e.givenKey()
	sec, keyID := field(issued, "secret").(string), field(issued, "key", "id").(string)
	e.must(e.call("POST", "/v1/tenants/acme/apis", e.root, map[string]any{"id": "orders", "path_prefix": "/orders", "upstreams": []string{up.URL}}), 201)
	e.must(e.call("POST", "/v1/tenants/acme/keys/"+keyID+"/suspend", e.root, map[string]any{"reason": "fraud check"}), 200)
	gw := e.dev.Addresses().Gateway + "/orders/1"
	requestAnswered(t, gw, sec, http.StatusForbidden)

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
	// The control node's own reads refuse it too: the API shows the key
	// suspended, and a real resume after the forgery links to the last
	// signed event, so every reader takes it.
	if k := e.must(e.call("GET", "/v1/tenants/acme/keys/"+keyID, e.root, nil), 200); field(k, "key", "status") != "suspended" {
		t.Fatalf("the admin API honours an unsigned key.resumed: %s", k.raw)
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

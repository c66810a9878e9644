package adminhttp

import (
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/events"
)

// FuzzRevocationRoute: whatever a service on the bus sends, the route built
// from it is one of the three revocation routes with validated ids, or the
// request is refused; never a panic, never a path outside the tenant.
func FuzzRevocationRoute(f *testing.F) {
	for _, seed := range []string{`{"key":"key_01JDQ8Z6W4M2N9V3X5C7B1D2E3"}`, `{"user":"bob","before":"2026-01-01T00:00:00Z"}`,
		`{"before":"2026-01-01T00:00:00Z","reason":"x"}`, `{"key":"../x"}`, `{}`, `[]`, `{"key":1}`, ``} {
		f.Add("keytrail.cmd.acme.keys.revoke", seed)
	}
	f.Add("keytrail.cmd.a.b.keys.revoke", `{}`)
	f.Fuzz(func(t *testing.T, subject, body string) {
		route, _, bad := revocationRoute(&nats.Msg{Subject: subject, Data: []byte(body)})
		if bad != nil {
			return
		}
		tokens := strings.Split(subject, ".")
		if len(tokens) != 5 || !events.ValidTenantID(tokens[2]) {
			t.Fatalf("accepted subject %q", subject)
		}
		base := "/v1/tenants/" + tokens[2] + "/"
		rest, ok := strings.CutPrefix(route, base)
		if !ok || strings.Contains(rest, "..") || strings.Contains(rest, "//") {
			t.Fatalf("route %q from %q", route, body)
		}
		switch parts := strings.Split(rest, "/"); {
		case len(parts) == 3 && parts[0] == "keys" && parts[2] == "revoke" && events.ValidKeyID(parts[1]):
		case len(parts) == 3 && parts[0] == "users" && parts[2] == "revoke-keys" && events.ValidUserID(parts[1]):
		case len(parts) == 1 && parts[0] == "revoke-keys":
		default:
			t.Fatalf("route %q from %q", route, body)
		}
	})
}

package gateway

import (
	"context"
	"net/url"
	"path"
	"strings"
	"testing"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
)

// FuzzCanonicalPathAgainstTheRouter: a path the gateway accepts holds no
// character an upstream could read otherwise (control characters, ';',
// '\\', a segment ending in '.'), cleans to itself, and routes to the same
// API however an upstream folds its case: no accepted path can be read as
// belonging to another API than the one it was verified for.
func FuzzCanonicalPathAgainstTheRouter(f *testing.F) {
	ctx := context.Background()
	st := store.NewMemory()
	svc, _ := control.New(control.Config{Store: st})
	m := control.Meta{Actor: "fuzz"}
	svc.CreateTenant(ctx, m, "acme", "A")
	for id, prefix := range map[string]string{"root": "/", "orders": "/orders", "admin": "/orders/admin", "static": "/Static/", "v2": "/orders/v2/"} {
		if _, _, err := svc.CreateAPI(ctx, m, "acme", control.APISpec{ID: id, PathPrefix: prefix, Upstreams: []string{"http://127.0.0.1:9"}}); err != nil {
			f.Fatal(err)
		}
	}
	all, _ := st.LoadAll(ctx, events.AllSubjects)
	c := projections.NewCatalog()
	for _, r := range all {
		c.Apply(r)
	}
	for _, seed := range []string{"/orders/admin", "/orders/Admin", "/orders/admin;x", "/orders/admin.", "/orders/admin%00",
		"/orders%2Fadmin", "/static/a.css", "/Static/a.css", "/orders/v2/x", "/ORDERS/V2/", "/", "/x/../orders/admin"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse("http://gw" + raw)
		if err != nil || notCanonical(u) != "" {
			return
		}
		p := u.Path
		if strings.ContainsAny(p, ";\\\x00") || strings.Contains(p, "./") || strings.HasSuffix(p, ".") {
			t.Fatalf("accepted %q", p)
		}
		if c := path.Clean(p); c != p && c+"/" != p {
			t.Fatalf("accepted %q, which cleans to %q", p, c)
		}
		a, r := c.Route(p)
		if r != projections.Routed {
			return
		}
		if la, lr := c.Route(strings.ToLower(p)); lr == projections.Routed && la.ID != a.ID {
			t.Fatalf("%q routes to %s, its lower case to %s", p, a.ID, la.ID)
		}
		if ua, ur := c.Route(strings.ToUpper(p)); ur == projections.Routed && ua.ID != a.ID {
			t.Fatalf("%q routes to %s, its upper case to %s", p, a.ID, ua.ID)
		}
	})
}

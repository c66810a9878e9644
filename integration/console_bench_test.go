package integration

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/app"
	"github.com/keytrail/keytrail/services/natsauth"
)

// BenchmarkConsolePages: how long each console page takes to render on the
// server — the handler, its in-process API calls and the template — for a
// tenant with 10 000 keys over 100 users (goal ≤ 50 ms a page), signed in
// as root through the login form, over loopback HTTP as a browser asks.
func BenchmarkConsolePages(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "data")
	ctx := testCtx(b, 10*time.Minute)
	d, err := app.StartDev(ctx, app.DevConfig{DataDir: dir, AdminListen: "127.0.0.1:0", GatewayListen: "127.0.0.1:0", NATSListen: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	js, _ := jetstream.New(devConnect(b, d.Addresses().NATS, dir, natsauth.Control), jetstream.WithPublishAsyncMaxPending(4096))
	lw := newLogWriter(b, ctx, js)
	lw.prelude()
	lw.keys(0, 10_000, false)
	last := lw.done()
	base := d.Addresses().Admin
	testkit.Eventually(b, time.Minute, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), fmt.Sprintf(`"seq":%d`, last)) {
			return fmt.Errorf("not caught up: %s", body)
		}
		return nil
	})
	root, err := os.ReadFile(filepath.Join(dir, app.RootKeyFile))
	if err != nil {
		b.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	get := func(path string) string {
		resp, err := hc.Get(base + path)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		return string(body)
	}
	login := get("/console/login")
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(login)
	req, _ := http.NewRequest("POST", base+"/console/login", strings.NewReader(url.Values{"csrf": {csrf[1]}, "key": {strings.TrimSpace(string(root))}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("sign in: %v %v", resp, err)
	}
	resp.Body.Close()
	key := "key_01JDQ8Z6W4M2N9V3X500004242"
	for _, p := range []struct{ name, path string }{
		{"overview", "/console/tenants/bench"},
		{"users", "/console/tenants/bench/users"},
		{"keys", "/console/tenants/bench/keys"},
		{"keys-search", "/console/tenants/bench/keys?q=0000424"},
		{"keys-status", "/console/tenants/bench/keys?status=active&expiring_within=7d"},
		{"key", "/console/tenants/bench/keys/" + key},
		{"key-explain", "/console/tenants/bench/keys/" + key + "?at=1m"},
		{"apis", "/console/tenants/bench/apis"},
		{"decisions", "/console/tenants/bench/decisions"},
		{"notices", "/console/tenants/bench/notices"},
		{"webhooks", "/console/tenants/bench/webhooks"},
	} {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				get(p.path)
			}
		})
	}
}

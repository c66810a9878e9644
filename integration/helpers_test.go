package integration

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

func testCtx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// devIdentity reads role's identity from a dev data directory, as
// `--data DIR` makes every mode do.
func devIdentity(tb testing.TB, dir string, role natsauth.Role) natsauth.Identity {
	tb.Helper()
	id, err := natsauth.ReadSeedFile(role, filepath.Join(dir, "nats", role.SeedFile()))
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// devConnect connects to the dev deployment in dir as role.
func devConnect(tb testing.TB, url, dir string, role natsauth.Role) *nats.Conn {
	tb.Helper()
	return natstest.Connect(tb, url, devIdentity(tb, dir, role))
}

func openStore(tb testing.TB, nc *nats.Conn, cfg store.Config) *store.JetStream {
	tb.Helper()
	cfg.CreateIfMissing = true
	s, err := store.OpenJetStream(testCtx(tb, 30*time.Second), nc, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func publishRaw(tb testing.TB, nc *nats.Conn, subject string, data []byte) {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := js.Publish(testCtx(tb, 10*time.Second), subject, data); err != nil {
		tb.Fatal(err)
	}
}

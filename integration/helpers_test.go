package integration

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events/store"
)

func testCtx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
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

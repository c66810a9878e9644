package readmodel

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/projections"
)

func TestModelCatchesUpThenFollows(t *testing.T) {
	st := store.NewMemory()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := st.Append(ctx, store.Head{}, storetest.Event("acme", events.TenantAggregate("acme"), events.TenantCreatedV1{Name: "A"}, "c"))
	if err != nil {
		t.Fatal(err)
	}
	st.PublishRaw("keytrail.evt.acme.a.x", []byte("garbage"))
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, st, nil) }()
	if err := m.WaitFor(ctx, 2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if !m.Ready() {
		t.Fatal("caught up but not ready")
	}
	u, err := st.Append(ctx, store.Head{}, storetest.Event("acme", events.UserAggregate("bob"), events.UserCreatedV1{}, "u"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WaitFor(ctx, u[0].Seq, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	m.Read(func(c *projections.Catalog) {
		if _, ok := c.User("acme", "bob"); !ok || c.Skipped != 1 {
			t.Errorf("user missing or garbage not counted (%d)", c.Skipped)
		}
		if _, ok := c.Tenant("acme"); !ok {
			t.Error("tenant missing")
		}
	})
	if m.Applied() != u[0].Seq || r[0].Seq != 1 {
		t.Fatalf("applied %d", m.Applied())
	}
	if err := m.WaitFor(ctx, 99, 20*time.Millisecond); !errors.Is(err, ErrBehind) {
		t.Fatalf("WaitFor a future seq: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestEmptyLogIsReadyAtOnce(t *testing.T) {
	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, store.NewMemory(), nil) }()
	deadline := time.After(5 * time.Second)
	for !m.Ready() {
		select {
		case <-deadline:
			t.Fatal("an empty log never became ready")
		case <-time.After(time.Millisecond):
		}
	}
	cancel()
	<-done
}

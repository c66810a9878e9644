package integration

import (
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

func TestJetStreamConformanceSingleNode(t *testing.T) {
	node := natstest.RunServer(t)
	nc := node.ConnectAs(t, natsauth.Control)
	s := openStore(t, nc, store.Config{Replicas: 1})
	storetest.Run(t, storetest.Harness{
		Store:      func(*testing.T) store.Store { return s },
		PublishRaw: func(t *testing.T, subject string, data []byte) { publishRaw(t, nc, subject, data) },
	})
}

func TestJetStreamConformanceCluster(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	nc := natstest.Connect(t, c.URLs(), c.Identity(natsauth.Control))
	s := openStore(t, nc, store.Config{Replicas: 3})
	storetest.Run(t, storetest.Harness{
		Store:      func(*testing.T) store.Store { return s },
		PublishRaw: func(t *testing.T, subject string, data []byte) { publishRaw(t, nc, subject, data) },
	})
}

// TestSubscriptionsLeaveNoConsumers: a reader that subscribes again and
// again (an auditor, a model restarted) leaves no consumer on the server.
func TestSubscriptionsLeaveNoConsumers(t *testing.T) {
	node := natstest.RunServer(t)
	nc := node.ConnectAs(t, natsauth.Control)
	st := openStore(t, nc, store.Config{})
	ctx := testCtx(t, time.Minute)
	for i := range 50 {
		sub, err := st.Subscribe(ctx, store.SubscribeOptions{})
		if err != nil {
			t.Fatal(i, err)
		}
		sub.Close()
	}
	s, err := st.JetStream().Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Consumers; n != 0 {
		t.Fatalf("%d consumers left after 50 closed subscriptions", n)
	}
}

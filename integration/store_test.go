package integration

import (
	"testing"

	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

func TestJetStreamConformanceSingleNode(t *testing.T) {
	node := natstest.RunServer(t)
	nc := natstest.Connect(t, node.ClientURL())
	s := openStore(t, nc, store.Config{Replicas: 1})
	storetest.Run(t, storetest.Harness{
		Store:      func(*testing.T) store.Store { return s },
		PublishRaw: func(t *testing.T, subject string, data []byte) { publishRaw(t, nc, subject, data) },
	})
}

func TestJetStreamConformanceCluster(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	nc := natstest.Connect(t, c.URLs())
	s := openStore(t, nc, store.Config{Replicas: 3})
	storetest.Run(t, storetest.Harness{
		Store:      func(*testing.T) store.Store { return s },
		PublishRaw: func(t *testing.T, subject string, data []byte) { publishRaw(t, nc, subject, data) },
	})
}

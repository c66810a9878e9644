package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/services/audit"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

// TestVerifyChainNamesAWeakStreamAndDeletedMessages: a stream an operator
// created without the protections (deletes allowed) is read by the auditor,
// which names the weakness and every message deleted from it.
func TestVerifyChainNamesAWeakStreamAndDeletedMessages(t *testing.T) {
	node := natstest.RunServer(t)
	nc := node.ConnectAs(t, natsauth.Control)
	ctx := testCtx(t, time.Minute)
	cfg := store.StreamConfig(store.Config{})
	cfg.DenyDelete = false
	// Only an operator outside Keytrail's roles can make such a stream.
	js, _ := jetstream.New(node.ConnectAs(t, natstest.Operator))
	s, err := js.CreateStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenJetStream(ctx, nc, store.Config{}); err == nil {
		t.Fatal("a control node opened a stream that allows deletes")
	}
	st, err := store.OpenJetStream(ctx, nc, store.Config{AcceptWeak: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"a", "b", "c"} {
		if _, err := st.Append(ctx, store.Head{}, storetest.Event("acme", events.UserAggregate(u), events.UserCreatedV1{}, u)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteMsg(ctx, 2); err != nil {
		t.Fatal(err)
	}
	auditor, err := store.OpenJetStream(ctx, node.ConnectAs(t, natsauth.Auditor), store.Config{AcceptWeak: true})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.New(auditor).VerifyChain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 2 || !strings.Contains(rep.Problems[0].Problem, "weaker") ||
		rep.Problems[1].Seq != 2 || !strings.Contains(rep.Problems[1].Problem, "gone") || rep.Messages != 2 {
		t.Fatalf("a weak stream with a deleted message: %+v", rep)
	}
}

package verifier_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode"
	"github.com/keytrail/keytrail/services/verifier"
)

// A service verifies keys in-process. Here a local node stands in for the
// cluster, and the control plane issues the key the service then checks.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir, _ := os.MkdirTemp("", "keytrail-example")
	defer os.RemoveAll(dir)
	// Every role has its own NATS identity (keytrail nats-config writes
	// them for a cluster; keytrail dev into <data>/nats/).
	ids, err := natsauth.NewSet()
	if err != nil {
		panic(err)
	}
	node, err := natsnode.Start(natsnode.Config{Name: "example", StoreDir: dir, Listen: "127.0.0.1:0", Users: natsnode.Users(ids)})
	if err != nil {
		panic(err)
	}
	defer node.Shutdown()
	ctlConn, _ := node.Connect(ids[natsauth.Control])
	defer ctlConn.Close()
	// A service verifying keys reads the log as a gateway does.
	nc, _ := nats.Connect(node.ClientURL(), ids[natsauth.Gateway].ConnectOptions()...)
	defer nc.Close()

	// The control plane (normally `keytrail serve`) creates the log and a key.
	st, err := store.OpenJetStream(ctx, ctlConn, store.Config{CreateIfMissing: true})
	if err != nil {
		panic(err)
	}
	ctl, _ := control.New(control.Config{Store: st})
	root := control.Meta{Actor: "root"}
	ctl.CreateTenant(ctx, root, "acme", "Acme")
	ctl.CreateUser(ctx, root, "acme", "alice", "Alice")
	_, sec, res, err := ctl.IssueKey(ctx, root, "acme", control.KeySpec{User: "alice", Scopes: []string{"orders:read"}})
	if err != nil {
		panic(err)
	}

	// The service: start a verifier, wait until it has caught up, verify.
	v, err := verifier.Start(ctx, verifier.Config{NATS: nc, Tenants: []string{"acme"}})
	if err != nil {
		panic(err)
	}
	defer v.Close()
	if err := v.WaitFor(ctx, res.Seq, 10*time.Second); err != nil {
		panic(err)
	}
	d := v.Verify(projections.Request{Secret: sec.Reveal(), Scopes: []string{"orders:read"}})
	fmt.Println(d.Code, d.User)
	d = v.Verify(projections.Request{Secret: sec.Reveal(), Scopes: []string{"orders:write"}})
	fmt.Println(d.Code)
	// Output:
	// VALID alice
	// INSUFFICIENT_SCOPE
}

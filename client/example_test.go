package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/client"
	"github.com/keytrail/keytrail/services/app"
)

// A deployment to talk to: `keytrail dev` in-process, on loopback ports.
func startDev() (dev *app.Dev, root string, stop func()) {
	dir, _ := os.MkdirTemp("", "keytrail-client-example")
	d, err := app.StartDev(context.Background(), app.DevConfig{DataDir: dir, AdminListen: "127.0.0.1:0", GatewayListen: "127.0.0.1:0",
		NATSListen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, app.RootKeyFile))
	return d, strings.TrimSpace(string(b)), func() { d.Close(); os.RemoveAll(dir) }
}

// Manage keys over the admin API: every error is a *client.Problem with a
// stable code.
func Example() {
	dev, root, stop := startDev()
	defer stop()
	ctx := context.Background()
	c := client.New(dev.Addresses().Admin, root, nil)

	c.CreateTenant(ctx, "acme", "Acme", nil)
	c.CreateUser(ctx, "acme", "alice", "Alice", nil)
	k, err := c.IssueKey(ctx, "acme", client.KeySpec{User: "alice", Scopes: []string{"orders:read"}}, nil)
	if err != nil {
		panic(err)
	}
	d, _ := c.Verify(ctx, k.Secret, []string{"orders:read"}, &client.Call{MinSeq: k.Seq})
	fmt.Println(d.Code, d.User)

	_, err = c.Key(ctx, "acme", "key_01JDQ8Z6W4M2N9V3X5C7B1D2E3", nil)
	fmt.Println(errors.Is(err, client.ErrNotFound))
	// Output:
	// VALID alice
	// true
}

// Revoke over NATS, from a service on the bus: any control node answers.
func ExampleRevoker() {
	dev, root, stop := startDev()
	defer stop()
	ctx := context.Background()
	c := client.New(dev.Addresses().Admin, root, nil)
	c.CreateTenant(ctx, "acme", "Acme", nil)
	c.CreateUser(ctx, "acme", "alice", "Alice", nil)
	k, _ := c.IssueKey(ctx, "acme", client.KeySpec{User: "alice"}, nil)

	// The service identity (keytrail dev writes it to <data>/nats/service.nk).
	opts, err := client.ServiceOptions(filepath.Join(dev.DataDir(), "nats", "service.nk"))
	if err != nil {
		panic(err)
	}
	nc, err := nats.Connect(dev.Addresses().NATS, opts...)
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	r := client.NewRevoker(nc, root)
	seq, err := r.RevokeKey(ctx, "acme", k.Key.ID, "leaked in a CI log", &client.Call{IdempotencyKey: "incident-7"})
	if err != nil {
		panic(err)
	}
	d, _ := c.Verify(ctx, k.Secret, nil, &client.Call{MinSeq: seq})
	fmt.Println(d.Code, d.Evidence[0].Type, d.Evidence[0].Reason)

	// A retry with the same Idempotency-Key is the same revocation.
	again, _ := r.RevokeKey(ctx, "acme", k.Key.ID, "leaked in a CI log", &client.Call{IdempotencyKey: "incident-7"})
	fmt.Println(again == seq)

	// The whole tenant, for an incident of unknown extent.
	_, err = r.RevokeTenantKeys(ctx, "acme", time.Now(), "rotate everything", nil)
	fmt.Println(err)
	// Output:
	// REVOKED key.revoked leaked in a CI log
	// true
	// <nil>
}

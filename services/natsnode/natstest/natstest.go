// Package natstest starts real embedded NATS servers for tests: one node, or
// a three-node JetStream cluster in one process, on loopback ports with
// temporary store directories, stopped when the test ends; and the small
// helpers the tests of every package share (Eventually, Buffer). Every
// server refuses anonymous clients and holds each Keytrail role to its
// permissions (natsauth), as in production.
package natstest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode"

	"github.com/keytrail/keytrail/internal/testkit"
)

// Operator is the role of the tests' operator identity: every permission,
// for what an operator does outside Keytrail (and no Keytrail role may).
const Operator natsauth.Role = "operator"

// Auth is a server's (or cluster's) identities: one per Keytrail role with
// its permissions, and an operator's with every permission.
type Auth struct {
	Set      natsauth.Set
	Operator natsauth.Identity
}

// NewAuth makes fresh identities.
func NewAuth(tb testing.TB) Auth {
	tb.Helper()
	set, err := natsauth.NewSet()
	if err != nil {
		tb.Fatal(err)
	}
	op, err := natsauth.NewIdentity(Operator)
	if err != nil {
		tb.Fatal(err)
	}
	return Auth{Set: set, Operator: op}
}

// Users are the identities a node accepts.
func (a Auth) Users() []natsnode.User {
	return append(natsnode.Users(a.Set), natsnode.User{PublicKey: a.Operator.PublicKey()})
}

// Identity is the identity of role (Operator included).
func (a Auth) Identity(role natsauth.Role) natsauth.Identity {
	if role == Operator {
		return a.Operator
	}
	return a.Set[role]
}

// SeedFile writes role's seed to a file of the test (mode 0600) for
// --nats-nkey, and returns its path.
func (a Auth) SeedFile(tb testing.TB, role natsauth.Role) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), string(role)+".nk")
	if err := a.Identity(role).Write(path); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Server is one node with authentication and the role permissions on.
type Server struct {
	*natsnode.Node
	Auth
}

// RunServer starts a single JetStream node for the test, refusing
// anonymous clients and holding every role to its permissions.
func RunServer(tb testing.TB) *Server {
	tb.Helper()
	auth := NewAuth(tb)
	return &Server{Node: start(tb, natsnode.Config{Name: "single", StoreDir: tb.TempDir(), Listen: "127.0.0.1:0", Users: auth.Users()}), Auth: auth}
}

// ConnectAs connects to the server as role, closing the connection when
// the test ends.
func (s *Server) ConnectAs(tb testing.TB, role natsauth.Role, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	return Connect(tb, s.ClientURL(), s.Identity(role), opts...)
}

func start(tb testing.TB, cfg natsnode.Config) *natsnode.Node {
	tb.Helper()
	if cfg.ReadyTimeout == 0 {
		// A whole suite shares two cores: a cluster node may take longer
		// than a production start's 10 s to listen.
		cfg.ReadyTimeout = 45 * time.Second
	}
	n, err := natsnode.Start(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(n.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if cfg.Cluster == nil {
		if err := n.WaitJetStream(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	return n
}

// Connect opens a client connection to urls as id and closes it when the
// test ends.
func Connect(tb testing.TB, urls string, id natsauth.Identity, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	opts = append(append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, id.ConnectOptions()...), opts...)
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// Cluster is a JetStream cluster of embedded nodes.
type Cluster struct {
	tb    testing.TB
	Nodes []*natsnode.Node // nil while a node is stopped
	cfgs  []natsnode.Config
	Auth
}

// RunCluster starts an n-node JetStream cluster (n ≥ 3 for R3) and waits
// until it has a meta leader, every peer, and every node current.
func RunCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	clientPorts, routePorts := FreePorts(tb, n), FreePorts(tb, n)
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c := &Cluster{tb: tb, Nodes: make([]*natsnode.Node, n), Auth: NewAuth(tb)}
	for i := range n {
		c.cfgs = append(c.cfgs, natsnode.Config{
			Name:     fmt.Sprintf("n%d", i+1),
			StoreDir: tb.TempDir(),
			Listen:   fmt.Sprintf("127.0.0.1:%d", clientPorts[i]),
			Cluster: &natsnode.ClusterConfig{
				Name: "keytrail-test", Listen: fmt.Sprintf("127.0.0.1:%d", routePorts[i]), Routes: routes,
			},
			Users: c.Users(),
		})
	}
	for i := range n {
		c.Nodes[i] = start(tb, c.cfgs[i])
	}
	c.WaitReady()
	return c
}

// ConnectAs connects to every node of the cluster (stopped ones included)
// as role, closing the connection when the test ends.
func (c *Cluster) ConnectAs(tb testing.TB, role natsauth.Role, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	return Connect(tb, c.AllURLs(), c.Identity(role), opts...)
}

// FreePorts asks the kernel for n free loopback ports. Another process could
// take one before the server binds it; on loopback in a test that is rare.
func FreePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// URLs is a comma-separated list of every running node's client URL.
func (c *Cluster) URLs() string {
	var us []string
	for _, n := range c.Nodes {
		if n != nil {
			us = append(us, n.ClientURL())
		}
	}
	return strings.Join(us, ",")
}

// AllURLs lists every node's client URL, stopped ones included, as a client
// configured for the whole cluster would.
func (c *Cluster) AllURLs() string {
	var us []string
	for _, cfg := range c.cfgs {
		us = append(us, "nats://"+cfg.Listen)
	}
	return strings.Join(us, ",")
}

// WaitReady waits until the running nodes agree on a meta leader that sees
// every peer and each running node is current.
func (c *Cluster) WaitReady() {
	c.tb.Helper()
	testkit.Eventually(c.tb, 30*time.Second, func() error {
		leaders := 0
		for _, n := range c.Nodes {
			if n == nil {
				continue
			}
			s := n.Server()
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("%s is not current", n.Name())
			}
			if s.JetStreamIsLeader() {
				leaders++
				if got := len(s.JetStreamClusterPeers()); got != len(c.Nodes) {
					return fmt.Errorf("leader sees %d peers, want %d", got, len(c.Nodes))
				}
			}
		}
		if leaders != 1 {
			return fmt.Errorf("%d meta leaders", leaders)
		}
		return nil
	})
}

// StreamLeader returns the index of the node leading stream, waiting for one.
func (c *Cluster) StreamLeader(stream string) int {
	c.tb.Helper()
	idx := -1
	testkit.Eventually(c.tb, 30*time.Second, func() error {
		for i, n := range c.Nodes {
			if n != nil && n.Server().JetStreamIsStreamLeader("$G", stream) {
				idx = i
				return nil
			}
		}
		return fmt.Errorf("no leader for stream %s", stream)
	})
	return idx
}

// Stop shuts node i down.
func (c *Cluster) Stop(i int) {
	c.Nodes[i].Shutdown()
	c.Nodes[i] = nil
}

// Restart starts node i again on its old addresses and store.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	c.Nodes[i] = start(c.tb, c.cfgs[i])
}

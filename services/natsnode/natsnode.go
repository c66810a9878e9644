// Package natsnode runs an embedded nats-server with JetStream for
// `keytrail dev` and for tests: file storage under a data directory, every
// write synced before it is acknowledged, a client listener other nodes can
// join, and optionally a cluster route so that three of them form a
// replicated JetStream cluster. It is the only non-test code that imports
// nats-server.
package natsnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/services/natsauth"
)

// Config describes one embedded node.
type Config struct {
	// Name is the server name; unique within a cluster.
	Name string
	// StoreDir holds JetStream's files.
	StoreDir string
	// Listen is the client address, host:port; port 0 picks a free port.
	Listen string
	// Cluster, when set, makes the node a member of a JetStream cluster.
	Cluster *ClusterConfig
	// Logger receives the server's log; nil discards it.
	Logger *slog.Logger
	// ReadyTimeout bounds Start's wait for the node to accept connections.
	ReadyTimeout time.Duration
	// Users are the identities the node accepts; anonymous clients are
	// refused, so at least one is required.
	Users []User
}

// User is an identity the node accepts: a public nkey and what it may do.
type User struct {
	PublicKey string
	// Permissions nil gives every permission: an operator's identity
	// (tests use one to do what no Keytrail role may).
	Permissions *natsauth.Permissions
}

// Users are the identities of set with their roles' permissions.
func Users(set natsauth.Set) []User {
	var us []User
	for _, r := range natsauth.Roles {
		if id, ok := set[r]; ok {
			p := natsauth.For(r)
			us = append(us, User{PublicKey: id.PublicKey(), Permissions: &p})
		}
	}
	return us
}

// ClusterConfig is the node's cluster membership.
type ClusterConfig struct {
	Name   string
	Listen string   // host:port for routes; port 0 picks a free port
	Routes []string // nats-route://host:port of every member, this one included
}

// Node is a running embedded server.
type Node struct {
	cfg Config
	srv *server.Server
}

// Start starts a node and waits until it accepts connections.
func Start(cfg Config) (*Node, error) {
	opts, err := options(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsnode: %w", err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(slogAdapter{cfg.Logger}, false, false, false)
	}
	srv.Start()
	wait := cfg.ReadyTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	if !srv.ReadyForConnections(wait) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("natsnode: %s not ready after %s", cfg.Name, wait)
	}
	return &Node{cfg: cfg, srv: srv}, nil
}

func options(cfg Config) (*server.Options, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsnode: a store directory is required")
	}
	host, port, err := splitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("natsnode: listen %q: %w", cfg.Listen, err)
	}
	if len(cfg.Users) == 0 {
		return nil, errors.New("natsnode: no users: anonymous clients are never accepted")
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		// Acknowledged must mean durable: fsync every write before the ack
		// (Jepsen: the default syncs every two minutes and loses acked writes).
		SyncAlways: true,
		NoSigs:     true,
		NoLog:      cfg.Logger == nil,
		// Keep HTTP monitoring off; metrics come from Keytrail's endpoints.
		HTTPPort: 0,
	}
	for _, u := range cfg.Users {
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.PublicKey, Permissions: serverPermissions(u.Permissions)})
	}
	if c := cfg.Cluster; c != nil {
		chost, cport, err := splitHostPort(c.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsnode: cluster listen %q: %w", c.Listen, err)
		}
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: chost, Port: cport}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("natsnode: route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	return opts, nil
}

func serverPermissions(p *natsauth.Permissions) *server.Permissions {
	if p == nil {
		return nil
	}
	sp := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.PublishAllow, Deny: p.PublishDeny},
		Subscribe: &server.SubjectPermission{Allow: p.SubscribeAllow, Deny: p.SubscribeDeny},
	}
	if p.Responses {
		sp.Response = &server.ResponsePermission{} // the server's defaults, as allow_responses: true
	}
	return sp
}

// splitHostPort maps "host:0" to the server's "any free port" (-1).
func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	if port == 0 {
		port = -1
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return host, port, nil
}

// ClientURL is the nats:// URL of the client listener.
func (n *Node) ClientURL() string { return n.srv.ClientURL() }

// Addr is the client listener's address.
func (n *Node) Addr() net.Addr { return n.srv.Addr() }

// ClusterAddr is the route listener's address, nil outside a cluster.
func (n *Node) ClusterAddr() *net.TCPAddr { return n.srv.ClusterAddr() }

// Name is the server name.
func (n *Node) Name() string { return n.cfg.Name }

// Config returns the configuration the node was started with.
func (n *Node) Config() Config { return n.cfg }

// Connect opens a client connection to this node as id without going
// through the network stack.
func (n *Node) Connect(id natsauth.Identity, opts ...nats.Option) (*nats.Conn, error) {
	opts = append(append([]nats.Option{nats.InProcessServer(n.srv), nats.Name("keytrail-" + string(id.Role))}, id.ConnectOptions()...), opts...)
	return nats.Connect("", opts...)
}

// Server exposes the server for tests that inspect cluster state.
func (n *Node) Server() *server.Server { return n.srv }

// Shutdown stops the node and waits until it has.
func (n *Node) Shutdown() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

// WaitJetStream blocks until JetStream on this node answers requests: in a
// cluster, until a meta leader is elected and this node is current.
func (n *Node) WaitJetStream(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if n.srv.JetStreamEnabled() && (n.cfg.Cluster == nil || n.srv.JetStreamIsCurrent()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("natsnode: %s: jetstream not ready: %w", n.cfg.Name, ctx.Err())
		case <-t.C:
		}
	}
}

// slogAdapter routes the server's log lines to slog.
type slogAdapter struct{ l *slog.Logger }

// Notices (the banner, listeners) are debug detail for Keytrail operators.
func (a slogAdapter) Noticef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }

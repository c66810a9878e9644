package app

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/trust"
)

// natsFlags are how a role that does not embed NATS reaches a cluster, as
// its own identity (natsauth).
type natsFlags struct {
	role    natsauth.Role
	urls    string
	creds   string
	nkey    string
	data    string
	tlsCA   string
	tlsCert string
	tlsKey  string
	name    string
	// trust is the pinned root public key's file (--trust).
	trust string
}

func (n *natsFlags) register(fs *flag.FlagSet, role natsauth.Role) {
	n.role = role
	fs.StringVar(&n.urls, "nats", "", "NATS server URLs, comma-separated (default: <data>/addresses.json, else nats://"+DefaultNATSListen+")")
	fs.StringVar(&n.nkey, "nats-nkey", "", "NATS nkey seed file of the "+string(role)+" identity (default: <data>/nats/"+role.SeedFile()+" when it exists)")
	fs.StringVar(&n.creds, "nats-creds", "", "NATS credentials file (JWT + nkey seed)")
	fs.StringVar(&n.data, "data", DefaultDataDir, "data directory of a local keytrail dev, where the NATS address and seed files are found")
	fs.StringVar(&n.tlsCA, "nats-tls-ca", "", "CA certificate file to verify the NATS servers")
	fs.StringVar(&n.tlsCert, "nats-tls-cert", "", "client certificate file for NATS mutual TLS")
	fs.StringVar(&n.tlsKey, "nats-tls-key", "", "client key file for NATS mutual TLS")
	fs.StringVar(&n.name, "nats-name", "keytrail-"+string(role), "connection name shown by the NATS server")
	fs.StringVar(&n.trust, "trust", "", "the root public key of signed history to pin: only events its signers signed count (default: <data>/trust.pub when it exists; none: events are not judged by signature)")
}

// trustKey is the pinned root public key, nil when none is given or found.
func (n *natsFlags) trustKey() (ed25519.PublicKey, error) {
	path := n.trust
	if path == "" {
		if p := filepath.Join(n.data, trust.RootPubFile); fileExists(p) {
			path = p
		}
	}
	if path == "" {
		return nil, nil
	}
	return trust.ReadPublic(path)
}

func (n *natsFlags) validate() error {
	if n.urls == "" {
		n.urls = "nats://" + DefaultNATSListen
		var a Addresses
		if b, err := os.ReadFile(filepath.Join(n.data, "addresses.json")); err == nil && json.Unmarshal(b, &a) == nil && a.NATS != "" {
			n.urls = a.NATS
		}
	}
	if strings.TrimSpace(n.urls) == "" {
		return usageError{errors.New("-nats: at least one URL is required")}
	}
	if (n.tlsCert == "") != (n.tlsKey == "") {
		return usageError{errors.New("-nats-tls-cert and -nats-tls-key go together")}
	}
	if n.creds != "" && n.nkey != "" {
		return usageError{errors.New("-nats-creds and -nats-nkey are two ways to say who this node is: give one")}
	}
	if n.creds == "" && n.nkey == "" {
		if path := filepath.Join(n.data, "nats", n.role.SeedFile()); fileExists(path) {
			n.nkey = path
		}
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// closeConn closes a connection made by connect without its handlers logging
// the disconnect after the caller has returned.
func closeConn(nc *nats.Conn) {
	nc.SetDisconnectErrHandler(nil)
	nc.SetReconnectHandler(nil)
	nc.Close()
}

// connect dials the cluster and keeps reconnecting for ever: a role without
// NATS fails closed (the gateway goes STALE) rather than exiting.
func (n *natsFlags) connect(ctx context.Context, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(n.name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.ReconnectJitter(25*time.Millisecond, 25*time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		// A permission the role lacks shows here (the request itself only
		// times out).
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Error("nats", "err", err) }),
	}
	// Replies under the role's own inbox prefix: the only one it may
	// subscribe to.
	opts = append(opts, nats.CustomInboxPrefix(n.role.InboxPrefix()))
	if n.creds != "" {
		opts = append(opts, nats.UserCredentials(n.creds))
	}
	if n.nkey != "" {
		id, err := natsauth.ReadSeedFile(n.role, n.nkey)
		if err != nil {
			return nil, usageError{fmt.Errorf("-nats-nkey: %w", err)}
		}
		opts = append(opts, id.ConnectOptions()...)
	}
	if n.tlsCA != "" {
		opts = append(opts, nats.RootCAs(n.tlsCA))
	}
	if n.tlsCert != "" {
		opts = append(opts, nats.ClientCert(n.tlsCert, n.tlsKey))
	}
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(n.urls, opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("connect to NATS at %s: %w", redactedURLs(n.urls), r.err)
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// redactedURLs is a comma-separated list of NATS URLs with any password
// replaced, for messages.
func redactedURLs(urls string) string {
	var out []string
	for _, u := range strings.Split(urls, ",") {
		u = strings.TrimSpace(u)
		if p, err := url.Parse(u); err == nil && p.User != nil {
			u = p.Redacted()
		}
		out = append(out, u)
	}
	return strings.Join(out, ",")
}

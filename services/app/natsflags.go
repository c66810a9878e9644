package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// natsFlags are how a role that does not embed NATS reaches a cluster.
type natsFlags struct {
	urls    string
	creds   string
	tlsCA   string
	tlsCert string
	tlsKey  string
	name    string
}

func (n *natsFlags) register(fs *flag.FlagSet, role string) {
	fs.StringVar(&n.urls, "nats", "nats://127.0.0.1:4222", "NATS server URLs, comma-separated (user:password@ in a URL is honoured)")
	fs.StringVar(&n.creds, "nats-creds", "", "NATS credentials file (JWT + nkey seed)")
	fs.StringVar(&n.tlsCA, "nats-tls-ca", "", "CA certificate file to verify the NATS servers")
	fs.StringVar(&n.tlsCert, "nats-tls-cert", "", "client certificate file for NATS mutual TLS")
	fs.StringVar(&n.tlsKey, "nats-tls-key", "", "client key file for NATS mutual TLS")
	fs.StringVar(&n.name, "nats-name", "keytrail-"+role, "connection name shown by the NATS server")
}

func (n *natsFlags) validate() error {
	if strings.TrimSpace(n.urls) == "" {
		return usageError{errors.New("-nats: at least one URL is required")}
	}
	if (n.tlsCert == "") != (n.tlsKey == "") {
		return usageError{errors.New("-nats-tls-cert and -nats-tls-key go together")}
	}
	return nil
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
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if n.creds != "" {
		opts = append(opts, nats.UserCredentials(n.creds))
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
			return nil, fmt.Errorf("connect to NATS: %w", r.err)
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

package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
)

// TLSFiles are a listener's certificate and key (PEM); empty: plain HTTP.
type TLSFiles struct{ Cert, Key string }

func (f TLSFiles) enabled() bool { return f.Cert != "" || f.Key != "" }

// certificate serves a listener's certificate and loads it again on
// reload (SIGHUP), keeping the old one when the new files do not load.
type certificate struct {
	files TLSFiles
	cur   atomic.Pointer[tls.Certificate]
}

// loadCertificate loads files' certificate; nil without error when TLS is
// not asked for.
func loadCertificate(files TLSFiles) (*certificate, error) {
	if !files.enabled() {
		return nil, nil
	}
	if files.Cert == "" || files.Key == "" {
		return nil, usageError{errors.New("-tls-cert and -tls-key go together")}
	}
	c := &certificate{files: files}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certificate) reload() error {
	cert, err := tls.LoadX509KeyPair(c.files.Cert, c.files.Key)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	c.cur.Store(&cert)
	return nil
}

// config is the listener's TLS configuration: TLS 1.2 and up, HTTP/2 for
// clients that negotiate it.
func (c *certificate) config() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }}
}

// reloadOnSIGHUP loads every certificate again on each SIGHUP until ctx
// ends, logging what happened; a certificate that fails to load keeps the
// one it had.
func reloadOnSIGHUP(ctx context.Context, log *slog.Logger, certs ...*certificate) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			for _, c := range certs {
				if err := c.reload(); err != nil {
					log.Error("certificate not reloaded; keeping the one in use", "cert", c.files.Cert, "err", err)
				} else {
					log.Info("certificate reloaded", "cert", c.files.Cert)
				}
			}
		}
	}()
}

// serve serves srv on ln, with TLS when cert is set; it returns nil
// once the server is shut down.
func serve(srv roleServer, ln net.Listener, cert *certificate) error {
	var err error
	if hs, ok := srv.(*http.Server); ok && cert != nil {
		hs.TLSConfig = cert.config()
		err = hs.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// roleServer is what serves a role's listener: net/http's server, or the
// gateway's own for plaintext.
type roleServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// scheme is the URL scheme of a listener.
func scheme(cert *certificate) string {
	if cert != nil {
		return "https://"
	}
	return "http://"
}

// maxServerError bounds what of one net/http error line a role logs.
const maxServerError = 512

// serverErrorLog is net/http's error log for a role's server: its lines
// (TLS handshake errors above all, which quote what a client offered —
// 200 KB of protocol names, say) become the role's log records, clipped,
// instead of raw lines of any length on stderr.
func serverErrorLog(log *slog.Logger) *stdlog.Logger {
	return stdlog.New(serverLogWriter{log}, "", 0)
}

type serverLogWriter struct{ log *slog.Logger }

func (w serverLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p[:min(len(p), maxServerError+1)]))
	if len(p) > maxServerError {
		msg = msg[:min(len(msg), maxServerError)] + "…"
	}
	w.log.Warn("http server", "err", msg)
	return len(p), nil
}

package app

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

// testCA makes a CA and a server certificate for 127.0.0.1, and writes the
// CA to a file for -nats-tls-ca.
func testCA(t *testing.T) (caFile string, serverCert tls.Certificate) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey := key(), key()
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keytrail test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
}

// TestRolesReachNATSOverTLS: -nats-tls-ca verifies a TLS server; without it
// the connection is refused. (The stream is missing on purpose: reaching the
// "does not exist" check proves the TLS connection worked.)
func TestRolesReachNATSOverTLS(t *testing.T) {
	caFile, cert := testCA(t)
	auth := natstest.NewAuth(t)
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, TLS: true, TLSTimeout: 5,
		Nkeys:     []*server.NkeyUser{{Nkey: auth.Identity(natsauth.Gateway).PublicKey()}},
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("TLS server not ready")
	}
	url := "tls://" + s.Addr().String()
	seed := auth.SeedFile(t, natsauth.Gateway)
	var errb bytes.Buffer
	if code := Main(ctxFor(t), []string{"gateway", "--nats", url, "--nats-nkey", seed, "--nats-tls-ca", caFile}, &bytes.Buffer{}, &errb); code != ExitError || !strings.Contains(errb.String(), "does not exist") {
		t.Fatalf("gateway over TLS with the CA: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := Main(ctxFor(t), []string{"gateway", "--nats", url, "--nats-nkey", seed}, &bytes.Buffer{}, &errb); code != ExitError || !strings.Contains(errb.String(), "connect to NATS at "+url) {
		t.Fatalf("gateway over TLS without the CA: exit %d, %q", code, errb.String())
	}
}

// writeCert writes a certificate and its key as PEM files.
func writeCert(t *testing.T, dir string, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: key}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// trusting is an HTTPS client that trusts the CA in caFile, HTTP/2 when the
// server offers it, a new connection for every request.
func trusting(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	b, err := os.ReadFile(caFile)
	if err != nil || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("CA %s: %v", caFile, err)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true, DisableKeepAlives: true}}
}

// renewCertificate writes a certificate of a new CA into certFile and
// keyFile, sends this process SIGHUP and returns the new CA's file.
func renewCertificate(t *testing.T, certFile, keyFile string) (caFile string) {
	t.Helper()
	ca, cert := testCA(t)
	c, k := writeCert(t, t.TempDir(), cert)
	for from, to := range map[string]string{c: certFile, k: keyFile} {
		b, _ := os.ReadFile(from)
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestTLSOnTheAdminAndGatewayListeners: keytrail dev terminates TLS on both
// listeners, speaks HTTP/2 to clients that negotiate it, and serves a new
// certificate after SIGHUP without a restart.
func TestTLSOnTheAdminAndGatewayListeners(t *testing.T) {
	caFile, cert := testCA(t)
	certFile, keyFile := writeCert(t, t.TempDir(), cert)
	d, err := StartDev(ctxFor(t), DevConfig{DataDir: t.TempDir(), AdminListen: "127.0.0.1:0", GatewayListen: "127.0.0.1:0",
		NATSListen: "127.0.0.1:0", TLS: TLSFiles{Cert: certFile, Key: keyFile}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := d.Addresses()
	if !strings.HasPrefix(a.Admin, "https://") || !strings.HasPrefix(a.Gateway, "https://") {
		t.Fatalf("addresses: %+v", a)
	}
	c := trusting(t, caFile)
	for _, u := range []string{a.Admin + "/healthz", a.Gateway + "/_keytrail/healthz"} {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("%s: %d over %s", u, resp.StatusCode, resp.Proto)
		}
	}
	// A new certificate (another CA) in the same files, then SIGHUP.
	ca2 := renewCertificate(t, certFile, keyFile)
	testkit.Eventually(t, 10*time.Second, func() error {
		for _, u := range []string{a.Admin + "/healthz", a.Gateway + "/_keytrail/healthz"} {
			resp, err := trusting(t, ca2).Get(u)
			if err != nil {
				return err
			}
			resp.Body.Close()
		}
		return nil
	})
}

// TestGatewayWorkersReloadCertificatesOnSIGHUP: the supervisor of
// `keytrail gateway --workers 2` passes SIGHUP on: every worker serves the
// new certificate.
func TestGatewayWorkersReloadCertificatesOnSIGHUP(t *testing.T) {
	node := natstest.RunServer(t)
	ensureStream(t, node)
	caFile, cert := testCA(t)
	certFile, keyFile := writeCert(t, t.TempDir(), cert)
	ctx, cancel := context.WithCancel(ctxFor(t))
	defer cancel()
	var out, errb testkit.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"gateway", "--workers", "2", "--nats", node.ClientURL(), "--nats-nkey", node.SeedFile(t, natsauth.Gateway),
			"--gateway-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile}, &out, &errb)
	}()
	var gw string
	testkit.Eventually(t, 30*time.Second, func() error {
		for _, l := range strings.Split(out.String(), "\n") {
			if u, ok := strings.CutPrefix(l, "gateway "); ok {
				gw = u
				return nil
			}
		}
		return fmt.Errorf("not ready: %s", errb.String())
	})
	// Every connection a new one, which the kernel gives either worker.
	allServe := func(caFile string) func() error {
		return func() error {
			c := trusting(t, caFile) // no keep-alive
			for range 16 {
				resp, err := c.Get(gw + "/_keytrail/healthz")
				if err != nil {
					return err
				}
				resp.Body.Close()
			}
			return nil
		}
	}
	testkit.Eventually(t, 10*time.Second, allServe(caFile))
	ca2 := renewCertificate(t, certFile, keyFile)
	testkit.Eventually(t, 10*time.Second, allServe(ca2))
	cancel()
	if code := <-done; code != ExitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

// TestServerErrorsAreClippedRecords: what net/http logs about a client (a
// TLS handshake error quoting 200 KB of protocol names, say) becomes one
// JSON record of at most maxServerError bytes of it, not a raw line.
func TestServerErrorsAreClippedRecords(t *testing.T) {
	var out bytes.Buffer
	l := serverErrorLog(slog.New(slog.NewJSONHandler(&out, nil)))
	l.Printf("http: TLS handshake error from 127.0.0.1:1: tls: client requested unsupported application protocols (%q)", strings.Repeat("\x01", 200<<10))
	line := strings.TrimSpace(out.String())
	if strings.Count(line, "\n") != 0 || len(line) > 4096 {
		t.Fatalf("%d bytes in %d lines", len(line), strings.Count(line, "\n")+1)
	}
	var rec struct{ Msg, Err string }
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Msg != "http server" || !strings.HasPrefix(rec.Err, "http: TLS handshake error") {
		t.Fatalf("%v: %s", err, line)
	}
}

package app

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

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
	if code := Main(ctxFor(t), []string{"gateway", "--nats", url, "--nats-nkey", seed}, &bytes.Buffer{}, &errb); code != ExitError || !strings.Contains(errb.String(), "connect to NATS") {
		t.Fatalf("gateway over TLS without the CA: exit %d, %q", code, errb.String())
	}
}

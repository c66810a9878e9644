package h1_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keytrail/keytrail/internal/testkit"
	"github.com/keytrail/keytrail/services/gateway/h1"
)

// scripted is an upstream on loopback that reads one request head per
// exchange and answers with the next of its answers, raw; after the last
// it closes. It counts connections.
type scripted struct {
	addr         string
	conns, ended atomic.Int32 // connections accepted, and closed
}

func newScripted(t *testing.T, answer func(conn, n int, head string) (string, bool)) *scripted {
	return newScriptedOn(t, nil, answer)
}

// newScriptedOn is newScripted with TLS when cfg is set.
func newScriptedOn(t *testing.T, cfg *tls.Config, answer func(conn, n int, head string) (string, bool)) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	s := &scripted{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			id := int(s.conns.Add(1))
			go func() {
				defer s.ended.Add(1)
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					head, err := readHead(br)
					if err != nil {
						return
					}
					out, keep := answer(id, n, head)
					io.WriteString(c, out)
					if !keep {
						return
					}
				}
			}()
		}
	}()
	return s
}

func readHead(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		b.WriteString(line)
		if line == "\r\n" {
			return b.String(), nil
		}
	}
}

func roundTrip(t *testing.T, tr *h1.Transport, addr string, req h1.Request) (int, http.Header, string, error) {
	t.Helper()
	req.Addr = addr
	if req.Method == "" {
		req.Method = "GET"
	}
	if req.Target == "" {
		req.Target = "/"
	}
	req.Host = "upstream"
	resp, err := tr.RoundTrip(context.Background(), &req)
	if err != nil {
		return 0, nil, "", err
	}
	h := resp.Header.Clone()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.Status, h, string(b), err
}

// TestConnectionsAreReused: one connection serves request after request,
// each body read to its end; an answer that ends with the connection, or
// says Connection: close, is not reused.
func TestConnectionsAreReused(t *testing.T) {
	up := newScripted(t, func(conn, n int, head string) (string, bool) {
		switch {
		case strings.HasPrefix(head, "GET /close "):
			return "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true
		case strings.HasPrefix(head, "GET /eof "):
			return "HTTP/1.1 200 OK\r\n\r\nuntil the end", false
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	})
	tr := &h1.Transport{}
	for range 5 {
		if st, _, body, err := roundTrip(t, tr, up.addr, h1.Request{}); st != 200 || body != "ok" || err != nil {
			t.Fatalf("%d %q %v", st, body, err)
		}
	}
	if n := up.conns.Load(); n != 1 {
		t.Fatalf("%d connections for 5 requests", n)
	}
	if _, _, body, err := roundTrip(t, tr, up.addr, h1.Request{Target: "/eof"}); body != "until the end" || err != nil {
		t.Fatalf("close-delimited: %q %v", body, err)
	}
	roundTrip(t, tr, up.addr, h1.Request{Target: "/close"})
	roundTrip(t, tr, up.addr, h1.Request{})
	if n := up.conns.Load(); n != 3 {
		t.Fatalf("%d connections; want a new one after each of the two that ended", n)
	}
}

// TestAConnectionClosedWhileIdleIsReplaced: an upstream that closed an idle
// connection costs a request without a body nothing (it is sent again on a
// new connection); one with a body never goes out on it (the connection is
// seen to be closed before), and is sent exactly once.
func TestAConnectionClosedWhileIdleIsReplaced(t *testing.T) {
	var posts atomic.Int32
	up := newScripted(t, func(conn, n int, head string) (string, bool) {
		if strings.HasPrefix(head, "POST ") {
			posts.Add(1)
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false // closes after each answer, without saying so
	})
	tr := &h1.Transport{}
	for i := range 3 {
		if st, _, _, err := roundTrip(t, tr, up.addr, h1.Request{}); st != 200 || err != nil {
			t.Fatalf("GET %d: %d %v", i, st, err)
		}
	}
	// The pool holds a connection the upstream has closed.
	st, _, _, err := roundTrip(t, tr, up.addr, h1.Request{Method: "POST", Body: strings.NewReader("x"), ContentLength: 1})
	if st != 200 || err != nil || posts.Load() != 1 {
		t.Fatalf("a POST after the upstream closed the idle connection: %d %v, sent %d times", st, err, posts.Load())
	}
}

// TestResponseBodies: Content-Length, chunked (with trailers), none for
// HEAD, 204 and 304; interim answers are read past; an upgrade is refused.
func TestResponseBodies(t *testing.T) {
	up := newScripted(t, func(conn, n int, head string) (string, bool) {
		switch strings.Fields(head)[1] {
		case "/chunked":
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n", true
		case "/interim":
			return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nz", true
		case "/nocontent":
			return "HTTP/1.1 204 No Content\r\n\r\n", true
		case "/upgrade":
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", true
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true // HEAD
	})
	tr := &h1.Transport{}
	if st, h, body, err := roundTrip(t, tr, up.addr, h1.Request{Target: "/chunked"}); st != 200 || body != "abcde" || err != nil || h.Get("Transfer-Encoding") != "" {
		t.Fatalf("chunked: %d %q %v %v", st, body, err, h)
	}
	if st, _, body, err := roundTrip(t, tr, up.addr, h1.Request{Target: "/interim"}); st != 201 || body != "z" || err != nil {
		t.Fatalf("interim: %d %q %v", st, body, err)
	}
	if st, _, body, err := roundTrip(t, tr, up.addr, h1.Request{Target: "/nocontent"}); st != 204 || body != "" || err != nil {
		t.Fatalf("204: %d %q %v", st, body, err)
	}
	if st, h, body, err := roundTrip(t, tr, up.addr, h1.Request{Method: "HEAD", Target: "/head"}); st != 200 || body != "" || err != nil || h.Get("Content-Length") != "5" {
		t.Fatalf("HEAD: %d %q %v %v", st, body, err, h)
	}
	if _, _, _, err := roundTrip(t, tr, up.addr, h1.Request{Target: "/upgrade"}); !errors.Is(err, h1.ErrUpgrade) {
		t.Fatalf("upgrade: %v", err)
	}
	if st, _, _, err := roundTrip(t, tr, up.addr, h1.Request{Target: "/nocontent"}); st != 204 || err != nil {
		t.Fatalf("after the upgrade: %d %v", st, err)
	}
	if n := up.conns.Load(); n != 2 {
		t.Fatalf("%d connections; only the upgrade should have cost one", n)
	}
}

// TestMalformedAnswersAreErrors: an upstream's answer that could be read
// two ways is an error, never passed on.
func TestMalformedAnswersAreErrors(t *testing.T) {
	for _, answer := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"garbage\r\n\r\n",
	} {
		up := newScripted(t, func(conn, n int, head string) (string, bool) { return answer, false })
		if st, _, _, err := roundTrip(t, &h1.Transport{}, up.addr, h1.Request{}); err == nil {
			t.Errorf("%q: %d and no error", answer, st)
		}
	}
}

// TestRequestBodiesAndHeaders: a body of known length and one of unknown
// length (sent chunked) arrive whole; skipped headers stay behind and
// extra ones are added; a value with CR LF cannot start a header.
func TestRequestBodiesAndHeaders(t *testing.T) {
	seen := make(chan *http.Request, 4)
	bodies := make(chan string, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- r
		bodies <- string(b)
	}))
	defer up.Close()
	addr := strings.TrimPrefix(up.URL, "http://")
	tr := &h1.Transport{}
	h := http.Header{"X-Keep": {"1"}, "X-Drop": {"2"}, "X-Inject": {"a\r\nX-Evil: 1"}}
	for _, req := range []h1.Request{
		{Method: "POST", Body: strings.NewReader("known"), ContentLength: 5, Header: h, Skip: skip("X-Drop"), Extra: []string{"X-Added", "3"}},
		{Method: "POST", Body: io.MultiReader(strings.NewReader("unknown "), strings.NewReader("length")), ContentLength: -1},
	} {
		if st, _, _, err := roundTrip(t, tr, addr, req); st != 200 || err != nil {
			t.Fatalf("%d %v", st, err)
		}
	}
	r := <-seen
	if b := <-bodies; b != "known" || r.Header.Get("X-Keep") != "1" || r.Header.Get("X-Drop") != "" || r.Header.Get("X-Added") != "3" ||
		r.Header.Get("X-Evil") != "" || r.Host != "upstream" {
		t.Fatalf("%q %v host %s", b, r.Header, r.Host)
	}
	r = <-seen
	if b := <-bodies; b != "unknown length" || r.ContentLength != -1 {
		t.Fatalf("%q %d", b, r.ContentLength)
	}
}

type skip string

func (s skip) Skip(name string) bool { return name == string(s) }

// TestTheResponseHeaderTimeout: an upstream that does not answer in time
// is a timeout error.
func TestTheResponseHeaderTimeout(t *testing.T) {
	release := make(chan struct{})
	up := newScripted(t, func(conn, n int, head string) (string, bool) { <-release; return "", false })
	defer close(release)
	tr := &h1.Transport{ResponseHeaderTimeout: 100 * time.Millisecond}
	_, _, _, err := roundTrip(t, tr, up.addr, h1.Request{})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%v", err)
	}
}

// TestAFailedDialIsADialError: the gateway ejects an upstream (and retries
// elsewhere) only on a *net.OpError with Op "dial".
func TestAFailedDialIsADialError(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, _, _, err := roundTrip(t, &h1.Transport{}, addr, h1.Request{})
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("%v", err)
	}
}

// failingBody sends n bytes, then fails: a client that hung up mid-body.
type failingBody struct{ n int }

func (b *failingBody) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, errors.New("the client went away")
	}
	k := min(len(p), b.n)
	for i := range k {
		p[i] = 'A'
	}
	b.n -= k
	return k, nil
}

// TestAConnectionWhoseBodyWasCutIsNeverReused: an upstream that answers as
// soon as it has read a head (as nginx does for a `return`, a static file or
// an error page) still waits for the rest of the body; if the client's body
// breaks off, that connection must not carry another request — the upstream
// would read it as the end of the body, and a request hidden in the next
// body would reach it with identity headers of the attacker's choosing,
// while the next client got someone else's answer.
func TestAConnectionWhoseBodyWasCutIsNeverReused(t *testing.T) {
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%v", secure), func(t *testing.T) { cutBody(t, secure) })
	}
}

func cutBody(t *testing.T, secure bool) {
	var cfg *tls.Config
	tr := &h1.Transport{ResponseHeaderTimeout: 2 * time.Second}
	if secure {
		srv := httptest.NewUnstartedServer(nil)
		srv.StartTLS()
		cfg = srv.TLS
		tr.TLS = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "example.com"}
		srv.Close()
	}
	up := newScriptedOn(t, cfg, func(conn, n int, head string) (string, bool) {
		line := strings.SplitN(head, "\r\n", 2)[0]
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(line), line), true
	})
	req := h1.Request{TLS: secure, Method: "POST", Target: "/cut", Body: &failingBody{n: 5000}, ContentLength: 100000}
	roundTrip(t, tr, up.addr, req) // the answer may or may not come first: either way, the connection is done
	st, _, body, err := roundTrip(t, tr, up.addr, h1.Request{TLS: secure, Method: "POST", Target: "/next", Body: strings.NewReader("x"), ContentLength: 1})
	if err != nil || st != 200 || body != "POST /next HTTP/1.1" {
		t.Fatalf("the next request: %d %.80q %v", st, body, err)
	}
	if n := up.conns.Load(); n != 2 {
		t.Fatalf("%d connections: the cut one was reused", n)
	}
}

// TestNothingWaitsForEver: a TLS handshake an upstream never answers is
// bounded; Close ends an exchange waiting for an answer at once; idle
// connections past IdleTimeout are closed by SweepIdle.
func TestNothingWaitsForEver(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	tr := &h1.Transport{HandshakeTimeout: 200 * time.Millisecond}
	start := time.Now()
	if _, _, _, err := roundTrip(t, tr, silent.Addr().String(), h1.Request{TLS: true}); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("a handshake never answered: %v after %s", err, time.Since(start))
	}

	// An exchange waiting for an answer ends when the transport closes.
	done := make(chan error, 1)
	go func() { _, _, _, err := roundTrip(t, tr, silent.Addr().String(), h1.Request{}); done <- err }()
	<-accepted
	<-accepted
	tr.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("an answer from nowhere")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close left an exchange waiting")
	}

	// Idle connections are swept.
	up := newScripted(t, func(conn, n int, head string) (string, bool) {
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true
	})
	tr = &h1.Transport{IdleTimeout: time.Minute}
	if st, _, _, err := roundTrip(t, tr, up.addr, h1.Request{}); st != 200 || err != nil {
		t.Fatal(st, err)
	}
	tr.SweepIdle(time.Now())
	if up.ended.Load() != 0 {
		t.Fatal("a connection idle for less than IdleTimeout was closed")
	}
	tr.SweepIdle(time.Now().Add(time.Hour))
	testkit.Eventually(t, 5*time.Second, func() error {
		if up.ended.Load() != 1 {
			return errors.New("the sweep left an expired idle connection open")
		}
		return nil
	})
}

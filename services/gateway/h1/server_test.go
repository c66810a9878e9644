package h1_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keytrail/keytrail/services/gateway/h1"
)

// start serves h with an h1.Server on a loopback port.
func start(t testing.TB, h http.Handler, mutate ...func(*h1.Server)) (*h1.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &h1.Server{Handler: h}
	for _, m := range mutate {
		m(srv)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String()
}

// exchange writes raw to a new connection and returns everything the
// server sent until it closed the connection or 2 s passed.
func exchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

// echo answers with what it read of the request.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(499)
		return
	}
	fmt.Fprintf(w, "%s %s %s host=%s cl=%d body=%q", r.Method, r.RequestURI, r.Proto, r.Host, r.ContentLength, body)
})

// TestRequestsThatCouldBeReadTwoWaysAreRefused: every reading a proxy
// behind or before the gateway could make differently — the ways requests
// are smuggled — is answered 4xx/5xx and the connection closed, so that
// nothing after it is taken for a request.
func TestRequestsThatCouldBeReadTwoWaysAreRefused(t *testing.T) {
	_, addr := start(t, echo)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, c := range []struct {
		name, head string
		status     int
	}{
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"a transfer coding other than chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"two Transfer-Encoding headers", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
		{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"differing Content-Lengths", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
		{"a signed Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na", 400},
		{"a negative Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"a Content-Length of -0", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -0\r\n\r\n", 400},
		{"a list as Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\na", 400},
		{"obsolete line folding", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400},
		{"white space before a colon", "GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n", 400},
		{"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"no Host in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400},
		{"a Host with a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
		{"a NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400},
		{"a bare CR in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400},
		{"a header line without a colon", "GET / HTTP/1.1\r\nHost: x\r\nX-A\r\n\r\n", 400},
		{"two spaces in the request line", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"a method that is not a token", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"HTTP/2 in a request line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"not HTTP", "GET / FTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"an Expect other than 100-continue", "GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", 417},
		{"a target that is not a path or a URL", "GET foo HTTP/1.1\r\nHost: x\r\n\r\n", 400},
	} {
		got := exchange(t, addr, c.head+smuggled)
		if !strings.HasPrefix(got, fmt.Sprintf("HTTP/1.1 %d ", c.status)) {
			t.Errorf("%s: %q", c.name, got)
			continue
		}
		if strings.Count(got, "HTTP/1.1 ") != 1 || !strings.Contains(got, "Connection: close") {
			t.Errorf("%s: the request after it was answered too, or the connection kept: %q", c.name, got)
		}
	}
}

// TestHeadsThatAreTooLargeAreRefused: 414 for a request line and 431 for
// headers beyond MaxHeaderBytes, without reading the rest.
func TestHeadsThatAreTooLargeAreRefused(t *testing.T) {
	_, addr := start(t, echo, func(s *h1.Server) { s.MaxHeaderBytes = 8 << 10 })
	if got := exchange(t, addr, "GET /"+strings.Repeat("a", 10<<10)+" HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 414 ") {
		t.Errorf("long request line: %.60q", got)
	}
	if got := exchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X-A: "+strings.Repeat("b", 100)+"\r\n", 100)+"\r\n"); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Errorf("many headers: %.60q", got)
	}
	if got := exchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Long: "+strings.Repeat("b", 6<<10)+"\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Errorf("a header longer than the read buffer but within the limit: %.60q", got)
	}
}

// TestKeepAliveAndPipelining: requests on one connection are answered in
// order, pipelined or not; HTTP/1.0 closes unless asked to keep alive;
// Connection: close is honoured.
func TestKeepAliveAndPipelining(t *testing.T) {
	_, addr := start(t, echo)
	got := exchange(t, addr, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{`GET /a HTTP/1.1 host=x cl=0 body=""`, `POST /b HTTP/1.1 host=x cl=3 body="abc"`, `GET /c HTTP/1.1`} {
		if !strings.Contains(got, want) {
			t.Fatalf("missing %q in %q", want, got)
		}
	}
	if strings.Index(got, "/a ") > strings.Index(got, "/b ") || strings.Contains(got, "/never") {
		t.Fatalf("order, or a request after Connection: close: %q", got)
	}
	if got := exchange(t, addr, "GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n"); strings.Contains(got, "/b") || !strings.Contains(got, "Connection: close") {
		t.Fatalf("HTTP/1.0 kept alive: %q", got)
	}
	if got := exchange(t, addr, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n"); !strings.Contains(got, "/b") || !strings.Contains(got, "Connection: keep-alive") {
		t.Fatalf("HTTP/1.0 keep-alive: %q", got)
	}
}

// TestChunkedRequestBodies: a chunked body (with extensions and trailers)
// reaches the handler whole, and the request after it is read where it
// starts.
func TestChunkedRequestBodies(t *testing.T) {
	_, addr := start(t, echo)
	got := exchange(t, addr, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.Contains(got, `POST /a HTTP/1.1 host=x cl=-1 body="abcde"`) || !strings.Contains(got, "GET /b") {
		t.Fatalf("%q", got)
	}
	// A body cut off in its trailer is cut off, not whole.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Tra")
	c.(*net.TCPConn).CloseWrite()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(c)
	c.Close()
	if got := string(b); strings.Contains(got, "200 OK") {
		t.Fatalf("cut in the trailer: %q", got)
	}
	// A malformed chunk size fails the read, and the connection closes.
	got = exchange(t, addr, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 499 ") || strings.Contains(got, "GET /b") {
		t.Fatalf("malformed chunk: %q", got)
	}
}

// TestExpectContinue: 100 Continue is sent when the handler reads the
// body, never when it answers without reading it (and then the connection
// closes rather than reading the body as a request).
func TestExpectContinue(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "read %s", b)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
	if line, _ := br.ReadString('\n'); line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("before the body: %q", line)
	}
	br.ReadString('\n')
	io.WriteString(c, "hi")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "read hi" {
		t.Fatalf("%q", b)
	}

	got := exchange(t, addr, "POST /deny HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nExpect: 100-continue\r\n\r\n")
	if strings.Contains(got, "100 Continue") || !strings.HasPrefix(got, "HTTP/1.1 401 ") {
		t.Fatalf("not read: %q", got)
	}
}

// TestResponseFraming: a short answer gets a Content-Length; a long or
// flushed one is chunked (HTTP/1.1) or ends with the connection (1.0);
// HEAD, 204 and 304 have no body; a declared length is kept.
func TestResponseFraming(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/short":
			io.WriteString(w, "short")
		case "/long":
			io.WriteString(w, strings.Repeat("x", 10000))
		case "/declared":
			w.Header().Set("Content-Length", "7")
			io.WriteString(w, "decla")
			io.WriteString(w, "red")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			io.WriteString(w, "ignored")
		case "/inject":
			w.Header().Set("X-A", "a\r\nSet-Cookie: evil=1")
		}
	}))
	for _, c := range []struct{ req, want, not string }{
		{"GET /short HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "Content-Length: 5\r\n", "chunked"},
		{"GET /long HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "Transfer-Encoding: chunked\r\n", "Content-Length"},
		{"GET /long HTTP/1.0\r\n\r\n", "Connection: close\r\n", "chunked"},
		{"GET /declared HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "Content-Length: 7\r\n", "chunked"},
		{"HEAD /short HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "Content-Length: 5\r\n", "short"},
		{"GET /nocontent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 204 No Content\r\n", "ignored"},
		{"GET /inject HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "X-A: a  Set-Cookie: evil=1\r\n", "\r\nSet-Cookie"},
	} {
		got := exchange(t, addr, c.req)
		if !strings.Contains(got, c.want) || strings.Contains(got, c.not) {
			t.Errorf("%.30q: want %q and not %q in %.300q", c.req, c.want, c.not, got)
		}
		if _, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), &http.Request{Method: strings.Fields(c.req)[0]}); err != nil {
			t.Errorf("%.30q: net/http cannot read the answer: %v", c.req, err)
		}
	}
}

// TestAFlushedResponseStreams: what the handler flushed reaches the client
// before the handler returns.
func TestAFlushedResponseStreams(t *testing.T) {
	release := make(chan struct{})
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second\n")
	}))
	defer close(release)
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if line != "first\n" || err != nil {
		t.Fatalf("%q %v", line, err)
	}
}

// TestAPanickingHandlerClosesOnlyItsConnection.
func TestAPanickingHandlerClosesOnlyItsConnection(t *testing.T) {
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		io.WriteString(w, "ok")
	}))
	if got := exchange(t, addr, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n"); got != "" {
		t.Fatalf("%q", got)
	}
	if got := exchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasSuffix(got, "ok") {
		t.Fatalf("%q", got)
	}
}

// TestASlowHeadIsCutOff: a client that sends part of a head and stops is
// disconnected after ReadHeaderTimeout; an idle one after IdleTimeout.
func TestASlowHeadIsCutOff(t *testing.T) {
	for _, c := range []struct {
		name, partial    string
		header, idle, by time.Duration
	}{
		{"half a head", "GET / HTTP/1.1\r\nHost: x\r\n", 200 * time.Millisecond, time.Minute, 5 * time.Second},
		{"empty lines, then half a head", "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n", 200 * time.Millisecond, time.Minute, 5 * time.Second},
		{"nothing", "", time.Minute, 300 * time.Millisecond, 5 * time.Second},
	} {
		_, addr := start(t, echo, func(s *h1.Server) { s.ReadHeaderTimeout, s.IdleTimeout = c.header, c.idle })
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, c.partial)
		conn.SetReadDeadline(time.Now().Add(c.by))
		begin := time.Now()
		n, err := conn.Read(make([]byte, 1))
		conn.Close()
		if n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("%s: read %d %v after %s", c.name, n, err, time.Since(begin))
		}
	}
}

// TestShutdownLetsRequestsFinish: Shutdown closes idle connections at
// once, lets a request in flight finish (its connection then closes) and
// returns when no connection is left.
func TestShutdownLetsRequestsFinish(t *testing.T) {
	inside := make(chan struct{})
	release := make(chan struct{})
	srv, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(inside)
			<-release
		}
		io.WriteString(w, "done")
	}))
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	answer := make(chan string, 1)
	go func() { answer <- exchange(t, addr, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") }()
	<-inside
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }()
	idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("the idle connection: %d %v", n, err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned with a request in flight: %v", err)
	default:
	}
	close(release)
	if got := <-answer; !strings.HasSuffix(got, "done") || !strings.Contains(got, "Connection: close") {
		t.Fatalf("the request in flight: %q", got)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("still accepting")
	}
}

// TestUnparseableRequestsGetTheConfiguredBody: BadRequest writes the body
// (the gateway's problem+json).
func TestUnparseableRequestsGetTheConfiguredBody(t *testing.T) {
	var calls atomic.Int32
	_, addr := start(t, echo, func(s *h1.Server) {
		s.BadRequest = func(h http.Header, status int, reason string) []byte {
			calls.Add(1)
			h.Set("Content-Type", "application/problem+json")
			return []byte(fmt.Sprintf(`{"status":%d,"detail":%q}`, status, reason))
		}
	})
	got := exchange(t, addr, "GET / HTTP/1.1\r\n\r\n")
	if !strings.Contains(got, "application/problem+json") || !strings.Contains(got, `"detail":"missing required Host header"`) || calls.Load() != 1 {
		t.Fatalf("%q", got)
	}
}

// TestAClientThatStopsReadingIsCutOff: an answer the client leaves unread
// fails the handler's writes after WriteTimeout, rather than holding the
// handler for ever.
func TestAClientThatStopsReadingIsCutOff(t *testing.T) {
	failed := make(chan error, 1)
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 32<<10)
		for range 4096 { // 128 MiB at most: far beyond any socket buffer
			if _, err := w.Write(chunk); err != nil {
				failed <- err
				return
			}
		}
		failed <- nil
	}), func(s *h1.Server) { s.WriteTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case err := <-failed:
		if err == nil {
			t.Fatal("128 MiB written to a client that reads nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler is still writing")
	}
}

// TestAClientGoneWhileItsAnswerStreamsEndsTheRequest: once an answer is
// streaming, a client that closes its connection ends the request's
// context (what the gateway's wait on a quiet upstream watches).
func TestAClientGoneWhileItsAnswerStreamsEndsTheRequest(t *testing.T) {
	ended := make(chan bool, 1)
	_, addr := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			ended <- true
		case <-time.After(10 * time.Second):
			ended <- false
		}
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	if line != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("%q", line)
	}
	c.Close()
	if !<-ended {
		t.Fatal("the request went on after its client left")
	}
}

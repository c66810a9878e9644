package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// parsed is what a reader made of one message.
type parsed struct {
	method, target string
	status         int
	body           string
}

// readerConn is a server connection that reads from r and writes nowhere,
// for reading heads as the server does without a network.
func readerConn(r io.Reader) *conn {
	br := bufio.NewReader(r)
	c := &conn{s: &Server{MaxHeaderBytes: 64 << 10}, br: br, bw: bufio.NewWriter(io.Discard), remote: "192.0.2.1:1"}
	c.head = newHead(br)
	c.template, c.req = &http.Request{}, new(http.Request)
	c.w.c = c
	return c
}

// h1Requests reads requests from data as the server does, until one is
// refused or the data ends.
func h1Requests(data []byte) []parsed {
	c := readerConn(bytes.NewReader(data))
	var out []parsed
	for {
		status, _, err := c.readRequest()
		if err != nil || status != 0 {
			return out
		}
		b, err := io.ReadAll(c.req.Body)
		if err != nil {
			return out
		}
		out = append(out, parsed{method: c.req.Method, target: c.req.RequestURI, body: string(b)})
		if c.req.Close {
			return out
		}
	}
}

func netHTTPRequests(data []byte) []parsed {
	br := bufio.NewReader(bytes.NewReader(data))
	var out []parsed
	for {
		r, err := http.ReadRequest(br)
		if err != nil {
			return out
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return out
		}
		out = append(out, parsed{method: r.Method, target: r.RequestURI, body: string(b)})
		if r.Close {
			return out
		}
	}
}

// FuzzRequests: any bytes a client sends are read without a panic, and
// every request the server reads is the one net/http reads at the same
// place — same method, target and body — so that no request can hide in
// another's body for one reader and not the other (request smuggling).
func FuzzRequests(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET http://h/p?q HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n",
		"\r\nGET / HTTP/1.1\nHost: x\n\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ours, theirs := h1Requests(data), netHTTPRequests(data)
		for i := range min(len(ours), len(theirs)) {
			if ours[i] != theirs[i] {
				t.Fatalf("request %d: h1 read %+v, net/http %+v", i, ours[i], theirs[i])
			}
		}
	})
}

// FuzzResponses: any bytes an upstream sends are read without a panic, and
// an answer the client accepts has the status and body net/http reads.
func FuzzResponses(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil the end",
	} {
		f.Add([]byte(seed), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		pc := &pconn{t: &Transport{}, br: bufio.NewReader(bytes.NewReader(data))}
		pc.head = newHead(pc.br)
		pc.body.pc = pc
		resp, _, err := pc.readResponse(&Request{Method: method})
		if err != nil {
			return
		}
		ours, err := io.ReadAll(resp.Body)
		if err != nil {
			return
		}
		theirs, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), &http.Request{Method: method})
		if err != nil || theirs.StatusCode < 200 { // net/http hands interim answers back; h1 reads past them
			return
		}
		b, err := io.ReadAll(theirs.Body)
		if err != nil {
			return
		}
		if theirs.StatusCode != resp.Status || string(b) != string(ours) {
			t.Fatalf("h1 read %d %q, net/http %d %q", resp.Status, ours, theirs.StatusCode, b)
		}
	})
}

// TestWhatAConnectionRemembersIsBounded: a client sending ever-different
// names, values and targets on one connection grows none of the
// connection's caches past its bound.
func TestWhatAConnectionRemembersIsBounded(t *testing.T) {
	var b bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&b, "GET /%d HTTP/1.1\r\nHost: x\r\nX-Name-%d: v%d\r\nX-Long: %s\r\n\r\n", i, i, i, strings.Repeat("y", i%300))
	}
	c := readerConn(&b)
	n := 0
	for {
		status, _, err := c.readRequest()
		if err != nil || status != 0 {
			break
		}
		n++
	}
	h := &c.head
	if n != 2000 || len(h.names) > maxNames || len(h.values) > maxValues || len(h.lines) > maxLines {
		t.Fatalf("%d requests; %d names, %d values, %d lines remembered", n, len(h.names), len(h.values), len(h.lines))
	}
}

// TestALargeHeadLeavesNothingBehind: a head with more than maxFields
// header lines is too large (431); one just within leaves none of the
// storage it grew once released — an idle connection holds little.
func TestALargeHeadLeavesNothingBehind(t *testing.T) {
	read := func(fields int) (*conn, int) {
		var b bytes.Buffer
		b.WriteString("GET / HTTP/1.1\r\nHost: x\r\n")
		for i := range fields - 1 {
			fmt.Fprintf(&b, "X-%d: v\r\n", i)
		}
		b.WriteString("\r\n")
		c := readerConn(&b)
		status, _, err := c.readRequest()
		if err != nil {
			t.Fatal(err)
		}
		return c, status
	}
	if _, status := read(maxFields + 1); status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("%d fields: %d", maxFields+1, status)
	}
	c, status := read(maxFields)
	if status != 0 || len(c.req.Header) != maxFields {
		t.Fatalf("%d fields: %d, %d headers", maxFields, status, len(c.req.Header))
	}
	c.head.release()
	if len(c.head.hdr) != 0 || cap(c.head.pairs) != 0 {
		t.Fatalf("after release: %d headers, %d pairs kept", len(c.head.hdr), cap(c.head.pairs))
	}
}

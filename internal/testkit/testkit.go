// Package testkit holds test helpers that need no NATS: polling with a
// deadline, a concurrency-safe buffer, a slow-body client. Tests of any
// package may use it; it imports nothing of Keytrail's.
package testkit

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"
)

// Eventually polls fn every 10 ms until it returns nil, failing the test with
// fn's last error after total. Tests wait with it instead of sleeping.
func Eventually(tb testing.TB, total time.Duration, fn func() error) {
	tb.Helper()
	deadline := time.NewTimer(total)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return
		}
		select {
		case <-deadline.C:
			tb.Fatalf("after %s: %v", total, err)
		case <-tick.C:
		}
	}
}

// Buffer is a bytes.Buffer that one goroutine may write (a component's log)
// while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// SlowBody announces a 100 000-byte body to addr, sends a few bytes of it,
// and returns the status of the answer, failing unless the answer comes
// and the connection closes without the rest of the body.
func SlowBody(t testing.TB, addr, path string) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"a\":"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("POST %s: no answer while the body is still coming: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("POST %s: the connection is still open: %v", path, err)
	}
	return resp.StatusCode
}

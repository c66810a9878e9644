package gateway_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/gateway"
)

// BenchmarkServeHTTP: the gateway's work per request (route, verify, limit,
// rewrite, proxy, log, metrics) against a bare httputil.ReverseProxy's
// (tuned as a Go proxy would be, and copying bodies with the gateway's own
// buffer pool), both to the same loopback upstream. The gateway writes its
// JSON access log to a file, batched as production's log writer batches it
// (accessFile); the benchmark checks the file holds a line per request.
func BenchmarkServeHTTP(b *testing.B) {
	log := newAccessFile(b, filepath.Join(b.TempDir(), "access.log"))
	f := newFixture(b, func(c *gateway.Config) {
		c.AccessLog = log
		c.Sample = 0
	})
	f.tenant("acme")
	f.user("acme", "bob")
	f.api("acme", "orders", "/orders", nil, nil)
	_, sec := f.key("acme", control.KeySpec{User: "bob"})
	f.sync()
	target, _ := url.Parse(f.upstream.URL)
	bare := httputil.NewSingleHostReverseProxy(target)
	bare.Transport = &http.Transport{MaxIdleConnsPerHost: 64}
	bare.BufferPool = gateway.CopyBuffers
	serve := func(h http.Handler) {
		req := httptest.NewRequest("GET", "/orders/1", nil)
		req.Header.Set("Authorization", "Bearer "+sec)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body.String())
		}
	}
	for _, side := range []struct {
		name string
		h    http.Handler
	}{{"bare", bare}, {"gateway", f.gw}} {
		b.Run(side.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serve(side.h)
			}
		})
	}
	// Both in one loop, alternating every 16 requests, so that the ratio
	// compares them on the same machine at the same moment.
	b.Run("interleaved", func(b *testing.B) {
		var bareT, gwT time.Duration
		n := 0
		for b.Loop() {
			t0 := time.Now()
			for range 16 {
				serve(bare)
			}
			t1 := time.Now()
			for range 16 {
				serve(f.gw)
			}
			bareT, gwT, n = bareT+t1.Sub(t0), gwT+time.Since(t1), n+16
		}
		b.ReportMetric(float64(gwT.Nanoseconds())/float64(n), "ns/op")
		b.ReportMetric(float64(bareT.Nanoseconds())/float64(n), "bare-ns/op")
		b.ReportMetric(float64(gwT)/float64(bareT), "ratio")
	})
	if err := log.Close(); err != nil {
		b.Fatal(err)
	}
	if lines := log.lines(b); lines == 0 {
		b.Fatal("the access log file is empty")
	}
}

// accessFile is production's access log destination as a test can build
// it: a file, written through a batch like services/app's logBatch (64 KiB,
// flushed every 100 ms and on Close; a line is never split). logBatch is
// not exported; this is a copy of what it does, kept short.
type accessFile struct {
	f    *os.File
	mu   sync.Mutex
	buf  []byte
	stop chan struct{}
	done chan struct{}
}

func newAccessFile(b *testing.B, path string) *accessFile {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	a := &accessFile{f: f, buf: make([]byte, 0, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-a.stop:
				return
			case <-t.C:
				a.mu.Lock()
				a.flushLocked()
				a.mu.Unlock()
			}
		}
	}()
	b.Cleanup(func() { a.Close() })
	return a
}

func (a *accessFile) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.buf)+len(p) > cap(a.buf) {
		a.flushLocked()
	}
	if len(p) > cap(a.buf) {
		return a.f.Write(p)
	}
	a.buf = append(a.buf, p...)
	return len(p), nil
}

func (a *accessFile) flushLocked() {
	if len(a.buf) > 0 {
		a.f.Write(a.buf)
		a.buf = a.buf[:0]
	}
}

// Close stops the flushing, writes what is left and closes the file; once.
func (a *accessFile) Close() error {
	select {
	case <-a.done:
		return nil
	default:
	}
	close(a.stop)
	<-a.done
	a.mu.Lock()
	a.flushLocked()
	a.mu.Unlock()
	return a.f.Close()
}

// lines counts the file's lines, each a JSON access log record.
func (a *accessFile) lines(b *testing.B) int {
	data, err := os.ReadFile(a.f.Name())
	if err != nil {
		b.Fatal(err)
	}
	n := bytes.Count(data, []byte("\n"))
	if n > 0 && !bytes.HasPrefix(data, []byte(`{"time":"`)) {
		b.Fatalf("not a JSON access log: %.80s", data)
	}
	return n
}

package gateway_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keytrail/keytrail/services/app"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/gateway"
)

// BenchmarkServeHTTP: the gateway's work per request (route, verify, limit,
// rewrite, proxy, log, metrics) against a bare httputil.ReverseProxy's
// (tuned as a Go proxy would be, and copying bodies with the gateway's own
// buffer pool), both to the same loopback upstream. The gateway writes its
// JSON access log to a file through production's log batch (accessFile);
// the benchmark checks the file holds a line per request.
func BenchmarkServeHTTP(b *testing.B) {
	log := newAccessFile(b, filepath.Join(b.TempDir(), "access.log"))
	var cfg gateway.Config
	f := newFixture(b, func(c *gateway.Config) {
		c.AccessLog = log
		c.Sample = 0
		cfg = *c
	})
	// The same gateway counting usage (issue 14): its own Gateway on the
	// same read model, access log and decision log, differing from f.gw
	// only by Config.Usage. A reporter takes the counts every second (the
	// shortest window --usage-window allows; production's default is 10 s)
	// and adds them up, so that the benchmark checks every request it
	// sent through this gateway was counted once.
	counter := gateway.NewUsageCounter()
	cfg.Usage = counter
	withUsage := gateway.New(cfg)
	var counted atomic.Uint64
	sent := uint64(0)
	takeAll := func() {
		for _, c := range counter.Take() {
			if c.Code != "VALID" || c.Tenant != "acme" || c.User != "bob" || c.API != "orders" {
				b.Errorf("counted %+v", c)
			}
			counted.Add(c.N)
		}
	}
	stopTake, taken := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(taken)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopTake:
				return
			case <-t.C:
				takeAll()
			}
		}
	}()
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
	}{{"bare", bare}, {"gateway", f.gw}, {"gateway+usage", withUsage}} {
		b.Run(side.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serve(side.h)
			}
			if side.h == withUsage {
				sent += uint64(b.N)
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
	// Usage counting on against off, alternating every 16 requests in one
	// loop as above (target ≥ 0.95: ratio is the time without counting
	// over the time with it, so below 1 is what counting costs).
	b.Run("usage-interleaved", func(b *testing.B) {
		var offT, onT time.Duration
		n := 0
		for b.Loop() {
			t0 := time.Now()
			for range 16 {
				serve(f.gw)
			}
			t1 := time.Now()
			for range 16 {
				serve(withUsage)
			}
			offT, onT, n = offT+t1.Sub(t0), onT+time.Since(t1), n+16
		}
		sent += uint64(n)
		b.ReportMetric(float64(onT.Nanoseconds())/float64(n), "ns/op")
		b.ReportMetric(float64(offT.Nanoseconds())/float64(n), "off-ns/op")
		b.ReportMetric(float64(offT)/float64(onT), "ratio")
	})
	close(stopTake)
	<-taken
	takeAll()
	if got := counted.Load(); got != sent {
		b.Errorf("usage counted %d requests, %d were sent through the counting gateway", got, sent)
	}
	if err := log.Close(); err != nil {
		b.Fatal(err)
	}
	if lines := log.lines(b); lines == 0 {
		b.Fatal("the access log file is empty")
	}
}

// accessFile is production's access log destination: a file, written
// through the log's batch (app.NewLogBatch: 64 KiB, flushed every 100 ms and
// on Close).
type accessFile struct {
	*app.LogBatch
	f    *os.File
	once sync.Once
}

func newAccessFile(b *testing.B, path string) *accessFile {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	a := &accessFile{LogBatch: app.NewLogBatch(f), f: f}
	b.Cleanup(func() { a.Close() })
	return a
}

// Close writes what the batch holds and closes the file; once.
func (a *accessFile) Close() error {
	var err error
	a.once.Do(func() { err = errors.Join(a.LogBatch.Close(), a.f.Close()) })
	return err
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

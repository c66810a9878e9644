package gateway

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// maxDenialKeys bounds the addresses × codes a DenialLog tracks in a
// second; past it, the rest are counted together under no address.
const maxDenialKeys = 100_000

// DenialLog keeps a flood of denials from filling the logs: per client
// address, code and second, the first Threshold denials get one access-log
// line and one decision record each; the rest are counted and logged as
// one "denials aggregated" line when the second is over (Flush).
type DenialLog struct {
	threshold int
	log       *slog.Logger
	mu        sync.Mutex
	counts    map[denialKey]int
}

type denialKey struct {
	addr   netip.Addr
	code   string
	second int64
}

// NewDenialLog logs aggregates on log; threshold is the number of denials
// of one code from one address logged one by one in a second.
func NewDenialLog(threshold int, log *slog.Logger) *DenialLog {
	return &DenialLog{threshold: threshold, log: log, counts: map[denialKey]int{}}
}

// Note counts a denial and reports whether it is to be logged on its own.
func (d *DenialLog) Note(addr netip.Addr, code string, now time.Time) bool {
	k := denialKey{addr: addr, code: code, second: now.Unix()}
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.counts[k]
	if !ok && len(d.counts) >= maxDenialKeys {
		k.addr = netip.Addr{}
		n = d.counts[k]
	}
	n++
	d.counts[k] = n
	return n <= d.threshold
}

// Flush logs, for each address, code and second before now's, the denials
// past the threshold as one line, and forgets the second.
func (d *DenialLog) Flush(now time.Time) {
	type agg struct {
		k denialKey
		n int
	}
	var out []agg
	sec := now.Unix()
	d.mu.Lock()
	for k, n := range d.counts {
		if k.second >= sec {
			continue
		}
		if n > d.threshold {
			out = append(out, agg{k, n})
		}
		delete(d.counts, k)
	}
	d.mu.Unlock()
	for _, a := range out {
		client := "other"
		if a.k.addr.IsValid() {
			client = a.k.addr.String()
		}
		d.log.LogAttrs(context.Background(), slog.LevelWarn, "denials aggregated",
			slog.String("client", client), slog.String("code", a.k.code),
			slog.Time("second", time.Unix(a.k.second, 0).UTC()), slog.Int("count", a.n),
			slog.Int("logged_each", d.threshold), slog.Int("aggregated", a.n-d.threshold))
	}
}

// remoteAddr is the address of the connection r came on.
func remoteAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return addr.Unmap(), true
}

// quiet reports (once per request) whether the denial of r with code is
// past its address's threshold and so only counted.
func (g *Gateway) quiet(r *http.Request, x *exchange, code string) bool {
	d := g.cfg.Denials
	if d == nil {
		return false
	}
	var client netip.Addr
	if b := g.cfg.Failures; b != nil {
		client, _ = b.client(r)
	} else {
		client, _ = remoteAddr(r)
	}
	x.quiet = !d.Note(client, code, g.cfg.Now())
	return x.quiet
}

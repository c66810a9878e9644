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

// maxDenialKeys bounds what a DenialLog tracks in a second; past it,
// denials are logged one by one (never muted for want of room).
const maxDenialKeys = 100_000

// DenialLog keeps a flood of denials from filling the logs: per client
// (address, or IPv6 /64; behind trusted proxies, the forwarded client),
// code, key id and second, the first Threshold denials get one access-log
// line and one decision record each; the rest are counted and logged as
// one "denials aggregated" line when the second is over (Flush). One
// client's flood never mutes another's denials, nor a key's denials
// another key's.
type DenialLog struct {
	threshold int
	log       *slog.Logger
	mu        sync.Mutex
	counts    map[denialKey]int
}

type denialKey struct {
	addr   netip.Addr // zero: an address that could not be read
	code   string
	keyID  string
	second int64
}

// NewDenialLog logs aggregates on log; threshold is the number of denials
// of one code from one address logged one by one in a second.
func NewDenialLog(threshold int, log *slog.Logger) *DenialLog {
	return &DenialLog{threshold: threshold, log: log, counts: map[denialKey]int{}}
}

// Note counts a denial and reports whether it is to be logged on its own.
func (d *DenialLog) Note(addr netip.Addr, code, keyID string, now time.Time) bool {
	k := denialKey{addr: addr, code: code, keyID: keyID, second: now.Unix()}
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.counts[k]
	if !ok && len(d.counts) >= maxDenialKeys {
		return true
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
		client := "unknown"
		if a.k.addr.IsValid() {
			client = a.k.addr.String()
		}
		d.log.LogAttrs(context.Background(), slog.LevelWarn, "denials aggregated",
			slog.String("client", client), slog.String("code", a.k.code), slog.String("key_id", a.k.keyID),
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
	client, _ := clientOf(r, g.cfg.TrustedProxies)
	x.quiet = !d.Note(client, code, x.decision.KeyID, g.cfg.Now())
	return x.quiet
}

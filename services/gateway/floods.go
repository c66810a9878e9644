package gateway

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keytrail/keytrail/projections"
)

// FailureBudget bounds the failed authentications (MISSING, MALFORMED,
// NOT_FOUND) one client address may cause: a token bucket per address.
// Once an address has spent its budget, its requests are answered 429
// TOO_MANY_FAILURES at once — before any verification, decision or
// decision-log record — until tokens come back, so that one address
// flooding unknown keys cannot take the gateway from everyone else.
//
// A spent address's 429 can be held for a moment first (Tarpit): a client
// that floods on a few connections then makes a few requests a second
// instead of tens of thousands, and the gateway's time goes to everyone
// else. Held answers are bounded in number; past the bound the answer
// closes the connection instead, so that a flood over many connections
// pays a handshake per request.
//
// The client address is the connection's, or, when the connection comes
// from a trusted proxy, the last address in X-Forwarded-For that is not a
// trusted proxy's; trusted proxies' own addresses have no budget.
type FailureBudget struct {
	rate, burst float64
	trusted     []netip.Prefix
	max         int // addresses tracked at most; past it, new ones are not limited

	delay   time.Duration // a spent address's answer is held this long at most
	maxHeld int64         // answers held at once at most
	held    atomic.Int64

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
}

// Tarpit holds each answer to a spent address for up to delay (until a
// failure is back, at most delay), with at most maxHeld answers held at
// once; delay 0 answers at once. It returns b.
func (b *FailureBudget) Tarpit(delay time.Duration, maxHeld int) *FailureBudget {
	b.delay, b.maxHeld = max(delay, 0), int64(max(maxHeld, 0))
	return b
}

// Held is how many answers are held now.
func (b *FailureBudget) Held() int64 { return b.held.Load() }

// hold waits before a spent address's answer: until a failure is back or
// the tarpit's delay, whichever is sooner. It reports false, at once, when
// as many answers as allowed are held already: the answer then closes the
// connection.
func (b *FailureBudget) hold(ctx context.Context, wait time.Duration) bool {
	d := min(wait, b.delay)
	if d <= 0 {
		return true
	}
	if b.held.Add(1) > b.maxHeld {
		b.held.Add(-1)
		return false
	}
	defer b.held.Add(-1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

// NewFailureBudget allows each address perSecond failures, in bursts of
// burst; perSecond ≤ 0 disables the budget (nil is returned).
func NewFailureBudget(perSecond float64, burst int, trusted []netip.Prefix) *FailureBudget {
	if perSecond <= 0 {
		return nil
	}
	return &FailureBudget{rate: perSecond, burst: float64(max(burst, 1)), trusted: trusted, max: 100_000,
		buckets: map[netip.Addr]*bucket{}}
}

// client is the address a request's budget is kept for; ok is false for a
// trusted proxy's own requests (no budget).
func (b *FailureBudget) client(r *http.Request) (netip.Addr, bool) {
	return clientOf(r, b.trusted)
}

// clientOf is the client a request is accounted to: the connection's
// address or, from a trusted proxy, the nearest X-Forwarded-For address
// that is not a trusted proxy's (ok is false for a trusted proxy's own
// requests, or a header it sent that cannot be read). An IPv6 client is
// its /64, which one host is commonly given whole.
func clientOf(r *http.Request, trusted []netip.Prefix) (addr netip.Addr, ok bool) {
	addr, ok = remoteAddr(r)
	if !ok {
		return netip.Addr{}, false
	}
	defer func() { addr = per64(addr) }()
	if !isTrusted(trusted, addr) {
		return addr, true
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return addr, false // a proxy's header we cannot read: no budget rather than a wrong one
		}
		if a = a.Unmap(); !isTrusted(trusted, a) {
			return a, true
		}
	}
	return addr, false
}

func per64(a netip.Addr) netip.Addr {
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().Addr()
	}
	return a
}

func isTrusted(trusted []netip.Prefix, a netip.Addr) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Spent reports whether addr has no failure left, and how long until one
// is back.
func (b *FailureBudget) Spent(addr netip.Addr, now time.Time) (time.Duration, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.buckets[addr]
	if k == nil {
		return 0, false
	}
	b.refill(k, now)
	if k.tokens >= 1 {
		return 0, false
	}
	return time.Duration((1 - k.tokens) / b.rate * float64(time.Second)), true
}

// Fail takes one failure from addr's budget.
func (b *FailureBudget) Fail(addr netip.Addr, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.buckets[addr]
	if k == nil {
		if len(b.buckets) >= b.max {
			return
		}
		k = &bucket{tokens: b.burst, last: now}
		b.buckets[addr] = k
	}
	b.refill(k, now)
	k.tokens = max(k.tokens-1, 0)
}

func (b *FailureBudget) refill(k *bucket, now time.Time) {
	if dt := now.Sub(k.last).Seconds(); dt > 0 {
		k.tokens = min(b.burst, k.tokens+dt*b.rate)
		k.last = now
	}
}

// Sweep forgets addresses whose budget is whole again.
func (b *FailureBudget) Sweep(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for a, k := range b.buckets {
		if b.refill(k, now); k.tokens >= b.burst {
			delete(b.buckets, a)
		}
	}
}

// authFailure reports whether a decision's code is a failed authentication.
func authFailure(code string) bool {
	return projections.SecretFailure(projections.Code(code))
}

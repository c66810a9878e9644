package gateway

import (
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
)

// Limits enforces rate limits with token buckets, one per key and one per
// API that has a limit. In a cluster each gateway enforces its share of a
// limit: the rate and burst divided by the number of live gateways serving
// the same tenants (Presence). See docs/gateway.md for the semantics and
// their error bound.
type Limits struct {
	presence *Presence
	seed     maphash.Seed
	keys     [16]limitShard
	apis     limitShard
}

type limitShard struct {
	mu      sync.Mutex
	buckets map[limitKey]*bucket
}

// limitKey names a bucket: a key's (its id) or an API's (its tenant and id;
// two strings rather than one joined, which would cost an allocation a
// request).
type limitKey struct{ tenant, id string }

type bucket struct {
	tokens, rate, burst float64
	last                time.Time
}

// NewLimits returns limits shared with the gateways p sees; nil p: this
// gateway alone.
func NewLimits(p *Presence) *Limits {
	l := &Limits{presence: p, seed: maphash.MakeSeed()}
	for i := range l.keys {
		l.keys[i].buckets = map[limitKey]*bucket{}
	}
	l.apis.buckets = map[limitKey]*bucket{}
	return l
}

// Peers is the number of live gateways sharing the limits, this one
// included.
func (l *Limits) Peers() int {
	if l.presence == nil {
		return 1
	}
	return l.presence.Live()
}

// Take consumes a token of the key's limit and one of the API's, both or
// neither. When either is exhausted it reports how long until one is back,
// and which limit it was (events.LimitSourceKey or LimitSourceAPI; "" when
// the request may go).
func (l *Limits) Take(d *projections.Decision, a *projections.API, now time.Time) (retry time.Duration, by string) {
	kr, ar := d.KeyRateLimit(), a.RateLimit
	if kr == nil && ar == nil {
		return 0, ""
	}
	share := 1 / float64(l.Peers())
	var ks *limitShard
	if kr != nil {
		ks = &l.keys[maphash.String(l.seed, d.KeyID)%uint64(len(l.keys))]
		if retry, limited := ks.take(limitKey{id: d.KeyID}, kr, share, now); limited {
			return retry, events.LimitSourceKey
		}
	}
	if ar != nil {
		if retry, limited := l.apis.take(limitKey{a.Tenant, a.ID}, ar, share, now); limited {
			if ks != nil {
				ks.refund(limitKey{id: d.KeyID}, kr, share)
			}
			return retry, events.LimitSourceAPI
		}
	}
	return 0, ""
}

// maxRetryAfter bounds the wait a rate-limited caller is told of.
const maxRetryAfter = 24 * time.Hour

// RetryAfter is the Retry-After value for a wait: whole seconds, at least
// 1 and at most a day, so that it is always a positive integer.
func RetryAfter(wait time.Duration) string {
	secs := math.Ceil(wait.Seconds())
	return strconv.Itoa(int(min(max(secs, 1), maxRetryAfter.Seconds())))
}

// limit is a rate limit's share on this node: at least one token of burst,
// so that a small limit split many ways still lets requests through.
func limit(r *events.RateLimit, share float64) (rate, burst float64) {
	return r.PerSecond * share, max(float64(r.Burst)*share, 1)
}

func (s *limitShard) take(id limitKey, r *events.RateLimit, share float64, now time.Time) (time.Duration, bool) {
	rate, burst := limit(r, share)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buckets[id]
	if b == nil {
		b = &bucket{tokens: burst, last: now}
		s.buckets[id] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(burst, b.tokens+dt*rate)
		b.last = now
	}
	b.tokens = min(b.tokens, burst) // the limit may have shrunk
	b.rate, b.burst = rate, burst
	if b.tokens < 1 {
		// Seconds until a token is back, bounded before it becomes a
		// Duration (a tiny rate would overflow it into a negative one).
		wait := maxRetryAfter.Seconds()
		if rate > 0 {
			wait = min((1-b.tokens)/rate, wait)
		}
		return time.Duration(wait * float64(time.Second)), true
	}
	b.tokens--
	return 0, false
}

func (s *limitShard) refund(id limitKey, r *events.RateLimit, share float64) {
	_, burst := limit(r, share)
	s.mu.Lock()
	if b := s.buckets[id]; b != nil {
		b.tokens = min(burst, b.tokens+1)
	}
	s.mu.Unlock()
}

// sweep forgets buckets that have refilled: a missing bucket stands for a
// full one.
func (s *limitShard) sweep(now time.Time) {
	s.mu.Lock()
	for id, b := range s.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*b.rate >= b.burst {
			delete(s.buckets, id)
		}
	}
	s.mu.Unlock()
}

// Sweep forgets refilled buckets; whoever owns the limits calls it every
// minute or so.
func (l *Limits) Sweep(now time.Time) {
	for i := range l.keys {
		l.keys[i].sweep(now)
	}
	l.apis.sweep(now)
}

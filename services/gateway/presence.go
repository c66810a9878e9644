package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/events"
)

// MaxSharingPeers bounds how many gateways a node believes share its
// limits, itself included: the floor of a node's share of a limit is
// 1/MaxSharingPeers. Only gateway identities may announce themselves, but a
// compromised one could invent any number of peers; with the bound, the
// most it can do is shrink every share to that floor. (A deployment with
// more gateways serving the same tenants enforces up to
// gateways/MaxSharingPeers times a limit.)
const MaxSharingPeers = 16

// Presence announces this gateway every interval and counts the gateways
// heard from within three intervals.
type Presence struct {
	nc      *nats.Conn
	subject string
	node    string
	every   time.Duration
	now     func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time
	live atomic.Int64 // Live, kept current by Run: read by every rate-limited request
}

// NewPresence returns the presence of node among the gateways serving
// filters (the read model's subject filters; none: every tenant).
func NewPresence(nc *nats.Conn, node string, filters []string, every time.Duration, now func() time.Time) *Presence {
	group := "all"
	if len(filters) > 0 {
		sum := sha256.Sum256([]byte(strings.Join(filters, "\x00")))
		group = hex.EncodeToString(sum[:8])
	}
	if now == nil {
		now = time.Now
	}
	p := &Presence{nc: nc, subject: events.PresenceSubjectPrefix + group, node: node, every: every, now: now,
		seen: map[string]time.Time{}}
	p.live.Store(1)
	return p
}

// Run announces and listens until ctx ends.
func (p *Presence) Run(ctx context.Context) error {
	sub, err := p.nc.Subscribe(p.subject, func(m *nats.Msg) {
		node := string(m.Data)
		if len(node) == 0 || len(node) > 256 {
			return
		}
		p.mu.Lock()
		if _, known := p.seen[node]; known || len(p.seen) < MaxSharingPeers {
			p.seen[node] = p.now()
		}
		p.count()
		p.mu.Unlock()
	})
	if err != nil {
		return fmt.Errorf("gateway: presence: %w", err)
	}
	defer sub.Unsubscribe()
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		p.nc.Publish(p.subject, []byte(p.node)) // lost while NATS is away: peers then count this node out
		p.forget()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (p *Presence) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for node, at := range p.seen {
		if p.now().Sub(at) > 3*p.every {
			delete(p.seen, node)
		}
	}
	p.count()
}

// count updates Live from seen; p.mu is held.
func (p *Presence) count() {
	n := int64(1)
	for node := range p.seen {
		if node != p.node {
			n++
		}
	}
	p.live.Store(min(n, MaxSharingPeers))
}

// Live is the number of gateways heard from within three intervals, this
// one always included.
func (p *Presence) Live() int { return int(p.live.Load()) }

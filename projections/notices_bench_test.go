package projections

import (
	"fmt"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
)

// BenchmarkDueNotices: one scheduler tick of a control node over a catalog
// of a million keys (100 users, 1 % of the keys expiring within 30 days,
// every notice already sent), and the usage notices with a usage fold in
// which 10 000 keys were used: the time the model's and usage's read locks
// are held each minute. (-short: 100 000 keys.)
func BenchmarkDueNotices(b *testing.B) {
	keys := 1_000_000
	if testing.Short() {
		keys = 100_000
	}
	h := &chain{}
	c := NewCatalog()
	apply := func(r events.Recorded) {
		if err := c.Apply(r); err != nil {
			b.Fatal(err)
		}
	}
	apply(h.add("acme", events.TenantAggregate("acme"), t0, events.TenantCreatedV1{Name: "A"}))
	for u := range 100 {
		apply(h.add("acme", events.UserAggregate(fmt.Sprintf("u%d", u)), t0, events.UserCreatedV1{}))
	}
	soon := t0.Add(20 * day)
	for i := range keys {
		p := events.KeyIssuedV1{SecretHash: events.SecretHash{byte(i), byte(i >> 8), byte(i >> 16), 1}, Hint: "h"}
		if i%100 == 0 {
			p.ExpiresAt = &soon
		}
		apply(h.add("acme", events.KeyAggregate(fmt.Sprintf("u%d", i%100), fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5C%07d", i)), t0, p))
	}
	h.out = nil // the history is folded: only the catalog is kept
	u := NewUsage()
	now := t0.Add(time.Hour)
	for w := range 10 {
		r := &events.UsageReport{Node: "gw-1", Boot: "b1", Window: uint64(w + 1), Start: now.Add(time.Duration(w) * events.UsageWindow),
			End: now.Add(time.Duration(w+1) * events.UsageWindow), Part: 1, Parts: 1, Every: events.UsageWindow.Milliseconds()}
		for k := range 1000 {
			i := w*1000 + k
			r.Counts = append(r.Counts, events.UsageCount{Tenant: "acme", User: fmt.Sprintf("u%d", i%100), API: "orders",
				Key: fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5C%07d", i), Code: "VALID", N: 3, Last: r.End})
		}
		if err := u.Apply(uint64(w+1), r.End, r); err != nil {
			b.Fatal(err)
		}
	}
	tick := now.Add(10 * events.UsageWindow)
	sent := NoticesSent{}
	for _, n := range DueNotices(c, sent, tick, nil) {
		sent[n.ID] = true
	}
	for _, n := range DueUsageNotices(c, u, sent, tick, UsageNoticeConfig{}) {
		sent[n.ID] = true
	}
	b.Run("expiry", func(b *testing.B) {
		for b.Loop() {
			if n := DueNotices(c, sent, tick, nil); len(n) != 0 {
				b.Fatalf("%d notices due again", len(n))
			}
		}
	})
	b.Run("usage", func(b *testing.B) {
		for b.Loop() {
			if n := DueUsageNotices(c, u, sent, tick, UsageNoticeConfig{}); len(n) != 0 {
				b.Fatalf("%d notices due again", len(n))
			}
		}
	})
}

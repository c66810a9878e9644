package readmodel

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/projections"
)

// TestDecisionsAreReproducible verifies from many goroutines while events
// are being applied, records every decision, then re-derives each one by
// folding the log up to its Seq and verifying at its Now: identical.
func TestDecisionsAreReproducible(t *testing.T) {
	st := store.NewMemory()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	appendOne := func(head store.Head, agg events.Aggregate, p events.Payload) store.Head {
		e := storetest.Event("acme", agg, p, fmt.Sprintf("c%d", time.Now().UnixNano()))
		recs, err := st.Append(ctx, head, e)
		if err != nil {
			t.Fatal(err)
		}
		return store.Head{Seq: recs[0].Seq, Hash: recs[0].Hash}
	}
	appendOne(store.Head{}, events.TenantAggregate("acme"), events.TenantCreatedV1{Name: "A"})
	userHead := appendOne(store.Head{}, events.UserAggregate("bob"), events.UserCreatedV1{})
	const nKeys = 8
	secrets := make([]string, nKeys)
	heads := make([]store.Head, nKeys)
	aggs := make([]events.Aggregate, nKeys)
	for i := range nKeys {
		sec, err := secret.Generate(secret.DefaultPrefix, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		secrets[i] = sec.Reveal()
		aggs[i] = events.KeyAggregate("bob", fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5C7B1%04d", i))
		heads[i] = appendOne(store.Head{}, aggs[i], events.KeyIssuedV1{SecretHash: sec.Hash(), Hint: sec.Hint(), Scopes: []string{"a"}})
	}

	m := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	go m.Run(ctx, st, nil)
	if err := m.WaitFor(ctx, heads[nKeys-1].Seq, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	// Verifiers record (request, decision) while the writer changes things.
	type sample struct {
		q projections.Request
		d projections.Decision
	}
	var (
		mu      sync.Mutex
		samples []sample
		wg      sync.WaitGroup
		stop    = make(chan struct{})
		// verified counts verifications: the writer waits for some between
		// its appends, so that decisions are made all through the history
		// however the scheduler runs the goroutines.
		verified atomic.Int64
	)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []sample
			for i := 0; ; i++ {
				select {
				case <-stop:
					mu.Lock()
					samples = append(samples, local...)
					mu.Unlock()
					return
				default:
				}
				q := projections.Request{Secret: secrets[(g+i)%nKeys], Prefix: secret.DefaultPrefix}
				if i%3 == 0 {
					q.Scopes = []string{"a"}
				}
				var d projections.Decision
				now := storetest.Now.Add(time.Duration(i%5) * time.Minute)
				m.Read(func(c *projections.Catalog) { d = c.Verify(q, now) })
				verified.Add(1)
				if i%50 == 0 {
					local = append(local, sample{q, d})
				}
			}
		}()
	}
	disabled := false
	for round := range 200 {
		for target := verified.Load() + 200; verified.Load() < target && ctx.Err() == nil; {
			runtime.Gosched()
		}
		i := round % nKeys
		switch round % 4 {
		case 0:
			heads[i] = appendOne(heads[i], aggs[i], events.KeySuspendedV1{})
		case 1:
			heads[i] = appendOne(heads[i], aggs[i], events.KeyResumedV1{})
		case 2:
			var p events.Payload = events.UserDisabledV1{}
			if disabled {
				p = events.UserEnabledV1{}
			}
			disabled = !disabled
			userHead = appendOne(userHead, events.UserAggregate("bob"), p)
		case 3:
			exp := storetest.Now.Add(time.Duration(round%7) * time.Minute)
			heads[i] = appendOne(heads[i], aggs[i], events.KeyUpdatedV1{Scopes: []string{"a"}, ExpiresAt: &exp})
		}
	}
	last, _ := st.LastSeq(ctx, "")
	if err := m.WaitFor(ctx, last, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()

	// Re-derive every decision from the log.
	sub, err := st.Subscribe(ctx, store.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var log []events.Recorded
	for uint64(len(log)) < last {
		d, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, d.Event)
	}
	slices.SortFunc(samples, func(a, b sample) int { return int(a.d.Seq) - int(b.d.Seq) })
	c := projections.NewCatalog()
	applied := 0
	codes := map[projections.Code]int{}
	for _, s := range samples {
		for applied < len(log) && log[applied].Seq <= s.d.Seq {
			c.Apply(log[applied])
			applied++
		}
		again := c.Verify(s.q, s.d.Now)
		if again.Code != s.d.Code || again.Seq != s.d.Seq || !slices.Equal(again.Also(), s.d.Also()) ||
			!slices.Equal(again.Evidence(), s.d.Evidence()) || again.KeyID != s.d.KeyID {
			t.Fatalf("decision at seq %d not reproduced: %s %v %v, replay says %s %v %v", s.d.Seq,
				s.d.Code, s.d.Also(), s.d.Evidence(), again.Code, again.Also(), again.Evidence())
		}
		codes[s.d.Code]++
	}
	if len(samples) < 100 || len(codes) < 3 {
		t.Fatalf("too little variety: %d samples, codes %v", len(samples), codes)
	}
	t.Logf("%d decisions reproduced: %v", len(samples), codes)
}

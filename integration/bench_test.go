package integration

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

// benchConcurrency is how many appenders run at once in both halves of the
// append benchmark.
const benchConcurrency = 8

// issued is a realistic key.issued payload (~700 bytes encoded).
func issued() events.KeyIssuedV1 {
	exp := storetest.Now.Add(90 * 24 * time.Hour)
	return events.KeyIssuedV1{
		Name: "ci deploy key", SecretHash: events.SecretHash{1, 2, 3}, Hint: "kt_…a9Qz",
		Scopes: []string{"orders:read", "orders:write", "billing:read"}, ExpiresAt: &exp,
		RateLimit: &events.RateLimit{PerSecond: 50, Burst: 100}, Metadata: map[string]string{"team": "platform", "env": "prod"},
	}
}

func benchKey(i int) events.Aggregate {
	id := fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5C%07d", i)
	return events.KeyAggregate(fmt.Sprintf("u%d", i%100), id)
}

// runConcurrently splits n operations over benchConcurrency goroutines.
func runConcurrently(b *testing.B, n int, op func(worker, i int) error) time.Duration {
	var wg sync.WaitGroup
	errs := make(chan error, benchConcurrency)
	start := time.Now()
	for w := range benchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += benchConcurrency {
				if err := op(w, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkAppend measures Store.Append (encode, hash chain, per-aggregate
// CAS, Nats-Msg-Id) against a raw js.Publish of the same bytes with the same
// durability (SyncAlways; R3 on the cluster) and concurrency, in one run.
// The ratio metric is appends/s over raw publishes/s (target ≥ 0.8).
//
// The -signed cases append as control nodes do (docs/signing.md): every
// event signed by the node's key; the raw publishes are of signed bytes of
// the same size.
func BenchmarkAppend(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	for _, signer := range []ed25519.PrivateKey{nil, key} {
		suffix := ""
		if signer != nil {
			suffix = "-signed"
		}
		b.Run("R1"+suffix, func(b *testing.B) {
			node := natstest.RunServer(b)
			benchAppend(b, node.ConnectAs(b, natsauth.Control), 1, signer)
		})
		b.Run("R3"+suffix, func(b *testing.B) {
			c := natstest.RunCluster(b, 3)
			benchAppend(b, natstest.Connect(b, c.URLs(), c.Identity(natsauth.Control)), 3, signer)
		})
	}
}

// benchRounds is how many times one benchmark iteration alternates between
// the baseline and Keytrail, so that both see the same conditions (a noisy
// machine, a cluster compacting its log) rather than one getting the quiet
// half of the run.
const benchRounds = 6

func benchAppend(b *testing.B, nc *nats.Conn, replicas int, signer ed25519.PrivateKey) {
	s := openStore(b, nc, store.Config{Replicas: replicas, Signer: signer})
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := testCtx(b, 10*time.Minute)
	sample := storetest.Event("bench", benchKey(0), issued(), "c")
	data, err := events.Encode(&sample)
	if err != nil {
		b.Fatal(err)
	}
	if signer != nil {
		if data, err = events.Sign("keytrail.evt.raw.u.u.k.0", data, signer); err != nil {
			b.Fatal(err)
		}
	}
	const n = 500 // appends per round and side
	var rawTotal, oursTotal time.Duration
	ops, round := 0, 0
	for b.Loop() {
		for range benchRounds {
			round++
			raw := runConcurrently(b, n, func(_, i int) error {
				_, err := js.Publish(ctx, fmt.Sprintf("keytrail.evt.raw%d.u.u.k.%d", round, i), data)
				return err
			})
			// Each append issues a new key: encode, hash chain, a CAS on a
			// new aggregate (expect 0) and a Nats-Msg-Id. Building the event
			// is the command's work, not the store's, so it is done first.
			tenant := fmt.Sprintf("bench%d", round)
			evs := make([]events.Event, n)
			for i := range evs {
				evs[i] = storetest.Event(tenant, benchKey(i), issued(), fmt.Sprintf("c%d", i))
			}
			ours := runConcurrently(b, n, func(_, i int) error {
				_, err := s.Append(ctx, store.Head{}, evs[i])
				return err
			})
			rawTotal, oursTotal, ops = rawTotal+raw, oursTotal+ours, ops+n
		}
	}
	b.ReportMetric(float64(ops)/rawTotal.Seconds(), "raw-publish/s")
	b.ReportMetric(float64(ops)/oursTotal.Seconds(), "append/s")
	b.ReportMetric(rawTotal.Seconds()/oursTotal.Seconds(), "ratio")
}

// appendKeyHistories appends the histories of aggregates keys of tenant,
// each a key.issued and 99 key.updated (one atomic append a key), and
// returns how many events it wrote.
func appendKeyHistories(b *testing.B, ctx context.Context, s *store.JetStream, tenant string, aggregates int) int {
	const perAggregate = store.MaxAppend
	for a := range aggregates {
		evs := make([]events.Event, perAggregate)
		for i := range evs {
			var p events.Payload = issued()
			if i > 0 {
				p = events.KeyUpdatedV1{Name: "renamed", Scopes: []string{"orders:read"}}
			}
			evs[i] = storetest.Event(tenant, benchKey(a), p, fmt.Sprintf("c%d", a))
		}
		if _, err := s.Append(ctx, store.Head{}, evs...); err != nil {
			b.Fatal(err)
		}
	}
	return aggregates * perAggregate
}

// readRaw reads total messages of the event stream with a raw ordered
// consumer, parsing their metadata, and returns how long it took.
func readRaw(b *testing.B, ctx context.Context, js jetstream.JetStream, total int) time.Duration {
	start := time.Now()
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.AllSubjects}})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		b.Fatal(err)
	}
	for range total {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Metadata(); err != nil {
			b.Fatal(err)
		}
	}
	it.Stop()
	return time.Since(start)
}

// BenchmarkReplay measures reading and decoding the log with Subscribe
// against a raw ordered consumer reading the same messages, in one run. The
// ratio metric is events/s over raw messages/s (target ≥ 0.8).
func BenchmarkReplay(b *testing.B) {
	nc := startServerProcess(b).Connect(b, natsauth.Control)
	s := openStore(b, nc, store.Config{})
	ctx := testCtx(b, 10*time.Minute)
	total := appendKeyHistories(b, ctx, s, "replay", 500)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	var rawTotal, oursTotal, rawCPU, oursCPU time.Duration
	reads := 0
	for b.Loop() {
		for range benchRounds / 2 {
			cpu0 := cpuTime()
			raw := readRaw(b, ctx, js, total)
			cpu1 := cpuTime()

			start := time.Now()
			sub, err := s.Subscribe(ctx, store.SubscribeOptions{})
			if err != nil {
				b.Fatal(err)
			}
			for range total {
				d, err := sub.Next(ctx)
				if err != nil || d.Err != nil {
					b.Fatal(err, d.Err)
				}
			}
			sub.Close()
			ours := time.Since(start)
			cpu2 := cpuTime()
			rawTotal, oursTotal, reads = rawTotal+raw, oursTotal+ours, reads+total
			rawCPU, oursCPU = rawCPU+cpu1-cpu0, oursCPU+cpu2-cpu1
		}
	}
	// cores: CPU time over wall time; the raw reader alone keeps most of a
	// 2-core machine busy (server and client), so decoding competes for CPU.
	b.ReportMetric(rawCPU.Seconds()/rawTotal.Seconds(), "raw-cores")
	b.ReportMetric(oursCPU.Seconds()/oursTotal.Seconds(), "cores")
	b.ReportMetric(float64(reads)/rawTotal.Seconds(), "raw-msgs/s")
	b.ReportMetric(float64(reads)/oursTotal.Seconds(), "events/s")
	b.ReportMetric(rawTotal.Seconds()/oursTotal.Seconds(), "ratio")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package integration

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/natsauth"
)

// BenchmarkFold folds a large log into a gateway's catalog (decode, chain check, apply)
// against a raw ordered consumer reading the same messages, alternating, in
// one run (goal ≥ 0.8). KEYTRAIL_FOLD_EVENTS sets the size (default 1M).
func BenchmarkFold(b *testing.B) {
	total := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("KEYTRAIL_FOLD_EVENTS")); err == nil && v > 0 {
		total = v
	}
	// The server in a child process, as a gateway sees it (see
	// BenchmarkReplay).
	nc := startServerProcess(b).Connect(b, natsauth.Control)
	st := openStore(b, nc, store.Config{})
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	ctx := testCtx(b, 30*time.Minute)
	total = writeLog(b, ctx, js, total)

	var rawTotal, decodeTotal, foldTotal time.Duration
	for b.Loop() {
		// Each side starts from a collected heap: the previous round's
		// catalog is garbage, and collecting it is not this round's work.
		runtime.GC()
		start := time.Now()
		cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.AllSubjects}})
		if err != nil {
			b.Fatal(err)
		}
		it, _ := cons.Messages(jetstream.PullMaxMessages(1024))
		for range total {
			m, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				b.Fatal(err)
			}
			m.Metadata()
		}
		it.Stop()
		rawTotal += time.Since(start)

		// Decoding alone (strict decode, subject check, chain hash): what
		// any reader of the log pays before folding anything.
		runtime.GC()
		start = time.Now()
		dsub, err := st.Subscribe(ctx, store.SubscribeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for range total {
			if d, err := dsub.Next(ctx); err != nil || d.Err != nil {
				b.Fatal(err, d.Err)
			}
		}
		dsub.Close()
		decodeTotal += time.Since(start)

		runtime.GC()
		start = time.Now()
		c := projections.NewVerificationCatalog() // a gateway's
		sub, err := st.Subscribe(ctx, store.SubscribeOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for range total {
			d, err := sub.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if d.Err != nil {
				b.Fatal(d.Err)
			}
			if err := c.Apply(d.Event); err != nil {
				b.Fatal(err)
			}
		}
		sub.Close()
		foldTotal += time.Since(start)
	}
	n := float64(b.N * total)
	b.ReportMetric(n/rawTotal.Seconds(), "raw-msgs/s")
	b.ReportMetric(n/foldTotal.Seconds(), "folded/s")
	b.ReportMetric(rawTotal.Seconds()/foldTotal.Seconds(), "ratio")
	b.ReportMetric(rawTotal.Seconds()/decodeTotal.Seconds(), "decode-only-ratio")
}

// writeLog publishes about total chained events: keys of 100 users, each
// issued then updated, as the control plane would have written them. It
// returns how many it wrote.
func writeLog(b *testing.B, ctx context.Context, js jetstream.JetStream, total int) int {
	b.Helper()
	sent := 0
	publish := func(e events.Event, prev events.Hash) events.Hash {
		if sent++; sent%2048 == 0 { // at most one window in flight: the server syncs every write
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				b.Fatal("publishing the log timed out")
			}
		}
		e.PrevHash = prev
		data, err := events.Encode(&e)
		if err != nil {
			b.Fatal(err)
		}
		subj, _ := events.SubjectOf(&e)
		// The headers Store.Append writes, so that both readers parse what
		// they would in production.
		m := nats.NewMsg(subj)
		m.Data = data
		m.Header.Set(events.HeaderType, string(e.Type))
		m.Header.Set(events.HeaderVersion, "1")
		m.Header.Set(events.HeaderCommandID, e.CommandID)
		m.Header.Set(jetstream.MsgIDHeader, events.MsgID(subj, e.CommandID, 0))
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
		return events.HashOf(data)
	}
	publish(storetest.Event("bench", events.TenantAggregate("bench"), events.TenantCreatedV1{Name: "B"}, "t"), events.Hash{})
	for u := range 100 {
		publish(storetest.Event("bench", events.UserAggregate(fmt.Sprintf("u%d", u)), events.UserCreatedV1{}, "u"), events.Hash{})
	}
	keys := (total - 101) / 2
	for i := range keys {
		agg := events.KeyAggregate(fmt.Sprintf("u%d", i%100), fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5%08d", i))
		h := publish(storetest.Event("bench", agg, events.KeyIssuedV1{SecretHash: events.SecretHash{byte(i), byte(i >> 8), byte(i >> 16), 1},
			Hint: "kt_…abcd", Scopes: []string{"orders:read"}}, "k"), events.Hash{})
		publish(storetest.Event("bench", agg, events.KeyUpdatedV1{Name: "renamed", Scopes: []string{"orders:read"}}, "u"), h)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		b.Fatal("publishing the log timed out")
	}
	written := 101 + 2*keys
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		b.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.State.Msgs != uint64(written) {
		b.Fatalf("stream holds %v messages, want %d (%v)", info.State.Msgs, written, err)
	}
	return written
}

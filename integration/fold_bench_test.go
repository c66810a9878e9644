package integration

import (
	"context"
	"fmt"
	"log/slog"
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
	"github.com/keytrail/keytrail/services/readmodel"
)

// BenchmarkFold folds a large log into a gateway's read model — the real
// path: readmodel.Model.Run (subscribe from the start, decode, chain check,
// apply under the model's lock, its position and readiness) on the
// gateway identity's own connection, until the model reports it has
// applied the last sequence — against a raw ordered consumer reading the
// same messages and, third, Subscribe with decoding alone; the three
// alternate in every iteration, in one run (goal: fold ≥ 0.8 of raw).
// KEYTRAIL_FOLD_EVENTS sets the size (default 1M).
func BenchmarkFold(b *testing.B) {
	total := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("KEYTRAIL_FOLD_EVENTS")); err == nil && v > 0 {
		total = v
	}
	// The server in a child process, as a gateway sees it (see
	// BenchmarkReplay).
	srv := startServerProcess(b)
	nc := srv.Connect(b, natsauth.Control)
	openStore(b, nc, store.Config{}) // creates the stream
	gst := openStore(b, srv.Connect(b, natsauth.Gateway), store.Config{})
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	ctx := testCtx(b, 30*time.Minute)
	lw := newLogWriter(b, ctx, js)
	lw.prelude()
	lw.keys(0, (total-101)/2, true)
	total = lw.done()

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
		dsub, err := gst.Subscribe(ctx, store.SubscribeOptions{})
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

		// A gateway's read model, from start to having applied the last
		// event (it asks the log its last sequence first, as at start).
		runtime.GC()
		start = time.Now()
		m := readmodel.New(slog.New(slog.DiscardHandler), readmodel.VerificationOnly())
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- m.Run(runCtx, gst, nil) }()
		err = m.WaitFor(ctx, uint64(total), 10*time.Minute)
		foldTotal += time.Since(start)
		if err != nil || !m.Ready() {
			b.Fatal("the model did not fold the log", err)
		}
		var skipped int
		m.Read(func(c *projections.Catalog) { skipped = len(c.Problems) + int(c.Skipped) })
		stop()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if skipped != 0 {
			b.Fatalf("%d events not applied", skipped)
		}
	}
	n := float64(b.N * total)
	b.ReportMetric(n/rawTotal.Seconds(), "raw-msgs/s")
	b.ReportMetric(n/foldTotal.Seconds(), "folded/s")
	b.ReportMetric(rawTotal.Seconds()/foldTotal.Seconds(), "ratio")
	b.ReportMetric(rawTotal.Seconds()/decodeTotal.Seconds(), "decode-only-ratio")
}

// logWriter publishes chained events as the control plane would have
// written them (the headers Store.Append writes, so that every reader
// parses what it would in production), asynchronously, at most one window
// in flight.
type logWriter struct {
	b    *testing.B
	ctx  context.Context
	js   jetstream.JetStream
	sent int
}

func newLogWriter(b *testing.B, ctx context.Context, js jetstream.JetStream) *logWriter {
	return &logWriter{b: b, ctx: ctx, js: js}
}

func (w *logWriter) publish(e events.Event, prev events.Hash) events.Hash {
	b := w.b
	if w.sent++; w.sent%2048 == 0 { // the server syncs every write
		w.wait()
	}
	e.PrevHash = prev
	data, err := events.Encode(&e)
	if err != nil {
		b.Fatal(err)
	}
	subj, _ := events.SubjectOf(&e)
	m := nats.NewMsg(subj)
	m.Data = data
	m.Header.Set(events.HeaderType, string(e.Type))
	m.Header.Set(events.HeaderVersion, "1")
	m.Header.Set(events.HeaderCommandID, e.CommandID)
	m.Header.Set(jetstream.MsgIDHeader, events.MsgID(subj, e.CommandID, 0))
	if _, err := w.js.PublishMsgAsync(m); err != nil {
		b.Fatal(err)
	}
	return events.HashOf(data)
}

func (w *logWriter) wait() {
	select {
	case <-w.js.PublishAsyncComplete():
	case <-w.ctx.Done():
		w.b.Fatal("publishing the log timed out")
	}
}

// prelude writes tenant bench and its 100 users (101 events).
func (w *logWriter) prelude() {
	w.publish(storetest.Event("bench", events.TenantAggregate("bench"), events.TenantCreatedV1{Name: "B"}, "t"), events.Hash{})
	for u := range 100 {
		w.publish(storetest.Event("bench", events.UserAggregate(fmt.Sprintf("u%d", u)), events.UserCreatedV1{}, "u"), events.Hash{})
	}
}

// keys writes n new keys numbered from, each issued, then (updated)
// updated: n or 2n events.
func (w *logWriter) keys(from, n int, updated bool) {
	for i := from; i < from+n; i++ {
		agg := events.KeyAggregate(fmt.Sprintf("u%d", i%100), fmt.Sprintf("key_01JDQ8Z6W4M2N9V3X5%08d", i))
		h := w.publish(storetest.Event("bench", agg, events.KeyIssuedV1{SecretHash: events.SecretHash{byte(i), byte(i >> 8), byte(i >> 16), 1},
			Hint: "kt_…abcd", Scopes: []string{"orders:read"}}, "k"), events.Hash{})
		if updated {
			w.publish(storetest.Event("bench", agg, events.KeyUpdatedV1{Name: "renamed", Scopes: []string{"orders:read"}}, "u"), h)
		}
	}
}

// done waits for every publish to be acknowledged, checks that the stream
// holds all that was written, and returns how many that is.
func (w *logWriter) done() int {
	w.wait()
	stream, err := w.js.Stream(w.ctx, events.StreamName)
	if err != nil {
		w.b.Fatal(err)
	}
	info, err := stream.Info(w.ctx)
	if err != nil || info.State.Msgs != uint64(w.sent) {
		w.b.Fatalf("stream holds %v messages, want %d (%v)", info.State.Msgs, w.sent, err)
	}
	return w.sent
}

package integration

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/services/gateway"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

// BenchmarkRolePermissions: what the role permissions cost on the bus, as
// ratios against an identity without permissions on the same server, in
// alternating rounds: a gateway reading the event stream with an ordered
// consumer (how events, revocations among them, reach a gateway), and a
// gateway writing decisions (async publishes to KEYTRAIL_DECISIONS). A ratio
// of 1 is no cost. The server runs in a child process.
func BenchmarkRolePermissions(b *testing.B) {
	srv := startServerProcess(b)
	ctx := testCtx(b, 10*time.Minute)
	st := openStore(b, srv.Connect(b, natsauth.Control), store.Config{})
	if err := gateway.EnsureDecisionStream(ctx, st.JetStream(), gateway.DecisionStreamConfig{}); err != nil {
		b.Fatal(err)
	}
	total := appendKeyHistories(b, ctx, st, "perm", 500)
	conns := map[string]*nats.Conn{"gateway": srv.Connect(b, natsauth.Gateway), "unrestricted": srv.Connect(b, natstest.Operator)}
	read := func(nc *nats.Conn) time.Duration {
		js, _ := jetstream.New(nc)
		return readRaw(b, ctx, js, total)
	}
	const decisions = 10_000
	body := []byte(`{"code":"REVOKED","key_id":"key_01JDQ8Z6W4M2N9V3X5C7B1D2E3","tenant":"acme","method":"GET","path":"/orders/1","node":"gw","request_id":"0123456789abcdef01234567","now":"2026-12-06T12:00:00Z","seq":42}`)
	write := func(nc *nats.Conn) time.Duration {
		js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
		start := time.Now()
		for i := range decisions {
			if _, err := js.PublishAsync(events.DecisionSubject(&events.DecisionRecord{Tenant: "acme"}), body); err != nil {
				b.Fatal(err)
			}
			if i%2048 == 2047 || i == decisions-1 { // at most 2048 in flight, as the decision log keeps it
				select {
				case <-js.PublishAsyncComplete():
				case <-ctx.Done():
					b.Fatal("decisions not acknowledged")
				}
			}
		}
		return time.Since(start)
	}
	took := map[string]time.Duration{}
	for b.Loop() {
		for round := range 8 {
			order := []string{"gateway", "unrestricted"}
			if round%2 == 1 { // each goes first as often as the other
				order[0], order[1] = order[1], order[0]
			}
			for _, who := range order {
				took["read-"+who] += read(conns[who])
				took["write-"+who] += write(conns[who])
			}
		}
	}
	b.ReportMetric(took["read-unrestricted"].Seconds()/took["read-gateway"].Seconds(), "read-ratio")
	b.ReportMetric(took["write-unrestricted"].Seconds()/took["write-gateway"].Seconds(), "write-ratio")
	b.ReportMetric(float64(total)*float64(b.N*8)/took["read-gateway"].Seconds(), "gateway-events/s")
	b.ReportMetric(float64(decisions)*float64(b.N*8)/took["write-gateway"].Seconds(), "gateway-decisions/s")
}

package readmodel_test

import (
	"context"
	"crypto/sha256"
	"log/slog"
	mrand "math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events/secret"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
	"github.com/keytrail/keytrail/services/readmodel"
)

// parallelKeys is how many keys the parallel benchmark's catalog holds:
// each issued through the control service, so a NATS append each.
const parallelKeys = 1000

// verifyBlock is how many hashes, then verifications, a worker times at a
// time (as in projections' BenchmarkVerify).
const verifyBlock = 256

// shaSink keeps the baseline's hashes from being optimised away.
var shaSink atomic.Uint32

// gatewayVerify is what a gateway does to decide a request (ServeHTTP,
// the span it reports as its verify time): under the read model's read
// lock, route the path, then verify the key for the API it routes to.
func gatewayVerify(m *readmodel.Model, path, key string, now time.Time) projections.Code {
	var d projections.Decision
	var api projections.API
	var routing projections.Routing
	m.Read(func(c *projections.Catalog) {
		api, routing = c.Route(path)
		if routing != projections.Routed || api.Status == projections.APIRetired {
			return
		}
		q := projections.Request{Secret: key, Prefix: secret.DefaultPrefix, APITenant: api.Tenant, API: api.ID}
		d = c.Verify(q, now)
	})
	return d.Code
}

// BenchmarkVerifyParallel: verification on every core at once, through the
// read model's lock as a gateway takes it (Model.Read, Route, Verify: see
// gatewayVerify), of random keys of parallelKeys, against SHA-256 of the
// same secrets interleaved block by block in every worker. The model is
// fed by a real embedded NATS server. "serial" is one worker on the same
// path (what the lock costs uncontended); "idle" one worker per core, no
// writes; "applying" the same while the control service issues keys back
// to back, so that the model's applier takes the write lock between the
// readers (applied/s says how often; the writer competes for the same two
// cores, which the interleaved baseline sees as well).
//
// ns/op is one verification's time in a worker while the workers verify,
// sha256-ns/op the same for the hash, ratio the two; verifies/s is what
// the workers together did per second of verifying.
func BenchmarkVerifyParallel(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	node := natstest.RunServer(b)
	st, err := store.OpenJetStream(ctx, node.ConnectAs(b, natsauth.Control), store.Config{CreateIfMissing: true})
	if err != nil {
		b.Fatal(err)
	}
	svc, err := control.New(control.Config{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	meta := control.Meta{Actor: "bench"}
	if _, _, err := svc.CreateTenant(ctx, meta, "acme", "A"); err != nil {
		b.Fatal(err)
	}
	if _, _, err := svc.CreateUser(ctx, meta, "acme", "bob", ""); err != nil {
		b.Fatal(err)
	}
	if _, _, err := svc.CreateAPI(ctx, meta, "acme", control.APISpec{ID: "orders", PathPrefix: "/orders", Upstreams: []string{"http://127.0.0.1:9"}}); err != nil {
		b.Fatal(err)
	}
	secrets := make([]string, parallelKeys)
	for i := range secrets {
		_, s, _, err := svc.IssueKey(ctx, meta, "acme", control.KeySpec{User: "bob"})
		if err != nil {
			b.Fatal(err)
		}
		secrets[i] = s.Reveal()
	}
	// The gateway's model: its own connection, as the gateway identity.
	gst, err := store.OpenJetStream(ctx, node.ConnectAs(b, natsauth.Gateway), store.Config{})
	if err != nil {
		b.Fatal(err)
	}
	m := readmodel.New(slog.New(slog.DiscardHandler), readmodel.VerificationOnly())
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.Run(runCtx, gst, nil); close(done) }()
	defer func() { stop(); <-done }()
	last, err := st.LastSeq(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	if err := m.WaitFor(ctx, last, time.Minute); err != nil {
		b.Fatal(err)
	}
	if code := gatewayVerify(m, "/orders/1", secrets[0], time.Now()); code != projections.CodeValid {
		b.Fatal(code)
	}
	b.Run("serial", func(b *testing.B) { benchVerifyParallel(b, m, secrets, true, nil) })
	b.Run("idle", func(b *testing.B) { benchVerifyParallel(b, m, secrets, false, nil) })
	b.Run("applying", func(b *testing.B) {
		benchVerifyParallel(b, m, secrets, false, func(ctx context.Context) int {
			n := 0
			for ; n < 1_000_000 && ctx.Err() == nil; n++ { // bounded; ends with the benchmark
				if _, _, _, err := svc.IssueKey(ctx, meta, "acme", control.KeySpec{User: "bob"}); err != nil && ctx.Err() == nil {
					b.Error(err)
					return n
				}
			}
			return n
		})
	})
}

// verifier is one worker's side of the interleaved measurement.
type verifier struct {
	m       *readmodel.Model
	secrets []string
	order   []int32
	pos     int

	sha, verify time.Duration
	n           int
	touch       byte
}

// block hashes, then verifies, the next verifyBlock keys of the order: the
// secrets read once untimed first (a gateway hashes the key of a request
// it has just read: in cache on both sides; the catalog is not).
func (v *verifier) block(b *testing.B) bool {
	var buf [secret.MaxPrefixLen + secret.MaxRandomLen + secret.ChecksumLen]byte
	idx := v.order[v.pos : v.pos+verifyBlock]
	if v.pos += verifyBlock; v.pos > len(v.order)-verifyBlock {
		v.pos = 0
	}
	for _, i := range idx {
		s := v.secrets[i]
		v.touch ^= s[0] ^ s[len(s)-1]
	}
	start := time.Now()
	for _, i := range idx {
		h := sha256.Sum256(append(buf[:0], v.secrets[i]...))
		v.touch ^= h[0]
	}
	mid := time.Now()
	for _, i := range idx {
		if code := gatewayVerify(v.m, "/orders/1", v.secrets[i], start); code != projections.CodeValid {
			b.Error(code)
			return false
		}
	}
	end := time.Now()
	v.sha, v.verify, v.n = v.sha+mid.Sub(start), v.verify+end.Sub(mid), v.n+len(idx)
	return true
}

// benchVerifyParallel runs one worker per core (one only when serial);
// writer, when set, writes to the log meanwhile and returns how many
// events it wrote.
func benchVerifyParallel(b *testing.B, m *readmodel.Model, secrets []string, serial bool, writer func(context.Context) int) {
	perm := mrand.New(mrand.NewPCG(1, 2)).Perm(len(secrets))
	order := make([]int32, (len(perm)+verifyBlock-1)/verifyBlock*verifyBlock+verifyBlock)
	for i := range order {
		order[i] = int32(perm[i%len(perm)])
	}
	var mu sync.Mutex
	var all verifier
	add := func(v *verifier) {
		shaSink.Add(uint32(v.touch))
		mu.Lock()
		all.sha, all.verify, all.n = all.sha+v.sha, all.verify+v.verify, all.n+v.n
		mu.Unlock()
	}
	var wrote int
	wctx, stopWriter := context.WithCancel(context.Background())
	wdone := make(chan struct{})
	applied0 := m.Applied()
	if writer != nil {
		go func() { wrote = writer(wctx); close(wdone) }()
	} else {
		close(wdone)
	}
	var worker atomic.Int32
	b.ResetTimer()
	if serial {
		v := &verifier{m: m, secrets: secrets, order: order}
		for b.Loop() {
			if !v.block(b) {
				break
			}
		}
		add(v)
	} else {
		b.RunParallel(func(pb *testing.PB) {
			v := &verifier{m: m, secrets: secrets, order: order}
			v.pos = int(worker.Add(1)) * 97 % (len(order) - verifyBlock) // workers start apart
			for pb.Next() {
				if !v.block(b) {
					break
				}
			}
			add(v)
		})
	}
	b.StopTimer()
	stopWriter()
	<-wdone
	if all.n == 0 {
		return
	}
	workers := float64(runtime.GOMAXPROCS(0))
	if serial {
		workers = 1
	}
	perVerify := float64(all.verify.Nanoseconds()) / float64(all.n)
	perSHA := float64(all.sha.Nanoseconds()) / float64(all.n)
	b.ReportMetric(perVerify, "ns/op")
	b.ReportMetric(perSHA, "sha256-ns/op")
	b.ReportMetric(perVerify/perSHA, "ratio")
	b.ReportMetric(workers*1e9/perVerify, "verifies/s")
	if writer != nil {
		b.ReportMetric(float64(wrote)/b.Elapsed().Seconds(), "written/s")
		b.ReportMetric(float64(m.Applied()-applied0)/b.Elapsed().Seconds(), "applied/s")
	}
}

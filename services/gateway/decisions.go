package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
)

// Defaults of the decision stream: how long and how much of the decisions
// it keeps (the oldest go first).
const (
	DefaultDecisionRetention = 30 * 24 * time.Hour
	DefaultDecisionMaxBytes  = 8 << 30
	maxLoggedPath            = 512
)

// DecisionStreamConfig is how a control node creates the decision stream.
type DecisionStreamConfig struct {
	Replicas  int
	Retention time.Duration // age limit (default DefaultDecisionRetention)
	MaxBytes  int64         // size limit (default DefaultDecisionMaxBytes)
}

// EnsureDecisionStream creates the decision log's stream if it is missing,
// with an age and a size limit. An existing stream is left as its operator
// configured it. Control nodes call it; gateways only write to the stream.
func EnsureDecisionStream(ctx context.Context, js jetstream.JetStream, cfg DecisionStreamConfig) error {
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultDecisionRetention
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultDecisionMaxBytes
	}
	return store.EnsureStream(ctx, js, jetstream.StreamConfig{Name: events.DecisionStream, Description: "Keytrail gateway decisions",
		Subjects: []string{events.DecisionSubjects}, Storage: jetstream.FileStorage, Replicas: max(cfg.Replicas, 1),
		MaxAge: cfg.Retention, MaxBytes: cfg.MaxBytes, Discard: jetstream.DiscardOld, DenyDelete: true, DenyPurge: true})
}

// CheckDecisionStream fails unless the decision stream exists: a gateway
// does not create it (a control node does).
func CheckDecisionStream(ctx context.Context, js jetstream.JetStream) error {
	_, err := js.Stream(ctx, events.DecisionStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("gateway: decision stream %s does not exist (a control node creates it)", events.DecisionStream)
	}
	if err != nil {
		return fmt.Errorf("gateway: decision stream: %w", err)
	}
	return nil
}

// DecisionLog writes decisions to the stream from its own goroutine: a
// request only hands its decision over, and when the writer cannot keep up
// (or NATS is away) decisions are dropped and counted, never waited for.
// When Run ends, what is queued is written within DrainTimeout; from then
// on every decision offered is written or counted dropped: written +
// dropped = offered.
type DecisionLog struct {
	// AckWait bounds the wait for one acknowledgement (DefaultAckWait when
	// zero); set it before Run.
	AckWait time.Duration
	js      jetstream.JetStream
	queue   chan *events.DecisionRecord
	offered atomic.Uint64
	dropped atomic.Uint64
	written atomic.Uint64
	closed  atomic.Bool
	// key and node sign decision checkpoints (SignWith); unsigned counts
	// decisions written whose checkpoint could not be published.
	key      ed25519.PrivateKey
	node     string
	unsigned atomic.Uint64
	// vouch are the digests of the decisions published since the last
	// checkpoint, notes the checkpoints not yet stored (the publishing
	// goroutine's own).
	vouch []events.DecisionDigest
	notes []pendingNote
	// pending is how many decisions no stored checkpoint names yet (read
	// by the metrics; the publishing goroutine keeps it).
	pending atomic.Int64
}

// Pending is how many decisions the log published that no stored
// checkpoint names yet: those since the last checkpoint, and those of
// checkpoints not yet stored (NATS away).
func (l *DecisionLog) Pending() int64 { return l.pending.Load() }

func (l *DecisionLog) countPending() {
	n := len(l.vouch)
	for _, p := range l.notes {
		n += p.count
	}
	l.pending.Store(int64(n))
}

// SignWith makes the log publish a signed checkpoint of the decisions it
// published (events.DecisionCheckpoint), every second or every
// events.DecisionCheckpointEvery decisions: key is the gateway's signer
// (of role decisions), node its name. Call it before Run.
func (l *DecisionLog) SignWith(key ed25519.PrivateKey, node string) *DecisionLog {
	l.key, l.node = key, node
	return l
}

// Unsigned is how many decisions were written without a checkpoint
// vouching for them (it could not be published).
func (l *DecisionLog) Unsigned() uint64 { return l.unsigned.Load() }

// DrainTimeout bounds how long a stopping decision log writes what is
// queued and waits for the stream's acknowledgements.
const DrainTimeout = 2 * time.Second

// NewDecisionLog returns a log writing through js with room for buffer
// decisions in flight.
func NewDecisionLog(js jetstream.JetStream, buffer int) *DecisionLog {
	return &DecisionLog{js: js, queue: make(chan *events.DecisionRecord, max(buffer, 1))}
}

// Offer hands d to the writer, or drops it if the writer is behind or has
// stopped.
func (l *DecisionLog) Offer(d *events.DecisionRecord) {
	l.offered.Add(1)
	if l.closed.Load() {
		return // counted by Dropped
	}
	select {
	case l.queue <- d:
	default:
		l.dropped.Add(1)
	}
}

// Offered is how many decisions were handed to the log.
func (l *DecisionLog) Offered() uint64 { return l.offered.Load() }

// Dropped is how many decisions were not written; once the log has
// stopped, every decision offered and not written.
func (l *DecisionLog) Dropped() uint64 {
	if l.closed.Load() {
		return l.offered.Load() - l.written.Load()
	}
	return l.dropped.Load()
}

// Written is how many decisions the stream acknowledged.
func (l *DecisionLog) Written() uint64 { return l.written.Load() }

// Run writes decisions until ctx ends, then what is queued, waiting for
// acknowledgements at most DrainTimeout. One goroutine publishes, another
// counts the acknowledgements as they come (in order, mostly), so that a
// flood of denials costs two goroutines, not one per decision. With a
// signing key, the publishing goroutine also vouches for every decision it
// published — acknowledged or not: a partition may store one whose
// acknowledgement never comes back (found by the fault campaign) — in a
// signed checkpoint every second or DecisionCheckpointEvery decisions.
func (l *DecisionLog) Run(ctx context.Context) {
	acks := make(chan jetstream.PubAckFuture, 4096)
	giveUp := make(chan struct{}) // closed when the drain's time is up
	done := make(chan struct{})
	go func() {
		defer close(done)
		// An acknowledgement that never comes (a reply lost on a cut or
		// lossy link, with no publish timeout) must not stop the log: the
		// fault campaign found a gateway whose counter waited for one for
		// ever, its queues full and every later decision dropped.
		wait := time.NewTimer(l.ackWait())
		defer wait.Stop()
		for ack := range acks {
			wait.Reset(l.ackWait())
			select {
			case <-ack.Ok():
				l.written.Add(1)
			case <-ack.Err():
				l.dropped.Add(1)
			case <-giveUp:
				l.dropped.Add(1)
			case <-wait.C:
				l.dropped.Add(1) // stored or not, unknown: counted dropped
			}
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			l.checkpoint(ctx)
		case d := <-l.queue:
			l.write(ctx, d, acks)
		}
	}
	// Stopping: write what is queued, bounded in time.
	drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), DrainTimeout)
	defer cancel()
	stop := context.AfterFunc(drain, func() { close(giveUp) })
	defer stop()
queued:
	for drain.Err() == nil {
		select {
		case d := <-l.queue:
			l.write(drain, d, acks)
		default:
			break queued
		}
	}
	l.checkpoint(drain)
	for _, n := range l.notes {
		l.unsigned.Add(uint64(n.count))
	}
	l.closed.Store(true)
	close(acks)
	<-done
}

// DefaultAckWait is how long the decision log waits for one decision's
// acknowledgement before it counts it dropped and goes on.
const DefaultAckWait = 10 * time.Second

func (l *DecisionLog) ackWait() time.Duration {
	if l.AckWait > 0 {
		return l.AckWait
	}
	return DefaultAckWait
}

// maxPendingNotes bounds the checkpoints kept for a later try while NATS
// is away (each vouches for up to DecisionCheckpointEvery decisions).
const maxPendingNotes = 64

// pendingNote is a signed decision checkpoint not yet stored.
type pendingNote struct {
	msg   *nats.Msg
	count int
}

// checkpoint signs a checkpoint of the decisions published since the last
// one, if any, and publishes the checkpoints not yet stored, oldest first
// (the stream deduplicates a retry by its content); those it cannot
// publish are tried again next time, the oldest dropped past
// maxPendingNotes (their decisions counted unsigned).
func (l *DecisionLog) checkpoint(ctx context.Context) {
	if l.key == nil {
		return
	}
	defer l.countPending()
	if len(l.vouch) > 0 {
		note, err := events.SignNote(l.key, events.DecisionCheckpoint{Node: l.node, Digests: l.vouch}.Text())
		if err != nil {
			l.unsigned.Add(uint64(len(l.vouch)))
		} else {
			m := nats.NewMsg(events.DecisionCheckpointSubject(events.SignerID(l.key.Public().(ed25519.PublicKey))))
			m.Data = note
			sum := sha256.Sum256(note)
			m.Header.Set(jetstream.MsgIDHeader, "dchk:"+hex.EncodeToString(sum[:16]))
			l.notes = append(l.notes, pendingNote{msg: m, count: len(l.vouch)})
		}
		l.vouch = l.vouch[:0]
	}
	for len(l.notes) > maxPendingNotes {
		l.unsigned.Add(uint64(l.notes[0].count))
		l.notes = l.notes[1:]
	}
	for len(l.notes) > 0 && ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := l.js.PublishMsg(pctx, l.notes[0].msg)
		cancel()
		if err != nil {
			return // NATS away: next time
		}
		l.notes = l.notes[1:]
	}
}

// write publishes d, vouches for it, and hands its acknowledgement to the
// counter.
func (l *DecisionLog) write(ctx context.Context, d *events.DecisionRecord, acks chan<- jetstream.PubAckFuture) {
	data, err := json.Marshal(d)
	if err != nil {
		l.dropped.Add(1)
		return
	}
	ack, err := l.publish(ctx, events.DecisionSubject(d), data)
	if err != nil {
		l.dropped.Add(1)
		return
	}
	if l.key != nil {
		l.vouch = append(l.vouch, events.DigestDecision(data))
		l.pending.Add(1)
		if len(l.vouch) >= events.DecisionCheckpointEvery {
			l.checkpoint(ctx)
		}
	}
	select {
	case acks <- ack:
	case <-ctx.Done():
		l.dropped.Add(1) // its acknowledgement will not be waited for
	}
}

// publish publishes asynchronously; when too many publishes await their
// acknowledgement it waits for them (a burst is absorbed by the queue, which
// drops only when full) and tries once more.
func (l *DecisionLog) publish(ctx context.Context, subject string, data []byte) (jetstream.PubAckFuture, error) {
	ack, err := l.js.PublishAsync(subject, data)
	if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
		return ack, err
	}
	select {
	case <-l.js.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return l.js.PublishAsync(subject, data)
}

// logDecision hands x's decision to the decision log: always for a denial,
// for a sample of the requests let through.
func (g *Gateway) logDecision(r *http.Request, x *exchange, denied bool) {
	if g.cfg.Decisions == nil || (!denied && (g.cfg.Sample <= 0 || rand.Float64() >= g.cfg.Sample)) {
		return
	}
	d := &x.decision
	rec := &events.DecisionRecord{Code: string(d.Code), KeyID: d.KeyID, Tenant: d.Tenant, User: d.User, API: x.api.ID,
		APITenant: x.api.Tenant, Method: r.Method, Path: clip(r.URL.Path, maxLoggedPath), Node: g.cfg.Node, RequestID: x.id, Now: d.Now, Seq: d.Seq,
		FailOpen: x.failOpen}
	for _, c := range d.Also() {
		rec.Also = append(rec.Also, string(c))
	}
	if r := x.limit(); r != nil {
		rec.Limit = &events.DecisionLimit{Source: x.limitedBy, PerSecond: r.PerSecond, Burst: r.Burst, Gateways: g.cfg.Limits.Peers()}
	}
	for _, e := range d.Evidence() {
		rec.Evidence = append(rec.Evidence, e.Seq())
		rec.Types = append(rec.Types, string(e.Type()))
	}
	g.cfg.Decisions.Offer(rec)
}

// limit is the rate limit that denied x, nil when none did.
func (x *exchange) limit() *events.RateLimit {
	switch x.limitedBy {
	case events.LimitSourceKey:
		return x.decision.KeyRateLimit()
	case events.LimitSourceAPI:
		return x.api.RateLimit
	}
	return nil
}

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The decision log's stream.
const (
	DecisionStream        = "KEYTRAIL_DECISIONS"
	DecisionSubjectPrefix = "keytrail.dec."
	// DefaultDecisionRetention is how long decisions are kept.
	DefaultDecisionRetention = 30 * 24 * time.Hour
	maxLoggedPath            = 512
)

// Decision is one entry of the decision log: what was decided, on what, and
// the events it rests on (their sequences and types; `keytrail audit`
// re-derives it from them). Never a secret.
type Decision struct {
	Code      string    `json:"code"`
	Also      []string  `json:"also,omitempty"`
	KeyID     string    `json:"key_id,omitempty"`
	Tenant    string    `json:"tenant,omitempty"`
	User      string    `json:"user,omitempty"`
	API       string    `json:"api,omitempty"`
	APITenant string    `json:"api_tenant,omitempty"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Node      string    `json:"node"`
	RequestID string    `json:"request_id"`
	Now       time.Time `json:"now"`
	Seq       uint64    `json:"seq"`
	Evidence  []uint64  `json:"evidence,omitempty"`
	Types     []string  `json:"evidence_types,omitempty"`
	FailOpen  bool      `json:"fail_open,omitempty"`
}

// EnsureDecisionStream creates the decision log's stream if it is missing,
// keeping decisions for retention. An existing stream is left as its
// operator configured it.
func EnsureDecisionStream(ctx context.Context, js jetstream.JetStream, replicas int, retention time.Duration) error {
	if retention <= 0 {
		retention = DefaultDecisionRetention
	}
	_, err := js.Stream(ctx, DecisionStream)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("gateway: decision stream: %w", err)
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: DecisionStream, Description: "Keytrail gateway decisions",
		Subjects: []string{DecisionSubjectPrefix + ">"}, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		MaxAge: retention, Discard: jetstream.DiscardOld, DenyDelete: true})
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("gateway: create decision stream: %w", err)
	}
	return nil
}

// DecisionLog writes decisions to the stream from its own goroutine: a
// request only hands its decision over, and when the writer cannot keep up
// (or NATS is away) decisions are dropped and counted, never waited for.
type DecisionLog struct {
	js      jetstream.JetStream
	queue   chan *Decision
	dropped atomic.Uint64
	written atomic.Uint64
}

// NewDecisionLog returns a log writing through js with room for buffer
// decisions in flight.
func NewDecisionLog(js jetstream.JetStream, buffer int) *DecisionLog {
	return &DecisionLog{js: js, queue: make(chan *Decision, max(buffer, 1))}
}

// Offer hands d to the writer, or drops it if the writer is behind.
func (l *DecisionLog) Offer(d *Decision) {
	select {
	case l.queue <- d:
	default:
		l.dropped.Add(1)
	}
}

// Dropped is how many decisions were not written.
func (l *DecisionLog) Dropped() uint64 { return l.dropped.Load() }

// Written is how many decisions the stream acknowledged.
func (l *DecisionLog) Written() uint64 { return l.written.Load() }

// Run writes decisions until ctx ends.
func (l *DecisionLog) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-l.queue:
			data, err := json.Marshal(d)
			if err != nil {
				l.dropped.Add(1)
				continue
			}
			subject := DecisionSubjectPrefix + "_"
			if d.Tenant != "" {
				subject = DecisionSubjectPrefix + d.Tenant
			}
			ack, err := l.js.PublishAsync(subject, data)
			if err != nil {
				l.dropped.Add(1)
				continue
			}
			go l.await(ctx, ack)
		}
	}
}

func (l *DecisionLog) await(ctx context.Context, ack jetstream.PubAckFuture) {
	select {
	case <-ack.Ok():
		l.written.Add(1)
	case <-ack.Err():
		l.dropped.Add(1)
	case <-ctx.Done():
	}
}

// logDecision hands x's decision to the decision log: always for a denial,
// for a sample of the requests let through.
func (g *Gateway) logDecision(r *http.Request, x *exchange, denied bool) {
	if g.cfg.Decisions == nil || (!denied && (g.cfg.Sample <= 0 || rand.Float64() >= g.cfg.Sample)) {
		return
	}
	d := &x.decision
	p := r.URL.Path
	if len(p) > maxLoggedPath {
		p = p[:maxLoggedPath]
	}
	rec := &Decision{Code: string(d.Code), KeyID: d.KeyID, Tenant: d.Tenant, User: d.User, API: x.api.ID,
		APITenant: x.api.Tenant, Method: r.Method, Path: p, Node: g.cfg.Node, RequestID: x.id, Now: d.Now, Seq: d.Seq,
		FailOpen: x.failOpen}
	for _, c := range d.Also() {
		rec.Also = append(rec.Also, string(c))
	}
	for _, e := range d.Evidence() {
		rec.Evidence = append(rec.Evidence, e.Seq())
		rec.Types = append(rec.Types, string(e.Type()))
	}
	g.cfg.Decisions.Offer(rec)
}

// Package notices is the notice scheduler of a control node: it reads the
// notices already sent from the notice stream, derives what is due from
// the read model, the usage rollups and the clock (projections.DueNotices,
// DueUsageNotices), and publishes it
// to KEYTRAIL_NOTICES — never to the event log. Any number of control
// nodes run it; a notice appears once: its id (the same on every node) is
// its Msg-Id, and each publish expects the last sequence the node saw on
// the notice's subject, so a node that has not seen another's notice yet
// is refused rather than told twice.
package notices

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
)

// Model is the read model the scheduler derives notices from.
type Model interface {
	Ready() bool
	Read(fn func(c *projections.Catalog))
}

// UsageSource is the usage fold the notices about use read (a control
// node's rollups).
type UsageSource interface {
	Read(fn func(u *projections.Usage))
}

// Events reads one event of the log (the store), to name who caused a
// notice and why.
type Events interface {
	Get(ctx context.Context, seq uint64) (events.Recorded, error)
}

// Config is a scheduler's.
type Config struct {
	JS    jetstream.JetStream
	Model Model
	// Events, when set, names the actor and the reason of a notice's
	// causing event.
	Events Events
	// Usage, when set, adds the notices that rest on usage counts
	// (keys.blocked, key.denials-started, key.rotation-stalled,
	// key.unused).
	Usage UsageSource
	// UsageNotices tunes them.
	UsageNotices projections.UsageNoticeConfig
	// Now is the clock (time.Now when nil); Every how often Run looks
	// (default one minute).
	Now   func() time.Time
	Every time.Duration
	Log   *slog.Logger
	// Thresholds before a key stops working (default
	// projections.DefaultExpiryThresholds).
	Thresholds []time.Duration
}

// Scheduler publishes due notices.
type Scheduler struct {
	cfg Config

	mu   sync.Mutex
	sent projections.NoticesSent
	last map[string]uint64 // subject → its last sequence
	seq  uint64            // the last notice-stream sequence read
}

// New returns a scheduler; call Run, or Tick with a clock of your own.
func New(cfg Config) *Scheduler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Every <= 0 {
		cfg.Every = time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{cfg: cfg, sent: projections.NoticesSent{}, last: map[string]uint64{}}
}

// EnsureStream creates the notice stream if it is missing (control nodes
// call it).
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	return store.EnsureStream(ctx, js, jetstream.StreamConfig{Name: events.NoticeStream, Description: "Keytrail notices to tenants",
		Subjects: []string{events.NoticeSubjects}, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		MaxAge: 400 * 24 * time.Hour, Duplicates: 24 * time.Hour, DenyDelete: true, DenyPurge: true})
}

// Run ticks every Every until ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Every)
	defer t.Stop()
	for {
		if _, err := s.Tick(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Log.Warn("notices not published", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick reads the notices sent since the last tick, then publishes those
// due now; it returns how many it stored (not counting those another node
// stored first).
func (s *Scheduler) Tick(ctx context.Context) (int, error) {
	if !s.cfg.Model.Ready() {
		return 0, nil // a model still catching up would tell old news
	}
	if err := s.catchUp(ctx); err != nil {
		return 0, err
	}
	now := s.cfg.Now()
	var due []events.Notice
	s.mu.Lock()
	s.cfg.Model.Read(func(c *projections.Catalog) {
		due = projections.DueNotices(c, s.sent, now, s.cfg.Thresholds)
		if s.cfg.Usage != nil {
			s.cfg.Usage.Read(func(u *projections.Usage) {
				due = append(due, projections.DueUsageNotices(c, u, s.sent, now, s.cfg.UsageNotices)...)
			})
		}
	})
	s.mu.Unlock()
	stored := 0
	for i := range due {
		if n := &due[i]; n.CauseSeq > 0 && s.cfg.Events != nil {
			if r, err := s.cfg.Events.Get(ctx, n.CauseSeq); err == nil {
				n.CauseActor, n.CauseReason = r.Actor, r.Reason
				n.Text += " by " + r.Actor
				if r.Reason != "" {
					n.Text += fmt.Sprintf(" (%q)", r.Reason)
				}
			}
		}
		ok, err := s.publish(ctx, &due[i])
		if err != nil {
			return stored, err
		}
		if ok {
			stored++
		}
	}
	return stored, nil
}

// publish stores n unless it is there already; ok says whether this call
// stored it.
func (s *Scheduler) publish(ctx context.Context, n *events.Notice) (bool, error) {
	data, err := json.Marshal(n)
	if err != nil {
		return false, err
	}
	subject := events.NoticeSubject(n)
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, n.ID)
	s.mu.Lock()
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(s.last[subject], 10))
	s.mu.Unlock()
	ack, err := s.cfg.JS.PublishMsg(ctx, m, jetstream.WithExpectStream(events.NoticeStream))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		// Another node stored a notice on this subject that this one has
		// not read yet: read it, and decide again at the next tick.
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("notices: publish %s: %w", n.ID, err)
	}
	s.mu.Lock()
	s.sent[n.ID] = true
	s.last[subject] = max(s.last[subject], ack.Sequence)
	s.mu.Unlock()
	return !ack.Duplicate, nil
}

// catchUp reads the notice stream from after the last sequence read.
func (s *Scheduler) catchUp(ctx context.Context) error {
	cfg := jetstream.OrderedConsumerConfig{}
	if s.seq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, s.seq+1
	}
	cons, err := s.cfg.JS.OrderedConsumer(ctx, events.NoticeStream, cfg)
	if err != nil {
		return fmt.Errorf("notices: read the notice stream: %w", err)
	}
	defer store.DeleteConsumer(s.cfg.JS, events.NoticeStream, cons)
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("notices: read the notice stream: %w", err)
	}
	if info.NumPending == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return err
	}
	defer it.Stop()
	for range info.NumPending {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return fmt.Errorf("notices: read the notice stream: %w", err)
		}
		md, err := msg.Metadata()
		if err != nil {
			continue
		}
		var n events.Notice
		s.mu.Lock()
		if json.Unmarshal(msg.Data(), &n) == nil && n.ID != "" {
			s.sent[n.ID] = true
		}
		s.last[msg.Subject()] = md.Sequence.Stream
		s.seq = md.Sequence.Stream
		s.mu.Unlock()
	}
	return nil
}

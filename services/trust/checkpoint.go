package trust

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
)

// Origin names the log a checkpoint is of: the stream and when it was
// created (a stream made anew is another log).
func Origin(created time.Time) string {
	return "keytrail/" + events.StreamName + "/" + strconv.FormatInt(created.UTC().Unix(), 10)
}

// EnsureCheckpointStream creates the stream of checkpoints if it is
// missing.
func EnsureCheckpointStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	return store.EnsureStream(ctx, js, jetstream.StreamConfig{Name: events.CheckpointStream, Description: "Keytrail signed checkpoints of the event log",
		Subjects: []string{events.CheckpointSubject}, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		Duplicates: 24 * time.Hour, DenyDelete: true, DenyPurge: true})
}

// Checkpointer signs checkpoints of what a control node's read model takes
// (Take is its readmodel.OnTaken hook): the global chain at every
// CheckpointEvery-th sequence, when events.MaxRefused messages of a span
// were refused, and at the model's last sequence when the log has been
// quiet for Quiet — with the model's judgement of the span's signatures
// when a root is pinned (Judged). Checkpoints at the same sequence carry
// it as their Nats-Msg-Id: one is stored for each, whichever node signs
// it. A node resumes where the stream's last checkpoint is, never signing
// again what was signed.
type Checkpointer struct {
	JS     jetstream.JetStream
	Key    ed25519.PrivateKey
	Origin string
	// Judged: the model judges signatures (a root is pinned).
	Judged bool
	Quiet  time.Duration
	Log    *slog.Logger

	mu      sync.Mutex
	started bool
	seq     uint64 // the model's position
	chain   events.Hash
	from    uint64   // where the span being judged began
	refused []uint64 // refused in it
	due     []events.Checkpoint
	kick    chan struct{}
}

// Take follows the model: called under its lock after every message.
func (c *Checkpointer) Take(cat *projections.Catalog, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !cat.ChainKnown() {
		c.started = false
		return
	}
	if !c.started || cat.Seq != c.seq+1 {
		c.started, c.from, c.refused = true, cat.Seq-1, nil
	}
	c.seq, c.chain = cat.Seq, cat.Chain
	if errors.Is(err, projections.ErrUnsigned) {
		c.refused = append(c.refused, cat.Seq)
	}
	if c.seq%events.CheckpointEvery == 0 || len(c.refused) >= events.MaxRefused {
		c.due = append(c.due, c.current())
		c.from, c.refused = c.seq, nil
		select {
		case c.kicks() <- struct{}{}:
		default:
		}
	}
}

// kicks is the channel Take wakes Run with (made on first use; c.mu held).
func (c *Checkpointer) kicks() chan struct{} {
	if c.kick == nil {
		c.kick = make(chan struct{}, 1)
	}
	return c.kick
}

func (c *Checkpointer) current() events.Checkpoint {
	return events.Checkpoint{Origin: c.Origin, Seq: c.seq, Chain: c.chain, Judged: c.Judged && c.from < c.seq, From: c.from,
		Refused: slices.Clone(c.refused)}
}

// Run publishes the checkpoints due until ctx ends.
func (c *Checkpointer) Run(ctx context.Context) {
	if c.Quiet <= 0 {
		c.Quiet = time.Second
	}
	c.mu.Lock()
	kick := c.kicks()
	c.mu.Unlock()
	published := c.lastPublished(ctx)
	quiet := time.NewTimer(c.Quiet)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		case <-quiet.C:
			quiet.Reset(c.Quiet)
			c.mu.Lock()
			if c.started && c.seq > published {
				c.due = append(c.due, c.current())
			}
			c.mu.Unlock()
		}
		c.mu.Lock()
		due := c.due
		c.due = nil
		c.mu.Unlock()
		for _, cp := range due {
			if cp.Seq > published && c.publish(ctx, cp) == nil {
				published = cp.Seq
			}
		}
	}
}

// lastPublished is the sequence of the stream's last checkpoint (0: none,
// or it cannot be read: then what is due is published, and deduplicated).
func (c *Checkpointer) lastPublished(ctx context.Context) uint64 {
	s, err := c.JS.Stream(ctx, events.CheckpointStream)
	if err != nil {
		return 0
	}
	m, err := s.GetLastMsgForSubject(ctx, events.CheckpointSubject)
	if err != nil {
		return 0
	}
	cp, err := events.ParseCheckpoint(events.NoteText(m.Data))
	if err != nil || cp.Origin != c.Origin {
		return 0
	}
	return cp.Seq
}

func (c *Checkpointer) publish(ctx context.Context, cp events.Checkpoint) error {
	b, err := events.SignCheckpoint(c.Key, cp)
	if err == nil {
		m := nats.NewMsg(events.CheckpointSubject)
		m.Data = b
		m.Header.Set(jetstream.MsgIDHeader, "chk:"+strconv.FormatUint(cp.Seq, 10))
		_, err = c.JS.PublishMsg(ctx, m, jetstream.WithExpectStream(events.CheckpointStream))
	}
	if err != nil && ctx.Err() == nil {
		c.Log.Warn("checkpoint not published", "seq", cp.Seq, "err", err)
	}
	return err
}

// Package usage keeps the usage rollups of a control node: it folds the
// gateways' usage reports (projections.Usage) from the usage stream with
// an ordered subscription, saves the fold to the snapshot bucket every
// minute and when it stops (so that a restart folds only the reports after
// the saved sequence, and none twice), and answers queries under a read
// lock. Every control node keeps its own; they fold the same stream to the
// same state.
package usage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
)

// SnapshotObject is the fold's object in the snapshot bucket.
const SnapshotObject = "usage-rollups"

// saveEvery is how often Run saves the fold.
const saveEvery = time.Minute

// Rollups is a control node's usage fold.
type Rollups struct {
	js  jetstream.JetStream
	obj jetstream.ObjectStore
	log *slog.Logger

	mu      sync.RWMutex
	u       *projections.Usage
	changed chan struct{} // closed and replaced when the fold moves
}

// Open returns the rollups as the last snapshot left them (empty when
// there is none, or it cannot be read).
func Open(ctx context.Context, js jetstream.JetStream, replicas int, log *slog.Logger) (*Rollups, error) {
	obj, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: events.SnapshotBucket,
		Description: "Keytrail read-model snapshots", Storage: jetstream.FileStorage, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("usage: snapshot bucket: %w", err)
	}
	r := &Rollups{js: js, obj: obj, log: log, u: projections.NewUsage(), changed: make(chan struct{})}
	data, err := obj.GetBytes(ctx, SnapshotObject)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
	case err != nil:
		log.Warn("usage snapshot not read; folding the stream from its start", "err", err)
	default:
		u := projections.NewUsage()
		if err := json.Unmarshal(data, u); err != nil {
			log.Warn("usage snapshot not valid; folding the stream from its start", "err", err)
		} else {
			r.u = u
		}
	}
	return r, nil
}

// Seq is the last usage-stream sequence folded.
func (r *Rollups) Seq() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.u.Seq
}

// Read calls fn with the fold under a read lock; fn must not keep it.
func (r *Rollups) Read(fn func(u *projections.Usage)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	fn(r.u)
}

// WaitFor waits until the fold has reached seq or ctx ends.
func (r *Rollups) WaitFor(ctx context.Context, seq uint64) error {
	for {
		r.mu.RLock()
		done, changed := r.u.Seq >= seq, r.changed
		r.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// Run folds the usage stream from after the fold's sequence until ctx
// ends, saving the fold every minute and at the end. It subscribes again
// after a failure.
func (r *Rollups) Run(ctx context.Context) error {
	saved := r.Seq()
	save := func(ctx context.Context) {
		if seq := r.Seq(); seq != saved {
			if err := r.save(ctx); err != nil {
				r.log.Warn("usage snapshot not saved", "err", err)
				return
			}
			saved = seq
		}
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		save(sctx)
		cancel()
	}()
	tick := time.NewTicker(saveEvery)
	defer tick.Stop()
	for attempt := 0; ctx.Err() == nil; attempt++ {
		err := r.follow(ctx, tick.C, save)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("usage stream: subscribing again", "err", err)
		t := time.NewTimer(time.Second << min(attempt, 4))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
	return nil
}

// follow reads the stream after the fold's sequence and folds each report.
func (r *Rollups) follow(ctx context.Context, tick <-chan time.Time, save func(context.Context)) error {
	cfg := jetstream.OrderedConsumerConfig{InactiveThreshold: 5 * time.Minute}
	if seq := r.Seq(); seq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	}
	cons, err := r.js.OrderedConsumer(ctx, events.UsageStream, cfg)
	if err != nil {
		return err
	}
	defer store.DeleteConsumer(r.js, events.UsageStream, cons)
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return err
	}
	defer it.Stop()
	msgs := make(chan jetstream.Msg)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := it.Next()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case <-tick:
			save(ctx)
		case m := <-msgs:
			r.fold(m)
		}
	}
}

// fold applies one message; one that is not a valid report is counted
// (Usage.Skipped) and logged, never folded.
func (r *Rollups) fold(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	var rep events.UsageReport
	if err := json.Unmarshal(m.Data(), &rep); err != nil {
		rep = events.UsageReport{} // fails Validate: counted as skipped
	}
	r.mu.Lock()
	err = r.u.Apply(md.Sequence.Stream, md.Timestamp, &rep)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	if err != nil {
		r.log.Warn("usage report not folded", "seq", md.Sequence.Stream, "err", err)
	}
}

// save writes the fold to the snapshot bucket.
func (r *Rollups) save(ctx context.Context) error {
	r.mu.RLock()
	data, err := json.Marshal(r.u)
	r.mu.RUnlock()
	if err != nil {
		return err
	}
	_, err = r.obj.Put(ctx, jetstream.ObjectMeta{Name: SnapshotObject}, bytes.NewReader(data))
	return err
}

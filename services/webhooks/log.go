package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
)

// Bounds of what one request to the attempt log or a replay reads.
const (
	MaxAttempts   = 1000
	MaxReplay     = 10000
	maxLogScanned = 200000
)

// Log answers the admin API about deliveries: the attempt log of an
// endpoint, and replays.
type Log struct{ js jetstream.JetStream }

// NewLog reads and replays through js.
func NewLog(js jetstream.JetStream) *Log { return &Log{js: js} }

// AttemptQuery selects attempts of one endpoint.
type AttemptQuery struct {
	Since time.Time
	// MsgID, when set, keeps one message's attempts.
	MsgID string
	Limit int
}

// Attempts returns an endpoint's latest attempts since q.Since, oldest
// first, at most q.Limit (MaxAttempts).
func (l *Log) Attempts(ctx context.Context, tenant, webhook string, q AttemptQuery) ([]Attempt, error) {
	limit := q.Limit
	if limit <= 0 || limit > MaxAttempts {
		limit = MaxAttempts
	}
	var ring []Attempt
	_, err := l.scan(ctx, events.WebhookStream, attemptSubject(tenant, webhook), q.Since, func(data []byte) bool {
		var a Attempt
		if json.Unmarshal(data, &a) != nil || (q.MsgID != "" && a.MsgID != q.MsgID) {
			return true
		}
		if len(ring) == limit {
			ring = append(ring[:0], ring[1:]...)
		}
		ring = append(ring, a)
		return true
	})
	return ring, err
}

// MaxNotices bounds one read of a tenant's notices.
const MaxNotices = 1000

// Notices returns the tenant's latest notices since since (of one type
// when typ is set), oldest first, at most limit (MaxNotices).
func (l *Log) Notices(ctx context.Context, tenant, typ string, since time.Time, limit int) ([]events.Notice, error) {
	if limit <= 0 || limit > MaxNotices {
		limit = MaxNotices
	}
	subject := events.NoticeSubjectPrefix + tenant + ".>"
	if typ != "" {
		subject = events.NoticeSubjectPrefix + tenant + "." + typ + ".*"
	}
	var ring []events.Notice
	_, err := l.scan(ctx, events.NoticeStream, subject, since, func(data []byte) bool {
		var n events.Notice
		if json.Unmarshal(data, &n) != nil || n.Tenant != tenant {
			return true
		}
		if len(ring) == limit {
			ring = append(ring[:0], ring[1:]...)
		}
		ring = append(ring, n)
		return true
	})
	return ring, err
}

// ErrNoMessage: a replay of a message the endpoint never had (or that aged
// out of the stream).
var ErrNoMessage = errors.New("webhooks: no such message for this endpoint")

// ReplayMessage queues one of the endpoint's messages again (with its
// webhook-id); by is who asked.
func (l *Log) ReplayMessage(ctx context.Context, w projections.Webhook, msgID, by string) error {
	var found *Task
	_, err := l.scan(ctx, events.WebhookStream, msgSubject(w.Tenant, w.ID), time.Time{}, func(data []byte) bool {
		var t Task
		if json.Unmarshal(data, &t) == nil && t.MsgID == msgID {
			found = &t
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	if found == nil {
		return ErrNoMessage
	}
	found.Replay = by
	return enqueue(ctx, l.js, *found, "replay:"+ulid.Make().String())
}

// ErrBusy: the endpoint has a backlog (a replay still being delivered,
// or messages waiting on the ladder) as large as one replay.
var ErrBusy = errors.New("webhooks: the endpoint has a backlog")

// ReplaySince queues again every notice of the endpoint's tenant since
// since that the endpoint wants and that was derived after it was created
// (at most MaxReplay); it returns how many, and whether there were more. An
// endpoint with a backlog of MaxReplay messages is refused another (ErrBusy).
func (l *Log) ReplaySince(ctx context.Context, w projections.Webhook, since time.Time, by string) (int, bool, error) {
	if c, err := l.js.Consumer(ctx, events.WebhookStream, consumerName(w.Tenant, w.ID)); err == nil {
		if info := c.CachedInfo(); info.NumPending+uint64(info.NumAckPending) >= MaxReplay {
			return 0, false, ErrBusy
		}
	}
	replay := ulid.Make().String()
	n, more := 0, false
	var failed error
	capped, err := l.scan(ctx, events.NoticeStream, events.NoticeSubjectPrefix+w.Tenant+".>", since, func(data []byte) bool {
		var notice events.Notice
		if json.Unmarshal(data, &notice) != nil || notice.ID == "" || notice.Tenant != w.Tenant || !w.Wants(notice.Type) ||
			notice.Webhook == w.ID || notice.Seq < w.Created.Seq() {
			return true
		}
		if n == MaxReplay {
			more = true
			return false
		}
		t := Task{MsgID: MessageID(notice.ID), Webhook: w.ID, Notice: notice, Replay: by}
		if failed = enqueue(ctx, l.js, t, "replay:"+replay+":"+notice.ID); failed != nil {
			return false
		}
		n++
		return true
	})
	return n, more || capped, errors.Join(err, failed)
}

// scan reads a subject of a stream from since (the start when zero), up to
// what it holds now, calling fn until it returns false; capped says it
// stopped at maxLogScanned messages.
func (l *Log) scan(ctx context.Context, stream, subject string, since time.Time, fn func(data []byte) bool) (capped bool, err error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}}
	if !since.IsZero() {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := l.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return false, fmt.Errorf("webhooks: read %s: %w", stream, err)
	}
	defer store.DeleteConsumer(l.js, stream, cons)
	info, err := cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("webhooks: read %s: %w", stream, err)
	}
	pending := min(info.NumPending, maxLogScanned)
	if pending == 0 {
		return false, nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return false, err
	}
	defer it.Stop()
	for range pending {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return false, fmt.Errorf("webhooks: read %s: %w", stream, err)
		}
		if !fn(msg.Data()) {
			return false, nil
		}
	}
	return info.NumPending > maxLogScanned, nil
}

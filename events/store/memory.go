package store

import (
	"context"
	"fmt"
	"sync"

	"github.com/keytrail/keytrail/events"
)

// Memory is an in-process Store for tests of code above the store. It keeps
// the contract of the JetStream store (the conformance suite checks both),
// with an unbounded duplicate window.
type Memory struct {
	mu      sync.Mutex
	msgs    []memMsg // msgs[i] has sequence i+1
	last    map[string]uint64
	msgIDs  map[string]uint64
	changed chan struct{} // closed and replaced on every append
}

type memMsg struct {
	subject string
	data    []byte
}

// NewMemory returns an empty Memory store.
func NewMemory() *Memory {
	return &Memory{last: map[string]uint64{}, msgIDs: map[string]uint64{}, changed: make(chan struct{})}
}

var _ Store = (*Memory)(nil)

// Append implements Store.
func (m *Memory) Append(ctx context.Context, expect Head, evs ...events.Event) ([]events.Recorded, error) {
	return m.AppendAtomic(ctx, nil, Write{Expect: expect, Events: evs})
}

// AppendAtomic implements Store.
func (m *Memory) AppendAtomic(ctx context.Context, scope *Scope, writes ...Write) ([]events.Recorded, error) {
	p, err := prepare(scope, writes, nil)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	ok := !m.duplicateLocked(p) && (scope == nil || m.lastMatchingLocked(scope.Filter) == scope.Seq)
	for i := range p.recs {
		if ok && p.first[i] && (scope == nil || i > 0) && m.last[p.recs[i].Subject] != p.expect[i] {
			ok = false
		}
	}
	if !ok {
		m.mu.Unlock()
		return p.resolve(ctx, m.Load, scope)
	}
	for i := range p.recs {
		m.msgs = append(m.msgs, memMsg{subject: p.recs[i].Subject, data: p.data[i]})
		seq := uint64(len(m.msgs))
		p.recs[i].Seq = seq
		m.msgIDs[p.msgID(i)] = seq
		m.last[p.recs[i].Subject] = seq
	}
	m.notifyLocked()
	m.mu.Unlock()
	return p.recs, nil
}

func (m *Memory) duplicateLocked(p *prepared) bool {
	for i := range p.recs {
		if _, dup := m.msgIDs[p.msgID(i)]; dup {
			return true
		}
	}
	return false
}

func (m *Memory) lastMatchingLocked(filter string) uint64 {
	for i := len(m.msgs) - 1; i >= 0; i-- {
		if subjectMatches(filter, m.msgs[i].subject) {
			return uint64(i + 1)
		}
	}
	return 0
}

func (m *Memory) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// PublishRaw stores arbitrary bytes on a subject, as a misbehaving publisher
// could on a real stream. Tests use it to feed readers garbage.
func (m *Memory) PublishRaw(subject string, data []byte) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, memMsg{subject: subject, data: append([]byte(nil), data...)})
	seq := uint64(len(m.msgs))
	m.last[subject] = seq
	m.notifyLocked()
	return seq
}

// Load implements Store.
func (m *Memory) Load(ctx context.Context, tenant string, agg events.Aggregate) (History, error) {
	subject, err := events.Subject(tenant, agg)
	if err != nil {
		return History{}, err
	}
	m.mu.Lock()
	msgs := m.msgs
	m.mu.Unlock()
	h := History{Subject: subject}
	for i, msg := range msgs {
		if msg.subject == subject {
			h.add(uint64(i+1), subject, msg.data, nil)
		}
	}
	return h, ctx.Err()
}

// LastSeq implements Store.
func (m *Memory) LastSeq(ctx context.Context, filter string) (uint64, error) {
	if filter == "" {
		filter = events.AllSubjects
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastMatchingLocked(filter), ctx.Err()
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, seq uint64) (events.Recorded, error) {
	m.mu.Lock()
	msgs := m.msgs
	m.mu.Unlock()
	if seq == 0 || seq > uint64(len(msgs)) {
		return events.Recorded{}, fmt.Errorf("store: no message at seq %d", seq)
	}
	msg := msgs[seq-1]
	return decodeAt(seq, msg.subject, msg.data)
}

// LoadAll implements Store.
func (m *Memory) LoadAll(ctx context.Context, filter string) ([]events.Recorded, error) {
	m.mu.Lock()
	msgs := m.msgs
	m.mu.Unlock()
	var out []events.Recorded
	for i, msg := range msgs {
		if subjectMatches(filter, msg.subject) {
			if r, err := decodeAt(uint64(i+1), msg.subject, msg.data); err == nil {
				out = append(out, r)
			}
		}
	}
	return out, ctx.Err()
}

// FindKey implements Store.
func (m *Memory) FindKey(ctx context.Context, tenant, keyID string) (string, bool, error) {
	filter, err := keyFilter(tenant, keyID)
	if err != nil {
		return "", false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, msg := range m.msgs {
		if subjectMatches(filter, msg.subject) {
			user, ok := userOfKey(msg.subject)
			return user, ok, nil
		}
	}
	return "", false, ctx.Err()
}

// Subscribe implements Store.
func (m *Memory) Subscribe(_ context.Context, opts SubscribeOptions) (Subscription, error) {
	filters := opts.Filters
	if len(filters) == 0 {
		filters = []string{events.AllSubjects}
	}
	next := opts.From
	if next == 0 {
		next = 1
	}
	return &memSub{m: m, next: next, filters: filters, done: make(chan struct{})}, nil
}

type memSub struct {
	m       *Memory
	next    uint64
	filters []string
	once    sync.Once
	done    chan struct{}
}

func (s *memSub) matches(subject string) bool {
	for _, f := range s.filters {
		if subjectMatches(f, subject) {
			return true
		}
	}
	return false
}

func (s *memSub) Next(ctx context.Context) (Delivery, error) {
	for {
		s.m.mu.Lock()
		msgs, changed := s.m.msgs, s.m.changed
		s.m.mu.Unlock()
		for ; s.next <= uint64(len(msgs)); s.next++ {
			msg := msgs[s.next-1]
			if !s.matches(msg.subject) {
				continue
			}
			seq := s.next
			s.next++
			var pending uint64
			for _, later := range msgs[seq:] {
				if s.matches(later.subject) {
					pending++
				}
			}
			d := Delivery{Seq: seq, Subject: msg.subject, Pending: pending}
			d.Event, d.Err = decodeAt(seq, msg.subject, msg.data)
			d.Raw = rawHash(&d, msg.data)
			return d, nil
		}
		select {
		case <-changed:
		case <-s.done:
			return Delivery{}, ErrClosed
		case <-ctx.Done():
			return Delivery{}, ctx.Err()
		}
	}
}

func (s *memSub) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

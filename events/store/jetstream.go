package store

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
)

// Config is how the JetStream store sets up the event stream.
type Config struct {
	// Replicas of the stream when this store creates it (1 embedded, 3 in a
	// cluster). An existing stream with fewer is refused; 0 accepts any
	// (readers such as gateways leave it 0).
	Replicas int
	// Duplicates is the window within which a retried command id is
	// recognised by the server (Nats-Msg-Id). Past it, Append still finds a
	// retried command in the aggregate's history when the retry conflicts.
	// An existing stream with a shorter window is refused; 0 accepts any,
	// and creates the stream with DefaultDuplicates.
	Duplicates time.Duration
	// CreateIfMissing lets Open create the stream. Gateways and auditors
	// leave it false: only a control node owns the stream's settings.
	CreateIfMissing bool
	// AcceptWeak opens a stream weaker than the settings above instead of
	// refusing it: an auditor reads such a stream and reports its
	// weaknesses (Weaknesses) rather than refuse to look.
	AcceptWeak bool
	// WatermarkFile keeps the highest sequence this node has seen the
	// stream hold, and the stream's creation time, across restarts (empty:
	// in memory only). A node then refuses a stream that was rewound or made
	// anew, and never creates an empty one over a history it knew.
	WatermarkFile string
	// Signer, when set, signs every event this store appends
	// (docs/signing.md).
	Signer ed25519.PrivateKey
}

// DefaultDuplicates is the default idempotency window.
const DefaultDuplicates = 10 * time.Minute

// loadBatch is how many messages one direct-get round trip asks for.
const loadBatch = 256

// JetStream is the event store on a NATS JetStream stream.
type JetStream struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	cfg    Config

	mu    sync.Mutex
	wm    Watermark // what this node has seen of the stream
	saved Watermark // what WatermarkFile holds
	// behindSince is when a replicated stream first answered with a last
	// sequence below the watermark (zero: it has not, or caught up since).
	behindSince time.Time
	now         func() time.Time

	verify atomic.Pointer[Verifier]
}

var _ Store = (*JetStream)(nil)

// StreamConfig returns the stream settings Keytrail requires.
func StreamConfig(cfg Config) jetstream.StreamConfig {
	if cfg.Replicas < 1 {
		cfg.Replicas = 1
	}
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = DefaultDuplicates
	}
	return jetstream.StreamConfig{
		Name:               events.StreamName,
		Description:        "Keytrail event log: append-only, one subject per aggregate",
		Subjects:           []string{events.AllSubjects},
		Retention:          jetstream.LimitsPolicy,
		Storage:            jetstream.FileStorage,
		Discard:            jetstream.DiscardNew,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		MaxMsgsPerSubject:  -1,
		MaxMsgSize:         events.MaxEventSize + 4096, // room for headers
		MaxConsumers:       -1,
		Replicas:           cfg.Replicas,
		Duplicates:         cfg.Duplicates,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowDirect:        true,
		AllowAtomicPublish: true,
	}
}

// Weaknesses lists how an existing stream's settings fall short of what
// Keytrail requires, and of the replicas and duplicate window cfg asks for;
// empty means it is safe to run on.
func Weaknesses(have jetstream.StreamConfig, cfg Config) []string {
	var w []string
	add := func(cond bool, format string, args ...any) {
		if cond {
			w = append(w, fmt.Sprintf(format, args...))
		}
	}
	covers := false
	for _, s := range have.Subjects {
		covers = covers || s == events.AllSubjects
	}
	add(!covers, "subjects %v do not include %s", have.Subjects, events.AllSubjects)
	add(have.Storage != jetstream.FileStorage, "storage is %s, want file", have.Storage)
	add(have.Retention != jetstream.LimitsPolicy, "retention is %s, want limits (no consumer may remove events)", have.Retention)
	add(have.Discard != jetstream.DiscardNew, "discard policy is %s, want new (old events must never be dropped)", have.Discard)
	add(have.MaxMsgs > 0, "max_msgs is %d, want no limit", have.MaxMsgs)
	add(have.MaxBytes > 0, "max_bytes is %d, want no limit", have.MaxBytes)
	add(have.MaxAge > 0, "max_age is %s, want no limit", have.MaxAge)
	add(have.MaxMsgsPerSubject > 0, "max_msgs_per_subject is %d, want no limit", have.MaxMsgsPerSubject)
	add(have.MaxMsgSize > 0 && have.MaxMsgSize < events.MaxEventSize, "max_msg_size %d is below the largest event (%d)", have.MaxMsgSize, events.MaxEventSize)
	add(!have.DenyDelete, "deny_delete is off: events could be deleted")
	add(!have.DenyPurge, "deny_purge is off: events could be purged")
	add(have.AllowRollup, "allow_rollup_hdrs is on: a message could erase an aggregate's history")
	add(have.AllowMsgTTL, "allow_msg_ttl is on: a message could expire")
	add(have.Sealed, "the stream is sealed: nothing can be appended")
	add(have.NoAck, "no_ack is on: appends would not be acknowledged")
	add(have.PersistMode == jetstream.AsyncPersistMode, "persist_mode is async: acknowledged events could be lost")
	add(!have.AllowDirect, "allow_direct is off (loads need direct get)")
	add(!have.AllowAtomicPublish, "allow_atomic is off (multi-event appends need atomic batches)")
	add(have.Duplicates < cfg.Duplicates, "duplicate window is %s, want at least %s", have.Duplicates, cfg.Duplicates)
	add(have.Replicas < cfg.Replicas, "replicas is %d, want at least %d", have.Replicas, cfg.Replicas)
	add(have.Mirror != nil || len(have.Sources) > 0, "the stream mirrors or sources another stream")
	return w
}

// WeakStreamError is returned by Open for an existing stream that is not safe.
type WeakStreamError struct{ Weaknesses []string }

func (e *WeakStreamError) Error() string {
	return fmt.Sprintf("store: stream %s exists with weaker settings than Keytrail requires: %s",
		events.StreamName, strings.Join(e.Weaknesses, "; "))
}

// OpenJetStream ensures the event stream (creating it if cfg allows and it is
// missing, unless the node's watermark says it saw one) and refuses to run
// on one with weaker settings, or one that is not the history the node saw
// (ErrRefused).
func OpenJetStream(ctx context.Context, nc *nats.Conn, cfg Config) (*JetStream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("store: jetstream: %w", err)
	}
	wm, err := readWatermark(cfg.WatermarkFile)
	if err != nil {
		return nil, err
	}
	var stream jetstream.Stream
	// The first JetStream request after a server starts (or a cluster forms)
	// can go unanswered: retry with short attempts until ctx ends.
	err = retry(ctx, func(ctx context.Context) error {
		s, err := js.Stream(ctx, events.StreamName)
		if errors.Is(err, jetstream.ErrStreamNotFound) && (wm.Seq > 0 || !wm.Created.IsZero()) {
			return permanent{&IntegrityError{Reason: fmt.Sprintf("the stream is gone, and this node saw it hold %d events "+
				"(watermark %s); it will not create an empty one over that history", wm.Seq, cfg.WatermarkFile)}}
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) && cfg.CreateIfMissing {
			s, err = js.CreateStream(ctx, StreamConfig(cfg))
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				s, err = js.Stream(ctx, events.StreamName) // another node won the race
			}
		}
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return permanent{fmt.Errorf("store: stream %s does not exist (a control node creates it)", events.StreamName)}
		}
		stream = s
		return err
	})
	if err != nil {
		return nil, err
	}
	st := &JetStream{nc: nc, js: js, stream: stream, cfg: cfg, wm: wm, saved: wm}
	if err := st.judge(stream.CachedInfo(), wm); err != nil {
		return nil, err
	}
	return st, nil
}

type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

func retry(ctx context.Context, attempt func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := attempt(actx)
		cancel()
		var p permanent
		if err == nil || errors.As(err, &p) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("store: open: %w (last error: %v)", ctx.Err(), err)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// JetStream is the JetStream context the store uses, for the other buckets
// a node keeps next to the log (snapshots).
func (s *JetStream) JetStream() jetstream.JetStream { return s.js }

// Append implements Store.
func (s *JetStream) Append(ctx context.Context, expect Head, evs ...events.Event) ([]events.Recorded, error) {
	return s.AppendAtomic(ctx, nil, Write{Expect: expect, Events: evs})
}

// AppendAtomic implements Store. One event is one publish with a
// compare-and-set (on its subject, or on the scope) and a Nats-Msg-Id;
// several are one atomic batch (ADR-50) with the compare-and-set on the first
// message of each subject.
func (s *JetStream) AppendAtomic(ctx context.Context, scope *Scope, writes ...Write) ([]events.Recorded, error) {
	return s.appendAtomic(ctx, s.cfg.Signer, scope, writes)
}

// AppendAs appends as AppendAtomic does, signing with key instead of the
// store's own: the root key's events on the signer set.
func (s *JetStream) AppendAs(ctx context.Context, key ed25519.PrivateKey, scope *Scope, writes ...Write) ([]events.Recorded, error) {
	return s.appendAtomic(ctx, key, scope, writes)
}

func (s *JetStream) appendAtomic(ctx context.Context, key ed25519.PrivateKey, scope *Scope, writes []Write) ([]events.Recorded, error) {
	p, err := prepare(scope, writes, key)
	if err != nil {
		return nil, err
	}
	msgs := make([]*nats.Msg, len(p.recs))
	for i, r := range p.recs {
		m := nats.NewMsg(r.Subject)
		m.Data = p.data[i]
		m.Header.Set(events.HeaderType, string(r.Type))
		m.Header.Set(events.HeaderVersion, strconv.Itoa(r.Version))
		m.Header.Set(events.HeaderCommandID, p.cmd)
		m.Header.Set(jetstream.MsgIDHeader, p.msgID(i))
		switch {
		case i == 0 && scope != nil:
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(scope.Seq, 10))
			m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, scope.Filter)
		case p.first[i]:
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(p.expect[i], 10))
		}
		msgs[i] = m
	}
	msgs[0].Header.Set(jetstream.ExpectedStreamHeader, events.StreamName)
	var ack *jetstream.PubAck
	for inFlight, lost := 0, 0; ; {
		ack, err = s.publishAttempt(ctx, msgs)
		if errors.Is(err, errNoAck) && lost < maxLostAttempts {
			// The request or its answer was lost (written to a connection
			// that was dying, or to a leader being replaced): send the same
			// messages again. Their Msg-Ids make a second copy a duplicate,
			// and the compare-and-set a conflict resolved below.
			lost++
			continue
		}
		var apiErr *jetstream.APIError
		if err == nil || !errors.As(err, &apiErr) || !isConflict(apiErr.ErrorCode) {
			break
		}
		recs, err := p.resolve(ctx, s.Load, scope)
		var ce *ConflictError
		if scope == nil && errors.As(err, &ce) && ce.Actual == ce.Expected && inFlight < 8 {
			// The server refused the compare-and-set, yet the aggregate is
			// where we expected: an append to it is still in flight (on R3,
			// often our own earlier attempt, timed out at the client). Ask
			// again once it has landed or failed.
			if pause(ctx, &inFlight) == nil {
				continue
			}
		}
		return recs, err
	}
	if err != nil {
		return nil, unavailable("append to "+p.recs[0].Subject, err)
	}
	if ack.Duplicate {
		// R3 answers a retried Msg-Id with the original's sequence. Read it
		// from the leader: a replica answering a direct get may lag.
		return s.originalOf(ctx, ack.Sequence, p)
	}
	s.observe(ack.Sequence)
	first := ack.Sequence - uint64(len(p.recs)) + 1
	for i := range p.recs {
		p.recs[i].Seq = first + uint64(i)
	}
	return p.recs, nil
}

// appendAttempt bounds one publish of an append: a request lost on a
// dying connection or in a leader change is otherwise waited for until the
// caller's deadline.
const appendAttempt = 3 * time.Second

// maxLostAttempts is how many times an append is sent again after an
// attempt went unanswered.
const maxLostAttempts = 5

// errNoAck: an attempt went unanswered within appendAttempt.
var errNoAck = errors.New("no acknowledgement")

// publishAttempt publishes msgs once (one message, or an atomic batch),
// waiting at most appendAttempt for the acknowledgement (errNoAck when it
// does not come while ctx lasts).
func (s *JetStream) publishAttempt(ctx context.Context, msgs []*nats.Msg) (*jetstream.PubAck, error) {
	actx, cancel := context.WithTimeout(ctx, appendAttempt)
	defer cancel()
	var ack *jetstream.PubAck
	var err error
	if len(msgs) == 1 {
		ack, err = s.js.PublishMsg(actx, msgs[0])
	} else {
		ack, err = s.publishBatch(actx, msgs)
	}
	if err != nil && ctx.Err() == nil && actx.Err() != nil {
		return nil, fmt.Errorf("%w within %s: %w", errNoAck, appendAttempt, err)
	}
	return ack, err
}

// isConflict: the compare-and-set failed (10071 on R1, 10164 on R>1), or an
// atomic batch held a Msg-Id the stream already has (10201).
func isConflict(code jetstream.ErrorCode) bool {
	return code == jetstream.JSErrCodeStreamWrongLastSequence ||
		code == jetstream.JSErrCodeStreamWrongLastSequenceConstant || code == 10201
}

// originalOf returns the event a duplicate ack points at, checking it is
// this command's single event.
func (s *JetStream) originalOf(ctx context.Context, seq uint64, p *prepared) ([]events.Recorded, error) {
	want := p.recs[0]
	subj, data, err := s.leaderGet(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("store: append to %s was a duplicate of seq %d; read it: %w", want.Subject, seq, err)
	}
	r, err := decodeAt(seq, subj, data)
	if err != nil || subj != want.Subject || r.CommandID != p.cmd || len(p.recs) != 1 || r.Type != want.Type {
		return nil, fmt.Errorf("store: append to %s: duplicate ack points at seq %d, which is not this command", want.Subject, seq)
	}
	return []events.Recorded{r}, nil
}

// leaderGet reads one message by sequence from the stream leader (not by
// direct get, which any replica may answer).
func (s *JetStream) leaderGet(ctx context.Context, seq uint64) (subject string, data []byte, err error) {
	m, err := s.leaderMsg(ctx, MsgRequest{Seq: seq})
	if err != nil {
		return "", nil, err
	}
	if m.Sequence != seq {
		return "", nil, fmt.Errorf("no message at seq %d", seq)
	}
	return m.Subject, m.Data, nil
}

// leaderAttempt bounds one request to the stream leader: during an election
// nobody answers, and the request is made again until noResponderWait.
const leaderAttempt = time.Second

// leaderMsg asks the stream leader for one message ($JS.API.STREAM.MSG.GET:
// only the leader answers, so what it returns includes every acknowledged
// write). jetstream.ErrMsgNotFound when none matches.
func (s *JetStream) leaderMsg(ctx context.Context, req MsgRequest) (*jetstream.RawStreamMsg, error) {
	for attempt, start := 0, time.Now(); ; {
		actx, cancel := context.WithTimeout(ctx, leaderAttempt)
		m, err := GetMsg(actx, s.nc, events.StreamName, req)
		cancel()
		if ctx.Err() != nil || !(errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded)) {
			return m, err
		}
		if perr := pauseWhileNoResponders(ctx, &attempt, start); perr != nil {
			return nil, unavailable("stream leader", err)
		}
	}
}

// GetMsg asks stream's leader for one message ($JS.API.STREAM.MSG.GET),
// once: jetstream.ErrMsgNotFound when none matches. The message carries
// its subject, sequence, data and stored time.
func GetMsg(ctx context.Context, nc *nats.Conn, stream string, req MsgRequest) (*jetstream.RawStreamMsg, error) {
	body, _ := json.Marshal(req)
	resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Error   *jetstream.APIError `json:"error,omitempty"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, err
	}
	switch {
	case r.Error != nil && r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, jetstream.ErrMsgNotFound
	case r.Error != nil:
		return nil, r.Error
	case r.Message == nil:
		return nil, errors.New("stream leader answered without a message")
	}
	m := r.Message
	return &jetstream.RawStreamMsg{Subject: m.Subject, Sequence: m.Seq, Data: m.Data, Time: m.Time}, nil
}

// replicated reports whether the stream has more than one replica, so that
// a direct get may be answered by one behind the leader.
func (s *JetStream) replicated() bool {
	info := s.stream.CachedInfo()
	return info != nil && info.Config.Replicas > 1
}

// batchAck is the server's answer to the commit of an atomic batch.
type batchAck struct {
	Error *jetstream.APIError `json:"error,omitempty"`
	jetstream.PubAck
	BatchID string `json:"batch,omitempty"`
	Count   int    `json:"count,omitempty"`
}

// publishBatch publishes msgs as one atomic batch (ADR-50): all or none.
// Only the commit is acknowledged.
func (s *JetStream) publishBatch(ctx context.Context, msgs []*nats.Msg) (*jetstream.PubAck, error) {
	id := uuid.NewString()
	for i, m := range msgs {
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := s.nc.PublishMsg(m); err != nil {
				return nil, err
			}
		}
	}
	last := msgs[len(msgs)-1]
	last.Header.Set("Nats-Batch-Commit", "1")
	resp, err := s.nc.RequestMsgWithContext(ctx, last)
	if err != nil {
		return nil, err
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return nil, fmt.Errorf("batch ack: %w", err)
	}
	if ack.Error != nil {
		return nil, fmt.Errorf("batch: %w", ack.Error)
	}
	if ack.Count != len(msgs) || ack.Sequence < uint64(len(msgs)) {
		return nil, fmt.Errorf("batch ack for %d messages, sent %d", ack.Count, len(msgs))
	}
	return &ack.PubAck, nil
}

// MsgRequest is the body of a JetStream message get, direct or from the
// leader: by sequence, the last or the next under a subject filter (from a
// sequence or a time), or a batch.
type MsgRequest struct {
	Seq       uint64   `json:"seq,omitempty"`
	LastFor   string   `json:"last_by_subj,omitempty"`
	NextFor   string   `json:"next_by_subj,omitempty"`
	Batch     int      `json:"batch,omitempty"`
	MultiLast []string `json:"multi_last,omitempty"`
	UpToSeq   uint64   `json:"up_to_seq,omitempty"`
	// StartTime: from the first message stored at or after it (instead of
	// Seq).
	StartTime *time.Time `json:"start_time,omitempty"`
}

// AsOf is an aggregate's last message at some sequence: its sequence and
// its event (Err when it is not a valid one). Seq 0: the aggregate had none.
type AsOf struct {
	Seq   uint64
	Event events.Recorded
	Err   error
}

// multiLastBatch is how many subjects one multi-last direct get asks for
// (the server answers at most 1024).
const multiLastBatch = 256

// LastAsOf returns the last message of each subject at or before sequence
// upTo, by batched direct gets: what a node compares a snapshot's chain
// heads with before it trusts the snapshot. A subject with no message by
// then is missing from the result.
func (s *JetStream) LastAsOf(ctx context.Context, subjects []string, upTo uint64) (map[string]AsOf, error) {
	out := make(map[string]AsOf, len(subjects))
	if upTo == 0 {
		return out, nil
	}
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	api := "$JS.API.DIRECT.GET." + events.StreamName
	for chunk := range slices.Chunk(subjects, multiLastBatch) {
		body, _ := json.Marshal(MsgRequest{MultiLast: chunk, UpToSeq: upTo, Batch: len(chunk)})
		if err := s.nc.PublishRequest(api, inbox, body); err != nil {
			return nil, unavailable("direct get", err)
		}
	batch:
		for {
			m, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return nil, unavailable("direct get", err)
			}
			switch status := m.Header.Get("Status"); status {
			case "":
			case "404", "204": // none of these subjects has a message; end of batch
				break batch
			default:
				return nil, fmt.Errorf("store: direct get: status %s %s", status, m.Header.Get("Description"))
			}
			seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			if err != nil || seq == 0 || seq > upTo {
				return nil, fmt.Errorf("store: direct get: bad sequence header %q", m.Header.Get(jetstream.SequenceHeader))
			}
			subj := m.Header.Get(jetstream.SubjectHeader)
			r, derr := decodeAt(seq, subj, m.Data)
			out[subj] = AsOf{Seq: seq, Event: r, Err: derr}
		}
	}
	return out, nil
}

// Load implements Store with batched direct gets. On a replicated stream
// any replica may answer a direct get, so Load first asks the leader for the
// subject's last sequence and reads until it has reached it: a history
// includes every write acknowledged before Load began.
func (s *JetStream) Load(ctx context.Context, tenant string, agg events.Aggregate) (History, error) {
	subject, err := events.Subject(tenant, agg)
	if err != nil {
		return History{}, err
	}
	h := History{Subject: subject}
	verify := s.verifier()
	var judged error
	err = s.readAll(ctx, subject, func(seq uint64, subj string, data []byte) {
		if judged == nil {
			judged = h.add(seq, subj, data, verify)
		}
	})
	return h, errors.Join(err, judged)
}

// SetVerify makes the store's own reads (Load, LoadAll: a control node's
// commands and the admin API's reads of one object) judge events as the
// node's readers do.
func (s *JetStream) SetVerify(v Verifier) { s.verify.Store(&v) }

func (s *JetStream) verifier() Verifier {
	if v := s.verify.Load(); v != nil {
		return *v
	}
	return nil
}

// readAll calls fn for every message under filter, in order, up to at least
// the leader's last one under it when the stream is replicated.
func (s *JetStream) readAll(ctx context.Context, filter string, fn func(seq uint64, subject string, data []byte)) error {
	var floor uint64
	if s.replicated() {
		m, err := s.leaderMsg(ctx, MsgRequest{LastFor: filter})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("store: last message of %s: %w", filter, err)
		}
		floor = m.Sequence
	}
	var last uint64
	read := func(seq uint64, subject string, data []byte) {
		last = seq
		fn(seq, subject, data)
	}
	if err := s.directGet(ctx, filter, 1, read); err != nil {
		return err
	}
	// A replica behind the leader answered: it catches up within moments.
	for attempt, start := 0, time.Now(); last < floor; {
		if time.Since(start) > noResponderWait {
			return fmt.Errorf("%w: direct get %s: the replicas stay behind the leader's seq %d (read up to %d)", ErrUnavailable, filter, floor, last)
		}
		if err := pause(ctx, &attempt); err != nil {
			return unavailable("direct get "+filter, err)
		}
		if err := s.directGet(ctx, filter, last+1, read); err != nil {
			return err
		}
	}
	return nil
}

// directGet calls fn for every message matching filter from sequence from on.
func (s *JetStream) directGet(ctx context.Context, filter string, from uint64, fn func(seq uint64, subject string, data []byte)) error {
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer sub.Unsubscribe()
	api := "$JS.API.DIRECT.GET." + events.StreamName
	noResponders, start := 0, time.Now()
	for {
		body, _ := json.Marshal(MsgRequest{Seq: from, NextFor: filter, Batch: loadBatch})
		if err := s.nc.PublishRequest(api, inbox, body); err != nil {
			return fmt.Errorf("store: direct get: %w", err)
		}
		var last uint64
	batch:
		for {
			m, err := sub.NextMsgWithContext(ctx)
			if errors.Is(err, nats.ErrNoResponders) {
				// No replica answers direct gets yet (just after the stream
				// was created, or during a leader change): ask again, for a
				// while (the stream may be gone).
				if err := pauseWhileNoResponders(ctx, &noResponders, start); err != nil {
					return unavailable("direct get "+filter, err)
				}
				if last > 0 {
					from = last + 1
				}
				break batch
			}
			if err != nil {
				return fmt.Errorf("store: direct get %s: %w", filter, err)
			}
			switch status := m.Header.Get("Status"); status {
			case "":
			case "404": // nothing (more) matches
				return nil
			case "204": // end of batch: go on if the server says more match
				pending, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				if pending == 0 || last == 0 {
					return nil
				}
				from = last + 1
				break batch
			default:
				return fmt.Errorf("store: direct get %s: status %s %s", filter, status, m.Header.Get("Description"))
			}
			seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
			if err != nil || seq < from {
				return fmt.Errorf("store: direct get %s: bad sequence header %q", filter, m.Header.Get(jetstream.SequenceHeader))
			}
			last = seq
			fn(seq, m.Header.Get(jetstream.SubjectHeader), m.Data)
		}
	}
}

// pause waits a little longer each time it is called (5 ms doubling to 320
// ms), or until ctx ends.
func pause(ctx context.Context, attempt *int) error {
	d := 5 * time.Millisecond << min(*attempt, 6)
	*attempt++
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// noResponderWait bounds how long a read asks again while no server answers
// for the stream: past it, the stream is taken as unavailable (gone, or its
// servers unreachable) rather than about to answer.
const noResponderWait = 3 * time.Second

// pauseWhileNoResponders is pause, failing with nats.ErrNoResponders once
// noResponderWait has passed since start.
func pauseWhileNoResponders(ctx context.Context, attempt *int, start time.Time) error {
	if time.Since(start) > noResponderWait {
		return nats.ErrNoResponders
	}
	return pause(ctx, attempt)
}

// lastMsg is the stream's last message under filter: from the leader when
// the stream is replicated (a direct get may be answered by a replica behind
// it), else by direct get, asking again while no replica answers (see
// directGet).
func (s *JetStream) lastMsg(ctx context.Context, filter string) (*jetstream.RawStreamMsg, error) {
	if s.replicated() {
		return s.leaderMsg(ctx, MsgRequest{LastFor: filter})
	}
	for attempt, start := 0, time.Now(); ; {
		m, err := s.stream.GetLastMsgForSubject(ctx, filter)
		if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
			return m, err
		}
		if perr := pauseWhileNoResponders(ctx, &attempt, start); perr != nil {
			return nil, unavailable("last message of "+filter, err)
		}
	}
}

// LastSeq implements Store.
func (s *JetStream) LastSeq(ctx context.Context, filter string) (uint64, error) {
	if filter == "" || filter == events.AllSubjects {
		info, err := s.stream.Info(ctx)
		if err != nil {
			return 0, unavailable("stream info", err)
		}
		return info.State.LastSeq, nil
	}
	m, err := s.lastMsg(ctx, filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: last message of %s: %w", filter, err)
	}
	return m.Sequence, nil
}

// Get implements Store.
func (s *JetStream) Get(ctx context.Context, seq uint64) (events.Recorded, error) {
	subj, data, err := s.leaderGet(ctx, seq)
	if err != nil {
		return events.Recorded{}, fmt.Errorf("store: get %d: %w", seq, err)
	}
	return decodeAt(seq, subj, data)
}

// LoadAll implements Store with batched direct gets.
func (s *JetStream) LoadAll(ctx context.Context, filter string) ([]events.Recorded, error) {
	var out []events.Recorded
	verify := s.verifier()
	var judged error
	err := s.readAll(ctx, filter, func(seq uint64, subject string, data []byte) {
		r, err := decodeAt(seq, subject, data)
		if err == nil && verify != nil {
			err = verify(&r)
			if errors.Is(err, ErrUnavailable) && judged == nil {
				judged = err
			}
		}
		if err == nil {
			out = append(out, r)
		}
	})
	return out, errors.Join(err, judged)
}

// FindKey implements Store: the last message on any user's subject for the
// key, by direct get.
func (s *JetStream) FindKey(ctx context.Context, tenant, keyID string) (string, bool, error) {
	filter, err := keyFilter(tenant, keyID)
	if err != nil {
		return "", false, err
	}
	m, err := s.lastMsg(ctx, filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: find key: %w", err)
	}
	user, ok := userOfKey(m.Subject)
	return user, ok, nil
}

// LocateKey finds a key's tenant and user from its id alone (key ids are
// unique across tenants), by direct get on any tenant's subject for it.
func (s *JetStream) LocateKey(ctx context.Context, keyID string) (tenant, user string, found bool, err error) {
	filter, err := keyFilter("*", keyID)
	if err != nil {
		return "", "", false, err
	}
	m, err := s.lastMsg(ctx, filter)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("store: locate key: %w", err)
	}
	tenant, agg, err := events.ParseSubject(m.Subject)
	if err != nil || agg.Kind != events.KindKey {
		return "", "", false, nil
	}
	return tenant, agg.User, true, nil
}

// Subscribe implements Store with an ordered consumer, which recovers from
// gaps and reconnects by itself and never holds server-side state that could
// be replayed under a wrong name.
func (s *JetStream) Subscribe(ctx context.Context, opts SubscribeOptions) (Subscription, error) {
	// A consumer left behind (by a process that died) goes away once idle
	// for this long; Close deletes it at once.
	// One reset attempt: past it, Next fails and the reader subscribes
	// again on its own terms (its context, its backoff, its checks of the
	// stream). The library's own retries would go on for ever, with a lock
	// held that even Stop waits for, when the stream is gone.
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: opts.Filters, DeliverPolicy: jetstream.DeliverAllPolicy,
		InactiveThreshold: orderedInactive, MaxResetAttempts: 1}
	if len(cfg.FilterSubjects) == 0 {
		cfg.FilterSubjects = []string{events.AllSubjects}
	}
	if opts.From > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, opts.From
	}
	// The consumer may live on a replica behind the leader, whose pending
	// count then ends early: on a replicated stream nothing counts as caught
	// up before the leader's last message under the filters at this moment.
	var floor uint64
	if s.replicated() {
		for _, f := range cfg.FilterSubjects {
			seq, err := s.LastSeq(ctx, f)
			if err != nil {
				return nil, err
			}
			floor = max(floor, seq)
		}
	}
	cons, err := s.js.OrderedConsumer(ctx, events.StreamName, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: ordered consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return nil, fmt.Errorf("store: ordered consumer: %w", err)
	}
	return &jsSub{it: it, cons: cons, js: s.js, floor: floor}, nil
}

// orderedInactive is how long an ordered consumer nobody reads from stays
// on the server.
const orderedInactive = 30 * time.Second

// jsSub decodes on the reader's goroutine: on a machine whose cores are busy
// with the server and the client's read loop, handing decoding to another
// goroutine measured slower, not faster (docs/benchmarks.md).
type jsSub struct {
	it   jetstream.MessagesContext
	cons jetstream.Consumer
	js   jetstream.JetStream
	// floor: the leader's last sequence under the filters when the
	// subscription began; a delivery before it has something pending.
	floor uint64
}

func (s *jsSub) Next(ctx context.Context) (Delivery, error) {
	for {
		m, err := s.it.Next(jetstream.NextContext(ctx))
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return Delivery{}, ErrClosed
		}
		if err != nil {
			if ctx.Err() != nil {
				return Delivery{}, ctx.Err()
			}
			// The ordered consumer recovers from missed heartbeats itself.
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				continue
			}
			return Delivery{}, fmt.Errorf("store: next: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return Delivery{}, fmt.Errorf("store: message metadata: %w", err)
		}
		d := Delivery{Seq: md.Sequence.Stream, Subject: m.Subject(), Pending: md.NumPending}
		if d.Pending == 0 && d.Seq < s.floor {
			d.Pending = 1 // at least the leader's last message follows
		}
		d.Event, d.Err = decodeStored(d.Seq, d.Subject, m.Data(), true)
		d.Raw = rawHash(&d, m.Data())
		return d, nil
	}
}

// Close stops reading and deletes the consumer from the server: a reader
// that subscribes often (an auditor, a model restarted) leaves nothing
// behind.
func (s *jsSub) Close() error {
	s.it.Stop()
	DeleteConsumer(s.js, events.StreamName, s.cons)
	return nil
}

// DeleteConsumer removes a consumer that is no longer read (best effort: an
// ordered consumer also expires once idle).
func DeleteConsumer(js jetstream.JetStream, stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil || info.Name == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	js.DeleteConsumer(ctx, stream, info.Name)
}

// EnsureStream creates the stream cfg describes if it is missing (another
// node creating it at the same moment is fine); an existing stream is left
// as its operator configured it. For the streams beside the event log
// (decisions, usage, notices), which control nodes create.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	_, err := js.Stream(ctx, cfg.Name)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("store: stream %s: %w", cfg.Name, err)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("store: create stream %s: %w", cfg.Name, err)
	}
	return nil
}

// ReadCheckpoints reads every signed checkpoint of the log (none when the
// stream of checkpoints does not exist), without checking them.
func ReadCheckpoints(ctx context.Context, js jetstream.JetStream) ([][]byte, error) {
	return ReadCheckpointsAfter(ctx, js, 0)
}

// ReadCheckpointsAfter reads the checkpoints stored from about where they
// pass the log's sequence after (found by bisecting the stream with direct
// reads: a reader catching up a short tail of a long log does not read a
// checkpoint per thousand events of it), without checking them. What it
// returns may include a few checkpoints of earlier sequences.
func ReadCheckpointsAfter(ctx context.Context, js jetstream.JetStream, after uint64) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	str, err := js.Stream(ctx, events.CheckpointStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil // a log without checkpoints
	}
	if err != nil {
		return nil, fmt.Errorf("store: checkpoints: %w", err)
	}
	state := str.CachedInfo().State
	if state.Msgs == 0 {
		return nil, nil
	}
	// The first stored checkpoint past after; control nodes may store
	// theirs slightly out of order, so start a little before it.
	const slack = 16
	lo, hi := state.FirstSeq, state.LastSeq+1
	for after > 0 && lo < hi {
		mid := lo + (hi-lo)/2
		m, err := str.GetMsg(ctx, mid)
		if err != nil {
			return nil, fmt.Errorf("store: checkpoints: %w", err)
		}
		if cp, err := events.ParseCheckpoint(events.NoteText(m.Data)); err == nil && cp.Seq <= after {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	from := max(state.FirstSeq, lo-min(lo, slack))
	cons, err := js.OrderedConsumer(ctx, events.CheckpointStream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err != nil {
		return nil, fmt.Errorf("store: checkpoints: %w", err)
	}
	defer DeleteConsumer(js, events.CheckpointStream, cons)
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: checkpoints: %w", err)
	}
	out := make([][]byte, 0, info.NumPending)
	if info.NumPending == 0 {
		return out, nil
	}
	// One iterator, as Subscribe reads the log: a Next per message, on a
	// cluster after faults, found its consumer gone ("no responders")
	// after a dozen messages (the fault campaign, issue 18).
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return nil, fmt.Errorf("store: checkpoints: %w", err)
	}
	defer it.Stop()
	for range info.NumPending {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("store: checkpoints: %w", err)
		}
		out = append(out, m.Data())
	}
	return out, nil
}

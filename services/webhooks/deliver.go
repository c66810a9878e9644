package webhooks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/egress"
	"github.com/keytrail/keytrail/services/natsauth"
)

// Ladder is when a message is tried again after a failed attempt: the
// first attempt is immediate, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and
// 10 h later (eight attempts over about 28 hours).
var Ladder = []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// Defaults of a Dispatcher.
const (
	DefaultTimeout = 15 * time.Second
	// DefaultFailFor is how long an endpoint may fail every attempt before
	// it is disabled.
	DefaultFailFor = 5 * 24 * time.Hour
	// Concurrency is how many deliveries one endpoint has in flight at
	// most on one node: a slow endpoint holds its own, never another's.
	Concurrency = 4
	// excerptLen bounds the response kept in the attempt log.
	excerptLen = 1024
	// Actor is who Keytrail's own changes to endpoints are recorded as.
	Actor = "keytrail-webhooks"
)

// Model is the read model endpoints are read from.
type Model interface {
	Ready() bool
	Applied() uint64
	Read(fn func(c *projections.Catalog))
}

// Config is a Dispatcher's.
type Config struct {
	JS    jetstream.JetStream
	Model Model
	Vault *Vault
	// Disable disables an endpoint (an event, through the control
	// service) and returns the sequence of the event appended, 0 when it
	// was disabled already.
	Disable func(ctx context.Context, tenant, webhook, reason string) (uint64, error)
	// Egress is where endpoints may be (the dialled address is checked).
	Egress *egress.Policy
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Ladder overrides the retry ladder (tests shorten it).
	Ladder []time.Duration
	// Timeout bounds one attempt (DefaultTimeout); FailFor is how long an
	// endpoint may fail before it is disabled (DefaultFailFor).
	Timeout, FailFor time.Duration
	// Reconcile is how often the endpoints are compared with the workers
	// (one second when zero).
	Reconcile time.Duration
	Log       *slog.Logger
}

// Task is a message to deliver to one endpoint: what the stream of
// deliveries holds.
type Task struct {
	// MsgID is the webhook-id: the same on every attempt and replay of the
	// message.
	MsgID   string        `json:"msg_id"`
	Webhook string        `json:"webhook"`
	Notice  events.Notice `json:"notice"`
	// Replay is who asked to deliver it again, when it is a replay.
	Replay string `json:"replay,omitempty"`
}

// The outcomes of an attempt.
const (
	Delivered = "delivered"
	Retrying  = "retrying"
	GaveUp    = "gave-up"
	// Gone: the endpoint answered 410; it is disabled.
	Gone = "gone"
	// Disabled: the endpoint failed for FailFor; it is disabled.
	Disabled = "disabled"
)

// Attempt is one try to deliver a message: the attempt log.
type Attempt struct {
	MsgID    string    `json:"msg_id"`
	NoticeID string    `json:"notice_id"`
	Type     string    `json:"type"`
	Attempt  int       `json:"attempt"`
	At       time.Time `json:"at"`
	// Status is the endpoint's HTTP status (0: no answer, see Error).
	Status    int     `json:"status,omitempty"`
	LatencyMS float64 `json:"latency_ms"`
	// Response is the start of the endpoint's answer (at most 1 KiB).
	Response string `json:"response,omitempty"`
	Error    string `json:"error,omitempty"`
	Outcome  string `json:"outcome"`
	// NextAt is when it is tried again (Retrying).
	NextAt *time.Time `json:"next_at,omitempty"`
	// FailingSince is when the endpoint's failures began (every attempt
	// since failed).
	FailingSince *time.Time `json:"failing_since,omitempty"`
	Replay       bool       `json:"replay,omitempty"`
	// EndpointSeq is the event that last enabled the endpoint or set its
	// URL: a failure streak belongs to one of them (re-enabling an endpoint,
	// or pointing it elsewhere, starts afresh).
	EndpointSeq uint64 `json:"endpoint_seq,omitempty"`
}

// streak is when an endpoint's failures began, as of one endpoint_seq.
type streak struct {
	since time.Time
	epoch uint64
	// loaded: the attempt log was read for it (a node started after the
	// streak began still counts from its start).
	loaded bool
}

// epochOf is the event a failure streak of w belongs to.
func epochOf(w projections.Webhook) uint64 { return max(w.StatusBy.Seq(), w.AttrsBy.Seq()) }

// MessageID is the webhook-id of a notice's messages: derived from the
// notice's id, so that every node, retry and replay sends the same one.
func MessageID(noticeID string) string {
	sum := sha256.Sum256([]byte("keytrail/webhook-message/v1\x00" + noticeID))
	return "msg_" + hex.EncodeToString(sum[:16])
}

func msgSubject(tenant, webhook string) string {
	return events.WebhookMsgPrefix + tenant + "." + webhook
}

func attemptSubject(tenant, webhook string) string {
	return events.WebhookAttemptPrefix + tenant + "." + webhook
}

// EnsureStream creates the stream of messages and attempts if it is
// missing (control nodes call it).
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	return store.EnsureStream(ctx, js, jetstream.StreamConfig{Name: events.WebhookStream, Description: "Keytrail webhook messages and delivery attempts",
		Subjects: []string{events.WebhookSubjects}, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		MaxAge: 30 * 24 * time.Hour, Duplicates: 24 * time.Hour, DenyDelete: true, DenyPurge: true,
		// A bound on the disk one tenant's replays can take: full, the
		// stream refuses new messages (fan-out retries them) rather than
		// drop queued ones.
		MaxBytes: 4 << 30, Discard: jetstream.DiscardNew})
}

// Dispatcher delivers notices to endpoints: a fan-out from the notice
// stream to one subject per endpoint, and a worker per active endpoint
// reading its subject through a durable consumer. Any number of control
// nodes run one; each message is delivered at least once.
type Dispatcher struct {
	cfg    Config
	client *http.Client

	mu      sync.Mutex
	workers map[string]*worker // tenant.webhook → its worker
	failing map[string]streak
	// cleaned are the deleted endpoints whose consumer this node removed.
	cleaned map[string]bool
}

type worker struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NewDispatcher returns a dispatcher; Run it.
func NewDispatcher(cfg Config) *Dispatcher {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Ladder) == 0 {
		cfg.Ladder = Ladder
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.FailFor <= 0 {
		cfg.FailFor = DefaultFailFor
	}
	if cfg.Reconcile <= 0 {
		cfg.Reconcile = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Egress == nil {
		cfg.Egress = &egress.Policy{}
	}
	dialer := &net.Dialer{Timeout: cfg.Timeout, Control: cfg.Egress.Control}
	client := &http.Client{
		Transport: &http.Transport{DialContext: dialer.DialContext, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: Concurrency,
			IdleConnTimeout: time.Minute, TLSHandshakeTimeout: cfg.Timeout, ResponseHeaderTimeout: cfg.Timeout},
		// A redirect is an answer, not a place to send the message.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       cfg.Timeout,
	}
	return &Dispatcher{cfg: cfg, client: client, workers: map[string]*worker{}, failing: map[string]streak{},
		cleaned: map[string]bool{}}
}

// Run fans notices out and keeps a worker per active endpoint until ctx
// ends (EnsureStream first).
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.fanout(ctx) }()
	t := time.NewTicker(d.cfg.Reconcile)
	defer t.Stop()
	for {
		d.reconcile(ctx)
		select {
		case <-ctx.Done():
			d.mu.Lock()
			workers := d.workers
			d.workers = map[string]*worker{}
			d.mu.Unlock()
			for _, w := range workers {
				w.cancel()
				<-w.done
			}
			wg.Wait()
			return nil
		case <-t.C:
		}
	}
}

// fanout turns each notice into a message for every endpoint of its
// tenant that wants its type and existed when it was derived. A node that
// dies between the two acknowledges nothing: the notice comes again, and
// the messages' ids make the second fan-out store nothing new.
func (d *Dispatcher) fanout(ctx context.Context) {
	for ctx.Err() == nil {
		cons, err := d.cfg.JS.CreateOrUpdateConsumer(ctx, events.NoticeStream, jetstream.ConsumerConfig{Durable: natsauth.WebhookFanout,
			Description: "Keytrail: notices to webhook endpoints", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
			// Every notice, from the first: one derived before an endpoint
			// existed goes to no endpoint (see fanoutOne), so nothing old is
			// sent, and nothing published before the consumer was made is
			// missed.
			DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 256, FilterSubject: events.NoticeSubjects})
		if err == nil {
			err = d.consume(ctx, cons, d.fanoutOne)
		}
		if ctx.Err() == nil {
			d.cfg.Log.Warn("webhook fan-out interrupted", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// consume hands each message of cons to handle until ctx ends.
func (d *Dispatcher) consume(ctx context.Context, cons jetstream.Consumer, handle func(ctx context.Context, msg jetstream.Msg)) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(Concurrency))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return ctx.Err()
			}
			return err
		}
		handle(ctx, msg)
	}
}

func (d *Dispatcher) fanoutOne(ctx context.Context, msg jetstream.Msg) {
	var n events.Notice
	if err := json.Unmarshal(msg.Data(), &n); err != nil || n.ID == "" || !events.ValidTenantID(n.Tenant) {
		d.cfg.Log.Warn("a notice that does not decode is not delivered", "subject", msg.Subject())
		msg.Term()
		return
	}
	// The endpoints as of the notice: wait for the model to reach the
	// sequence it was derived at.
	if !d.cfg.Model.Ready() || d.cfg.Model.Applied() < n.Seq {
		msg.NakWithDelay(time.Second)
		return
	}
	var to []projections.Webhook
	d.cfg.Model.Read(func(c *projections.Catalog) {
		for _, w := range c.Webhooks(n.Tenant) {
			if w.Status == projections.WebhookActive && w.Wants(n.Type) && w.Created.Seq() <= n.Seq && w.ID != n.Webhook {
				to = append(to, w)
			}
		}
	})
	for _, w := range to {
		if err := d.enqueue(ctx, Task{MsgID: MessageID(n.ID), Webhook: w.ID, Notice: n}, MessageID(n.ID)+":"+w.ID); err != nil {
			d.cfg.Log.Warn("webhook message not queued", "webhook", w.ID, "err", err)
			msg.NakWithDelay(5 * time.Second)
			return
		}
	}
	msg.Ack()
}

// enqueue stores a message for an endpoint, once per msgID (Nats-Msg-Id).
func (d *Dispatcher) enqueue(ctx context.Context, t Task, msgID string) error {
	return enqueue(ctx, d.cfg.JS, t, msgID)
}

func enqueue(ctx context.Context, js jetstream.JetStream, t Task, msgID string) error {
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	m := nats.NewMsg(msgSubject(t.Notice.Tenant, t.Webhook))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	_, err = js.PublishMsg(ctx, m, jetstream.WithExpectStream(events.WebhookStream))
	return err
}

// reconcile starts a worker for every active endpoint and stops those of
// endpoints no longer active.
func (d *Dispatcher) reconcile(ctx context.Context) {
	if !d.cfg.Model.Ready() {
		return
	}
	active, deleted := map[string][2]string{}, map[string][2]string{}
	d.cfg.Model.Read(func(c *projections.Catalog) {
		c.AllWebhooks(func(w *projections.Webhook) {
			switch w.Status {
			case projections.WebhookActive:
				active[w.Tenant+"."+w.ID] = [2]string{w.Tenant, w.ID}
			case projections.WebhookDeleted:
				deleted[w.Tenant+"."+w.ID] = [2]string{w.Tenant, w.ID}
			}
		})
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	for key, tw := range deleted {
		if d.cleaned[key] || d.workers[key] != nil {
			continue
		}
		// A deleted endpoint's messages are never delivered: its consumer
		// goes (the messages age out of the stream).
		err := d.cfg.JS.DeleteConsumer(ctx, events.WebhookStream, consumerName(tw[0], tw[1]))
		if err == nil || errors.Is(err, jetstream.ErrConsumerNotFound) {
			d.cleaned[key] = true
		}
	}
	for key, w := range d.workers {
		if _, ok := active[key]; !ok {
			w.cancel()
			delete(d.workers, key)
		}
	}
	for key, tw := range active {
		if _, ok := d.workers[key]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &worker{cancel: cancel, done: make(chan struct{})}
		d.workers[key] = w
		go func() {
			defer close(w.done)
			d.work(wctx, tw[0], tw[1])
		}()
	}
}

// AckWait is how long a message may stay unacknowledged before it is
// delivered again (by any node): twice an attempt's timeout, and 5 s.
func AckWait(timeout time.Duration) time.Duration { return 2*timeout + 5*time.Second }

// maxAckPending bounds an endpoint's messages in flight or waiting on the
// ladder.
const maxAckPending = 100000

// consumerName is an endpoint's durable consumer.
func consumerName(tenant, webhook string) string { return "webhook_" + tenant + "_" + webhook }

// work delivers an endpoint's messages until ctx ends, Concurrency at a
// time.
func (d *Dispatcher) work(ctx context.Context, tenant, webhook string) {
	sem := make(chan struct{}, Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		cons, err := d.cfg.JS.CreateOrUpdateConsumer(ctx, events.WebhookStream, jetstream.ConsumerConfig{Durable: consumerName(tenant, webhook),
			Description: "Keytrail: deliveries to " + webhook, AckPolicy: jetstream.AckExplicitPolicy, AckWait: AckWait(d.cfg.Timeout),
			// Messages waiting on the retry ladder are pending too: a limit
			// low enough for them to fill would hold new messages back
			// for hours after the endpoint recovered.
			DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: maxAckPending, FilterSubject: msgSubject(tenant, webhook)})
		if err == nil {
			err = d.consume(ctx, cons, func(ctx context.Context, msg jetstream.Msg) {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return // not acknowledged: delivered again later
				}
				// It may have waited for the slot: its ack wait starts now.
				msg.InProgress()
				wg.Add(1)
				go func() {
					defer func() { <-sem; wg.Done() }()
					d.deliver(context.WithoutCancel(ctx), tenant, webhook, msg)
				}()
			})
		}
		if ctx.Err() == nil {
			d.cfg.Log.Warn("webhook worker interrupted", "webhook", webhook, "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// deliver makes one attempt at a message and records it.
func (d *Dispatcher) deliver(ctx context.Context, tenant, webhook string, msg jetstream.Msg) {
	var t Task
	md, err := msg.Metadata()
	if err != nil || json.Unmarshal(msg.Data(), &t) != nil || t.MsgID == "" || t.Notice.Tenant != tenant || t.Webhook != webhook {
		msg.Term()
		return
	}
	var (
		w  projections.Webhook
		ok bool
	)
	d.cfg.Model.Read(func(c *projections.Catalog) { w, ok = c.Webhook(tenant, webhook) })
	switch {
	case !ok || w.Status == projections.WebhookDeleted:
		msg.Term() // nobody to deliver to, ever
		return
	case w.Status != projections.WebhookActive:
		return // disabled: the message waits (redelivered after the ack wait) for the endpoint to be enabled
	}
	now := d.cfg.Now()
	secrets, err := d.cfg.Vault.Secrets(ctx, tenant, webhook, w.SecretIDs(now))
	if err != nil {
		d.cfg.Log.Warn("webhook not signed", "webhook", webhook, "err", err)
		msg.NakWithDelay(30 * time.Second)
		return
	}
	body, err := json.Marshal(struct {
		Type      string        `json:"type"`
		Timestamp time.Time     `json:"timestamp"`
		Data      events.Notice `json:"data"`
	}{t.Notice.Type, t.Notice.At.UTC(), t.Notice})
	if err != nil {
		msg.Term()
		return
	}
	a := Attempt{MsgID: t.MsgID, NoticeID: t.Notice.ID, Type: t.Notice.Type, Attempt: int(md.NumDelivered), At: now.UTC(), Replay: t.Replay != ""}
	status, excerpt, latency, err := d.post(ctx, w.URL, t.MsgID, now, body, secrets)
	a.Status, a.Response, a.LatencyMS = status, excerpt, float64(latency.Microseconds())/1000
	if err != nil {
		a.Error = err.Error()
	}
	delivered := err == nil && status >= 200 && status < 300
	a.EndpointSeq = epochOf(w)
	since := d.streak(ctx, w, delivered, now)
	if !delivered && now.Sub(since) >= d.cfg.FailFor {
		// Another node may have delivered meanwhile: the log says.
		if at, found := d.deliveredSince(ctx, w, since); found {
			d.mu.Lock()
			d.failing[tenant+"."+webhook] = streak{since: now.UTC(), epoch: a.EndpointSeq, loaded: true}
			d.mu.Unlock()
			since = now.UTC()
			d.cfg.Log.Debug("webhook delivered elsewhere since its failures began", "webhook", webhook, "at", at)
		}
	}
	if !since.IsZero() {
		a.FailingSince = &since
	}
	switch {
	case err == nil && status >= 200 && status < 300:
		a.Outcome = Delivered
	case status == http.StatusGone:
		a.Outcome = Gone
	case now.Sub(since) >= d.cfg.FailFor:
		a.Outcome = Disabled
	case a.Attempt >= len(d.cfg.Ladder):
		a.Outcome = GaveUp
	default:
		a.Outcome = Retrying
		next := now.Add(d.cfg.Ladder[a.Attempt]).UTC()
		a.NextAt = &next
	}
	d.record(ctx, tenant, webhook, a)
	switch a.Outcome {
	case Delivered:
		msg.Ack()
	case Retrying:
		msg.NakWithDelay(d.cfg.Ladder[a.Attempt])
	case GaveUp:
		msg.Term()
	case Gone, Disabled:
		why := "the endpoint answered 410 Gone"
		if a.Outcome == Disabled {
			why = fmt.Sprintf("every delivery failed since %s (%s)", since.Format(time.RFC3339), d.cfg.FailFor)
		}
		d.disable(ctx, w, why)
		if a.Outcome == Gone {
			msg.Term()
		}
		// Disabled for failing: the message waits for the endpoint.
	}
}

// post sends one signed request; it returns the status, the start of the
// answer and how long it took.
func (d *Dispatcher) post(ctx context.Context, url, msgID string, at time.Time, body []byte, secrets []Secret) (int, string, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", 0, errors.New("the URL does not make a request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Keytrail-Webhooks/1")
	Headers(req.Header, msgID, at, body, secrets...)
	start := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, "", time.Since(start), errors.New(describe(err))
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, excerptLen))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	return resp.StatusCode, printable(head), time.Since(start), nil
}

// describe says why a request had no answer, in words that tell a tenant
// what to fix without telling them about the operator's network (its
// resolvers, which ports answer).
func describe(err error) string {
	var ne net.Error
	var dns *net.DNSError
	var tlsErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(err, egress.ErrDenied):
		return "refused: the address is not one endpoints may have"
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.As(err, &dns):
		return "the name did not resolve"
	case errors.As(err, &tlsErr):
		return "TLS: the endpoint's certificate does not verify"
	case errors.As(err, &recordErr):
		return "TLS: the endpoint does not speak TLS"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection was closed without an answer"
	case strings.Contains(err.Error(), "tls:"):
		return "TLS handshake failed"
	}
	return "no answer"
}

// hostOf is the host of an endpoint's URL (its query may hold a token,
// which a notice to others must not).
func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return "?"
}

// printable keeps an excerpt of an answer safe to show in a terminal or a
// page: valid UTF-8, without control characters (C0, DEL, C1) or the
// characters that reorder text (bidirectional overrides and isolates).
func printable(b []byte) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\t':
			return r
		case r < 0x20, r >= 0x7f && r < 0xa0, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f:
			return -1
		}
		return r
	}, strings.ToValidUTF8(string(b), "\uFFFD"))
}

// record appends an attempt to the endpoint's attempt log.
func (d *Dispatcher) record(ctx context.Context, tenant, webhook string, a Attempt) {
	data, err := json.Marshal(a)
	if err == nil {
		_, err = d.cfg.JS.Publish(ctx, attemptSubject(tenant, webhook), data, jetstream.WithExpectStream(events.WebhookStream))
	}
	if err != nil {
		d.cfg.Log.Warn("webhook attempt not recorded", "webhook", webhook, "err", err)
	}
}

// streak records an attempt's outcome and returns when the endpoint's
// failures began (zero after a success). A node that has not seen the
// endpoint fail yet reads the streak from its last attempt in the log, so
// that a node started later still disables it on time; a streak of an
// earlier endpoint_seq (before it was re-enabled or pointed elsewhere) is
// not carried over.
func (d *Dispatcher) streak(ctx context.Context, w projections.Webhook, ok bool, now time.Time) time.Time {
	key, epoch := w.Tenant+"."+w.ID, epochOf(w)
	d.mu.Lock()
	cur := d.failing[key]
	d.mu.Unlock()
	if cur.epoch != epoch || !cur.loaded {
		cur = streak{epoch: epoch, loaded: true}
		if a, found := d.lastAttempt(ctx, w.Tenant, w.ID); found && a.EndpointSeq == epoch && a.FailingSince != nil && a.Outcome != Delivered {
			cur.since = *a.FailingSince
		}
	}
	switch {
	case ok:
		cur.since = time.Time{}
	case cur.since.IsZero():
		cur.since = now.UTC()
	}
	d.mu.Lock()
	d.failing[key] = cur
	d.mu.Unlock()
	return cur.since
}

// lastAttempt is the endpoint's last attempt in the log.
func (d *Dispatcher) lastAttempt(ctx context.Context, tenant, webhook string) (Attempt, bool) {
	s, err := d.cfg.JS.Stream(ctx, events.WebhookStream)
	if err != nil {
		return Attempt{}, false
	}
	m, err := s.GetLastMsgForSubject(ctx, attemptSubject(tenant, webhook))
	if err != nil {
		return Attempt{}, false
	}
	var a Attempt
	return a, json.Unmarshal(m.Data, &a) == nil
}

// deliveredSince reports whether any node delivered to the endpoint (as it
// is now) after since, and when.
func (d *Dispatcher) deliveredSince(ctx context.Context, w projections.Webhook, since time.Time) (time.Time, bool) {
	var at time.Time
	epoch := epochOf(w)
	_, err := NewLog(d.cfg.JS).scan(ctx, events.WebhookStream, attemptSubject(w.Tenant, w.ID), since, func(data []byte) bool {
		var a Attempt
		if json.Unmarshal(data, &a) == nil && a.Outcome == Delivered && a.EndpointSeq == epoch && a.At.After(since) {
			at = a.At
		}
		return true
	})
	return at, err == nil && !at.IsZero()
}

// disable disables the endpoint and, if this node did, tells the tenant
// with a webhook.disabled notice.
func (d *Dispatcher) disable(ctx context.Context, w projections.Webhook, why string) {
	seq, err := d.cfg.Disable(ctx, w.Tenant, w.ID, why)
	if err != nil {
		d.cfg.Log.Warn("webhook not disabled", "webhook", w.ID, "err", err)
		return
	}
	if seq == 0 {
		return // another node (or an admin) did it
	}
	n := events.Notice{ID: fmt.Sprintf("%s:%s:%d", events.NoticeWebhookDisabled, w.ID, seq), Type: events.NoticeWebhookDisabled,
		Tenant: w.Tenant, Webhook: w.ID, At: d.cfg.Now().UTC(), Seq: seq, CauseSeq: seq, CauseType: string(events.WebhookDisabled),
		CauseActor: Actor, CauseReason: why, Text: fmt.Sprintf("webhook %s (to %s) was disabled: %s", w.ID, hostOf(w.URL), why)}
	data, err := json.Marshal(n)
	if err == nil {
		m := nats.NewMsg(events.NoticeSubject(&n))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, n.ID)
		_, err = d.cfg.JS.PublishMsg(ctx, m, jetstream.WithExpectStream(events.NoticeStream))
	}
	if err != nil {
		d.cfg.Log.Warn("webhook.disabled notice not published", "webhook", w.ID, "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

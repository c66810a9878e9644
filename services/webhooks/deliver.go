package webhooks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/egress"
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
	// fanoutConsumer is the durable consumer of the notice stream that
	// turns each notice into one message per endpoint that wants it.
	fanoutConsumer = "keytrail-webhooks"
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
}

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
		MaxAge: 30 * 24 * time.Hour, Duplicates: 24 * time.Hour, DenyDelete: true, DenyPurge: true})
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
	failing map[string]time.Time
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
	return &Dispatcher{cfg: cfg, client: client, workers: map[string]*worker{}, failing: map[string]time.Time{},
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
		cons, err := d.cfg.JS.CreateOrUpdateConsumer(ctx, events.NoticeStream, jetstream.ConsumerConfig{Durable: fanoutConsumer,
			Description: "Keytrail: notices to webhook endpoints", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
			DeliverPolicy: jetstream.DeliverNewPolicy, MaxAckPending: 256, FilterSubject: events.NoticeSubjects})
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

// consumerName is an endpoint's durable consumer.
func consumerName(tenant, webhook string) string { return "webhook_" + tenant + "_" + webhook }

// work delivers an endpoint's messages until ctx ends, Concurrency at a
// time.
func (d *Dispatcher) work(ctx context.Context, tenant, webhook string) {
	d.loadFailing(ctx, tenant, webhook)
	sem := make(chan struct{}, Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		cons, err := d.cfg.JS.CreateOrUpdateConsumer(ctx, events.WebhookStream, jetstream.ConsumerConfig{Durable: consumerName(tenant, webhook),
			Description: "Keytrail: deliveries to " + webhook, AckPolicy: jetstream.AckExplicitPolicy, AckWait: d.cfg.Timeout + 5*time.Second,
			DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 1000, FilterSubject: msgSubject(tenant, webhook)})
		if err == nil {
			err = d.consume(ctx, cons, func(ctx context.Context, msg jetstream.Msg) {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return // not acknowledged: delivered again later
				}
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
	key := tenant + "." + webhook
	d.mu.Lock()
	switch {
	case err == nil && status >= 200 && status < 300:
		delete(d.failing, key)
	case d.failing[key].IsZero():
		d.failing[key] = now.UTC()
	}
	since := d.failing[key]
	d.mu.Unlock()
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

// describe says why a request had no answer, without the URL (which the
// attempt log has already).
func describe(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, egress.ErrDenied):
		return "refused: the address is not one endpoints may have"
	case errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Op + ": " + oe.Err.Error()
	}
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, "\": "); ok { // url.Error: `Post "<url>": why`
		msg = after
	}
	return msg
}

// printable keeps an excerpt of an answer safe to show: valid UTF-8,
// without control characters.
func printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if !utf8.ValidString(s) {
		return ""
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
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

// loadFailing reads when the endpoint's failures began from its last
// attempt, so that a restarted node still disables it on time.
func (d *Dispatcher) loadFailing(ctx context.Context, tenant, webhook string) {
	s, err := d.cfg.JS.Stream(ctx, events.WebhookStream)
	if err != nil {
		return
	}
	m, err := s.GetLastMsgForSubject(ctx, attemptSubject(tenant, webhook))
	if err != nil {
		return
	}
	var a Attempt
	if json.Unmarshal(m.Data, &a) == nil && a.FailingSince != nil && a.Outcome != Delivered {
		d.mu.Lock()
		if d.failing[tenant+"."+webhook].IsZero() {
			d.failing[tenant+"."+webhook] = *a.FailingSince
		}
		d.mu.Unlock()
	}
}

// disable disables the endpoint and, if this node did, tells the tenant
// with a webhook.disabled notice.
func (d *Dispatcher) disable(ctx context.Context, w projections.Webhook, why string) {
	seq, err := d.cfg.Disable(ctx, w.Tenant, w.ID, why)
	if err != nil {
		d.cfg.Log.Warn("webhook not disabled", "webhook", w.ID, "err", err)
		return
	}
	d.mu.Lock()
	delete(d.failing, w.Tenant+"."+w.ID)
	d.mu.Unlock()
	if seq == 0 {
		return // another node (or an admin) did it
	}
	n := events.Notice{ID: fmt.Sprintf("%s:%s:%d", events.NoticeWebhookDisabled, w.ID, seq), Type: events.NoticeWebhookDisabled,
		Tenant: w.Tenant, Webhook: w.ID, At: d.cfg.Now().UTC(), Seq: seq, CauseSeq: seq, CauseType: string(events.WebhookDisabled),
		CauseActor: Actor, CauseReason: why, Text: fmt.Sprintf("webhook %s (%s) was disabled: %s", w.ID, w.URL, why)}
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

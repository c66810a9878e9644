package adminhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/control"
	"github.com/keytrail/keytrail/services/webhooks"
)

// WebhookLog reads endpoints' delivery attempts and queues replays
// (webhooks.Log).
type WebhookLog interface {
	Attempts(ctx context.Context, tenant, webhook string, q webhooks.AttemptQuery) ([]webhooks.Attempt, error)
	ReplayMessage(ctx context.Context, w projections.Webhook, msgID, by string) error
	ReplaySince(ctx context.Context, w projections.Webhook, since time.Time, by string) (int, bool, error)
	Notices(ctx context.Context, tenant, typ string, since time.Time, limit int) ([]events.Notice, error)
}

// Request bodies of the webhook routes.
type (
	createWebhookBody struct {
		URL    string   `json:"url"`
		Types  []string `json:"types"`
		Reason string   `json:"reason"`
	}
	patchWebhookBody struct {
		URL    *string   `json:"url"`
		Types  *[]string `json:"types"`
		Reason string    `json:"reason"`
	}
	rotateSecretBody struct {
		Overlap *duration `json:"overlap"`
		Reason  string    `json:"reason"`
	}
	replayBody struct {
		MsgID string     `json:"msg_id"`
		Since *time.Time `json:"since"`
	}
)

func (b createWebhookBody) reason() string { return b.Reason }
func (b patchWebhookBody) reason() string  { return b.Reason }
func (b rotateSecretBody) reason() string  { return b.Reason }

// webhookView is an endpoint as the API shows it: never its secrets.
type webhookView struct {
	ID     string   `json:"id"`
	Tenant string   `json:"tenant"`
	URL    string   `json:"url"`
	Types  []string `json:"types"`
	Status string   `json:"status"`
	// PreviousSecretUntil: deliveries are also signed with the secret a
	// rotation replaced until then.
	PreviousSecretUntil *time.Time `json:"previous_secret_until,omitempty"`
	// StatusSeq and StatusBy: the event that last set the status.
	StatusSeq uint64    `json:"status_seq"`
	StatusBy  string    `json:"status_by"`
	CreatedAt time.Time `json:"created_at"`
	Version   uint64    `json:"version"`
}

func webhookAny(w projections.Webhook) any {
	types := w.Types
	if types == nil {
		types = []string{}
	}
	v := webhookView{ID: w.ID, Tenant: w.Tenant, URL: w.URL, Types: types, Status: string(w.Status), StatusSeq: w.StatusBy.Seq(),
		StatusBy: string(w.StatusBy.Type()), CreatedAt: w.CreatedAt, Version: w.Version}
	if w.PreviousSecretID != "" {
		until := w.PreviousUntil
		v.PreviousSecretUntil = &until
	}
	return v
}

func (s *Server) webhookRoutes() {
	c := s.cfg.Control
	const one = "/v1/tenants/{tenant}/webhooks/{webhook}"
	withSecret(s, "POST /v1/tenants/{tenant}/webhooks", false, true, "created a webhook",
		func(r *http.Request, m control.Meta, b createWebhookBody) (projections.Webhook, string, control.Result, error) {
			return c.CreateWebhook(r.Context(), m, r.PathValue("tenant"), control.WebhookSpec{URL: b.URL, Types: b.Types})
		})
	s.handle("GET /v1/tenants/{tenant}/webhooks", tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		if err := s.minSeq(r); err != nil {
			return err
		}
		if err := onlyParams(r.URL.Query()); err != nil {
			return err
		}
		var list []projections.Webhook
		s.cfg.Model.Read(func(c *projections.Catalog) { list = c.Webhooks(r.PathValue("tenant")) })
		views := make([]any, len(list))
		for i, h := range list {
			views[i] = webhookAny(h)
		}
		writeJSON(w, http.StatusOK, map[string]any{"webhooks": views})
		return nil
	})
	readRoute(s, "GET "+one, "webhook", func(ctx context.Context, r *http.Request) (projections.Webhook, error) {
		return c.Webhook(ctx, r.PathValue("tenant"), r.PathValue("webhook"))
	}, webhookAny)
	command(s, "PATCH "+one, tenantAdmin, true,
		func(ctx context.Context, r *http.Request, m control.Meta, b patchWebhookBody, v *uint64) (projections.Webhook, control.Result, error) {
			return c.UpdateWebhook(ctx, m, r.PathValue("tenant"), r.PathValue("webhook"), control.WebhookPatch{URL: b.URL, Types: b.Types}, v)
		}, ok, "webhook", webhookAny)
	for pattern, op := range map[string]func(context.Context, control.Meta, string, string) (projections.Webhook, control.Result, error){
		"POST " + one + "/disable": c.DisableWebhook,
		"POST " + one + "/enable":  c.EnableWebhook,
		"DELETE " + one:            c.DeleteWebhook,
	} {
		command(s, pattern, tenantAdmin, false,
			func(ctx context.Context, r *http.Request, m control.Meta, _ reasonBody, _ *uint64) (projections.Webhook, control.Result, error) {
				return op(ctx, m, r.PathValue("tenant"), r.PathValue("webhook"))
			}, ok, "webhook", webhookAny)
	}
	withSecret(s, "POST "+one+"/rotate-secret", true, false, "rotated the secret",
		func(r *http.Request, m control.Meta, b rotateSecretBody) (projections.Webhook, string, control.Result, error) {
			overlap := 24 * time.Hour
			if b.Overlap != nil {
				overlap = time.Duration(*b.Overlap)
			}
			return c.RotateWebhookSecret(r.Context(), m, r.PathValue("tenant"), r.PathValue("webhook"), overlap)
		})
	s.handle("GET "+one+"/deliveries", tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		v := r.URL.Query()
		if err := onlyParams(v, "since", "msg_id", "limit"); err != nil {
			return err
		}
		hook, err := s.webhookFor(r)
		if err != nil {
			return err
		}
		now := s.cfg.Now()
		since, err := timeParam(v.Get("since"), now, now.Add(-7*24*time.Hour))
		if err != nil {
			return badParam("since: %v", err)
		}
		limit, err := pageSize(r)
		if err != nil {
			return err
		}
		attempts, err := s.cfg.Webhooks.Attempts(r.Context(), hook.Tenant, hook.ID, webhooks.AttemptQuery{Since: since, MsgID: v.Get("msg_id"), Limit: limit})
		if err != nil {
			return s.unavailable(err)
		}
		if attempts == nil {
			attempts = []webhooks.Attempt{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"attempts": attempts})
		return nil
	})
	s.handle("POST "+one+"/replay", tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var b replayBody
		if err := decode(r, &b, false); err != nil {
			return err
		}
		switch {
		case (b.MsgID == "") == (b.Since == nil):
			return badParam("give msg_id (one message) or since (every notice since then)")
		case b.MsgID != "" && (!strings.HasPrefix(b.MsgID, "msg_") || len(b.MsgID) > 64):
			return badParam("msg_id: %q is not a message id (msg_…)", clip(b.MsgID))
		case b.Since != nil && b.Since.After(s.cfg.Now()):
			return badParam("since: must not be in the future")
		}
		hook, err := s.webhookFor(r)
		if err != nil {
			return err
		}
		if hook.Status != projections.WebhookActive {
			return &control.Error{Code: control.CodeFailedPrecondition, Message: "the webhook is " + string(hook.Status) + "; enable it before replaying"}
		}
		if b.MsgID != "" {
			err := s.cfg.Webhooks.ReplayMessage(r.Context(), hook, b.MsgID, p.actor())
			if errors.Is(err, webhooks.ErrNoMessage) {
				return &control.Error{Code: control.CodeNotFound, Message: "msg_id: this webhook has no message " + b.MsgID}
			}
			if err != nil {
				return s.unavailable(err)
			}
			writeJSON(w, http.StatusAccepted, map[string]any{"queued": 1})
			return nil
		}
		n, more, err := s.cfg.Webhooks.ReplaySince(r.Context(), hook, *b.Since, p.actor())
		if errors.Is(err, webhooks.ErrBusy) {
			return &control.Error{Code: control.CodeConflict, Message: fmt.Sprintf("the endpoint has %d or more messages waiting; replay again when they are delivered", webhooks.MaxReplay)}
		}
		if err != nil {
			return s.unavailable(err)
		}
		writeJSON(w, http.StatusAccepted, map[string]any{"queued": n, "more": more})
		return nil
	})
}

func (s *Server) noticeRoutes() {
	s.handle("GET /v1/tenants/{tenant}/notices", tenantAdmin, func(w http.ResponseWriter, r *http.Request, _ *principal) error {
		if s.cfg.Webhooks == nil {
			return &control.Error{Code: control.CodeUnavailable, Message: "this node does not read notices"}
		}
		v := r.URL.Query()
		if err := onlyParams(v, "since", "type", "limit"); err != nil {
			return err
		}
		typ := v.Get("type")
		if typ != "" && !slices.Contains(events.NoticeTypes(), typ) {
			return badParam("type: %q is not a notice type (%s)", clip(typ), strings.Join(events.NoticeTypes(), ", "))
		}
		now := s.cfg.Now()
		since, err := timeParam(v.Get("since"), now, now.Add(-7*24*time.Hour))
		if err != nil {
			return badParam("since: %v", err)
		}
		limit, err := pageSize(r)
		if err != nil {
			return err
		}
		ns, err := s.cfg.Webhooks.Notices(r.Context(), r.PathValue("tenant"), typ, since, limit)
		if err != nil {
			return s.unavailable(err)
		}
		if ns == nil {
			ns = []events.Notice{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"notices": ns})
		return nil
	})
}

// withSecret registers a write whose answer holds a new signing secret, once:
// a retry of it (the same Idempotency-Key) is a conflict naming the
// endpoint, never the secret again.
func withSecret[B reasoned](s *Server, pattern string, emptyOK, creates bool, did string,
	run func(r *http.Request, m control.Meta, b B) (projections.Webhook, string, control.Result, error)) {
	s.handle(pattern, tenantAdmin, func(w http.ResponseWriter, r *http.Request, p *principal) error {
		var b B
		if err := decode(r, &b, emptyOK); err != nil {
			return err
		}
		m, err := s.meta(r, p, b.reason(), creates)
		if err != nil {
			return err
		}
		hook, sec, res, err := run(r, m, b)
		if err != nil {
			return err
		}
		if res.Replayed {
			writeProblem(w, r, control.CodeConflict, "this Idempotency-Key already "+did+"; the secret was returned to that request and is never returned again", hook.ID)
			return nil
		}
		return written(w, http.StatusCreated, res, map[string]any{"webhook": webhookAny(hook), "secret": sec})
	})
}

// webhookFor is the endpoint a delivery route names, from the read model.
func (s *Server) webhookFor(r *http.Request) (projections.Webhook, error) {
	if s.cfg.Webhooks == nil {
		return projections.Webhook{}, &control.Error{Code: control.CodeUnavailable, Message: "this node does not deliver webhooks"}
	}
	if err := s.minSeq(r); err != nil {
		return projections.Webhook{}, err
	}
	tenant, id := r.PathValue("tenant"), r.PathValue("webhook")
	var (
		hook projections.Webhook
		ok   bool
	)
	if events.ValidWebhookID(id) {
		s.cfg.Model.Read(func(c *projections.Catalog) { hook, ok = c.Webhook(tenant, id) })
	}
	if !ok || hook.Status == projections.WebhookDeleted {
		return hook, &control.Error{Code: control.CodeNotFound, Message: "no webhook " + clip(id)}
	}
	return hook, nil
}

func badParam(format string, args ...any) error {
	return &control.Error{Code: control.CodeInvalidArgument, Message: fmt.Sprintf(format, args...)}
}

// unavailable logs a bus error and answers 503 without it.
func (s *Server) unavailable(err error) error {
	s.cfg.Log.Warn("the webhook delivery log did not answer", "err", err)
	return &control.Error{Code: control.CodeUnavailable, Message: "the delivery log did not answer; retry"}
}

package control

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
)

// WebhookSecrets makes and keeps endpoints' signing secrets outside the
// event log, sealed (services/webhooks.Vault): an event names a secret by
// its id only.
type WebhookSecrets interface {
	// New makes a secret for the endpoint, stores it sealed under id, and
	// returns it in the whsec_ form, to be shown once.
	New(ctx context.Context, tenant, webhook, id string) (string, error)
	// Discard purges one secret that no event names (its endpoint's
	// creation or rotation was refused, or was a retry).
	Discard(ctx context.Context, tenant, webhook, id string) error
	// Forget purges every secret of a deleted endpoint.
	Forget(ctx context.Context, tenant, webhook string) error
}

// WebhookSpec is what CreateWebhook needs.
type WebhookSpec struct {
	URL string
	// Types are the notice types delivered (none: all).
	Types []string
}

// WebhookPatch is what UpdateWebhook changes; nil fields stay as they are.
type WebhookPatch struct {
	URL   *string
	Types *[]string
}

// MaxWebhooks bounds a tenant's endpoints (deleted ones do not count).
const MaxWebhooks = 20

// MaxSecretOverlap bounds how long a rotated-out secret keeps signing.
const MaxSecretOverlap = 7 * 24 * time.Hour

func webhookVersion(w projections.Webhook) uint64 { return w.Version }

func checkWebhookID(tenant, id string) error {
	if err := checkTenantID(tenant); err != nil {
		return err
	}
	if !events.ValidWebhookID(id) {
		return errorf(CodeNotFound, "no webhook %s", id)
	}
	return nil
}

// webhookFilter matches every endpoint of a tenant.
func webhookFilter(tenant string) string { return events.SubjectRoot + "." + tenant + ".w.*" }

// webhookStep is a step on an endpoint; creations append under the scope of
// the tenant's endpoints, so that two at once cannot pass the quota.
func (s *Service) webhookStep(tenant, id string, version *uint64, decide func(w projections.Webhook, now time.Time) (events.Payload, error)) step[projections.Webhook] {
	return step[projections.Webhook]{tenant: tenant, agg: events.WebhookAggregate(id), scope: webhookFilter(tenant),
		pinned: version != nil, version: webhookVersion,
		decide: func(w projections.Webhook, now time.Time) (events.Payload, error) {
			if w.Exists() {
				if err := ifMatch(version, w.Version); err != nil {
					return nil, err
				}
			}
			return decide(w, now)
		},
		check: func(ctx context.Context, p events.Payload) error {
			if _, created := p.(events.WebhookCreatedV1); !created {
				return nil
			}
			return s.webhookQuota(ctx, tenant)
		}}
}

// webhookQuota refuses another endpoint for a tenant that has MaxWebhooks.
func (s *Service) webhookQuota(ctx context.Context, tenant string) error {
	all, err := s.cfg.Store.LoadAll(ctx, webhookFilter(tenant))
	if err != nil {
		return mapStoreError(err)
	}
	hooks := map[string]projections.Webhook{}
	for _, r := range all {
		hooks[r.Aggregate.ID], _ = hooks[r.Aggregate.ID].Apply(r)
	}
	n := 0
	for _, w := range hooks {
		if w.Exists() && w.Status != projections.WebhookDeleted {
			n++
		}
	}
	if n >= MaxWebhooks {
		return errorf(CodeFailedPrecondition, "tenant %s has %d webhook endpoints, the most it may have; delete one first", tenant, n)
	}
	return nil
}

// checkWebhookURL refuses a URL the codec refuses or the egress policy
// denies (a literal internal address, localhost, one of Keytrail's own
// listeners; names are checked when delivery dials them).
func (s *Service) checkWebhookURL(u string, types []string) error {
	if err := events.ValidatePayload(events.WebhookUpdatedV1{URL: u, Types: types}); err != nil {
		return errorf(CodeInvalidArgument, "%v", err)
	}
	if s.cfg.Egress != nil {
		if err := s.cfg.Egress.CheckURL(u); err != nil {
			return errorf(CodeInvalidArgument, "url: %s", strings.TrimPrefix(err.Error(), "egress: upstream address not allowed: "))
		}
	}
	return nil
}

func webhookUsable(w projections.Webhook, id string) error {
	if !w.Exists() || w.Status == projections.WebhookDeleted {
		return errorf(CodeNotFound, "no webhook %s", id)
	}
	return nil
}

// CreateWebhook adds an endpoint the tenant's notices are delivered to, and
// returns its signing secret (whsec_…): the only time anyone sees it. A
// retried request (the same idempotency key) gets the endpoint without it.
func (s *Service) CreateWebhook(ctx context.Context, meta Meta, tenant string, spec WebhookSpec) (projections.Webhook, string, Result, error) {
	var none projections.Webhook
	idempotent, err := s.normalize(&meta)
	if err != nil {
		return none, "", Result{}, err
	}
	if err := checkTenantID(tenant); err != nil {
		return none, "", Result{}, err
	}
	if s.cfg.Webhooks == nil {
		return none, "", Result{}, errorf(CodeFailedPrecondition, "webhooks are not enabled on this control node (no key-encryption key)")
	}
	if err := s.checkWebhookURL(spec.URL, spec.Types); err != nil {
		return none, "", Result{}, err
	}
	if _, err := s.Tenant(ctx, tenant); err != nil {
		return none, "", Result{}, err
	}
	// Refused before a secret is made (and again, exactly, when
	// appending); a retry (an idempotency key) may be answered from what it
	// recorded, so it is checked when appending only.
	if !idempotent {
		if err := s.webhookQuota(ctx, tenant); err != nil {
			return none, "", Result{}, err
		}
	}
	now := s.cfg.Now().UTC()
	id, err := s.newID(idempotent, tenant, meta.CommandID, "webhook", now)
	if err != nil {
		return none, "", Result{}, err
	}
	id = events.WebhookIDPrefix + id
	secretID, err := s.newID(false, tenant, meta.CommandID, "webhook-secret", now)
	if err != nil {
		return none, "", Result{}, err
	}
	// The secret is sealed and stored before the event names it: an append
	// that fails leaves a secret nobody refers to, never an endpoint
	// without one.
	whsec, err := s.cfg.Webhooks.New(ctx, tenant, id, secretID)
	if err != nil {
		return none, "", Result{}, errorf(CodeUnavailable, "the signing secret could not be stored; retry")
	}
	w, res, err := transition(ctx, s, meta, s.webhookStep(tenant, id, nil, func(w projections.Webhook, _ time.Time) (events.Payload, error) {
		if w.Exists() {
			return nil, errorf(CodeConflict, "webhook %s exists", id)
		}
		return events.WebhookCreatedV1{URL: spec.URL, Types: spec.Types, SecretID: secretID}, nil
	}))
	if err != nil || res.Replayed {
		whsec = ""
		s.discardSecret(tenant, id, secretID)
	}
	return w, whsec, res, err
}

// discardSecret purges a secret no event names (best effort: one left
// behind is never used).
func (s *Service) discardSecret(tenant, webhook, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.cfg.Webhooks.Discard(ctx, tenant, webhook, id)
}

// UpdateWebhook changes an endpoint's URL or the notice types it takes.
func (s *Service) UpdateWebhook(ctx context.Context, meta Meta, tenant, id string, patch WebhookPatch, version *uint64) (projections.Webhook, Result, error) {
	if err := checkWebhookID(tenant, id); err != nil {
		return projections.Webhook{}, Result{}, err
	}
	if patch == (WebhookPatch{}) {
		return projections.Webhook{}, Result{}, errorf(CodeInvalidArgument, "nothing to update")
	}
	return transition(ctx, s, meta, s.webhookStep(tenant, id, version, func(w projections.Webhook, _ time.Time) (events.Payload, error) {
		if err := webhookUsable(w, id); err != nil {
			return nil, err
		}
		p := events.WebhookUpdatedV1{URL: w.URL, Types: w.Types}
		if patch.URL != nil {
			p.URL = *patch.URL
		}
		if patch.Types != nil {
			p.Types = *patch.Types
		}
		if p.URL == w.URL && slices.Equal(p.Types, w.Types) {
			return nil, nil
		}
		if err := s.checkWebhookURL(p.URL, p.Types); err != nil {
			return nil, err
		}
		return p, nil
	}))
}

// RotateWebhookSecret gives an endpoint a new signing secret, returned
// once; deliveries carry both signatures until overlap has passed, so that
// the receiver can switch without losing one.
func (s *Service) RotateWebhookSecret(ctx context.Context, meta Meta, tenant, id string, overlap time.Duration) (projections.Webhook, string, Result, error) {
	var none projections.Webhook
	if err := checkWebhookID(tenant, id); err != nil {
		return none, "", Result{}, err
	}
	if overlap < 0 || overlap > MaxSecretOverlap {
		return none, "", Result{}, errorf(CodeInvalidArgument, "overlap: from 0 to 7d")
	}
	if s.cfg.Webhooks == nil {
		return none, "", Result{}, errorf(CodeFailedPrecondition, "webhooks are not enabled on this control node (no key-encryption key)")
	}
	if _, err := s.normalize(&meta); err != nil {
		return none, "", Result{}, err
	}
	cur, err := s.Webhook(ctx, tenant, id)
	if err != nil {
		return none, "", Result{}, err
	}
	now := s.cfg.Now().UTC()
	secretID, err := s.newID(false, tenant, meta.CommandID, "webhook-secret", now)
	if err != nil {
		return none, "", Result{}, err
	}
	whsec, err := s.cfg.Webhooks.New(ctx, tenant, cur.ID, secretID)
	if err != nil {
		return none, "", Result{}, errorf(CodeUnavailable, "the signing secret could not be stored; retry")
	}
	w, res, err := transition(ctx, s, meta, s.webhookStep(tenant, id, nil, func(w projections.Webhook, now time.Time) (events.Payload, error) {
		if err := webhookUsable(w, id); err != nil {
			return nil, err
		}
		return events.WebhookSecretRotatedV1{SecretID: secretID, PreviousUntil: now.Add(overlap)}, nil
	}))
	if err != nil || res.Replayed {
		whsec = ""
		s.discardSecret(tenant, cur.ID, secretID)
	}
	return w, whsec, res, err
}

// DisableWebhook stops deliveries to an endpoint until it is enabled; the
// messages due meanwhile wait.
func (s *Service) DisableWebhook(ctx context.Context, meta Meta, tenant, id string) (projections.Webhook, Result, error) {
	return s.webhookStatus(ctx, meta, tenant, id, projections.WebhookDisabled, events.WebhookDisabledV1{})
}

// EnableWebhook resumes deliveries to a disabled endpoint.
func (s *Service) EnableWebhook(ctx context.Context, meta Meta, tenant, id string) (projections.Webhook, Result, error) {
	return s.webhookStatus(ctx, meta, tenant, id, projections.WebhookActive, events.WebhookEnabledV1{})
}

// DeleteWebhook removes an endpoint for good and purges its secrets (on a
// node that keeps them: elsewhere it is refused, so that no secret is left
// behind).
func (s *Service) DeleteWebhook(ctx context.Context, meta Meta, tenant, id string) (projections.Webhook, Result, error) {
	if s.cfg.Webhooks == nil {
		return projections.Webhook{}, Result{}, errorf(CodeFailedPrecondition, "webhooks are not enabled on this control node (no key-encryption key)")
	}
	w, res, err := s.webhookStatus(ctx, meta, tenant, id, projections.WebhookDeleted, events.WebhookDeletedV1{})
	if err == nil {
		if ferr := s.cfg.Webhooks.Forget(ctx, tenant, id); ferr != nil {
			return w, res, errorf(CodeUnavailable, "the webhook is deleted, but its secrets were not purged yet; delete it again")
		}
	}
	return w, res, err
}

func (s *Service) webhookStatus(ctx context.Context, meta Meta, tenant, id string, to projections.WebhookStatus, p events.Payload) (projections.Webhook, Result, error) {
	if err := checkWebhookID(tenant, id); err != nil {
		return projections.Webhook{}, Result{}, err
	}
	return transition(ctx, s, meta, s.webhookStep(tenant, id, nil, func(w projections.Webhook, _ time.Time) (events.Payload, error) {
		switch {
		case !w.Exists():
			return nil, errorf(CodeNotFound, "no webhook %s", id)
		case w.Status == to:
			return nil, nil
		case w.Status == projections.WebhookDeleted:
			return nil, errorf(CodeNotFound, "no webhook %s", id)
		}
		return p, nil
	}))
}

// Webhook returns an endpoint's current state.
func (s *Service) Webhook(ctx context.Context, tenant, id string) (projections.Webhook, error) {
	if err := checkWebhookID(tenant, id); err != nil {
		return projections.Webhook{}, err
	}
	l, err := load[projections.Webhook](ctx, s.cfg.Store, tenant, events.WebhookAggregate(id))
	if err != nil {
		return projections.Webhook{}, mapStoreError(err)
	}
	if err := webhookUsable(l.State, id); err != nil {
		return projections.Webhook{}, err
	}
	return l.State, nil
}

package projections

import (
	"slices"
	"time"

	"github.com/keytrail/keytrail/events"
)

// WebhookStatus is a webhook endpoint's lifecycle state.
type WebhookStatus string

// Webhook states. Deleted is final.
const (
	WebhookActive   WebhookStatus = "active"
	WebhookDisabled WebhookStatus = "disabled"
	WebhookDeleted  WebhookStatus = "deleted"
)

// Webhook is the state of a webhook endpoint aggregate: where a tenant's
// notices go, and which signing secrets are current. The secrets
// themselves are not in the log; SecretID names the one deliveries are
// signed with, PreviousSecretID the one they are also signed with until
// PreviousUntil (a rotation's overlap).
type Webhook struct {
	Tenant, ID string
	URL        string
	// Types are the notice types delivered (none: all).
	Types            []string
	Status           WebhookStatus
	SecretID         string
	PreviousSecretID string
	PreviousUntil    time.Time
	CreatedAt        time.Time
	// Version is the stream sequence of the last event applied.
	Version uint64
	// Created, AttrsBy and StatusBy are the events that created the
	// endpoint, last set its URL and types, and its status.
	Created, AttrsBy, StatusBy Evidence
	// Head: see Tenant.Head.
	Head events.Hash
}

// Exists reports whether the endpoint was created (deleted ones exist).
func (w Webhook) Exists() bool { return w.Version != 0 }

// Wants reports whether the endpoint takes notices of type t.
func (w Webhook) Wants(t string) bool { return len(w.Types) == 0 || slices.Contains(w.Types, t) }

// SecretIDs are the secrets a delivery at now is signed with: the current
// one, and the previous one during a rotation's overlap.
func (w Webhook) SecretIDs(now time.Time) []string {
	if w.PreviousSecretID != "" && now.Before(w.PreviousUntil) {
		return []string{w.SecretID, w.PreviousSecretID}
	}
	return []string{w.SecretID}
}

// Apply returns the endpoint after r, or the endpoint unchanged and an
// error wrapping ErrTransition.
func (w Webhook) Apply(r events.Recorded) (Webhook, error) {
	if r.Aggregate.Kind != events.KindWebhook {
		return w, impossible(r, "not a webhook event")
	}
	if _, created := r.Data.(events.WebhookCreatedV1); !created {
		if !w.Exists() {
			return w, impossible(r, "no such webhook")
		}
		if w.Status == WebhookDeleted {
			return w, impossible(r, "the webhook is deleted")
		}
	}
	switch p := r.Data.(type) {
	case events.WebhookCreatedV1:
		if w.Exists() {
			return w, impossible(r, "webhook exists")
		}
		w = Webhook{Tenant: r.Tenant, ID: r.Aggregate.ID, URL: p.URL, Types: p.Types, Status: WebhookActive,
			SecretID: p.SecretID, CreatedAt: r.OccurredAt, Created: evidence(r), AttrsBy: evidence(r), StatusBy: evidence(r)}
	case events.WebhookUpdatedV1:
		w.URL, w.Types, w.AttrsBy = p.URL, p.Types, evidence(r)
	case events.WebhookSecretRotatedV1:
		w.PreviousSecretID, w.PreviousUntil, w.SecretID = w.SecretID, p.PreviousUntil, p.SecretID
	case events.WebhookDisabledV1:
		w.Status, w.StatusBy = WebhookDisabled, evidence(r)
	case events.WebhookEnabledV1:
		w.Status, w.StatusBy = WebhookActive, evidence(r)
	case events.WebhookDeletedV1:
		w.Status, w.StatusBy = WebhookDeleted, evidence(r)
	default:
		return w, impossible(r, "unknown webhook event")
	}
	w.Version = r.Seq
	return w, nil
}

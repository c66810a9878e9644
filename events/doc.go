// Package events is Keytrail's vocabulary: the event envelope, the typed payload
// of every change to a tenant, user, key or API, their strict JSON codec, and the
// NATS subjects and headers they travel under.
//
// It owns the wire format and the rules for evolving it (docs/events.md). It must
// not import NATS, a clock or anything with side effects: projections fold these
// types and must stay pure. The event store lives in events/store.
package events

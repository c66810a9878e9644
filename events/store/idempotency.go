package store

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
)

// ErrIdempotencyMismatch: an idempotency key used again, within the
// window, with another request than the first.
var ErrIdempotencyMismatch = errors.New("store: the idempotency key was used with another request")

// IdempotencyKeys remembers, for the idempotency window, the digest of the
// request each idempotency key was first used with, shared by every control
// node (a JetStream key-value bucket whose entries expire with the window).
type IdempotencyKeys struct{ kv jetstream.KeyValue }

// OpenIdempotencyKeys opens (creating if need be) the bucket.
func OpenIdempotencyKeys(ctx context.Context, js jetstream.JetStream, replicas int, window time.Duration) (*IdempotencyKeys, error) {
	if window <= 0 {
		window = DefaultDuplicates
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.IdempotencyBucket,
		Description: "Keytrail: the request each Idempotency-Key was first used with", TTL: window,
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1)})
	if err != nil {
		return nil, fmt.Errorf("store: idempotency bucket: %w", err)
	}
	return &IdempotencyKeys{kv: kv}, nil
}

// Claim records that key is used with the request whose digest is given,
// or, when key was used before within the window, checks it was with the
// same request: ErrIdempotencyMismatch when not. key must be a valid
// key-value key (hex, say).
func (k *IdempotencyKeys) Claim(ctx context.Context, key string, digest [32]byte) error {
	for range 3 { // an entry may expire between a failed create and the read
		_, err := k.kv.Create(ctx, key, digest[:])
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return unavailable("idempotency key", err)
		}
		e, err := k.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return unavailable("idempotency key", err)
		}
		if len(e.Value()) != len(digest) || subtle.ConstantTimeCompare(e.Value(), digest[:]) != 1 {
			return ErrIdempotencyMismatch
		}
		return nil
	}
	return fmt.Errorf("%w: idempotency key %s kept expiring", ErrUnavailable, key)
}

// Package trust keeps the keys of signed history (docs/signing.md): the
// root key whose public half readers pin (--trust FILE), each control
// node's signing key, and the signer set on the event log — a node adds its
// own signer, signed by the root key, when it holds it.
package trust

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/internal/secretfile"
	"github.com/keytrail/keytrail/projections"
)

// The files of a dev data directory.
const (
	RootKeyFile   = "trust.key" // the root's private key
	RootPubFile   = "trust.pub" // what readers pin
	SignerKeyFile = "signer.key"
	// GatewayKeyFile is keytrail dev's gateway's key: it signs checkpoints
	// of the decisions the gateway writes.
	GatewayKeyFile = "gateway.key"
)

// LoadOrCreateKey reads an Ed25519 private key (its seed, base64, on one
// line), creating it (0600) first when it is missing.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	if secretfile.Missing(path) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		if err := secretfile.Create(path, []byte(base64.StdEncoding.EncodeToString(key.Seed())+"\n")); err != nil {
			return nil, fmt.Errorf("trust: %w", err)
		}
	}
	return ReadKey(path)
}

// ReadKey reads a private key file, refusing one others can read.
func ReadKey(path string) (ed25519.PrivateKey, error) {
	b, err := secretfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("trust: %s is not an Ed25519 key (a base64 seed of %d bytes)", path, ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// WritePublic writes a public key (base64, one line) for readers to pin.
func WritePublic(path string, pub ed25519.PublicKey) error {
	return os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(pub)+"\n"), 0o644)
}

// ReadPublic reads a pinned public key (--trust FILE).
func ReadPublic(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	pub, err := ParsePublic(string(b))
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return pub, nil
}

// Signers are the trusted signers the log holds, by id, as they were
// added (their public key, name and role).
func Signers(ctx context.Context, st store.Store) (map[string]events.SignerAddedV1, store.Head, error) {
	h, err := st.Load(ctx, events.SystemTenant, events.TrustAggregate())
	if err != nil {
		return nil, store.Head{}, err
	}
	out := map[string]events.SignerAddedV1{}
	for _, r := range h.Events {
		switch p := r.Data.(type) {
		case events.SignerAddedV1:
			out[p.ID] = p
		case events.SignerRemovedV1:
			delete(out, p.ID)
		}
	}
	return out, h.Head, nil
}

// SignerSet folds the signer set's events from the log, each judged
// against the root key as every reader judges them: a catalog holding the
// set alone (SignersAfter, SignerSpans), and the events it was folded from.
func SignerSet(ctx context.Context, st interface {
	Load(ctx context.Context, tenant string, agg events.Aggregate) (store.History, error)
}, root ed25519.PublicKey) (*projections.Catalog, []events.Recorded, error) {
	h, err := st.Load(ctx, events.SystemTenant, events.TrustAggregate())
	if err != nil {
		return nil, nil, fmt.Errorf("trust: the signer set: %w", err)
	}
	set := projections.NewVerificationCatalog()
	set.SetTrust(root)
	for _, r := range h.Events {
		set.Take(r.Seq, r.Hash, r, nil)
	}
	return set, h.Events, nil
}

// AddSigner adds a signing key of role (events.SignerRoleEvents: a control
// node's; SignerRoleDecisions: a gateway's) to the set, signed by the root
// key, unless it is there already; it returns whether it appended.
func AddSigner(ctx context.Context, st *store.JetStream, root ed25519.PrivateKey, signer ed25519.PublicKey, name, role string) (bool, error) {
	id := events.SignerID(signer)
	have, head, err := Signers(ctx, st)
	if err != nil {
		return false, err
	}
	if p, ok := have[id]; ok {
		if p.SignerRole() != role {
			return false, fmt.Errorf("trust: %s is trusted already, as a signer of %s", id, p.SignerRole())
		}
		return false, nil
	}
	now := time.Now().UTC()
	added := events.SignerAddedV1{ID: id, PublicKey: signer, Name: name}
	reason := "a control node's signing key"
	if role != events.SignerRoleEvents {
		added.Role, reason = role, "a gateway's signing key, for its decisions"
	}
	e := events.Event{ID: ulid.Make().String(), Type: events.SignerAdded, Tenant: events.SystemTenant, Aggregate: events.TrustAggregate(),
		Actor: "keytrail", Reason: reason, OccurredAt: now, CommandID: "signer-" + id,
		Data: added}
	_, err = st.AppendAs(ctx, root, nil, store.Write{Expect: head, Events: []events.Event{e}})
	if err != nil {
		return false, fmt.Errorf("trust: add signer %s: %w", id, err)
	}
	return true, nil
}

// RemoveSigner removes a signer from the set, signed by the root key;
// events it signed before stay valid. The last signer is not removed (no
// event could count after it).
func RemoveSigner(ctx context.Context, st *store.JetStream, root ed25519.PrivateKey, id string) error {
	have, head, err := Signers(ctx, st)
	if err != nil {
		return err
	}
	p, ok := have[id]
	if !ok {
		return fmt.Errorf("trust: %s is not a trusted signer", id)
	}
	n := 0
	for _, q := range have {
		if q.SignerRole() == events.SignerRoleEvents {
			n++
		}
	}
	if p.SignerRole() == events.SignerRoleEvents && n == 1 {
		return fmt.Errorf("trust: %s is the last trusted signer of events; add its successor first", id)
	}
	e := events.Event{ID: ulid.Make().String(), Type: events.SignerRemoved, Tenant: events.SystemTenant, Aggregate: events.TrustAggregate(),
		Actor: "keytrail", Reason: "signer removed", OccurredAt: time.Now().UTC(), CommandID: "signer-removed-" + id,
		Data: events.SignerRemovedV1{ID: id}}
	if _, err := st.AppendAs(ctx, root, nil, store.Write{Expect: head, Events: []events.Event{e}}); err != nil {
		return fmt.Errorf("trust: remove signer %s: %w", id, err)
	}
	return nil
}

// ParsePublic reads a public key given as base64.
func ParsePublic(s string) (ed25519.PublicKey, error) {
	pub, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("trust: not an Ed25519 public key (base64 of %d bytes)", ed25519.PublicKeySize)
	}
	return pub, nil
}

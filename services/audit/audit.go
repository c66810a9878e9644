// Package audit answers, from the event log alone, the questions an auditor
// asks: what happened to this key (History), what would it have been told
// then and because of which events (Explain), does every logged gateway
// decision follow from the history it claims (VerifyDecisions), and is the
// history itself intact (VerifyChain). It reads JetStream directly and
// trusts nothing else: no read model, no control node.
package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/projections"
	"github.com/keytrail/keytrail/services/trust"
)

// ErrNoKey: no key with this id is in the log.
var ErrNoKey = errors.New("audit: no such key")

// Auditor reads one deployment's log.
type Auditor struct {
	st *store.JetStream
	// trust is the pinned root public key (Trusting), nil when none.
	trust ed25519.PublicKey
	// grace: how recently a decision may have been stored and still await
	// its gateway's checkpoint (SignedWithin).
	grace time.Duration
	// judging: the store's reads judge signatures (judgeReads).
	judging bool
}

// New returns an auditor of st's log.
func New(st *store.JetStream) *Auditor { return &Auditor{st: st, grace: PendingGrace} }

// Trusting pins the root public key of signed history: VerifyChain then
// refuses, as readers given it do, every event a trusted signer did not
// sign.
func (a *Auditor) Trusting(root ed25519.PublicKey) *Auditor {
	a.trust = root
	return a
}

// SignedWithin sets how recently a decision may have been stored and
// still await its gateway's checkpoint (default PendingGrace).
func (a *Auditor) SignedWithin(d time.Duration) *Auditor {
	a.grace = d
	return a
}

// catalog is an empty catalog that judges events as the readers given the
// same root do.
func (a *Auditor) catalog() *projections.Catalog {
	c := projections.NewCatalog()
	if a.trust != nil {
		c.SetTrust(a.trust)
	}
	return c
}

// KeyRef locates a key.
type KeyRef struct {
	Tenant, User, ID string
}

// Locate finds a key's tenant and user; tenant may be empty (key ids are
// unique across tenants).
func (a *Auditor) Locate(ctx context.Context, tenant, keyID string) (KeyRef, error) {
	if !events.ValidKeyID(keyID) {
		return KeyRef{}, fmt.Errorf("audit: %q is not a key id", keyID)
	}
	var user string
	var found bool
	var err error
	if tenant == "" {
		tenant, user, found, err = a.st.LocateKey(ctx, keyID)
	} else {
		user, found, err = a.st.FindKey(ctx, tenant, keyID)
	}
	if err != nil {
		return KeyRef{}, err
	}
	if !found {
		return KeyRef{}, fmt.Errorf("%w: %s", ErrNoKey, keyID)
	}
	return KeyRef{Tenant: tenant, User: user, ID: keyID}, nil
}

// History is every event that bears on the key: its own, its user's and
// its tenant's, in stream order — with a root pinned, those that count,
// judged as the readers judge them (an unsigned forgery is not history).
func (a *Auditor) History(ctx context.Context, k KeyRef) ([]events.Recorded, error) {
	if err := a.judgeReads(ctx); err != nil {
		return nil, err
	}
	return store.KeyHistory(ctx, a.st, k.Tenant, k.User, k.ID)
}

// judgeReads makes the store's reads of single aggregates judge
// signatures against the signer set the log holds (once).
func (a *Auditor) judgeReads(ctx context.Context) error {
	if a.trust == nil || a.judging {
		return nil
	}
	set, _, err := trust.SignerSet(ctx, a.st, a.trust)
	if err != nil {
		return err
	}
	a.st.SetVerify(set.TrustedAt)
	a.judging = true
	return nil
}

// Explanation is a decision as of then, the events it rests on, and what
// the key's policies had to do with it (projections.Because).
type Explanation struct {
	Decision projections.Decision
	Evidence []events.Recorded
	Because  []string
}

// Explain re-derives the decision the key would have received as of seq
// (all events when 0) and at (the time of the last event when zero).
func (a *Auditor) Explain(ctx context.Context, k KeyRef, seq uint64, at time.Time) (Explanation, error) {
	history, err := a.History(ctx, k)
	if err != nil {
		return Explanation{}, err
	}
	d, ok := projections.ExplainKey(history, k.Tenant, k.ID, seq, at, nil, "")
	if !ok {
		return Explanation{}, fmt.Errorf("%w: %s did not exist then", ErrNoKey, k.ID)
	}
	x := Explanation{Decision: d, Because: projections.Because(history, &d, nil)}
	bySeq := map[uint64]events.Recorded{}
	for _, r := range history {
		bySeq[r.Seq] = r
	}
	for _, e := range d.Evidence() {
		if r, ok := bySeq[e.Seq()]; ok {
			x.Evidence = append(x.Evidence, r)
		}
	}
	return x, nil
}

package projections

import (
	"errors"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
)

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

const keyA, keyB = "key_01JDQ8Z6W4M2N9V3X5C7B1A0ZY", "key_01JDQ8ZB0000000000000000AB"

// given builds a history of one aggregate: the i-th event at seq i+1 and
// minute i.
func given(agg events.Aggregate, payloads ...events.Payload) []events.Recorded {
	var out []events.Recorded
	for i, p := range payloads {
		out = append(out, events.Recorded{Seq: uint64(i + 1), Event: events.Event{
			Type: p.EventType(), Tenant: "acme", Aggregate: agg, OccurredAt: t0.Add(time.Duration(i) * time.Minute), Data: p,
		}})
	}
	return out
}

func TestTenantFold(t *testing.T) {
	agg := events.TenantAggregate("acme")
	cases := []struct {
		name    string
		history []events.Recorded
		status  TenantStatus
		skipped int
	}{
		{"created", given(agg, events.TenantCreatedV1{Name: "A"}), TenantActive, 0},
		{"suspended", given(agg, events.TenantCreatedV1{Name: "A"}, events.TenantSuspendedV1{}), TenantSuspended, 0},
		{"resumed", given(agg, events.TenantCreatedV1{Name: "A"}, events.TenantSuspendedV1{}, events.TenantResumedV1{}), TenantActive, 0},
		{"suspended before created", given(agg, events.TenantSuspendedV1{}, events.TenantCreatedV1{Name: "A"}), TenantActive, 1},
		{"created twice", given(agg, events.TenantCreatedV1{Name: "A"}, events.TenantCreatedV1{Name: "B"}), TenantActive, 1},
	}
	for _, c := range cases {
		got, skipped := Fold[Tenant](c.history)
		if got.Status != c.status || len(skipped) != c.skipped || got.Name != "A" {
			t.Errorf("%s: %+v, skipped %v", c.name, got, skipped)
		}
		for _, err := range skipped {
			if !errors.Is(err, ErrTransition) {
				t.Errorf("%s: %v", c.name, err)
			}
		}
	}
}

func TestUserFold(t *testing.T) {
	agg := events.UserAggregate("bob")
	before := t0.Add(time.Hour)
	cases := []struct {
		name    string
		history []events.Recorded
		status  UserStatus
		skipped int
	}{
		{"created", given(agg, events.UserCreatedV1{Name: "Bob"}), UserActive, 0},
		{"disabled", given(agg, events.UserCreatedV1{}, events.UserDisabledV1{}), UserDisabled, 0},
		{"enabled", given(agg, events.UserCreatedV1{}, events.UserDisabledV1{}, events.UserEnabledV1{}), UserActive, 0},
		{"deleted is final", given(agg, events.UserCreatedV1{}, events.UserDeletedV1{}, events.UserEnabledV1{}), UserDeleted, 1},
		{"no such user", given(agg, events.UserDisabledV1{}), "", 1},
	}
	for _, c := range cases {
		got, skipped := Fold[User](c.history)
		if got.Status != c.status || len(skipped) != c.skipped {
			t.Errorf("%s: %+v, skipped %v", c.name, got, skipped)
		}
	}
	// keys-revoked-before only moves forward.
	got, _ := Fold[User](given(agg, events.UserCreatedV1{}, events.UserKeysRevokedBeforeV1{Before: before},
		events.UserKeysRevokedBeforeV1{Before: t0}))
	if !got.KeysRevokedBefore.Equal(before) || got.Version != 3 {
		t.Fatalf("keys revoked before %v (version %d), want %v", got.KeysRevokedBefore, got.Version, before)
	}
}

func TestKeyFold(t *testing.T) {
	agg := events.KeyAggregate("bob", keyA)
	exp := t0.Add(24 * time.Hour)
	issued := events.KeyIssuedV1{Name: "ci", SecretHash: events.SecretHash{1}, Hint: "kt_…abcd", Scopes: []string{"a"}, ExpiresAt: &exp}
	cases := []struct {
		name    string
		history []events.Recorded
		status  KeyStatus
		skipped int
	}{
		{"issued", given(agg, issued), KeyActive, 0},
		{"suspended", given(agg, issued, events.KeySuspendedV1{}), KeySuspended, 0},
		{"resumed", given(agg, issued, events.KeySuspendedV1{}, events.KeyResumedV1{}), KeyActive, 0},
		{"revoked is final", given(agg, issued, events.KeyRevokedV1{}, events.KeyResumedV1{}, events.KeyUpdatedV1{Name: "x"}), KeyRevoked, 2},
		{"rotated once", given(agg, issued, events.KeyRotatedV1{Successor: keyB, GraceUntil: t0}, events.KeyRotatedV1{Successor: keyA, GraceUntil: t0}), KeyActive, 1},
		{"no such key", given(agg, events.KeyRevokedV1{}), "", 1},
	}
	for _, c := range cases {
		got, skipped := Fold[Key](c.history)
		if got.Status != c.status || len(skipped) != c.skipped {
			t.Errorf("%s: %+v, skipped %v", c.name, got, skipped)
		}
	}
	got, _ := Fold[Key](given(agg, issued, events.KeyUpdatedV1{Name: "renamed", Scopes: []string{"b"}},
		events.KeyRotatedV1{Successor: keyB, GraceUntil: t0.Add(time.Hour)}))
	if got.Name != "renamed" || got.Scopes[0] != "b" || got.ExpiresAt != nil || got.RotatedTo != keyB ||
		!got.GraceUntil.Equal(t0.Add(time.Hour)) || got.User != "bob" || got.SecretHash != issued.SecretHash || !got.CreatedAt.Equal(t0) {
		t.Fatalf("%+v", got)
	}
}

func TestAPIFold(t *testing.T) {
	agg := events.APIAggregate("orders")
	created := events.APICreatedV1{PathPrefix: "/orders", Upstreams: []string{"http://127.0.0.1:1"}}
	sunset := t0.Add(time.Hour)
	got, skipped := Fold[API](given(agg, created, events.APIDeprecatedV1{Sunset: sunset}, events.APIRetiredV1{},
		events.APIUpdatedV1{PathPrefix: "/x", Upstreams: []string{"http://127.0.0.1:2"}}))
	if got.Status != APIRetired || !got.Sunset.Equal(sunset) || got.PathPrefix != "/orders" || len(skipped) != 1 {
		t.Fatalf("%+v %v", got, skipped)
	}
}

// TestRevokedKeyNeverRevives: whatever follows a revocation, the key stays
// revoked (a property over every sequence of key events up to length 5).
func TestRevokedKeyNeverRevives(t *testing.T) {
	agg := events.KeyAggregate("bob", keyA)
	alphabet := []events.Payload{events.KeySuspendedV1{}, events.KeyResumedV1{}, events.KeyRevokedV1{},
		events.KeyUpdatedV1{Name: "x"}, events.KeyRotatedV1{Successor: keyB, GraceUntil: t0},
		events.KeyIssuedV1{SecretHash: events.SecretHash{2}, Hint: "h"}}
	var walk func(prefix []events.Payload)
	walk = func(prefix []events.Payload) {
		history := given(agg, append([]events.Payload{events.KeyIssuedV1{SecretHash: events.SecretHash{1}, Hint: "h"}}, prefix...)...)
		revoked := false
		state := Key{}
		for _, r := range history {
			state, _ = state.Apply(r)
			if state.Status == KeyRevoked {
				revoked = true
			}
			if revoked && (state.Status != KeyRevoked || state.SecretHash != (events.SecretHash{1})) {
				t.Fatalf("a revoked key changed: %v", prefix)
			}
		}
		if len(prefix) < 5 {
			for _, p := range alphabet {
				walk(append(prefix[:len(prefix):len(prefix)], p))
			}
		}
	}
	walk(nil)
}

package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MaxEventSize bounds one encoded event. The stream's MaxMsgSize is set to it,
// and the decoder refuses anything larger before parsing it.
const MaxEventSize = 64 << 10

// Decoding errors. A *DecodeError wraps one of them.
var (
	// ErrUnknownType: the event names a type this build does not know.
	ErrUnknownType = errors.New("unknown event type")
	// ErrUnknownVersion: the type is known but not at this version, and no
	// upcaster leads from it to the current one.
	ErrUnknownVersion = errors.New("unknown event version")
	// ErrTooLarge: the encoded event exceeds MaxEventSize.
	ErrTooLarge = errors.New("event too large")
	// ErrMalformed: not JSON, unknown or missing fields, or invalid values.
	ErrMalformed = errors.New("malformed event")
)

// DecodeError explains why bytes are not an event.
type DecodeError struct {
	Kind   error // one of the Err* sentinels above
	Detail string
}

func (e *DecodeError) Error() string { return fmt.Sprintf("events: %v: %s", e.Kind, e.Detail) }

// Unwrap lets errors.Is match the sentinel.
func (e *DecodeError) Unwrap() error { return e.Kind }

// TypeVersion names one version of one event type.
type TypeVersion struct {
	Type    Type
	Version int
}

// Upcaster rewrites the payload of an old version into the next version's
// JSON. Stored events are never rewritten: old versions are upcast on read.
type Upcaster func(data json.RawMessage) (json.RawMessage, error)

// Codec encodes and decodes events. The zero Codec knows every current
// version and has no upcasters.
type Codec struct {
	// Upcasters maps a type at version v to a function producing version v+1.
	Upcasters map[TypeVersion]Upcaster

	// versions overrides the current version of a type; tests use it to
	// exercise upcasting before a real second version exists.
	versions map[Type]int
}

func (c Codec) current(t Type, s schema) int {
	if v, ok := c.versions[t]; ok {
		return v
	}
	return s.version
}

// wire is the JSON shape of an event. Field names are stable wire data.
type wire struct {
	ID            string          `json:"id"`
	Type          Type            `json:"type"`
	Version       int             `json:"v"`
	Tenant        string          `json:"tenant"`
	Aggregate     Aggregate       `json:"aggregate"`
	Actor         string          `json:"actor"`
	Reason        string          `json:"reason,omitempty"`
	OccurredAt    time.Time       `json:"occurred_at"`
	CommandID     string          `json:"command_id"`
	CorrelationID string          `json:"correlation_id,omitempty"`
	PrevHash      *Hash           `json:"prev_hash,omitempty"`
	Data          json.RawMessage `json:"data"`
}

// The wire struct is what Encode writes; Decode reads the same shape with the
// strict decoder of jsondec.go.

// Encode validates e and returns its wire form at the current version of its
// type. Times are written in UTC.
func (c Codec) Encode(e *Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("events: encode %s: %w", e.Type, err)
	}
	s, _ := schemaOf(e.Type)
	data, err := json.Marshal(normalizeTimes(e.Data))
	if err != nil {
		return nil, fmt.Errorf("events: encode %s payload: %w", e.Type, err)
	}
	w := wire{
		ID: e.ID, Type: e.Type, Version: s.version, Tenant: e.Tenant, Aggregate: e.Aggregate,
		Actor: e.Actor, Reason: e.Reason, OccurredAt: e.OccurredAt.UTC(), CommandID: e.CommandID,
		CorrelationID: e.CorrelationID, Data: data,
	}
	if !e.PrevHash.IsZero() {
		h := e.PrevHash
		w.PrevHash = &h
	}
	b, err := json.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("events: encode %s: %w", e.Type, err)
	}
	if len(b) > MaxEventSize {
		return nil, fmt.Errorf("events: encode %s: %w (%d bytes)", e.Type, ErrTooLarge, len(b))
	}
	return b, nil
}

// envelope is what decodeEnvelope fills: the event as read so far, with
// Data set when the payload was decoded in place, rawData otherwise.
type envelope struct {
	Event
	hasPrev bool
	rawData []byte
}

// Decode parses and validates an encoded event, upcasting old versions. It
// never panics; any failure is a *DecodeError.
func (c Codec) Decode(b []byte) (Event, error) {
	if len(b) > MaxEventSize {
		return Event{}, &DecodeError{ErrTooLarge, fmt.Sprintf("%d bytes, limit %d", len(b), MaxEventSize)}
	}
	var w envelope
	inPlace := func(t Type) (Payload, int) {
		s, ok := schemaOf(t)
		if !ok {
			return nil, 0
		}
		return s.new(), c.current(t, s)
	}
	if !decodeCanonical(b, &w, inPlace) {
		w = envelope{}
		if err := decodeEnvelope(b, &w, inPlace); err != nil {
			return Event{}, &DecodeError{ErrMalformed, err.Error()}
		}
	}
	s, ok := schemaOf(w.Type)
	if !ok {
		return Event{}, &DecodeError{ErrUnknownType, fmt.Sprintf("%q", w.Type)}
	}
	cur := c.current(w.Type, s)
	if w.Data != nil {
		return c.finish(&w)
	}
	data := w.rawData
	if len(data) == 0 {
		return Event{}, &DecodeError{ErrMalformed, "data is required"}
	}
	if w.Version < 1 || w.Version > cur {
		return Event{}, &DecodeError{ErrUnknownVersion, fmt.Sprintf("%s v%d (current v%d)", w.Type, w.Version, cur)}
	}
	for v := w.Version; v < cur; v++ {
		up, ok := c.Upcasters[TypeVersion{w.Type, v}]
		if !ok {
			return Event{}, &DecodeError{ErrUnknownVersion, fmt.Sprintf("%s v%d: no upcaster to v%d", w.Type, v, v+1)}
		}
		next, err := up(data)
		if err != nil {
			return Event{}, &DecodeError{ErrMalformed, fmt.Sprintf("upcast %s v%d: %v", w.Type, v, err)}
		}
		data = next
	}
	p := s.new()
	if err := decodePayload(data, p); err != nil {
		return Event{}, &DecodeError{ErrMalformed, fmt.Sprintf("%s data: %v", w.Type, err)}
	}
	w.Data = p
	return c.finish(&w)
}

// finish checks and returns the decoded event.
func (c Codec) finish(w *envelope) (Event, error) {
	e := w.Event
	e.Data = deref(e.Data)
	if w.hasPrev && e.PrevHash.IsZero() {
		return Event{}, &DecodeError{ErrMalformed, "prev_hash must be omitted, not zero"}
	}
	if err := e.Validate(); err != nil {
		return Event{}, &DecodeError{ErrMalformed, err.Error()}
	}
	return e, nil
}

// WrittenVersion is the version of t's payload that Encode writes (0 for
// a type it does not know).
func WrittenVersion(t Type) int {
	s, _ := schemaOf(t)
	return s.version
}

// Encode encodes with the zero Codec.
func Encode(e *Event) ([]byte, error) { return Codec{}.Encode(e) }

// Decode decodes with the zero Codec.
func Decode(b []byte) (Event, error) { return Codec{}.Decode(b) }

// deref turns the *T the decoder filled into the T value the rest of the code
// passes around, so that payloads are values and folds cannot alias them.
func deref(p Payload) Payload {
	switch v := p.(type) {
	case *TenantCreatedV1:
		return *v
	case *TenantSuspendedV1:
		return *v
	case *TenantResumedV1:
		return *v
	case *TenantKeysRevokedBeforeV1:
		return *v
	case *TenantNoticesConfiguredV1:
		return *v
	case *UserCreatedV1:
		return *v
	case *UserDisabledV1:
		return *v
	case *UserEnabledV1:
		return *v
	case *UserDeletedV1:
		return *v
	case *UserKeysRevokedBeforeV1:
		return *v
	case *KeyIssuedV1:
		return *v
	case *KeyUpdatedV1:
		return *v
	case *KeySuspendedV1:
		return *v
	case *KeyResumedV1:
		return *v
	case *KeyRevokedV1:
		return *v
	case *KeyRotatedV1:
		return *v
	case *APICreatedV1:
		return *v
	case *APIUpdatedV1:
		return *v
	case *APIDeprecatedV1:
		return *v
	case *APIRetiredV1:
		return *v
	case *WebhookCreatedV1:
		return *v
	case *WebhookUpdatedV1:
		return *v
	case *WebhookSecretRotatedV1:
		return *v
	case *WebhookDisabledV1:
		return *v
	case *WebhookEnabledV1:
		return *v
	case *WebhookDeletedV1:
		return *v
	case *SignerAddedV1:
		return *v
	case *SignerRemovedV1:
		return *v
	case *PolicyCreatedV1:
		return *v
	case *PolicyUpdatedV1:
		return *v
	case *PolicyRetiredV1:
		return *v
	}
	return p
}

// normalizeTimes returns the payload with every time in UTC, so that the same
// event always encodes to the same bytes whatever zone the caller used.
func normalizeTimes(p Payload) Payload {
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	switch v := p.(type) {
	case UserKeysRevokedBeforeV1:
		v.Before = v.Before.UTC()
		return v
	case TenantKeysRevokedBeforeV1:
		v.Before = v.Before.UTC()
		return v
	case KeyIssuedV1:
		v.NotBefore, v.ExpiresAt = utc(v.NotBefore), utc(v.ExpiresAt)
		return v
	case KeyUpdatedV1:
		v.ExpiresAt = utc(v.ExpiresAt)
		return v
	case KeyRotatedV1:
		v.GraceUntil = v.GraceUntil.UTC()
		return v
	case APIDeprecatedV1:
		v.Sunset = v.Sunset.UTC()
		return v
	case WebhookSecretRotatedV1:
		v.PreviousUntil = v.PreviousUntil.UTC()
		return v
	}
	return p
}

package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// referenceDecode is the obvious decoder, built on encoding/json, that the
// hand-written one must agree with.
func referenceDecode(b []byte) (Event, error) {
	strict := func(b []byte, v any) error {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return err
		}
		if _, err := dec.Token(); err != io.EOF {
			return errors.New("trailing data")
		}
		return nil
	}
	var w wire
	if err := strict(b, &w); err != nil {
		return Event{}, err
	}
	s, ok := schemaOf(w.Type)
	if !ok || w.Version != s.version || len(w.Data) == 0 || w.Data[0] != '{' {
		return Event{}, errors.New("bad type, version or data")
	}
	p := s.new()
	if err := strict(w.Data, p); err != nil {
		return Event{}, err
	}
	e := Event{ID: w.ID, Type: w.Type, Version: w.Version, Tenant: w.Tenant, Aggregate: w.Aggregate,
		Actor: w.Actor, Reason: w.Reason, OccurredAt: w.OccurredAt, CommandID: w.CommandID,
		CorrelationID: w.CorrelationID, Data: deref(p)}
	if w.PrevHash != nil {
		e.PrevHash = *w.PrevHash
	}
	return e, e.Validate()
}

// FuzzDecoderAgreesWithEncodingJSON: whatever the strict decoder accepts,
// encoding/json accepts too and reads as the same event.
func FuzzDecoderAgreesWithEncodingJSON(f *testing.F) {
	for _, b := range goldenSeeds(f) {
		f.Add(b)
		// Variants: reordered, spaced, escaped.
		f.Add(bytes.ReplaceAll(b, []byte(`,"`), []byte(` , "`)))
		f.Add(bytes.Replace(b, []byte(`"actor":"`), []byte(`"actor":"\u00e9\n`), 1))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Decode(b)
		if err != nil {
			return
		}
		want, err := referenceDecode(b)
		if err != nil {
			t.Fatalf("strict decoder accepted what encoding/json refuses (%v): %q", err, b)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoders disagree on %q:\n%+v\n%+v", b, got, want)
		}
	})
}

func TestDecoderIsStricterThanEncodingJSON(t *testing.T) {
	e := sample(UserKeysRevokedBefore)
	good, _ := Encode(&e)
	for name, in := range map[string][]byte{
		"duplicate member":     bytes.Replace(good, []byte(`"v":1,`), []byte(`"v":1,"v":1,`), 1),
		"case-folded member":   bytes.Replace(good, []byte(`"tenant"`), []byte(`"Tenant"`), 1),
		"invalid utf-8":        bytes.Replace(good, []byte(`quarterly`), []byte("quart\xffrly"), 1),
		"escaped id":           bytes.Replace(good, []byte(`"tenant":"acme"`), []byte(`"tenant":"acm\u0065"`), 1),
		"null string":          bytes.Replace(good, []byte(`"reason":"quarterly review"`), []byte(`"reason":null`), 1),
		"deep nesting in data": bytes.Replace(good, []byte(`"data":{`), []byte(`"data":{"x":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`,`), 1),
		"fraction as version":  bytes.Replace(good, []byte(`"v":1`), []byte(`"v":1.0`), 1),
		"lone surrogate":       bytes.Replace(good, []byte(`quarterly`), []byte(`\ud800`), 1),
	} {
		if _, err := Decode(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Escapes in free text are fine and read as encoding/json reads them.
	esc := bytes.Replace(good, []byte(`quarterly review`), []byte(`quarterly \"review\" \u00e9\ud83d\ude00 \/`), 1)
	got, err := Decode(esc)
	if err != nil || got.Reason != `quarterly "review" é😀 /` {
		t.Fatalf("escaped reason = %q, %v", got.Reason, err)
	}
}

// TestParseUTCAgreesWithTime: the fast path of time parsing reads exactly
// what time's RFC 3339 parser reads, and leaves the rest to it.
func TestParseUTCAgreesWithTime(t *testing.T) {
	for _, s := range []string{
		"2026-11-29T14:03:00Z", "2026-11-29T14:03:00.1Z", "2026-11-29T14:03:00.123456789Z", "2024-02-29T00:00:00Z",
		"2023-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-12-31T23:59:59.999999999Z", "2026-13-01T00:00:00Z",
		"2026-00-10T00:00:00Z", "2026-01-00T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:60:00Z", "2026-01-01T00:00:60Z",
		"2026-01-01T00:00:00.Z", "2026-01-01T00:00:00.1234567890Z", "2026-01-01T00:00:00+01:00", "2026-1-01T00:00:00Z",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1900-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2026-06-31T00:00:00Z",
		"2026-07-31T00:00:00Z", "2026-08-31T00:00:00Z", "2026-09-31T00:00:00Z", "2026-11-31T00:00:00Z", "2026-01-01t00:00:00z",
	} {
		var want time.Time
		werr := want.UnmarshalJSON([]byte(`"` + s + `"`))
		got, ok := parseUTC([]byte(s))
		if ok && (werr != nil || !got.Equal(want) || got != want) {
			t.Errorf("parseUTC(%q) = %v; time says %v, %v", s, got, want, werr)
		}
	}
}

// FuzzCanonicalAgreesWithGeneral: the fast path accepts only what the
// general decoder accepts, and reads it the same.
func FuzzCanonicalAgreesWithGeneral(f *testing.F) {
	for _, b := range goldenSeeds(f) {
		f.Add(b)
	}
	inPlace := func(t Type) (Payload, int) {
		s, ok := schemaOf(t)
		if !ok {
			return nil, 0
		}
		return s.new(), s.version
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast envelope
		if !decodeCanonical(b, &fast, inPlace) {
			return
		}
		var general envelope
		if err := decodeEnvelope(b, &general, inPlace); err != nil {
			t.Fatalf("fast path accepted what the general decoder refuses (%v): %q", err, b)
		}
		if !reflect.DeepEqual(fast, general) {
			t.Fatalf("paths disagree on %q:\n%+v\n%+v", b, fast, general)
		}
	})
}

func TestCanonicalPathTakesWhatEncodeWrites(t *testing.T) {
	inPlace := func(t Type) (Payload, int) { s, _ := schemaOf(t); return s.new(), s.version }
	for _, typ := range Types() {
		e := sample(typ)
		for _, mutate := range []func(*Event){func(*Event) {}, func(e *Event) { e.Reason, e.CorrelationID, e.PrevHash = "", "", Hash{} }} {
			mutate(&e)
			b, err := Encode(&e)
			if err != nil {
				t.Fatal(err)
			}
			var w envelope
			if !decodeCanonical(b, &w, inPlace) {
				t.Errorf("%s: the fast path refused Encode's output %s", typ, b)
			}
		}
	}
}

package events

import (
	"bytes"
	"unicode/utf8"
)

// decodeCanonical is the fast path of Decode: it reads b only if b has
// exactly the layout Encode writes (members in struct order, no white space,
// no escapes in ids) and reports false at the first byte that differs, for
// the general decoder to read b from the start. It accepts nothing the
// general decoder refuses and reads the same values
// (FuzzCanonicalAgreesWithGeneral): it is a shortcut, never a second grammar.
func decodeCanonical(b []byte, w *envelope, current func(Type) (Payload, int)) bool {
	d := decoder{b: b}
	var ok bool
	if !d.lit(`{"id":"`) {
		return false
	}
	if w.ID, ok = d.plainTo(); !ok || !d.lit(`,"type":"`) {
		return false
	}
	t, ok := d.plainBytes()
	if !ok || !d.lit(`,"v":`) {
		return false
	}
	w.Type = internType(t)
	if w.Version, ok = d.smallInt(); !ok || !d.lit(`,"tenant":"`) {
		return false
	}
	if w.Tenant, ok = d.plainTo(); !ok || !d.lit(`,"aggregate":{"kind":"`) {
		return false
	}
	k, ok := d.plainBytes()
	if !ok || !d.lit(`,"id":"`) {
		return false
	}
	w.Aggregate.Kind = internKind(k)
	if w.Aggregate.ID, ok = d.plainTo(); !ok {
		return false
	}
	if d.lit(`,"user":"`) {
		if w.Aggregate.User, ok = d.plainTo(); !ok {
			return false
		}
	}
	if !d.lit(`},"actor":"`) {
		return false
	}
	if w.Actor, ok = d.textTo(); !ok {
		return false
	}
	if d.lit(`,"reason":"`) {
		if w.Reason, ok = d.textTo(); !ok {
			return false
		}
	}
	if !d.lit(`,"occurred_at":"`) {
		return false
	}
	ts, ok := d.plainBytes()
	if !ok {
		return false
	}
	if w.OccurredAt, ok = parseUTC(ts); !ok || !d.lit(`,"command_id":"`) {
		return false
	}
	if w.CommandID, ok = d.plainTo(); !ok {
		return false
	}
	if d.lit(`,"correlation_id":"`) {
		if w.CorrelationID, ok = d.plainTo(); !ok {
			return false
		}
	}
	if d.lit(`,"prev_hash":"`) {
		h, ok := d.plainBytes()
		if !ok || unhexText(w.PrevHash[:], h, "prev_hash") != nil {
			return false
		}
		w.hasPrev = true
	}
	if !d.lit(`,"data":{`) {
		return false
	}
	d.i-- // the payload decoder reads its own '{'
	p, v := current(w.Type)
	if p == nil || v != w.Version || p.(payloadDecoder).decodeFrom(&d) != nil {
		return false
	}
	w.Data = p
	return d.lit("}") && d.i == len(b)
}

// lit consumes s if the input continues with exactly s.
func (d *decoder) lit(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// plainBytes reads the rest of a string that holds only printable ASCII and
// no escapes, and its closing quote.
func (d *decoder) plainBytes() ([]byte, bool) {
	end := bytes.IndexByte(d.b[d.i:], '"')
	if end < 0 {
		return nil, false
	}
	s := d.b[d.i : d.i+end]
	if special(s, true) {
		return nil, false
	}
	d.i += end + 1
	return s, true
}

func (d *decoder) plainTo() (string, bool) {
	s, ok := d.plainBytes()
	return string(s), ok
}

// textTo reads the rest of a string of valid UTF-8 without escapes.
func (d *decoder) textTo() (string, bool) {
	end := bytes.IndexByte(d.b[d.i:], '"')
	if end < 0 {
		return "", false
	}
	s := d.b[d.i : d.i+end]
	if special(s, false) || !utf8.Valid(s) {
		return "", false
	}
	d.i += end + 1
	return string(s), true
}

// smallInt reads 1 to 4 digits without a leading zero.
func (d *decoder) smallInt() (int, bool) {
	n, start := 0, d.i
	for d.i < len(d.b) && d.i-start < 5 && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		n = n*10 + int(d.b[d.i]-'0')
		d.i++
	}
	if l := d.i - start; l == 0 || l > 4 || d.b[start] == '0' {
		return 0, false
	}
	return n, true
}

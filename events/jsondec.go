package events

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// decoder is a strict JSON reader for the event schema. It exists because a
// replay decodes every event ever written, and encoding/json's reflection
// costs several times the price of reading the message off the stream.
//
// It is stricter than encoding/json: member names match exactly (no case
// folding), a member may appear once, unknown members are refused, and
// strings must be valid UTF-8. Whatever it accepts, encoding/json accepts too
// and decodes to the same values (FuzzDecoderAgreesWithEncodingJSON).
type decoder struct {
	b     []byte
	i     int
	depth int
}

const maxDepth = 32

// special reports whether s holds a byte that ends the fast path of a string:
// a backslash, a control character, or (when asciiOnly) a byte ≥ 0x80. It
// looks at eight bytes at a time.
func special(s []byte, asciiOnly bool) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	high := uint64(0)
	if asciiOnly {
		high = hi
	}
	for len(s) >= 8 {
		w := binary.LittleEndian.Uint64(s)
		ctl := (w - lo*0x20) &^ w & hi // some byte < 0x20
		bs := w ^ (lo * '\\')
		esc := (bs - lo) &^ bs & hi // some byte == '\\'
		if ctl|esc|(w&high) != 0 {
			return true
		}
		s = s[8:]
	}
	for _, c := range s {
		if c < 0x20 || c == '\\' || asciiOnly && c >= 0x80 {
			return true
		}
	}
	return false
}

func (d *decoder) fail(format string, args ...any) error {
	return fmt.Errorf("at offset %d: %s", d.i, fmt.Sprintf(format, args...))
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (d *decoder) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

func (d *decoder) consume(c byte) error {
	if d.peek() != c {
		return d.fail("want %q", c)
	}
	d.i++
	return nil
}

// end checks nothing but white space follows the value.
func (d *decoder) end() error {
	if d.peek() != 0 {
		return d.fail("trailing data after the JSON value")
	}
	return nil
}

// object reads an object, calling member for each name with the decoder
// positioned at its value. seen guards against a name appearing twice: each
// member function marks its field with once.
func (d *decoder) object(member func(name []byte) error) error {
	if err := d.consume('{'); err != nil {
		return err
	}
	d.depth++
	if d.depth > maxDepth {
		return d.fail("nested too deeply")
	}
	defer func() { d.depth-- }()
	if d.peek() == '}' {
		d.i++
		return nil
	}
	for {
		if d.peek() != '"' {
			return d.fail("want a member name")
		}
		name, err := d.rawString()
		if err != nil {
			return err
		}
		if err := d.consume(':'); err != nil {
			return err
		}
		d.ws()
		if err := member(name); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return d.fail("want ',' or '}'")
		}
	}
}

// once marks field bit in seen, failing if it was already marked.
func once(seen *uint32, bit uint, name []byte) error {
	if *seen&(1<<bit) != 0 {
		return fmt.Errorf("member %q appears twice", name)
	}
	*seen |= 1 << bit
	return nil
}

func unknown(name []byte) error { return fmt.Errorf("unknown member %q", name) }

// rawString reads a string without escapes (member names, ids, hashes): the
// fast path. A name with an escape is refused: none of ours needs one.
func (d *decoder) rawString() ([]byte, error) {
	if err := d.consume('"'); err != nil {
		return nil, err
	}
	start := d.i
	end := bytes.IndexByte(d.b[start:], '"')
	if end < 0 {
		d.i = len(d.b)
		return nil, d.fail("unterminated string")
	}
	s := d.b[start : start+end]
	if special(s, true) {
		return nil, d.fail("unexpected character in a name or id")
	}
	d.i = start + end + 1
	return s, nil
}

// str reads any JSON string, unescaping it and checking it is valid UTF-8.
func (d *decoder) str() (string, error) {
	if err := d.consume('"'); err != nil {
		return "", err
	}
	start := d.i
	end := bytes.IndexByte(d.b[start:], '"')
	if end >= 0 {
		s := d.b[start : start+end]
		if !special(s, false) {
			if !utf8.Valid(s) {
				return "", d.fail("invalid UTF-8")
			}
			d.i = start + end + 1
			return string(s), nil
		}
	}
	return d.slowStr()
}

func (d *decoder) slowStr() (string, error) {
	var out []byte
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			if !utf8.Valid(out) {
				return "", d.fail("invalid UTF-8")
			}
			return string(out), nil
		case c < 0x20:
			return "", d.fail("control character in string")
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			break
		}
		e := d.b[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", d.fail("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if d.i+1 < len(d.b) && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
					d.i += 2
					if r2, ok = d.hex4(); !ok {
						return "", d.fail("bad \\u escape")
					}
				}
				if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
					return "", d.fail("unpaired surrogate")
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", d.fail("bad escape")
		}
	}
	return "", d.fail("unterminated string")
}

func (d *decoder) hex4() (rune, bool) {
	if d.i+4 > len(d.b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(d.b[d.i:d.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	d.i += 4
	return rune(v), true
}

// number returns the literal of a JSON number, checked against the grammar.
func (d *decoder) number() ([]byte, error) {
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.b) && d.b[d.i] == '0':
		d.i++
	case d.i < len(d.b) && d.b[d.i] >= '1' && d.b[d.i] <= '9':
		d.digits()
	default:
		return nil, d.fail("want a number")
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if d.digits() == 0 {
			return nil, d.fail("want digits after '.'")
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return nil, d.fail("want digits in the exponent")
		}
	}
	return d.b[start:d.i], nil
}

func (d *decoder) digits() int {
	n := 0
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
		n++
	}
	return n
}

func (d *decoder) int() (int, error) {
	lit, err := d.number()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(string(lit), 10, strconv.IntSize)
	if err != nil {
		return 0, d.fail("want an integer, got %s", lit)
	}
	return int(v), nil
}

func (d *decoder) float() (float64, error) {
	lit, err := d.number()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return 0, d.fail("number %s out of range", lit)
	}
	return v, nil
}

// null consumes a null literal if one is next.
func (d *decoder) null() bool {
	if d.i+4 <= len(d.b) && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

func (d *decoder) time() (time.Time, error) {
	start := d.i
	s, err := d.rawString()
	if err != nil {
		return time.Time{}, err
	}
	if t, ok := parseUTC(s); ok {
		return t, nil
	}
	var t time.Time
	if err := t.UnmarshalJSON(d.b[start:d.i]); err != nil {
		return time.Time{}, d.fail("%v", err)
	}
	return t, nil
}

// parseUTC parses the one shape Encode writes, "2006-01-02T15:04:05Z" with
// an optional fraction of 1 to 9 digits, and reports false for anything else
// (which time's own RFC 3339 parser then reads or refuses). Out-of-range
// fields are refused here as they are there, never normalised.
func parseUTC(s []byte) (time.Time, bool) {
	if len(s) < 20 || s[len(s)-1] != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(s[0:4])
	month, ok2 := num(s[5:7])
	day, ok3 := num(s[8:10])
	hour, ok4 := num(s[11:13])
	minute, ok5 := num(s[14:16])
	sec, ok6 := num(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 ||
		day > daysIn(time.Month(month), year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := s[19 : len(s)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		n, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			n *= 10
		}
		nsec = n
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func daysIn(m time.Month, year int) int {
	if m == time.February {
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	}
	return 31 - int(m-1)%7%2
}

func (d *decoder) timePtr() (*time.Time, error) {
	if d.null() {
		return nil, nil
	}
	t, err := d.time()
	return &t, err
}

// text reads a string into an encoding.TextUnmarshaler such as Hash.
func (d *decoder) text(into interface{ UnmarshalText([]byte) error }) error {
	s, err := d.rawString()
	if err != nil {
		return err
	}
	return into.UnmarshalText(s)
}

func (d *decoder) strings() ([]string, error) {
	if d.null() {
		return nil, nil
	}
	if err := d.consume('['); err != nil {
		return nil, err
	}
	out := []string{}
	if d.peek() == ']' {
		d.i++
		return out, nil
	}
	for {
		if len(out) >= MaxUpstreams+MaxScopes {
			return nil, d.fail("array too long")
		}
		d.ws()
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			return out, nil
		default:
			return nil, d.fail("want ',' or ']'")
		}
	}
}

func (d *decoder) stringMap() (map[string]string, error) {
	if d.null() {
		return nil, nil
	}
	out := map[string]string{}
	err := d.object(func(name []byte) error {
		if len(out) >= MaxMetadata {
			return d.fail("too many members")
		}
		k := string(name)
		if _, dup := out[k]; dup {
			return fmt.Errorf("member %q appears twice", name)
		}
		v, err := d.str()
		out[k] = v
		return err
	})
	return out, err
}

func (d *decoder) rateLimit() (*RateLimit, error) {
	if d.null() {
		return nil, nil
	}
	var r RateLimit
	var seen uint32
	err := d.object(func(name []byte) (err error) {
		switch string(name) {
		case "per_second":
			if err = once(&seen, 0, name); err == nil {
				r.PerSecond, err = d.float()
			}
		case "burst":
			if err = once(&seen, 1, name); err == nil {
				r.Burst, err = d.int()
			}
		default:
			err = unknown(name)
		}
		return err
	})
	return &r, err
}

// skip reads over any JSON value, checking its syntax, and returns it.
func (d *decoder) skip() ([]byte, error) {
	d.ws()
	start := d.i
	var err error
	switch c := d.peek(); {
	case c == '{':
		err = d.object(func([]byte) error {
			_, err := d.skip()
			return err
		})
	case c == '[':
		d.i++
		d.depth++
		if d.depth > maxDepth {
			return nil, d.fail("nested too deeply")
		}
		if d.peek() == ']' {
			d.i++
		} else {
			for err == nil {
				if _, err = d.skip(); err != nil {
					break
				}
				if c := d.peek(); c == ',' {
					d.i++
				} else if c == ']' {
					d.i++
					break
				} else {
					err = d.fail("want ',' or ']'")
				}
			}
		}
		d.depth--
	case c == '"':
		_, err = d.str()
	case c == '-' || c >= '0' && c <= '9':
		_, err = d.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if d.i+len(lit) <= len(d.b) && string(d.b[d.i:d.i+len(lit)]) == lit {
				d.i += len(lit)
				return d.b[start:d.i], nil
			}
		}
		err = d.fail("want a JSON value")
	}
	return d.b[start:d.i], err
}

// idString reads a string that must hold no escapes (ids, types, kinds).
func (d *decoder) idString() (string, error) {
	s, err := d.rawString()
	return string(s), err
}

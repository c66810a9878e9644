package h1

import (
	"io"
	"time"
)

// The grammar of RFC 9110 and 9112 that the server and the client check.

// cutByte splits b around the first sep.
func cutByte(b []byte, sep byte) (before, after []byte, found bool) {
	for i, c := range b {
		if c == sep {
			return b[:i], b[i+1:], true
		}
	}
	return b, nil, false
}

// isToken reports whether b is a token (a method or a header name).
func isToken[T string | []byte](b T) bool {
	if len(b) == 0 {
		return false
	}
	for i := 0; i < len(b); i++ {
		if c := b[i]; c >= 0x80 || !tchar[c] {
			return false
		}
	}
	return true
}

var tchar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// trimOWS trims optional white space (spaces and tabs).
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// validValue reports whether a header value has no control character but
// tab.
func validValue[T string | []byte](v T) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validHost reports whether a Host value is a host with an optional port:
// registered-name, IPv4 or IP-literal characters only (RFC 3986), so that no
// path, user info or white space hides in it.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == '_' || c == '~' || c == ':' || c == '[' || c == ']' || c == '%':
		case c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' || c == '*' || c == '+' || c == ',' || c == ';' || c == '=':
		default:
			return false
		}
	}
	return true
}

// parseLength reads Content-Length values: one or more equal values, each
// 1*DIGIT (no sign, no list, at most 18 digits).
func parseLength(values []string) (int64, bool) {
	v := values[0]
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	for _, other := range values[1:] {
		if other != v {
			return 0, false
		}
	}
	return n, true
}

// unexpected is err, with the end of the input read as a message cut short.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// deadline is a read or write deadline set coarsely: a connection serving
// many requests a second moves it about once a second rather than once a
// request (a system call and a timer each). due says whether it must move
// for a wait of timeout from now: not when the one set is earlier than
// wanted by less than a sixteenth of the timeout (at most a second), so a
// wait is never cut shorter than 15/16 of its timeout.
type deadline struct{ at time.Time }

func (d *deadline) due(timeout time.Duration) (time.Time, bool) {
	t := time.Now().Add(timeout)
	if g := t.Sub(d.at); !d.at.IsZero() && g >= 0 && g < min(timeout/16, time.Second) {
		return t, false
	}
	d.at = t
	return t, true
}

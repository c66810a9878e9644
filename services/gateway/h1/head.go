package h1

import (
	"bufio"
	"errors"
	"net/http"
)

// head reads the heads of messages (a request's or a response's line and
// headers) from one connection, into storage reused from one message to
// the next. Names and values seen before on the connection cost no
// allocation.
type head struct {
	br     *bufio.Reader
	hdr    http.Header
	long   []byte            // a line longer than br's buffer
	pairs  []string          // name, value, name, value… of the head being read
	names  map[string]name   // raw header name → canonical
	seen   uint8             // which framing headers the head has (the bits below)
	values map[string]string // values (and request targets) seen before
	// lines are the header lines of the previous head, parsed: a peer
	// sends much the same lines in the same order each time, and a line
	// equal to the one at its place last time costs a comparison.
	lines []parsedLine
}

// What a connection remembers is bounded (a few KiB at most), so that
// many connections sending ever-different heads cost no more than their
// buffers.
const (
	maxLines, maxLine   = 16, 128 // header lines of the previous head, and their length
	maxNames            = 32      // header names
	maxValues, maxValue = 64, 64  // values and request targets, and their length
	maxFields           = 256     // header lines in one head (more: too large)
	keptFields          = 32      // a head with more leaves no storage behind
)

type parsedLine struct {
	raw, name, value string
	bit              uint8
}

// name is a header name's canonical form, and its bit when it is one of
// the headers that frame a message: a head without them needs no lookup.
type name struct {
	canonical string
	bit       uint8
}

const (
	hasHost uint8 = 1 << iota
	hasConnection
	hasExpect
	hasTransferEncoding
	hasContentLength
)

var framingBits = map[string]uint8{"Host": hasHost, "Connection": hasConnection, "Expect": hasExpect,
	"Transfer-Encoding": hasTransferEncoding, "Content-Length": hasContentLength}

func newHead(br *bufio.Reader) head {
	return head{br: br, hdr: http.Header{}, names: map[string]name{}, values: map[string]string{}}
}

var errLineTooLong = errors.New("h1: line too long")

// errMalformed is a head that breaks the grammar; its text says where.
type errMalformed string

func (e errMalformed) Error() string { return string(e) }

// line reads one line without its line ending, counting its bytes against
// *left. The line is valid until the next read.
func (h *head) line(left *int) ([]byte, error) {
	line, err := h.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		h.long = append(h.long[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(h.long) > *left {
				return nil, errLineTooLong
			}
			line, err = h.br.ReadSlice('\n')
			h.long = append(h.long, line...)
		}
		line = h.long
	}
	if err != nil {
		return nil, err
	}
	if *left -= len(line); *left < 0 {
		return nil, errLineTooLong
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// headers reads header lines up to the empty line into h.hdr (cleared
// first; the values of the previous head stay valid). Obsolete line
// folding, a name that is not a token (white space before the colon
// among them) and control characters in a value are errMalformed.
func (h *head) headers(left *int) error {
	h.pairs = h.pairs[:0]
	h.seen = 0
	for {
		line, err := h.line(left)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		n := len(h.pairs) / 2
		if n >= maxFields {
			return errLineTooLong
		}
		if n < len(h.lines) && h.lines[n].raw == string(line) {
			h.pairs = append(h.pairs, h.lines[n].name, h.lines[n].value)
			h.seen |= h.lines[n].bit
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errMalformed("obsolete line folding in the headers")
		}
		name, value, ok := cutByte(line, ':')
		if !ok || !isToken(name) {
			return errMalformed("malformed header line")
		}
		value = trimOWS(value)
		if !validValue(value) {
			return errMalformed("a control character in header " + http.CanonicalHeaderKey(string(name)))
		}
		nm := h.canonical(name)
		p := parsedLine{name: nm.canonical, value: h.intern(value), bit: nm.bit}
		h.pairs = append(h.pairs, p.name, p.value)
		h.seen |= p.bit
		if n < maxLines && len(line) <= maxLine {
			p.raw = string(line)
			if n < len(h.lines) {
				h.lines[n] = p
			} else if n == len(h.lines) {
				h.lines = append(h.lines, p)
			}
		}
	}
	clear(h.hdr)
	vals := make([]string, len(h.pairs)/2) // one allocation for every value
	for i := 0; i < len(h.pairs); i += 2 {
		k, v := h.pairs[i], h.pairs[i+1]
		if old, ok := h.hdr[k]; ok {
			h.hdr[k] = append(old, v)
			continue
		}
		vals[i/2] = v
		h.hdr[k] = vals[i/2 : i/2+1 : i/2+1]
	}
	return nil
}

// release drops the storage an unusually large head grew, so that an idle
// connection keeps only what an ordinary head needs.
func (h *head) release() {
	if len(h.hdr) > keptFields {
		h.hdr = http.Header{}
	}
	if cap(h.pairs) > 2*keptFields {
		h.pairs = nil
	}
	if cap(h.long) > 4096 {
		h.long = nil
	}
}

// skipTrailer reads the trailer section after a last chunk; trailers are
// not passed on.
func (h *head) skipTrailer(max int) error {
	left := max
	for {
		line, err := h.line(&left)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
	}
}

// canonical returns a header name's canonical form, remembered per
// connection.
func (h *head) canonical(raw []byte) name {
	if n, ok := h.names[string(raw)]; ok {
		return n
	}
	c := http.CanonicalHeaderKey(string(raw))
	n := name{canonical: c, bit: framingBits[c]}
	if len(h.names) < maxNames {
		h.names[string(raw)] = n
	}
	return n
}

// intern returns b as a string, the one seen before on this connection
// when there is one.
func (h *head) intern(b []byte) string {
	if s, ok := h.values[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(h.values) < maxValues && len(b) <= maxValue {
		h.values[s] = s
	}
	return s
}

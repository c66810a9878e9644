package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Transport sends requests to upstreams over pooled HTTP/1.1 connections,
// one exchange at a time on each, on the caller's goroutine.
type Transport struct {
	// Dial opens a connection to an upstream (where the gateway's egress
	// policy lives); default: a net.Dialer with a 5 s timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLS configures connections to https upstreams (nil: the defaults,
	// the host as the server name).
	TLS *tls.Config
	// MaxIdlePerHost bounds the idle connections kept per upstream
	// (default 256); IdleTimeout how long one is kept (default 90 s).
	MaxIdlePerHost int
	IdleTimeout    time.Duration
	// ResponseHeaderTimeout bounds the wait for a response's head after
	// the request is sent (default 30 s).
	ResponseHeaderTimeout time.Duration
	// MaxHeaderBytes bounds a response's line and headers (default 64 KiB).
	MaxHeaderBytes int
	// HandshakeTimeout bounds a TLS handshake with an upstream (default
	// 10 s).
	HandshakeTimeout time.Duration

	mu     sync.Mutex
	idle   map[upstreamKey][]*pconn
	inUse  map[*pconn]struct{}
	closed bool
}

type upstreamKey struct {
	tls  bool
	addr string
}

// Request is a request as it goes upstream.
type Request struct {
	Method string
	// TLS: the upstream is https; Addr is its host:port.
	TLS  bool
	Addr string
	// Target is the request target (path and query).
	Target string
	// Host is the Host header.
	Host string
	// Header is sent but for the names Skip reports (the caller skips the
	// hop-by-hop headers), then Extra (name, value, name, value…).
	// Content-Length and Transfer-Encoding are the transport's.
	Header http.Header
	Skip   Skipper
	Extra  []string
	// Body is nil for none; ContentLength is its length, -1 when unknown
	// (sent chunked).
	Body          io.Reader
	ContentLength int64
}

// Skipper says which of a request's headers are not sent.
type Skipper interface{ Skip(name string) bool }

// Response is an upstream's answer. Its Header (with the upstream's
// Content-Length, without Transfer-Encoding) and Body are the
// connection's: valid until Body is closed, which must be done once.
type Response struct {
	Status int
	Header http.Header
	Body   *ResponseBody
}

// ErrUpgrade is an upstream switching protocols, which the gateway does not
// proxy.
var ErrUpgrade = errors.New("h1: the upstream switched protocols")

// pconn is one upstream connection.
type pconn struct {
	t      *Transport
	key    upstreamKey
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	head   head
	resp   Response
	body   ResponseBody
	idleAt time.Time
	reused bool
	stop   func() bool // stops watching the caller's context
	rd     deadline    // the read deadline set last
}

// deadline moves the read deadline for a wait of timeout (coarsely).
func (pc *pconn) deadline(timeout time.Duration) {
	if t, ok := pc.rd.due(timeout); ok {
		pc.nc.SetReadDeadline(t)
	}
}

func (t *Transport) maxIdle() int {
	if t.MaxIdlePerHost > 0 {
		return t.MaxIdlePerHost
	}
	return 256
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout > 0 {
		return t.IdleTimeout
	}
	return 90 * time.Second
}

// RoundTrip sends req and reads the head of the answer. A connection from
// the pool that turns out closed is replaced once when nothing of the
// request can have been acted on (no body); a failure to connect is a
// *net.OpError whose Op is "dial".
func (t *Transport) RoundTrip(ctx context.Context, req *Request) (*Response, error) {
	key := upstreamKey{req.TLS, req.Addr}
	for attempt := 0; ; attempt++ {
		pc, err := t.get(ctx, key, attempt > 0, req.Body != nil)
		if err != nil {
			return nil, err
		}
		resp, sent, err := pc.exchange(ctx, req)
		if err == nil {
			return resp, nil
		}
		t.done(pc, false)
		if pc.reused && !sent && req.Body == nil && attempt == 0 && ctx.Err() == nil {
			continue // the upstream closed it while it was idle
		}
		return nil, err
	}
}

// get returns an idle connection to key, or a new one. A request with a
// body takes an idle connection only if nothing is waiting to be read on it
// (an upstream that closed it has sent its end): such a request is never
// sent twice, so it must not go out on a connection that is already gone.
func (t *Transport) get(ctx context.Context, key upstreamKey, fresh, body bool) (*pconn, error) {
	if !fresh {
		if pc := t.idleConn(key, body); pc != nil {
			return pc, nil
		}
	}
	dial := t.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	}
	nc, err := dial(ctx, "tcp", key.addr)
	if err != nil {
		return nil, err
	}
	nc = plain(nc)
	if key.tls {
		cfg := &tls.Config{}
		if t.TLS != nil {
			cfg = t.TLS.Clone()
		}
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(key.addr)
			cfg.ServerName = host
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(nc, cfg)
		timeout := t.HandshakeTimeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, &net.OpError{Op: "tls", Net: "tcp", Addr: nc.RemoteAddr(), Err: err}
		}
		nc = tc
	}
	pc := &pconn{t: t, key: key, nc: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 4096)}
	pc.head = newHead(pc.br)
	pc.body.pc = pc
	if !t.use(pc) {
		nc.Close()
		return nil, net.ErrClosed
	}
	return pc, nil
}

// idleConn takes the most recently used idle connection to key that is
// still fresh (and, for a body, still quiet).
func (t *Transport) idleConn(key upstreamKey, body bool) *pconn {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.idle[key]
	for len(list) > 0 {
		pc := list[len(list)-1]
		list = list[:len(list)-1]
		if now.Sub(pc.idleAt) < t.idleTimeout() && (!body || quiet(pc.nc)) {
			t.idle[key] = list
			pc.reused = true
			t.inUse[pc] = struct{}{}
			return pc
		}
		pc.nc.Close()
	}
	if t.idle != nil {
		t.idle[key] = list
	}
	return nil
}

// use records pc as in use; false once the transport is closed.
func (t *Transport) use(pc *pconn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.inUse == nil {
		t.inUse = map[*pconn]struct{}{}
	}
	t.inUse[pc] = struct{}{}
	return true
}

// done forgets pc as in use, and keeps it idle when reuse says so.
func (t *Transport) done(pc *pconn, reuse bool) {
	pc.idleAt = time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.inUse, pc)
	if !reuse || t.closed {
		pc.nc.Close()
		return
	}
	if t.idle == nil {
		t.idle = map[upstreamKey][]*pconn{}
	}
	list := t.idle[pc.key]
	// The oldest go first: they are the likeliest to have been closed.
	for len(list) > 0 && pc.idleAt.Sub(list[0].idleAt) >= t.idleTimeout() {
		list[0].nc.Close()
		list = list[1:]
	}
	if len(list) >= t.maxIdle() {
		pc.nc.Close()
		t.idle[pc.key] = list
		return
	}
	t.idle[pc.key] = append(list, pc)
}

// SweepIdle closes the idle connections kept longer than IdleTimeout (an
// upstream no longer used would otherwise keep them open).
func (t *Transport) SweepIdle(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, list := range t.idle {
		keep := list[:0]
		for _, pc := range list {
			if now.Sub(pc.idleAt) < t.idleTimeout() {
				keep = append(keep, pc)
			} else {
				pc.nc.Close()
			}
		}
		if len(keep) == 0 {
			delete(t.idle, k)
		} else {
			t.idle[k] = keep
		}
	}
}

// Close closes every connection, idle or in use (an exchange in flight
// then fails), and every one opened after.
func (t *Transport) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for k, list := range t.idle {
		for _, pc := range list {
			pc.nc.Close()
		}
		delete(t.idle, k)
	}
	for pc := range t.inUse {
		pc.nc.Close()
	}
}

// exchange writes req and reads the answer's head; sent reports whether any
// of the answer (or of the request's body) has passed, after which the
// request is never sent again.
func (pc *pconn) exchange(ctx context.Context, req *Request) (resp *Response, sent bool, err error) {
	pc.stop = nil
	bw := pc.bw
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(req.Target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(req.Host)
	bw.WriteString("\r\n")
	for k, vs := range req.Header {
		if req.Skip != nil && req.Skip.Skip(k) {
			continue
		}
		for _, v := range vs {
			writeField(bw, k, v)
		}
	}
	for i := 0; i+1 < len(req.Extra); i += 2 {
		writeField(bw, req.Extra[i], req.Extra[i+1])
	}
	switch {
	case req.Body == nil:
		if req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch {
			bw.WriteString("Content-Length: 0\r\n")
		}
	case req.ContentLength >= 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(req.ContentLength, 10))
		bw.WriteString("\r\n")
	default:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
	var werr error
	if req.Body != nil {
		sent = true
		werr = pc.writeBody(req)
	} else if werr = bw.Flush(); werr != nil {
		return nil, false, werr
	}
	timeout := pc.t.ResponseHeaderTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if werr != nil {
		// The body broke off: an answer the upstream already sent (a 413,
		// say) is still worth passing on, but not worth a long wait.
		timeout = min(timeout, time.Second)
	}
	pc.deadline(timeout)
	resp, got, err := pc.readResponse(req)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		if werr != nil && !got {
			err = werr // the upstream went away while the body was sent
		}
		return nil, sent || got, err
	}
	if werr != nil {
		// The upstream answered before it had the whole body: it still
		// waits for the rest, so the connection can never carry another
		// request (what followed would be read as this body's end).
		resp.Body.reuse = false
	}
	if !resp.Body.done && (resp.Body.left < 0 || int64(pc.br.Buffered()) < resp.Body.left) {
		// The body is still to come, for as long as the upstream streams
		// it: no deadline (one already whole in the buffer needs none) —
		// but the caller going away (its client gone, the server closing)
		// ends it, until the body is closed.
		pc.rd = deadline{}
		pc.nc.SetReadDeadline(time.Time{})
		if ctx.Done() != nil {
			pc.stop = context.AfterFunc(ctx, func() { pc.nc.SetDeadline(time.Unix(1, 0)) })
		}
	}
	return resp, true, nil
}

// writeBody streams the request's body to the upstream.
func (pc *pconn) writeBody(req *Request) error {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	var dst io.Writer = pc.bw
	var cw io.WriteCloser
	if req.ContentLength < 0 {
		cw = httputil.NewChunkedWriter(pc.bw)
		dst = cw
	}
	n, err := io.CopyBuffer(dst, req.Body, *bp)
	if err != nil {
		return err
	}
	if req.ContentLength >= 0 && n != req.ContentLength {
		return errors.New("h1: the request body is not its Content-Length")
	}
	if cw != nil {
		cw.Close()
		pc.bw.WriteString("\r\n") // no trailers
	}
	return pc.bw.Flush()
}

// readResponse reads the head of the final answer (interim 1xx answers are
// read past) and sets up its body. got reports whether any byte came.
func (pc *pconn) readResponse(req *Request) (*Response, bool, error) {
	got := false
	max := pc.t.MaxHeaderBytes
	if max <= 0 {
		max = 64 << 10
	}
	for range 8 {
		left := max
		line, err := pc.head.line(&left)
		if err != nil {
			return nil, got || len(pc.head.long) > 0, err
		}
		got = true
		status, minor, ok := parseStatusLine(line)
		if !ok {
			return nil, true, errMalformed("h1: malformed status line from the upstream")
		}
		if err := pc.head.headers(&left); err != nil {
			return nil, true, err
		}
		if status == http.StatusSwitchingProtocols {
			return nil, true, ErrUpgrade
		}
		if status < 200 {
			continue
		}
		h := pc.head.hdr
		b := &pc.body
		*b = ResponseBody{pc: pc, reuse: minor == 1, left: -1}
		seen := pc.head.seen
		if seen&hasConnection == 0 {
			h = nil // no lookup finds anything below
		}
		for _, v := range h["Connection"] {
			if Listed(v, "close") {
				b.reuse = false
				break
			}
			if Listed(v, "keep-alive") {
				b.reuse = true
			}
		}
		h = pc.head.hdr
		var te, cl []string
		var hasTE, hasCL bool
		if seen&hasTransferEncoding != 0 {
			te, hasTE = h["Transfer-Encoding"]
		}
		if seen&hasContentLength != 0 {
			cl, hasCL = h["Content-Length"]
		}
		switch {
		case req.Method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified:
			b.done = true
		case hasTE:
			if minor == 0 {
				// RFC 9112 6.1: the framing of such a message is faulty.
				return nil, true, errMalformed("h1: Transfer-Encoding in an HTTP/1.0 answer from the upstream")
			}
			if len(te) != 1 || !strings.EqualFold(te[len(te)-1], "chunked") {
				return nil, true, errMalformed("h1: unsupported transfer coding from the upstream")
			}
			b.chunked = httputil.NewChunkedReader(pc.br)
			if hasCL {
				b.reuse = false // which one did the upstream mean?
				delete(h, "Content-Length")
			}
		case hasCL:
			n, ok := parseLength(cl)
			if !ok {
				return nil, true, errMalformed("h1: malformed Content-Length from the upstream")
			}
			b.left, b.done = n, n == 0
		default:
			b.reuse = false // the body ends with the connection
		}
		if hasTE {
			delete(h, "Transfer-Encoding")
		}
		pc.resp = Response{Status: status, Header: h, Body: b}
		return &pc.resp, true, nil
	}
	return nil, true, errMalformed("h1: too many interim answers from the upstream")
}

// parseStatusLine reads "HTTP/1.x NNN reason".
func parseStatusLine(line []byte) (status, minor int, ok bool) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
		(len(line) > 12 && line[12] != ' ') {
		return 0, 0, false
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		status = status*10 + int(c-'0')
	}
	return status, int(line[7] - '0'), status >= 100
}

// ResponseBody is an upstream answer's body.
type ResponseBody struct {
	pc      *pconn
	left    int64     // Content-Length bytes still to read; -1: none announced
	chunked io.Reader // the chunked coding's reader, nil otherwise
	done    bool
	reuse   bool
	err     error
}

// Buffered is how many bytes of the body can be read without waiting (a
// proxy flushes to its client when it is 0).
func (b *ResponseBody) Buffered() int { return b.pc.br.Buffered() }

func (b *ResponseBody) Read(p []byte) (int, error) {
	switch {
	case b.done:
		return 0, io.EOF
	case b.err != nil:
		return 0, b.err
	}
	var n int
	var err error
	switch {
	case b.chunked != nil:
		n, err = b.chunked.Read(p)
		if err == io.EOF {
			b.done = true
			if terr := b.pc.head.skipTrailer(64 << 10); terr != nil {
				b.reuse = false
				err = unexpected(terr) // cut short in the trailer
			}
		}
	case b.left >= 0:
		if int64(len(p)) > b.left {
			p = p[:b.left]
		}
		n, err = b.pc.br.Read(p)
		b.left -= int64(n)
		if b.left == 0 {
			b.done, err = true, io.EOF
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	default:
		n, err = b.pc.br.Read(p)
		if err == io.EOF {
			b.done = true
		}
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// Close returns the connection to the pool when the body was read to its
// end and the upstream keeps it alive, and closes it otherwise.
func (b *ResponseBody) Close() error {
	pc := b.pc
	watched := pc.stop == nil || pc.stop()
	pc.head.release()
	pc.t.done(pc, b.done && b.reuse && b.err == nil && watched)
	return nil
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// netConnOf is the TCP connection under a TLS one.
func netConnOf(c net.Conn) (syscall.Conn, bool) {
	if tc, ok := c.(*tls.Conn); ok {
		sc, ok := tc.NetConn().(syscall.Conn)
		return sc, ok
	}
	return nil, false
}

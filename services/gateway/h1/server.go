// Package h1 is the gateway's purpose-built HTTP/1.1: a server that hands
// each request to an http.Handler, and a client that proxies to upstreams
// over pooled keep-alive connections. It exists for throughput: net/http's
// server and Transport spend most of a proxied request's time in their own
// machinery (a background reader per connection, two goroutines and channel
// hand-offs per upstream exchange, a Request and a Header map per request);
// this package parses into per-connection storage and answers on the
// goroutine that read the request. docs/benchmarks.md has the comparison
// that chose it.
//
// The server is strict where leniency lets one reading of a request differ
// from another (request smuggling): no obsolete line folding, no space
// before a header's colon, exactly one Host, Content-Length and
// Transfer-Encoding never together, "chunked" the only transfer coding,
// differing Content-Lengths refused. Only plaintext HTTP/1.0 and 1.1: TLS
// and HTTP/2 stay with net/http, which serves the same handler.
//
// It imports nothing of Keytrail's.
package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves HTTP/1.x on plaintext listeners.
type Server struct {
	// Handler answers each request. The *http.Request and the
	// http.ResponseWriter it is given are the connection's, reused for its
	// next request: neither may be kept after the handler returns.
	Handler http.Handler
	// ReadHeaderTimeout bounds the wait for a request's head once its
	// first byte has arrived (default 10 s); IdleTimeout the wait for the
	// next request on a kept-alive connection (default 2 min).
	ReadHeaderTimeout, IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's line and headers (default 64 KiB).
	MaxHeaderBytes int
	// WriteTimeout bounds how long a client may leave what it was sent
	// unread: each write of an answer, or of a part of a streamed one, must
	// be taken within it (default 60 s).
	WriteTimeout time.Duration
	// BadRequest writes the body of an answer to a request that cannot be
	// parsed (nil: text/plain with the reason).
	BadRequest func(h http.Header, status int, reason string) []byte
	// Log receives panics of the handler (nil: discarded).
	Log *slog.Logger

	once      sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closing   atomic.Bool
	lastDate  atomic.Pointer[dateValue] // the Date header, formatted once a second
}

func (s *Server) init() {
	s.once.Do(func() {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		if s.ReadHeaderTimeout <= 0 {
			s.ReadHeaderTimeout = 10 * time.Second
		}
		if s.IdleTimeout <= 0 {
			s.IdleTimeout = 2 * time.Minute
		}
		if s.MaxHeaderBytes <= 0 {
			s.MaxHeaderBytes = 64 << 10
		}
		if s.WriteTimeout <= 0 {
			s.WriteTimeout = time.Minute
		}
		if s.Log == nil {
			s.Log = slog.New(slog.DiscardHandler)
		}
	})
}

// Serve accepts connections on ln until Shutdown or Close, after which it
// returns http.ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// Out of descriptors, say: wait a little rather than spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-s.ctx.Done():
					t.Stop()
				}
				continue
			}
			return err
		}
		backoff = 0
		c := s.newConn(nc)
		if c == nil {
			nc.Close()
			continue
		}
		go c.serve()
	}
}

// Shutdown stops accepting, closes idle connections, lets requests in
// flight finish (their connections then close) and returns when every
// connection is closed or ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.closing.Store(true)
	s.closeListeners()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.init()
	s.closing.Store(true)
	s.closeListeners()
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.nc.Close()
	}
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		ln.Close()
	}
}

// closeIdle closes the connections waiting for a request and returns how
// many remain.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if !c.active.Load() {
			c.nc.Close()
		}
	}
	return len(s.conns)
}

func (s *Server) newConn(nc net.Conn) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return nil
	}
	nc = plain(nc)
	c := &conn{s: s, nc: nc, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 4096)}
	c.head = newHead(c.br)
	// Requests' context ends with the connection, with Close, and when a
	// client goes away while its answer streams (watch).
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	c.template = (&http.Request{}).WithContext(c.ctx)
	c.remote = nc.RemoteAddr().String()
	c.req = new(http.Request)
	c.w.c = c
	c.w.hdr = http.Header{}
	c.w.buf = make([]byte, 0, 4096)
	s.conns[c] = struct{}{}
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// conn is one client connection and the storage its requests are parsed
// into.
type conn struct {
	s        *Server
	nc       net.Conn
	br       *bufio.Reader
	bw       *bufio.Writer
	active   atomic.Bool
	template *http.Request // carries the server's context
	req      *http.Request
	url      url.URL
	head     head
	body     body
	w        response
	rd       deadline // the read deadline set last
	wd       deadline // the write deadline set last
	remote   string
	ctx      context.Context
	cancel   context.CancelFunc
	// watching: a goroutine waits to read from the client while its answer
	// streams (watch); unwatching stops it.
	watching   bool
	unwatching atomic.Bool
	watched    chan struct{}
}

// writeDeadline gives the client WriteTimeout from now to take what is
// written next (coarsely).
func (c *conn) writeDeadline() {
	if t, ok := c.wd.due(c.s.WriteTimeout); ok {
		c.nc.SetWriteDeadline(t)
	}
}

// watch notices a client that goes away while its answer streams (nothing
// else reads from its connection then): the request's context ends, and
// with it the wait on a quiet upstream. Only once the request's body is
// read: the watcher then owns the reader until unwatch.
func (c *conn) watch() {
	if c.watching || (c.req.Body != http.NoBody && !c.body.done) {
		return
	}
	c.watching = true
	c.unwatching.Store(false)
	c.watched = make(chan struct{})
	go func() {
		defer close(c.watched)
		if _, err := c.br.Peek(1); err != nil && !c.unwatching.Load() {
			c.cancel()
		}
	}()
}

// unwatch stops the watcher after the handler and gives the reader back.
func (c *conn) unwatch() {
	if !c.watching {
		return
	}
	c.unwatching.Store(true)
	c.nc.SetReadDeadline(time.Unix(1, 0))
	<-c.watched
	c.watching = false
	c.rd = deadline{}
	c.deadline(c.s.IdleTimeout) // not the past: a head already buffered is read without a new one
}

// deadline moves the read deadline for a wait of timeout (coarsely).
func (c *conn) deadline(timeout time.Duration) {
	if t, ok := c.rd.due(timeout); ok {
		c.nc.SetReadDeadline(t)
	}
}

// headWhole reports whether br holds a whole head (up to its empty line).
func headWhole(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	// Empty lines before a request line are not its end.
	b = bytes.TrimLeft(b, "\r\n")
	return bytes.Contains(b, crlfcrlf)
}

var crlfcrlf = []byte("\r\n\r\n")

func (c *conn) serve() {
	defer func() {
		// A handler that panics with http.ErrAbortHandler breaks off its
		// response on purpose: closing says so to the client.
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			c.s.Log.Error("gateway handler panicked", "panic", v, "stack", string(debug.Stack()))
		}
		c.unwatch()
		c.cancel()
		c.nc.Close()
		c.s.forget(c)
	}()
	for {
		if c.s.closing.Load() {
			return
		}
		if c.br.Buffered() == 0 {
			c.deadline(c.s.IdleTimeout)
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		c.active.Store(true)
		// A head already whole in the buffer is read without waiting: the
		// header timeout matters only when it is not.
		whole := headWhole(c.br)
		if !whole {
			c.deadline(c.s.ReadHeaderTimeout)
		}
		status, reason, err := c.readRequest()
		if err != nil {
			return
		}
		if status != 0 {
			c.refuse(status, reason)
			c.lingerClose()
			return
		}
		if !whole {
			c.deadline(c.s.IdleTimeout)
		}
		c.w.reset(c.req)
		c.s.Handler.ServeHTTP(&c.w, c.req)
		c.unwatch()
		if c.ctx.Err() != nil {
			return // the client went away
		}
		c.head.release()
		if !c.w.finish() {
			if c.req.Body != http.NoBody && !c.body.done {
				c.lingerClose()
			}
			return
		}
		c.active.Store(false)
	}
}

// lingerClose ends a connection whose client may still be sending: the
// answer is followed by the end of this side's stream, and what the client
// sends meanwhile is read and dropped for a moment, so that the client reads
// the answer instead of a reset for the unread bytes.
func (c *conn) lingerClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.deadline(500 * time.Millisecond)
	io.Copy(io.Discard, io.LimitReader(c.nc, 8<<20))
}

// refuse answers a request that could not be read and closes.
func (c *conn) refuse(status int, reason string) {
	h := http.Header{}
	var body []byte
	if c.s.BadRequest != nil {
		body = c.s.BadRequest(h, status, reason)
	} else {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		body = []byte(strconv.Itoa(status) + " " + http.StatusText(status) + ": " + reason + "\n")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Connection", "close")
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.bw.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	writeHeader(c.bw, h)
	c.bw.WriteString("\r\n")
	c.bw.Write(body)
	c.bw.Flush()
}

// readRequest reads a request's head into c.req. A non-zero status is the
// answer to a request that cannot be served; err is a connection that
// failed or closed.
func (c *conn) readRequest() (status int, reason string, err error) {
	left := c.s.MaxHeaderBytes
	var line []byte
	for range 4 { // empty lines before a request line are ignored (RFC 9112 2.2)
		if line, err = c.head.line(&left); err != nil || len(line) > 0 {
			break
		}
	}
	if err == errLineTooLong {
		return http.StatusRequestURITooLong, "request line too long", nil
	}
	if err != nil {
		return 0, "", err
	}
	method, rest, ok1 := cutByte(line, ' ')
	target, proto, ok2 := cutByte(rest, ' ')
	if !ok1 || !ok2 || len(method) == 0 || len(target) == 0 || !isToken(method) {
		return http.StatusBadRequest, "malformed request line", nil
	}
	minor := 1
	switch string(proto) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		minor = 0
	default:
		if len(proto) == 8 && string(proto[:5]) == "HTTP/" && proto[6] == '.' && '0' <= proto[5] && proto[5] <= '9' {
			return http.StatusHTTPVersionNotSupported, "only HTTP/1.0 and HTTP/1.1", nil
		}
		return http.StatusBadRequest, "malformed request line", nil
	}
	r := c.req
	*r = *c.template
	r.Method = c.head.intern(method)
	r.RequestURI = c.head.intern(target)
	if st, why := c.parseTarget(r.RequestURI); st != 0 {
		return st, why, nil
	}
	r.URL = &c.url
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, minor
	if minor == 0 {
		r.Proto = "HTTP/1.0"
	}
	r.RemoteAddr = c.remote

	switch err := c.head.headers(&left); {
	case err == errLineTooLong:
		return http.StatusRequestHeaderFieldsTooLarge, "request headers too large", nil
	case errors.As(err, new(errMalformed)):
		return http.StatusBadRequest, err.Error(), nil
	case err != nil:
		return 0, "", err
	}
	r.Header = c.head.hdr
	return c.framing(r, minor)
}

// parseTarget reads the request target into c.url.
func (c *conn) parseTarget(target string) (int, string) {
	simple := target[0] == '/'
	for i := 0; simple && i < len(target); i++ {
		if b := target[i]; b <= ' ' || b >= 0x7f || b == '?' || b == '%' || b == '#' {
			simple = false
		}
	}
	if simple {
		c.url = url.URL{Path: target}
		return 0, ""
	}
	if target == "*" {
		c.url = url.URL{Path: "*"}
		return 0, ""
	}
	if strings.IndexByte(target, '#') >= 0 {
		// A fragment is never sent (RFC 9112 3.2); servers disagree on
		// where a path with one ends.
		return http.StatusBadRequest, "a fragment (#) in the request target"
	}
	u, err := url.ParseRequestURI(target)
	if err != nil || (u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https") {
		return http.StatusBadRequest, "malformed request target"
	}
	c.url = *u
	return 0, ""
}

// framing checks the headers that say where the request ends and who it is
// for, and sets the request's body.
func (c *conn) framing(r *http.Request, minor int) (int, string, error) {
	h, seen := r.Header, c.head.seen
	var hosts []string
	if seen&hasHost != 0 {
		hosts = h["Host"]
	}
	switch {
	case len(hosts) > 1:
		return http.StatusBadRequest, "more than one Host header", nil
	case len(hosts) == 0 && minor == 1:
		return http.StatusBadRequest, "missing required Host header", nil
	case len(hosts) == 1 && !validHost(hosts[0]):
		return http.StatusBadRequest, "malformed Host header", nil
	}
	r.Host = ""
	if len(hosts) == 1 {
		r.Host = hosts[0]
	}
	if c.url.Host != "" {
		r.Host = c.url.Host // absolute form wins (RFC 9112 3.2.2)
	}
	r.Close = minor == 0
	if seen&hasConnection != 0 {
		for _, v := range h["Connection"] {
			if Listed(v, "close") {
				r.Close = true
			} else if minor == 0 && Listed(v, "keep-alive") {
				r.Close = false
			}
		}
	}
	expect := false
	if seen&hasExpect != 0 {
		v := h["Expect"]
		if len(v) != 1 || !strings.EqualFold(v[0], "100-continue") {
			return http.StatusExpectationFailed, "only Expect: 100-continue is understood", nil
		}
		expect = minor == 1
	}
	if seen&(hasTransferEncoding|hasContentLength) == 0 {
		c.body = body{c: c}
		r.ContentLength, r.Body = 0, http.NoBody
		return 0, "", nil
	}
	te, hasTE := h["Transfer-Encoding"]
	cl, hasCL := h["Content-Length"]
	c.body = body{c: c, expect: expect}
	switch {
	case hasTE && hasCL:
		return http.StatusBadRequest, "both Transfer-Encoding and Content-Length", nil
	case hasTE:
		if minor == 0 {
			return http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request", nil
		}
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			return http.StatusNotImplemented, "only the chunked transfer coding is understood", nil
		}
		r.ContentLength, r.TransferEncoding = -1, []string{"chunked"}
		c.body.chunked = httputil.NewChunkedReader(c.br)
		r.Body = &c.body
	case hasCL:
		n, ok := parseLength(cl)
		if !ok {
			return http.StatusBadRequest, "malformed Content-Length", nil
		}
		r.ContentLength = n
		r.Body = http.NoBody
		if n > 0 {
			c.body.left = n
			r.Body = &c.body
		}
	default:
		r.ContentLength = 0
		r.Body = http.NoBody
	}
	return 0, "", nil
}

// body reads a request's body from the connection: Content-Length bytes or
// the chunked coding, with "100 Continue" sent before the first read when
// the client waits for it.
type body struct {
	c       *conn
	left    int64     // Content-Length bytes still to read
	chunked io.Reader // the chunked coding's reader, nil otherwise
	expect  bool      // the client waits for 100 Continue
	done    bool      // read to its end
	closed  bool      // the handler closed it
	err     error     // the first error
}

func (b *body) Read(p []byte) (int, error) {
	switch {
	case b.closed:
		return 0, http.ErrBodyReadAfterClose
	case b.done:
		return 0, io.EOF
	case b.err != nil:
		return 0, b.err
	}
	if b.expect {
		b.expect = false
		if !b.c.w.committed {
			b.c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			if err := b.c.bw.Flush(); err != nil {
				b.err = err
				return 0, err
			}
		}
	}
	if b.chunked != nil {
		n, err := b.chunked.Read(p)
		if err == io.EOF {
			b.done = true
			if terr := b.c.head.skipTrailer(b.c.s.MaxHeaderBytes); terr != nil {
				b.err = unexpected(terr)
				return n, b.err
			}
		} else if err != nil {
			b.err = err
		}
		return n, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.c.br.Read(p)
	b.left -= int64(n)
	if b.left == 0 {
		b.done = true
		return n, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

func (b *body) Close() error {
	b.closed = true
	return nil
}

// response is the connection's http.ResponseWriter. A response whose body
// fits its buffer when the handler returns goes with a Content-Length;
// a longer one, or one flushed early, is chunked (HTTP/1.1) or ends with the
// connection (HTTP/1.0).
type response struct {
	c           *conn
	req         *http.Request
	hdr         http.Header
	status      int
	wroteHeader bool
	committed   bool
	chunked     bool
	noBody      bool  // HEAD, 1xx, 204, 304
	length      int64 // the declared Content-Length, -1 when none
	written     int64
	close       bool
	buf         []byte
	err         error
}

func (w *response) reset(r *http.Request) {
	clear(w.hdr)
	*w = response{c: w.c, req: r, hdr: w.hdr, buf: w.buf[:0], length: -1}
}

func (w *response) Header() http.Header { return w.hdr }

func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		code = http.StatusInternalServerError
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// An interim answer (103 Early Hints): sent at once, with the
		// headers set so far.
		w.c.bw.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n")
		writeHeader(w.c.bw, w.hdr)
		w.c.bw.WriteString("\r\n")
		w.c.bw.Flush()
		return
	}
	w.status, w.wroteHeader = code, true
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified || code < 200
	if v := w.hdr.Get("Content-Length"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			w.length = n
		}
	}
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			w.written += int64(len(p)) // the length a GET would have
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	if !w.committed {
		if w.length < 0 && len(w.buf)+len(p) <= cap(w.buf) {
			w.buf = append(w.buf, p...)
			w.written += int64(len(p))
			return len(p), nil
		}
		if err := w.commit(false); err != nil {
			return 0, err
		}
	}
	w.written += int64(len(p))
	return w.send(p)
}

// send writes body bytes after the head.
func (w *response) send(p []byte) (int, error) {
	bw := w.c.bw
	if w.chunked {
		if len(p) == 0 {
			return 0, nil
		}
		bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if err == nil && w.chunked {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.err = err
	}
	return n, err
}

// commit writes the head: with the declared length, the buffered body's
// length when the handler is done (final), or else chunked (or until the
// connection closes), followed by what was buffered.
func (w *response) commit(final bool) error {
	w.committed = true
	w.c.writeDeadline()
	bw := w.c.bw
	r := w.req
	for _, v := range w.hdr["Connection"] {
		if Listed(v, "close") {
			w.close = true
		}
	}
	if r.Close || w.c.s.closing.Load() || (final && r.Body != http.NoBody && !w.c.body.done) {
		// (An unread body ends the connection: say so.)
		w.close = true
	}
	// The Content-Length sent: the handler's; else, once it is done, what
	// it wrote — but never for 1xx and 204, and for HEAD and 304 only one
	// that says something (the length a GET would have).
	length := w.length
	switch {
	case w.status < 200 || w.status == http.StatusNoContent:
		length = -1
	case length >= 0:
	case w.noBody:
		if r.Method == http.MethodHead && final && w.written > 0 {
			length = w.written
		}
	case final:
		length = w.written
	case r.ProtoMinor == 1:
		w.chunked = true
	default:
		w.close = true // HTTP/1.0: the body ends with the connection
	}
	bw.WriteString(statusLine(w.status))
	for _, k := range [...]string{"Content-Length", "Transfer-Encoding", "Connection"} {
		delete(w.hdr, k)
	}
	writeHeader(bw, w.hdr)
	if _, ok := w.hdr["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(w.c.s.date())
		bw.WriteString("\r\n")
	}
	if length >= 0 {
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(length, 10))
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case w.close:
		bw.WriteString("Connection: close\r\n")
	case r.ProtoMinor == 0:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
	if len(w.buf) > 0 && !w.noBody {
		if _, err := w.send(w.buf); err != nil {
			return err
		}
	}
	w.buf = w.buf[:0]
	return w.err
}

// Flush sends the head and what was written so far.
func (w *response) Flush() {
	w.FlushError()
}

// FlushError is Flush with its error (http.ResponseController).
func (w *response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		if err := w.commit(false); err != nil {
			return err
		}
	}
	w.c.writeDeadline()
	if err := w.c.bw.Flush(); err != nil {
		w.err = err
		return err
	}
	w.c.watch()
	return nil
}

// SetReadDeadline and SetWriteDeadline are the connection's
// (http.ResponseController).
func (w *response) SetReadDeadline(t time.Time) error {
	w.c.rd = deadline{at: t}
	return w.c.nc.SetReadDeadline(t)
}
func (w *response) SetWriteDeadline(t time.Time) error {
	w.c.wd = deadline{at: t}
	return w.c.nc.SetWriteDeadline(t)
}

// finish completes the response after the handler and reports whether the
// connection may serve another request.
func (w *response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(true)
	}
	if w.chunked && w.err == nil {
		w.c.bw.WriteString("0\r\n\r\n")
	}
	if w.length >= 0 && w.written < w.length && !w.noBody {
		w.close = true // the body is shorter than announced: only closing tells the client
	}
	if err := w.c.bw.Flush(); err != nil || w.err != nil {
		return false
	}
	b := &w.c.body
	if w.req.Body != http.NoBody && !b.done {
		return false // the rest of the body is unread: where would the next request start?
	}
	return !w.close
}

// writeHeader writes h as header lines; a value's CR, LF or NUL becomes a
// space, so that no value can start a header of its own.
func writeHeader(bw *bufio.Writer, h http.Header) {
	for k, vs := range h {
		for _, v := range vs {
			writeField(bw, k, v)
		}
	}
}

// writeField writes one header line (writeHeader's rule for values).
func writeField(bw *bufio.Writer, name, value string) {
	bw.WriteString(name)
	bw.WriteString(": ")
	if validValue(value) {
		bw.WriteString(value)
	} else {
		bw.WriteString(sanitize(value))
	}
	bw.WriteString("\r\n")
}

// Listed reports whether a comma-separated header value (Connection's)
// lists token, in any case.
func Listed(value, token string) bool {
	for value != "" {
		var item string
		item, value, _ = strings.Cut(value, ",")
		if strings.EqualFold(strings.Trim(item, " \t"), token) {
			return true
		}
	}
	return false
}

func sanitize(v string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == 0 {
			return ' '
		}
		return r
	}, v)
}

// statusLines are the status lines of the codes net/http names, made once
// (a response's line costs no allocation); others are made when needed.
var statusLines = func() (t [600]string) {
	for code := range t {
		if text := http.StatusText(code); text != "" {
			t[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n"
		}
	}
	return t
}()

func statusLine(code int) string {
	if code >= 0 && code < len(statusLines) && statusLines[code] != "" {
		return statusLines[code]
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " status code " + strconv.Itoa(code) + "\r\n"
}

// date is the Date header's value, formatted once a second per server.
func (s *Server) date() string {
	now := time.Now().Unix()
	if d := s.lastDate.Load(); d != nil && d.unix == now {
		return d.text
	}
	d := &dateValue{unix: now, text: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	s.lastDate.Store(d)
	return d.text
}

type dateValue struct {
	unix int64
	text string
}

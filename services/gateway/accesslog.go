package gateway

import (
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// accessLog writes the access log: one JSON line per request, in the shape
// slog's JSON handler gives every other record ({"time", "level", "msg",
// "component", …}), appended by hand because it is on every request's path
// (slog spent about a fifth of the gateway's own time on it). Each line
// goes to w in one Write.
type accessLog struct {
	w      io.Writer
	prefix string // `","level":"INFO","msg":"request","component":…`
}

func newAccessLog(w io.Writer, component string) *accessLog {
	b := []byte(`","level":"INFO","msg":"request"`)
	if component != "" {
		b = append(b, `,"component":`...)
		b = appendJSONString(b, component)
	}
	return &accessLog{w: w, prefix: string(b)}
}

var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// accessEntry is what one line says.
type accessEntry struct {
	at                                                time.Time
	requestID, method, path, code, keyID, tenant, api string
	status                                            int
	seq                                               uint64
	failOpen                                          bool
	duration, upstream                                time.Duration
}

// maxLoggedMethod bounds the method an access-log line shows (the path is
// bounded by maxLoggedPath, as in the decision log): whatever a client
// sends, a line stays under 4 KiB, which a pipe takes in one piece, so that
// gateway workers sharing one stderr never interleave inside a line.
const maxLoggedMethod = 32

func (l *accessLog) write(e *accessEntry) {
	bp := lineBuffers.Get().(*[]byte)
	b := append((*bp)[:0], `{"time":"`...)
	b = e.at.AppendFormat(b, time.RFC3339Nano)
	b = append(b, l.prefix...)
	b = appendField(b, "request_id", e.requestID)
	b = appendField(b, "method", clip(e.method, maxLoggedMethod))
	b = appendField(b, "path", clip(e.path, maxLoggedPath))
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = appendField(b, "code", e.code)
	b = appendField(b, "key_id", e.keyID)
	b = appendField(b, "tenant", e.tenant)
	b = appendField(b, "api", e.api)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, e.seq, 10)
	b = append(b, `,"fail_open":`...)
	b = strconv.AppendBool(b, e.failOpen)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(e.duration.Microseconds())/1000, 'f', -1, 64)
	b = append(b, `,"upstream_ms":`...)
	b = strconv.AppendFloat(b, float64(e.upstream.Microseconds())/1000, 'f', -1, 64)
	b = append(b, "}\n"...)
	l.w.Write(b)
	*bp = b
	lineBuffers.Put(bp)
}

// clip is s's first n bytes.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func appendField(b []byte, key, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendJSONString(b, value)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 as U+FFFD (a client's path
// can hold anything).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

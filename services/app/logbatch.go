package app

import (
	"bytes"
	"io"
	"sync"
	"time"
)

// LogBatch gathers log records (an access log line per request, above
// all) into few writes: one system call per request costs a gateway about
// a tenth of its throughput. A record is never split across writes, and
// records are written in the order they came. A batch is handed to a
// writer goroutine when the next record would not fit, every interval, and
// on Close: a request appends its line and goes on, and never waits for
// the disk — unless the disk has fallen queued batches behind, when writers
// wait for it (memory stays bounded). A process killed with SIGKILL loses at
// most one interval of records and what is queued (nginx's access_log
// buffer= flush= makes the same trade).
type LogBatch struct {
	w     io.Writer
	limit int

	mu     sync.Mutex
	buf    []byte      // the batch being filled
	closed bool        // after Close, records are written at once
	queue  chan []byte // filled batches, in order, for the writer
	free   chan []byte // written batches, for reuse
	done   chan struct{}

	errMu sync.Mutex // not mu: a record waiting for the queue holds mu
	err   error      // the first write error
}

// logFlushEvery is how long a record may wait in a batch.
const logFlushEvery = 100 * time.Millisecond

// logQueued is how many filled batches may wait for the writer before a
// record waits for the disk.
const logQueued = 4

// NewLogBatch is the batch a gateway's log and access log write through:
// 64 KiB, handed to the writer at least every 100 ms. Close it to write
// the rest.
func NewLogBatch(w io.Writer) *LogBatch { return newBatch(w, 64<<10, logFlushEvery) }

func newBatch(w io.Writer, limit int, every time.Duration) *LogBatch {
	b := &LogBatch{w: w, limit: limit, buf: make([]byte, 0, limit),
		queue: make(chan []byte, logQueued), free: make(chan []byte, logQueued+2), done: make(chan struct{})}
	go b.write(every)
	return b
}

// write is the writer: it writes the batches queued, in order, and queues
// the one being filled every interval.
func (b *LogBatch) write(every time.Duration) {
	defer close(b.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case q, ok := <-b.queue:
			if !ok {
				return
			}
			b.out(q)
		case <-t.C:
			// Not Lock: a record waiting for room in the queue holds mu
			// until this goroutine takes a batch from it. Held, the batch
			// goes at the next tick.
			if !b.mu.TryLock() {
				continue
			}
			if len(b.buf) > 0 && !b.closed {
				select {
				case b.queue <- b.buf: // never waits: this goroutine is the queue's reader
					b.buf = b.fresh()
				default: // the queue is full: it is written first
				}
			}
			b.mu.Unlock()
		}
	}
}

// atomicWrite is how much one write may carry for it to reach a pipe
// whole (PIPE_BUF): gateway workers (--workers) share their supervisor's
// stderr, and a longer write into a pipe can interleave with another
// process's.
const atomicWrite = 4096

// out writes one batch — in writes of whole records, none longer than
// atomicWrite unless a record is — and keeps it for reuse.
func (b *LogBatch) out(q []byte) {
	for rest := q; len(rest) > 0; {
		n := len(rest)
		if n > atomicWrite {
			if cut := bytes.LastIndexByte(rest[:atomicWrite], '\n'); cut >= 0 {
				n = cut + 1
			} else if cut := bytes.IndexByte(rest, '\n'); cut >= 0 {
				n = cut + 1 // one record longer than atomicWrite
			}
		}
		if _, err := b.w.Write(rest[:n]); err != nil {
			b.errMu.Lock()
			if b.err == nil {
				b.err = err
			}
			b.errMu.Unlock()
			break
		}
		rest = rest[n:]
	}
	if cap(q) == b.limit {
		select {
		case b.free <- q[:0]:
		default:
		}
	}
}

// fresh is an empty batch.
func (b *LogBatch) fresh() []byte {
	select {
	case q := <-b.free:
		return q
	default:
		return make([]byte, 0, b.limit)
	}
}

// Write adds one record (slog's handlers write each in one call).
func (b *LogBatch) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		<-b.done // after what was queued
		return b.w.Write(p)
	}
	if len(b.buf)+len(p) > b.limit && len(b.buf) > 0 {
		b.queue <- b.buf // waits only when logQueued batches are still unwritten
		b.buf = b.fresh()
	}
	if len(p) > b.limit {
		// A record larger than a batch goes in a batch of its own.
		b.queue <- append([]byte(nil), p...)
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Close writes what is batched and queued, stops the writer and returns
// the first write error. Records written after Close go straight to the
// writer.
func (b *LogBatch) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		<-b.done
		return b.firstErr()
	}
	b.closed = true
	if len(b.buf) > 0 {
		b.queue <- b.buf
		b.buf = nil
	}
	close(b.queue)
	b.mu.Unlock()
	<-b.done
	return b.firstErr()
}

func (b *LogBatch) firstErr() error {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	return b.err
}

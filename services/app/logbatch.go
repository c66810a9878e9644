package app

import (
	"io"
	"sync"
	"time"
)

// LogBatch gathers log records (an access log line per request, above
// all) into few writes: one system call per request costs a gateway about
// a tenth of its throughput. A record is never split across writes; the
// batch is written when the next record would not fit, every interval,
// and on Close. A process killed with SIGKILL loses at most one interval
// of records (nginx's access_log buffer= flush= makes the same trade).
type LogBatch struct {
	w     io.Writer
	limit int

	mu   sync.Mutex
	buf  []byte
	err  error
	stop chan struct{}
	done chan struct{}
}

// logFlushEvery is how long a record may wait in a batch.
const logFlushEvery = 100 * time.Millisecond

// NewLogBatch is the batch a gateway's log and access log write through:
// 64 KiB, written at least every 100 ms. Close it to write the rest.
func NewLogBatch(w io.Writer) *LogBatch { return newBatch(w, 64<<10, logFlushEvery) }

func newBatch(w io.Writer, limit int, every time.Duration) *LogBatch {
	b := &LogBatch{w: w, limit: limit, buf: make([]byte, 0, limit), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.Flush()
			}
		}
	}()
	return b
}

// Write adds one record (slog's handlers write each in one call).
func (b *LogBatch) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > b.limit {
		b.flushLocked()
	}
	if len(p) > b.limit {
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Flush writes what is batched.
func (b *LogBatch) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *LogBatch) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// Close stops the timer and writes what is left.
func (b *LogBatch) Close() error {
	close(b.stop)
	<-b.done
	return b.Flush()
}

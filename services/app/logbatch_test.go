package app

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keytrail/keytrail/internal/testkit"
)

// gatedWriter records each write; while its gate is closed, writes wait.
type gatedWriter struct {
	gate    chan struct{} // closed: writes go through
	entered chan struct{} // a write has started (once)
	once    sync.Once
	mu      sync.Mutex
	writes  [][]byte
	err     error
}

func newGatedWriter(open bool) *gatedWriter {
	w := &gatedWriter{gate: make(chan struct{}), entered: make(chan struct{})}
	if open {
		close(w.gate)
	}
	return w
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.gate
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), w.err
}

func (w *gatedWriter) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(bytes.Join(w.writes, nil))
}

func record(i, size int) []byte {
	r := fmt.Sprintf("record %d ", i)
	return []byte(r + strings.Repeat("x", max(size-len(r)-1, 0)) + "\n")
}

// A request's log line never waits for the disk: with the writer stuck,
// records that fill several batches are still taken at once.
func TestLogBatchWriteNeverWaitsForTheDisk(t *testing.T) {
	w := newGatedWriter(false)
	b := newBatch(w, 100, time.Hour)
	done := make(chan struct{})
	var want bytes.Buffer
	go func() {
		defer close(done)
		for i := range 4 * 100 / 25 { // four batches' worth
			r := record(i, 25)
			want.Write(r)
			b.Write(r)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write waited for a stuck writer")
	}
	<-w.entered // the first batch went to the writer while the others were taken
	close(w.gate)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.all(); got != want.String() {
		t.Fatalf("written:\n%s\nwant:\n%s", got, want.String())
	}
}

// Every write holds whole records, in the order they came, a record larger
// than a batch on its own; what comes after Close goes straight through,
// after everything before it.
func TestLogBatchKeepsRecordsWholeAndInOrder(t *testing.T) {
	w := newGatedWriter(true)
	b := newBatch(w, 100, time.Hour)
	var want bytes.Buffer
	for i := range 200 {
		size := 10 + (i*37)%80
		if i%50 == 7 {
			size = 250 // larger than a batch
		}
		r := record(i, size)
		want.Write(r)
		if n, err := b.Write(r); n != len(r) || err != nil {
			t.Fatal(n, err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	late := record(1000, 20)
	want.Write(late)
	b.Write(late)
	if got := w.all(); got != want.String() {
		t.Fatalf("written:\n%s\nwant:\n%s", got, want.String())
	}
	for _, p := range w.writes {
		if len(p) > 100 && bytes.Count(p, []byte("\n")) != 1 {
			t.Errorf("a write of %d bytes beyond the batch size holds more than one record", len(p))
		}
		if !bytes.HasSuffix(p, []byte("\n")) || !bytes.HasPrefix(p, []byte("record ")) {
			t.Errorf("a write splits a record: %q", p)
		}
	}
	if b.Close() != nil {
		t.Error("a second Close failed")
	}
}

// A record waits no longer than the interval for its batch to be written.
func TestLogBatchWritesEveryInterval(t *testing.T) {
	w := newGatedWriter(true)
	b := newBatch(w, 64<<10, time.Millisecond)
	defer b.Close()
	written := func(want string) func() error {
		return func() error {
			if got := w.all(); got != want {
				return fmt.Errorf("written %q, want %q", got, want)
			}
			return nil
		}
	}
	b.Write([]byte("one\n"))
	testkit.Eventually(t, 10*time.Second, written("one\n"))
	b.Write([]byte("two\n"))
	testkit.Eventually(t, 10*time.Second, written("one\ntwo\n"))
}

// When the disk has fallen a queue of batches behind, writers wait for it:
// memory stays bounded. Nothing is lost.
func TestLogBatchBoundsWhatWaitsForTheDisk(t *testing.T) {
	w := newGatedWriter(false)
	b := newBatch(w, 100, time.Hour)
	// One batch with the writer, logQueued in the queue, one being filled:
	// the record after that waits.
	fits := (logQueued + 2) * 4
	var want bytes.Buffer
	for i := range fits {
		r := record(i, 25)
		want.Write(r)
		b.Write(r)
	}
	<-w.entered
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		r := record(fits, 25)
		b.Write(r)
	}()
	select {
	case <-waited:
		t.Fatal("a record was taken with every batch waiting for the disk")
	case <-time.After(50 * time.Millisecond): // a wait that must not end: bounded, not a sleep for something to happen
	}
	close(w.gate)
	<-waited
	want.Write(record(fits, 25))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.all(); got != want.String() {
		t.Fatalf("written:\n%s\nwant:\n%s", got, want.String())
	}
}

// Close reports the first write error.
func TestLogBatchCloseReportsAWriteError(t *testing.T) {
	w := newGatedWriter(true)
	w.err = errors.New("disk full")
	b := newBatch(w, 100, time.Hour)
	b.Write([]byte("one\n"))
	if err := b.Close(); err == nil || err.Error() != "disk full" {
		t.Fatalf("Close: %v", err)
	}
}

// A batch reaches the writer in writes of whole records no longer than a
// pipe takes whole (atomicWrite), so that processes sharing one stderr pipe
// (gateway workers) never interleave inside a line; a longer record goes
// alone.
func TestLogBatchWritesAPipeTakesWhole(t *testing.T) {
	w := newGatedWriter(true)
	b := newBatch(w, 64<<10, time.Hour)
	var want bytes.Buffer
	for i := range 600 {
		size := 100 + (i*53)%400
		if i == 300 {
			size = atomicWrite + 904
		}
		r := record(i, size)
		want.Write(r)
		b.Write(r)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if got := w.all(); got != want.String() {
		t.Fatal("records lost or out of order")
	}
	long := 0
	for _, p := range w.writes {
		if !bytes.HasSuffix(p, []byte("\n")) || !bytes.HasPrefix(p, []byte("record ")) {
			t.Fatalf("a write splits a record: %q…", p[:min(len(p), 40)])
		}
		if len(p) > atomicWrite {
			long++
			if bytes.Count(p, []byte("\n")) != 1 {
				t.Errorf("a write of %d bytes, more than a pipe takes whole, holds more than one record", len(p))
			}
		}
	}
	if long != 1 {
		t.Errorf("%d writes beyond %d bytes, want the one long record's", long, atomicWrite)
	}
}

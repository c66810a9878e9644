package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
)

// Errors of a stream a node will not run on, or cannot reach.
var (
	// ErrRefused: the event stream is not the history this node knew (gone,
	// rewound, made anew) or is weaker than Keytrail requires. A node that
	// refuses its stream stops applying from it and says so; it never
	// papers over it. *IntegrityError and *WeakStreamError match it.
	ErrRefused = errors.New("store: event stream refused")
	// ErrUnavailable: no server answered for the event stream in time (it
	// is gone, or no server holding it is reachable).
	ErrUnavailable = errors.New("store: the event stream is unavailable")
)

// IntegrityError says why the stream is not the history this node knew.
type IntegrityError struct{ Reason string }

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("store: refusing stream %s: %s", events.StreamName, e.Reason)
}

// Is lets errors.Is(err, ErrRefused) match.
func (e *IntegrityError) Is(target error) bool { return target == ErrRefused }

// Is lets errors.Is(err, ErrRefused) match.
func (e *WeakStreamError) Is(target error) bool { return target == ErrRefused }

// Watermark is what a node knows of the event stream it has seen: the
// highest sequence it saw the stream hold, and when the stream was created.
// A stream with a lower last sequence, or created at another time, is not
// that history, whatever it holds.
type Watermark struct {
	Seq     uint64    `json:"seq"`
	Created time.Time `json:"created"`
}

// readWatermark reads a watermark file; a missing file (or no file) is the
// zero watermark: a node that has seen nothing.
func readWatermark(path string) (Watermark, error) {
	var w Watermark
	if path == "" {
		return w, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return w, nil
	}
	if err != nil {
		return w, fmt.Errorf("store: watermark: %w", err)
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return w, fmt.Errorf("store: watermark %s: %w (remove it only if this node must forget the history it saw)", path, err)
	}
	return w, nil
}

// writeWatermark writes w to path atomically (temp file, fsync, rename).
func writeWatermark(path string, w Watermark) error {
	b, err := json.Marshal(w)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("store: watermark: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.Write(append(b, '\n'))
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		return fmt.Errorf("store: watermark: %w", err)
	}
	return os.Rename(tmp.Name(), path)
}

// judge refuses a stream that is not the history this node knew, or is
// weaker than required, and otherwise raises the watermark to it. seen is
// the watermark as it was before info was asked for: an append
// acknowledged while the question was on its way may be newer than the
// answer, and is no sign of a rewound stream.
func (s *JetStream) judge(info *jetstream.StreamInfo, seen Watermark) error {
	if w := Weaknesses(info.Config, s.cfg); len(w) > 0 && !s.cfg.AcceptWeak {
		return &WeakStreamError{Weaknesses: w}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	wm := s.wm
	if info.State.LastSeq < seen.Seq {
		// A replicated stream's answer may come from a leader deposed by a
		// partition that has not stepped down yet (found by the fault
		// campaign: a gateway refused the stream for good): the same
		// stream behind what this node saw is not trusted, and is refused
		// only when it stays behind for RewindGrace.
		now := s.clock()
		if s.behindSince.IsZero() {
			s.behindSince = now
		}
		behind := fmt.Sprintf("its last sequence is %d, but this node has seen it hold %d", info.State.LastSeq, seen.Seq)
		same := wm.Created.IsZero() || info.Created.Equal(wm.Created)
		if same && info.Config.Replicas > 1 && now.Sub(s.behindSince) < RewindGrace {
			return fmt.Errorf("%w: %s (a replica behind, as in a partition, or a rewind: refused if it lasts %s)", ErrUnavailable, behind, RewindGrace)
		}
		return &IntegrityError{Reason: behind + ": events were removed, or the stream was made anew"}
	}
	if !wm.Created.IsZero() && !info.Created.Equal(wm.Created) {
		return &IntegrityError{Reason: fmt.Sprintf("it was created at %s, but the stream this node knew was created at %s: "+
			"it was deleted and made anew", info.Created.UTC().Format(time.RFC3339Nano), wm.Created.UTC().Format(time.RFC3339Nano))}
	}
	s.behindSince = time.Time{}
	s.wm = Watermark{Seq: max(wm.Seq, info.State.LastSeq), Created: info.Created}
	if s.cfg.WatermarkFile != "" && s.wm != s.saved {
		if err := writeWatermark(s.cfg.WatermarkFile, s.wm); err != nil {
			return err
		}
		s.saved = s.wm
	}
	return nil
}

// RewindGrace is how long a replicated stream may answer with a last
// sequence below what a node has seen before the node refuses it as
// rewound: a deposed leader answers so until it steps down (seconds); a
// rewind lasts.
const RewindGrace = 30 * time.Second

func (s *JetStream) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// observe raises the watermark to an acknowledged append's sequence (it
// reaches the watermark file with the next Check).
func (s *JetStream) observe(seq uint64) {
	s.mu.Lock()
	s.wm.Seq = max(s.wm.Seq, seq)
	s.mu.Unlock()
}

// Watermark is the highest sequence this node has seen the stream hold and
// the stream's creation time.
func (s *JetStream) Watermark() Watermark {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wm
}

// Check looks at the stream as it is now: it returns the stream's last
// sequence, or an error matching ErrRefused when the stream is gone,
// rewound, made anew or weakened since this node saw it.
func (s *JetStream) Check(ctx context.Context) (uint64, error) {
	seen := s.Watermark()
	info, err := s.stream.Info(ctx)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		wm := s.Watermark()
		return 0, &IntegrityError{Reason: fmt.Sprintf("the stream is gone; this node saw it hold %d events", wm.Seq)}
	}
	if err != nil {
		return 0, unavailable("stream info", err)
	}
	if err := s.judge(info, seen); err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// unavailable wraps a failure to reach the stream: no server answered, or
// none in time.
func unavailable(what string, err error) error {
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
	}
	return fmt.Errorf("store: %s: %w", what, err)
}

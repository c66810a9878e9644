package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestRequiredStreamConfigHasNoWeakness(t *testing.T) {
	for _, cfg := range []Config{{}, {Replicas: 1}, {Replicas: 3, Duplicates: time.Hour}} {
		if w := Weaknesses(StreamConfig(cfg), cfg); len(w) != 0 {
			t.Fatalf("%+v: the required config is weak: %v", cfg, w)
		}
	}
	// A reader (zero Config) accepts the replicas and window a control node chose.
	made := StreamConfig(Config{Replicas: 3, Duplicates: time.Minute})
	if w := Weaknesses(made, Config{}); len(w) != 0 {
		t.Fatalf("a reader refuses a safe stream: %v", w)
	}
	if w := Weaknesses(made, Config{Duplicates: DefaultDuplicates}); len(w) != 1 {
		t.Fatalf("a control node asking for a longer window: %v", w)
	}
}

func TestWeaknessesNameEachProblem(t *testing.T) {
	cfg := Config{Replicas: 3, Duplicates: time.Hour}
	cases := map[string]func(*jetstream.StreamConfig){
		"storage is Memory":            func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage },
		"discard policy is DiscardOld": func(c *jetstream.StreamConfig) { c.Discard = jetstream.DiscardOld },
		"retention is":                 func(c *jetstream.StreamConfig) { c.Retention = jetstream.WorkQueuePolicy },
		"max_msgs is 10":               func(c *jetstream.StreamConfig) { c.MaxMsgs = 10 },
		"max_bytes":                    func(c *jetstream.StreamConfig) { c.MaxBytes = 1 << 20 },
		"max_age":                      func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour },
		"max_msgs_per_subject":         func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 1 },
		"max_msg_size":                 func(c *jetstream.StreamConfig) { c.MaxMsgSize = 1024 },
		"deny_delete is off":           func(c *jetstream.StreamConfig) { c.DenyDelete = false },
		"deny_purge is off":            func(c *jetstream.StreamConfig) { c.DenyPurge = false },
		"allow_rollup_hdrs":            func(c *jetstream.StreamConfig) { c.AllowRollup = true },
		"allow_msg_ttl":                func(c *jetstream.StreamConfig) { c.AllowMsgTTL = true },
		"sealed":                       func(c *jetstream.StreamConfig) { c.Sealed = true },
		"no_ack":                       func(c *jetstream.StreamConfig) { c.NoAck = true },
		"persist_mode is async":        func(c *jetstream.StreamConfig) { c.PersistMode = jetstream.AsyncPersistMode },
		"allow_direct is off":          func(c *jetstream.StreamConfig) { c.AllowDirect = false },
		"allow_atomic is off":          func(c *jetstream.StreamConfig) { c.AllowAtomicPublish = false },
		"duplicate window is 2m0s":     func(c *jetstream.StreamConfig) { c.Duplicates = 2 * time.Minute },
		"replicas is 1":                func(c *jetstream.StreamConfig) { c.Replicas = 1 },
		"do not include":               func(c *jetstream.StreamConfig) { c.Subjects = []string{"keytrail.evt.acme.>"} },
		"mirrors or sources":           func(c *jetstream.StreamConfig) { c.Mirror = &jetstream.StreamSource{Name: "X"} },
	}
	for want, mutate := range cases {
		c := StreamConfig(cfg)
		mutate(&c)
		w := Weaknesses(c, cfg)
		if len(w) != 1 || !strings.Contains(w[0], want) {
			t.Errorf("%q: got %v", want, w)
		}
	}
	err := (&WeakStreamError{Weaknesses: []string{"a", "b"}}).Error()
	if !strings.Contains(err, "KEYTRAIL_EVENTS") || !strings.Contains(err, "a; b") {
		t.Fatalf("error %q does not name the stream and its weaknesses", err)
	}
}

// TestAReplicaBehindIsNotARewindAtOnce: the fault campaign (issue 18) saw
// a gateway refuse the event stream for good when, in a partition, a
// deposed leader answered with a last sequence below what the gateway had
// seen. A replicated stream behind the watermark is unavailable, not
// refused, until it has stayed behind for RewindGrace; caught up, it is
// trusted again; a single replica, or a stream made anew, is refused at
// once as before.
func TestAReplicaBehindIsNotARewindAtOnce(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)
	now := t0
	s := &JetStream{now: func() time.Time { return now }}
	s.wm = Watermark{Seq: 10, Created: t0}
	info := func(replicas int, last uint64, created time.Time) *jetstream.StreamInfo {
		return &jetstream.StreamInfo{Config: StreamConfig(Config{Replicas: replicas}), Created: created, State: jetstream.StreamState{LastSeq: last}}
	}
	unavailable := func(err error) bool { return errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrRefused) }
	if err := s.judge(info(3, 8, t0), s.Watermark()); !unavailable(err) {
		t.Fatalf("a replica behind: %v", err)
	}
	now = now.Add(RewindGrace / 2)
	if err := s.judge(info(3, 9, t0), s.Watermark()); !unavailable(err) {
		t.Fatalf("still behind, within the grace: %v", err)
	}
	if err := s.judge(info(3, 12, t0), s.Watermark()); err != nil || s.Watermark().Seq != 12 {
		t.Fatalf("caught up: %v %+v", err, s.Watermark())
	}
	now = now.Add(time.Second)
	if err := s.judge(info(3, 11, t0), s.Watermark()); !unavailable(err) {
		t.Fatalf("behind again, a fresh grace: %v", err)
	}
	now = now.Add(RewindGrace)
	if err := s.judge(info(3, 11, t0), s.Watermark()); !errors.Is(err, ErrRefused) {
		t.Fatalf("behind for the whole grace: %v", err)
	}
	s2 := &JetStream{now: func() time.Time { return now }}
	s2.wm = Watermark{Seq: 10, Created: t0}
	if err := s2.judge(info(1, 8, t0), s2.Watermark()); !errors.Is(err, ErrRefused) {
		t.Fatalf("a single replica behind: %v", err)
	}
	if err := s2.judge(info(3, 8, t0.Add(time.Hour)), s2.Watermark()); !errors.Is(err, ErrRefused) {
		t.Fatalf("a stream made anew: %v", err)
	}
}

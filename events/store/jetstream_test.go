package store

import (
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

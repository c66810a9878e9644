package leakcheck_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keytrail/keytrail/internal/leakcheck"
)

// TestALeftGoroutineIsFound: a goroutine of Keytrail's code still running
// is reported with its stack, and no longer once it has ended.
func TestALeftGoroutineIsFound(t *testing.T) {
	started, release, ended := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go lingering(started, release, ended)
	<-started
	found := false
	for _, g := range leakcheck.Running() {
		found = found || strings.Contains(g, "leakcheck_test.lingering")
	}
	if !found {
		t.Fatalf("a running goroutine was not found:\n%s", strings.Join(leakcheck.Running(), "\n\n"))
	}
	close(release)
	<-ended
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if len(leakcheck.Running()) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond) // poll: the goroutine is returning
	}
	t.Fatalf("still reported after it ended:\n%s", strings.Join(leakcheck.Running(), "\n\n"))
}

func lingering(started, release, ended chan struct{}) {
	close(started)
	<-release
	close(ended)
}

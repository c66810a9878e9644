package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode/natstest"
)

// TestLeaderLossLosesNoAcknowledgedEvent is reliability test (d): on a
// three-node cluster with an R3 stream, the stream leader is shut down while
// writers append; appends resume on the new leader and every acknowledged
// event is there exactly once.
func TestLeaderLossLosesNoAcknowledgedEvent(t *testing.T) {
	rounds := 1
	if os.Getenv("KEYTRAIL_SOAK") != "" {
		rounds = 5
	}
	c := natstest.RunCluster(t, 3)
	nc := c.ConnectAs(t, natsauth.Control)
	s := openStore(t, nc, store.Config{Replicas: 3})
	var acked []ackLine
	for round := 1; round <= rounds; round++ {
		leader := c.StreamLeader(events.StreamName)
		acks, resumed := appendThroughLeaderLoss(t, s, round, func() { c.Stop(leader) })
		t.Logf("round %d: stopped stream leader n%d; every writer resumed within %s; %d acknowledged", round, leader+1, resumed, len(acks))
		acked = append(acked, acks...)
		c.Restart(leader)
		c.WaitReady()
	}
	// Read back through a fresh connection: every acknowledged command is
	// there once, at the sequences it was acknowledged at.
	fresh := natstest.Connect(t, c.URLs(), c.Identity(natsauth.Control))
	all := readAll(t, openStore(t, fresh, store.Config{Replicas: 3}))
	byCmd := map[string][]events.Recorded{}
	for _, r := range all {
		byCmd[r.CommandID] = append(byCmd[r.CommandID], r)
	}
	for _, a := range acked {
		rs := byCmd[a.cmd]
		if len(rs) != 1 || rs[0].Seq != a.first {
			t.Fatalf("acknowledged command %s at seq %d: found %d events", a.cmd, a.first, len(rs))
		}
	}
	checkChains(t, all)
}

// appendThroughLeaderLoss runs writers, calls lose once 100 appends were
// acknowledged, and stops once 100 more were acknowledged after it. It
// returns the acknowledgements and the longest time a writer waited for its
// first acknowledgement after the loss.
func appendThroughLeaderLoss(t *testing.T, s store.Store, round int, lose func()) ([]ackLine, time.Duration) {
	const writers = 4
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var (
		mu       sync.Mutex
		acks     []ackLine
		lostAt   time.Time
		resumed  time.Duration
		afterN   atomic.Int32
		stop     = make(chan struct{})
		reached  = make(chan struct{})
		finished = make(chan struct{})
		wg       sync.WaitGroup
		once     sync.Once
		doneOnce sync.Once
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agg := events.UserAggregate(fmt.Sprintf("r%d-w%d", round, w))
			var head store.Head
			resumedHere := false
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cmd := fmt.Sprintf("r%d-w%d-%d", round, w, i)
				var p events.Payload = events.UserDisabledV1{}
				if i == 0 {
					p = events.UserCreatedV1{}
				}
				ev := storetest.Event("leaderloss", agg, p, cmd)
				// Retry the same command (same id) until it is acknowledged:
				// the store makes the retries idempotent.
				for {
					actx, acancel := context.WithTimeout(ctx, 500*time.Millisecond)
					recs, err := s.Append(actx, head, ev)
					acancel()
					if err == nil {
						head = store.Head{Seq: recs[0].Seq, Hash: recs[0].Hash}
						mu.Lock()
						acks = append(acks, ackLine{cmd, recs[0].Seq, recs[0].Seq})
						n := len(acks)
						if !lostAt.IsZero() && !resumedHere {
							// The stall is the slowest writer's wait.
							resumedHere = true
							resumed = max(resumed, time.Since(lostAt))
						}
						after := !lostAt.IsZero()
						mu.Unlock()
						if n >= 100 {
							once.Do(func() { close(reached) })
						}
						if after && afterN.Add(1) >= 100 {
							doneOnce.Do(func() { close(finished) })
						}
						break
					}
					if errors.Is(err, store.ErrConflict) {
						t.Errorf("writer %d: conflict on its own aggregate: %v", w, err)
						return
					}
					if ctx.Err() != nil {
						return
					}
					wait := time.NewTimer(50 * time.Millisecond)
					select {
					case <-wait.C:
					case <-ctx.Done():
						wait.Stop()
					}
				}
			}
		}()
	}
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal("writers did not reach 100 appends")
	}
	mu.Lock()
	lostAt = time.Now()
	mu.Unlock()
	lose()
	select {
	case <-finished:
	case <-ctx.Done():
		t.Fatalf("appends did not resume after the leader was lost")
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return acks, resumed
}

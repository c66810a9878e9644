package integration

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/events/store/storetest"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/natsnode"
)

const (
	killTenant = "kill"
	killUsers  = 8
)

// embeddedControl starts a node on dir with fresh identities and connects
// to it, in process, as control.
func embeddedControl(name, dir string) (*natsnode.Node, *nats.Conn, error) {
	ids, err := natsauth.NewSet()
	if err != nil {
		return nil, nil, err
	}
	node, err := natsnode.Start(natsnode.Config{Name: name, StoreDir: dir, Listen: "127.0.0.1:0", Users: natsnode.Users(ids)})
	if err != nil {
		return nil, nil, err
	}
	nc, err := node.Connect(ids[natsauth.Control])
	if err != nil {
		node.Shutdown()
		return nil, nil, err
	}
	return node, nc, nil
}

// runAppender is the child: it opens the store in dir with an embedded node
// and appends commands to a few user aggregates, printing one line per
// acknowledged append, "ACK <command> <first seq> <last seq>", until it is
// killed (or, as a bound, after a minute).
func runAppender(dir, round string) int {
	node, nc, err := embeddedControl("appender", dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer node.Shutdown()
	defer nc.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.OpenJetStream(ctx, nc, store.Config{CreateIfMissing: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	heads := make([]store.Head, killUsers)
	for u := range killUsers {
		h, err := s.Load(ctx, killTenant, events.UserAggregate(fmt.Sprintf("u%d", u)))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		heads[u] = h.Head
	}
	// One write(2) per line: a pipe write under PIPE_BUF is atomic, so a kill
	// never leaves half an acknowledgement behind.
	out := os.Stdout
	for i := 0; ctx.Err() == nil && i < 100_000; i++ {
		u := i % killUsers
		agg := events.UserAggregate(fmt.Sprintf("u%d", u))
		n := 1
		if i%5 == 4 {
			n = 3 // every fifth command is an atomic batch
		}
		cmd := fmt.Sprintf("r%s-i%d-n%d", round, i, n)
		evs := make([]events.Event, n)
		for k := range evs {
			var p events.Payload = events.UserDisabledV1{}
			if heads[u].Seq == 0 && k == 0 {
				p = events.UserCreatedV1{Name: "u"}
			} else if k%2 == 1 {
				p = events.UserEnabledV1{}
			}
			evs[k] = storetest.Event(killTenant, agg, p, cmd)
		}
		recs, err := s.Append(ctx, heads[u], evs...)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		last := recs[len(recs)-1]
		heads[u] = store.Head{Seq: last.Seq, Hash: last.Hash}
		fmt.Fprintf(out, "ACK %s %d %d\n", cmd, recs[0].Seq, last.Seq)
	}
	return 0
}

type ackLine struct {
	cmd         string
	first, last uint64
}

func parseAck(line string) (ackLine, error) {
	f := strings.Fields(line)
	if len(f) != 4 || f[0] != "ACK" {
		return ackLine{}, fmt.Errorf("bad line %q", line)
	}
	first, err1 := strconv.ParseUint(f[2], 10, 64)
	last, err2 := strconv.ParseUint(f[3], 10, 64)
	if err1 != nil || err2 != nil {
		return ackLine{}, fmt.Errorf("bad line %q", line)
	}
	return ackLine{f[1], first, last}, nil
}

// TestKillNineLosesNoAcknowledgedEvent is reliability test (c): a child
// process appends with every acknowledgement recorded and is killed with
// SIGKILL at a random moment; after a restart every acknowledged event is
// there exactly once, in order, batches whole or absent, chains intact.
func TestKillNineLosesNoAcknowledgedEvent(t *testing.T) {
	rounds := 4
	if os.Getenv("KEYTRAIL_SOAK") != "" {
		rounds = 40
	}
	dir := t.TempDir()
	var acked []ackLine
	for round := 1; round <= rounds; round++ {
		acked = append(acked, appendUntilKilled(t, dir, round)...)
		checkRecovered(t, dir, acked)
	}
	t.Logf("%d rounds, %d acknowledged commands survived kill -9", rounds, len(acked))
}

func appendUntilKilled(t *testing.T, dir string, round int) []ackLine {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), appenderEnv+"="+dir, appenderRoundEnv+"="+strconv.Itoa(round))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return // EOF; a fragment without its newline was never acknowledged
			}
			lines <- strings.TrimSuffix(line, "\n")
		}
	}()
	killAfter := 20 + rand.IntN(300)
	var acks []ackLine
	deadline := time.After(60 * time.Second)
	killed := false
	for !killed {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("round %d: appender exited before it was killed: %v %s", round, cmd.Wait(), stderr.String())
			}
			a, err := parseAck(line)
			if err != nil {
				t.Fatal(err)
			}
			acks = append(acks, a)
			if len(acks) >= killAfter {
				// A random moment: sometimes right after an ack, sometimes
				// in the middle of the next append or its fsync.
				jitter := time.NewTimer(time.Duration(rand.IntN(3000)) * time.Microsecond)
				<-jitter.C
				cmd.Process.Kill()
				killed = true
			}
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("round %d: only %d acks in 60s: %s", round, len(acks), stderr.String())
		}
	}
	// Lines written before the kill are acknowledged too.
	for line := range lines {
		if a, err := parseAck(line); err == nil {
			acks = append(acks, a)
		}
	}
	cmd.Wait()
	return acks
}

func checkRecovered(t *testing.T, dir string, acked []ackLine) {
	t.Helper()
	node, nc, err := embeddedControl("recovery", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Shutdown()
	defer nc.Close()
	s := openStore(t, nc, store.Config{})
	all := readAll(t, s)
	byCmd := map[string][]events.Recorded{}
	for _, r := range all {
		byCmd[r.CommandID] = append(byCmd[r.CommandID], r)
	}
	// Every command is whole (its n events, contiguous) or absent.
	for cmd, rs := range byCmd {
		n, _ := strconv.Atoi(cmd[strings.LastIndex(cmd, "-n")+2:])
		if len(rs) != n {
			t.Fatalf("command %s has %d of its %d events", cmd, len(rs), n)
		}
		for i := 1; i < len(rs); i++ {
			if rs[i].Seq != rs[i-1].Seq+1 {
				t.Fatalf("command %s is not contiguous", cmd)
			}
		}
	}
	var prev uint64
	for _, a := range acked {
		rs, ok := byCmd[a.cmd]
		if !ok {
			t.Fatalf("acknowledged command %s (seq %d) is lost", a.cmd, a.first)
		}
		if rs[0].Seq != a.first || rs[len(rs)-1].Seq != a.last {
			t.Fatalf("command %s acknowledged at %d..%d, recovered at %d..%d", a.cmd, a.first, a.last, rs[0].Seq, rs[len(rs)-1].Seq)
		}
		if a.first <= prev {
			t.Fatalf("acknowledged order broken at %s", a.cmd)
		}
		prev = a.last
	}
	checkChains(t, all)
}

// readAll reads the whole log until caught up with its last sequence.
func readAll(t *testing.T, s store.Store) []events.Recorded {
	t.Helper()
	ctx := testCtx(t, 60*time.Second)
	last, err := s.LastSeq(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Recorded
	if last == 0 {
		return out
	}
	sub, err := s.Subscribe(ctx, store.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for {
		d, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("reading the log: %v", err)
		}
		if d.Err != nil {
			t.Fatalf("seq %d does not decode: %v", d.Seq, d.Err)
		}
		out = append(out, d.Event)
		if d.Seq >= last {
			return out
		}
	}
}

// checkChains verifies every aggregate's hash chain.
func checkChains(t *testing.T, all []events.Recorded) {
	t.Helper()
	heads := map[string]events.Hash{}
	seen := map[string]bool{}
	for _, r := range all {
		if seen[r.ID] {
			t.Fatalf("event %s appears twice", r.ID)
		}
		seen[r.ID] = true
		if r.PrevHash != heads[r.Subject] {
			t.Fatalf("seq %d on %s does not link to the previous event", r.Seq, r.Subject)
		}
		heads[r.Subject] = r.Hash
	}
}

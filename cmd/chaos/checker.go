package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// report is what a run did and found.
type report struct {
	Seed      uint64         `json:"seed"`
	Duration  string         `json:"duration"`
	Faults    map[string]int `json:"faults"`
	Ops       int            `json:"ops"`
	Acked     int            `json:"acked"`
	Requests  int            `json:"requests"`
	ByCode    map[string]int `json:"by_code"`
	Events    int            `json:"events"`
	Anomalies []string       `json:"anomalies"`
	// UnsignedAtKill are decisions no signed checkpoint names, written by
	// a gateway within 3 s before the nemesis killed it.
	UnsignedAtKill int `json:"unsigned_at_kill"`
	// Exits are processes that exited on their own (restarted by the
	// supervisor): a refusal to start while NATS had no quorum, say.
	Exits      []string     `json:"exits"`
	Partitions availability `json:"availability_during_faults"`
	// ByFault is the same, by kind of fault.
	ByFault  map[string]*availability `json:"availability_by_fault"`
	Recovery []recovery               `json:"recovery"`
}

type availability struct {
	Requests int `json:"requests"`
	Answered int `json:"answered"` // a verdict from the history (not STALE, not unanswered)
	Stale    int `json:"stale"`
	Failed   int `json:"failed"` // no answer (connection refused or timed out)
}

type recovery struct {
	Fault string `json:"fault"`
	// Took is from the heal to the first answer that is not STALE from
	// each gateway it affected (-1: none came).
	Took time.Duration `json:"took"`
}

// exercise runs the workload and the nemesis for d, heals everything,
// waits for the deployment to converge and checks the history.
func (r *run) exercise(ctx context.Context, d time.Duration) (*report, error) {
	up, err := upstream()
	if err != nil {
		return nil, err
	}
	defer up.Close()
	r.w = newWorkload(r)
	if err := r.w.setup(ctx, "http://"+up.Addr().String()); err != nil {
		return nil, fmt.Errorf("workload setup: %w", err)
	}
	r.started = time.Now()
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		rng := rand.New(rand.NewPCG(r.seed, uint64(i)+1))
		go func() { defer wg.Done(); r.w.writer(runCtx, i, rng) }()
	}
	for g := range 3 {
		for j := range 2 {
			wg.Add(1)
			rng := rand.New(rand.NewPCG(r.seed, uint64(100+g*2+j)))
			go func() { defer wg.Done(); r.w.traffic(runCtx, g, rng) }()
		}
	}
	wg.Add(2)
	go func() { defer wg.Done(); r.nemesis(runCtx) }()
	go func() { defer wg.Done(); r.supervise(runCtx) }()
	wg.Wait()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	// Heal: every process running again, every rule gone (the nemesis
	// heals each fault it made; this is the belt to its braces).
	r.net.healAll()
	for _, ps := range [][]*proc{r.nats, r.controls, r.gateways} {
		for _, p := range ps {
			p.signal(syscall.SIGCONT)
			if !p.running() || p.exitedOnItsOwn() {
				p.kill9()
				r.restart(ctx, p)
			}
		}
	}
	if err := r.converge(ctx); err != nil {
		return nil, err
	}
	logf("chaos: converged; checking")
	return r.check(ctx)
}

// supervise restarts, as a service manager would, a process that exited
// on its own (one the nemesis killed is restarted by the nemesis), and
// counts it.
func (r *run) supervise(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, ps := range [][]*proc{r.nats, r.controls, r.gateways} {
			for _, p := range ps {
				if p.exitedOnItsOwn() {
					r.exits = append(r.exits, fmt.Sprintf("%s at %s", p.name, time.Now().Format("15:04:05.000")))
					logf("supervisor: %s exited on its own; restarting it (see %s)", p.name, p.logPath())
					p.kill9()
					r.restart(ctx, p)
				}
			}
		}
	}
}

// converge waits until every control node is ready and every gateway has
// applied the log's last sequence.
func (r *run) converge(ctx context.Context) error {
	var last uint64
	if err := poll(ctx, 2*time.Minute, func() error {
		s, err := r.js.Stream(ctx, "KEYTRAIL_EVENTS")
		if err != nil {
			return err
		}
		last = s.CachedInfo().State.LastSeq
		return nil
	}); err != nil {
		return fmt.Errorf("the stream never answered after the run: %w", err)
	}
	logf("chaos: healed; the log ends at %d; waiting for every node", last)
	for _, p := range r.controls {
		if err := waitHTTP(ctx, "http://"+p.addr+":"+adminPort+"/readyz", 2*time.Minute, p); err != nil {
			return fmt.Errorf("%s not ready after the run: %w", p.name, err)
		}
	}
	logf("chaos: control nodes ready")
	for _, p := range r.gateways {
		url := "http://" + p.addr + ":" + metricsPort + "/metrics"
		if err := poll(ctx, 2*time.Minute, func() error {
			if n := metric(url, "keytrail_gateway_applied_seq"); n < float64(last) {
				return fmt.Errorf("%s applied %v of %d", p.name, n, last)
			}
			// Its decisions' checkpoints stored (kept while NATS was away).
			if n := metric(url, "keytrail_gateway_decisions_unvouched"); n != 0 {
				return fmt.Errorf("%s has %v decisions no stored checkpoint names yet", p.name, n)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// metric reads one unlabelled metric (-1 when it cannot).
func metric(url, name string) float64 {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

// check waits for every gateway to have applied the log, then checks it.
func (r *run) check(ctx context.Context) (*report, error) {
	rep := &report{Seed: r.seed, Duration: time.Since(r.started).Round(time.Second).String(), Faults: map[string]int{}, ByCode: map[string]int{}}
	for _, f := range r.faults {
		rep.Faults[f.Kind]++
	}
	anomaly := func(format string, args ...any) { rep.Anomalies = append(rep.Anomalies, fmt.Sprintf(format, args...)) }
	var log *eventLog
	if err := poll(ctx, time.Minute, func() (err error) {
		log, err = r.readLog(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	rep.Events = len(log.events)
	ops, ans := r.w.ops, r.w.ans
	rep.Ops, rep.Requests = len(ops), len(ans)
	for _, a := range ans {
		rep.ByCode[codeOf(a)]++
	}

	// 1. Every acknowledged write is in the stream, at the sequence it was
	// acknowledged with, once. A write that changed nothing (a suspend of
	// a suspended key) is acknowledged with its object's last sequence,
	// stored before it was sent; one that appended, with its event's.
	appended := map[*op]bool{}
	for _, o := range ops {
		if !o.acked() {
			continue
		}
		rep.Acked++
		e, ok := log.bySeq[o.Seq]
		if !ok {
			anomaly("LOST: %s %s/%s acknowledged at seq %d by control-%d is not in the stream", o.Kind, o.User, o.Key, o.Seq, o.Control+1)
			continue
		}
		want := map[string][]string{"issue": {"key.issued"}, "update": {"key.updated"}, "suspend": {"key.suspended"}, "resume": {"key.resumed"}, "revoke": {"key.revoked"},
			"rotate": {"key.rotated", "key.issued"}, "disable-user": {"user.disabled"}, "enable-user": {"user.enabled"}}[o.Kind]
		objects := []string{o.Key, o.NewKey}
		if strings.HasSuffix(o.Kind, "-user") {
			objects = []string{o.User}
		}
		if !slices.Contains(objects, e.Aggregate.ID) {
			anomaly("WRONG: %s of %s/%s acknowledged at seq %d, which holds %s of %s", o.Kind, o.User, o.Key, o.Seq, e.Type, e.Aggregate.ID)
			continue
		}
		if !e.stored.Before(o.Sent) {
			appended[o] = true
			if !slices.Contains(want, e.Type) {
				anomaly("WRONG: %s of %s/%s acknowledged at seq %d, written then, which holds %s", o.Kind, o.User, o.Key, o.Seq, e.Type)
			}
		}
	}
	// ... and no command's event twice.
	seen := map[string]uint64{}
	for _, e := range log.events {
		k := e.CommandID + "|" + e.Type + "|" + e.Aggregate.ID
		if first, dup := seen[k]; dup && e.CommandID != "" {
			anomaly("TWICE: command %s wrote %s of %s at seq %d and again at %d", e.CommandID, e.Type, e.Aggregate.ID, first, e.seq)
		}
		seen[k] = e.seq
	}
	// 2. Order consistent with acknowledgements: a write (that appended)
	// acknowledged before another was sent comes first in the stream.
	acked := slices.DeleteFunc(slices.Clone(ops), func(o *op) bool { return !appended[o] })
	byDone := slices.Clone(acked)
	sort.Slice(byDone, func(i, j int) bool { return byDone[i].Done.Before(byDone[j].Done) })
	bySent := slices.Clone(acked)
	sort.Slice(bySent, func(i, j int) bool { return bySent[i].Sent.Before(bySent[j].Sent) })
	var maxSeq uint64
	var maxOp *op
	i := 0
	for _, b := range bySent {
		for ; i < len(byDone) && byDone[i].Done.Before(b.Sent); i++ {
			if byDone[i].Seq > maxSeq {
				maxSeq, maxOp = byDone[i].Seq, byDone[i]
			}
		}
		if b.Seq < maxSeq {
			anomaly("ORDER: %s of %s sent after %s of %s was acknowledged (seq %d) is at seq %d", b.Kind, b.Key+b.User, maxOp.Kind, maxOp.Key+maxOp.User, maxSeq, b.Seq)
		}
	}
	// 3. Every aggregate's chain is linear: each event links to the one
	// before it on its subject (no two writers both won).
	for _, why := range log.chainProblems {
		anomaly("CHAIN: %s", why)
	}
	// 4. No VALID for a key after the bound past an acknowledged change
	// that denies it.
	r.checkAnswers(log, ops, ans, anomaly)
	// 5. The deployment's own audits, as an auditor. A decision a gateway
	// wrote in the moment before the nemesis killed it has no signed
	// checkpoint (a known limit, docs/signing.md): counted, not an anomaly.
	for _, cmd := range []string{"verify-chain", "verify-decisions"} {
		out, err := exec.CommandContext(ctx, filepath.Join(r.bin, "keytrail"), "audit", cmd, "-o", "json", "--nats", r.natsURLs,
			"--nats-nkey", filepath.Join(r.dir, "auth", "auditor.nk"), "--trust", filepath.Join(r.dir, "trust.pub")).Output()
		if err == nil {
			continue
		}
		var unexplained []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var m struct {
				Node    string    `json:"node"`
				Now     time.Time `json:"now"`
				Why     string    `json:"why"`
				Problem string    `json:"problem"`
			}
			if json.Unmarshal([]byte(line), &m) != nil || (m.Why == "" && m.Problem == "") {
				continue
			}
			if strings.Contains(m.Why, "written by no gateway") && r.killedGateway(m.Node, m.Now) {
				rep.UnsignedAtKill++
				continue
			}
			unexplained = append(unexplained, line)
		}
		if len(unexplained) > 0 || len(out) == 0 {
			anomaly("AUDIT: keytrail audit %s: %v\n%s", cmd, err, lastLines(strings.Join(unexplained, "\n"), 20))
		}
	}
	// 6. Nothing panicked.
	for _, ps := range [][]*proc{r.nats, r.controls, r.gateways} {
		for _, p := range ps {
			b, _ := os.ReadFile(p.logPath())
			for _, bad := range []string{"panic:", "fatal error:", "DATA RACE"} {
				if strings.Contains(string(b), bad) {
					anomaly("CRASH: %s's log holds %q (%s)", p.name, bad, p.logPath())
				}
			}
		}
	}
	rep.Partitions, rep.ByFault, rep.Recovery = r.availability(ans)
	rep.Exits = r.exits
	return rep, nil
}

// checkAnswers: for each answer VALID for key K sent at t, the gateway must
// have been able to apply, by then, every acknowledged write acknowledged
// before t − maxStaleness (else it answers STALE): so some prefix of the
// log from the last such write on, up to what was stored when the answer
// came, must leave K valid.
func (r *run) checkAnswers(log *eventLog, ops []*op, ans []answer, anomaly func(string, ...any)) {
	type ack struct {
		at  time.Time
		seq uint64
	}
	var acks []ack
	for _, o := range ops {
		if o.acked() {
			acks = append(acks, ack{o.Done, o.Seq})
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].at.Before(acks[j].at) })
	// floor(t): the highest sequence acknowledged before t.
	floors := make([]uint64, len(acks))
	var m uint64
	for i, a := range acks {
		m = max(m, a.seq)
		floors[i] = m
	}
	floor := func(t time.Time) uint64 {
		i := sort.Search(len(acks), func(i int) bool { return !acks[i].at.Before(t) })
		if i == 0 {
			return 0
		}
		return floors[i-1]
	}
	reported := map[string]bool{}
	for _, a := range ans {
		if codeOf(a) != "VALID" {
			continue
		}
		lo := floor(a.Sent.Add(-maxStaleness))
		hi := log.storedBy(a.Done)
		if lo == 0 || log.validSomewhere(a.Key, lo, hi) {
			continue
		}
		k := fmt.Sprintf("%s@gateway-%d", a.Key, a.Gateway+1)
		if reported[k] {
			continue
		}
		reported[k] = true
		anomaly("HONOURED: gateway-%d answered VALID for %s at %s, but every state of the log from seq %d (acknowledged more than %s before) to %d denies it",
			a.Gateway+1, a.Key, a.Sent.Format("15:04:05.000"), lo, maxStaleness, hi)
	}
}

// killedGateway reports whether node (a gateway's name: host-pid) was
// killed by the nemesis within 3 s after t.
func (r *run) killedGateway(node string, t time.Time) bool {
	i := strings.LastIndexByte(node, '-')
	var pid int
	if i < 0 || func() error { _, err := fmt.Sscan(node[i+1:], &pid); return err }() != nil {
		return false
	}
	for _, p := range r.gateways {
		if p.killedAround(pid, t, 3*time.Second) {
			return true
		}
	}
	return false
}

// availability measures the answers of the gateways a fault affected
// while it lasted, and how long after its heal each answered again.
func (r *run) availability(ans []answer) (availability, map[string]*availability, []recovery) {
	var av availability
	byFault := map[string]*availability{}
	var recs []recovery
	for _, f := range r.faults {
		for _, g := range f.Gateways {
			k := byFault[f.Kind]
			if k == nil {
				k = &availability{}
				byFault[f.Kind] = k
			}
			for _, a := range ans {
				if a.Gateway != g || a.Sent.Before(f.Start) || a.Sent.After(f.End) {
					continue
				}
				for _, x := range []*availability{&av, k} {
					x.Requests++
					switch c := codeOf(a); c {
					case "":
						x.Failed++
					case "STALE":
						x.Stale++
					default:
						x.Answered++
					}
				}
			}
			took := time.Duration(-1)
			for _, a := range ans {
				if a.Gateway == g && a.Sent.After(f.End) && codeOf(a) != "" && codeOf(a) != "STALE" {
					took = a.Done.Sub(f.End)
					break
				}
			}
			recs = append(recs, recovery{Fault: f.Kind + " " + f.Target, Took: took})
		}
	}
	return av, byFault, recs
}

func codeOf(a answer) string {
	if a.Status == 0 {
		return ""
	}
	return a.Code
}

// The checker's own reading of the log: a plain ordered consumer and its
// own decoding of the envelope (not the code under test).

type rawEvent struct {
	seq       uint64
	stored    time.Time
	hash      [32]byte
	subject   string
	Type      string `json:"type"`
	Tenant    string `json:"tenant"`
	Aggregate struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
		User string `json:"user"`
	} `json:"aggregate"`
	CommandID string `json:"command_id"`
	PrevHash  string `json:"prev_hash"`
}

type eventLog struct {
	events        []*rawEvent
	bySeq         map[uint64]*rawEvent
	chainProblems []string
	// per key: the sequences at which its state changed and whether it
	// was valid after each
	timeline map[string][]state
}

type state struct {
	seq   uint64
	valid bool
}

func (r *run) readLog(ctx context.Context) (*eventLog, error) {
	// Message by message, by sequence from the stream's leader: the
	// plainest read there is.
	str, err := r.js.Stream(ctx, "KEYTRAIL_EVENTS")
	if err != nil {
		return nil, fmt.Errorf("read the log: %w", err)
	}
	first, last := str.CachedInfo().State.FirstSeq, str.CachedInfo().State.LastSeq
	l := &eventLog{bySeq: map[uint64]*rawEvent{}, timeline: map[string][]state{}}
	heads := map[string]string{}
	type keyState struct {
		user                 string
		active, revoked, has bool
	}
	keys := map[string]*keyState{}
	disabled := map[string]bool{}
	record := func(seq uint64, id string) {
		k := keys[id]
		l.timeline[id] = append(l.timeline[id], state{seq, k.has && k.active && !k.revoked && !disabled[k.user]})
	}
	for seq := first; seq <= last && seq > 0; seq++ {
		var m *jetstream.RawStreamMsg
		if err := poll(ctx, 30*time.Second, func() (err error) {
			m, err = str.GetMsg(ctx, seq)
			return err
		}); err != nil {
			return nil, fmt.Errorf("read the log at seq %d of %d: %w", seq, last, err)
		}
		data := m.Data
		e := &rawEvent{seq: m.Sequence, stored: m.Time, hash: sha256.Sum256(data), subject: m.Subject}
		if err := json.Unmarshal(data, e); err != nil {
			l.chainProblems = append(l.chainProblems, fmt.Sprintf("seq %d is not JSON: %v", e.seq, err))
			continue
		}
		l.events = append(l.events, e)
		l.bySeq[e.seq] = e
		if want := heads[e.subject]; e.PrevHash != want && !(want == "" && e.PrevHash == strings.Repeat("0", 64)) {
			l.chainProblems = append(l.chainProblems, fmt.Sprintf("seq %d %s on %s links to %.12s…, the subject's last event is %.12s…", e.seq, e.Type, e.subject, e.PrevHash, want))
		}
		heads[e.subject] = fmt.Sprintf("%x", e.hash)
		if e.Tenant != tenant {
			continue
		}
		switch e.Type {
		case "key.issued":
			keys[e.Aggregate.ID] = &keyState{user: e.Aggregate.User, active: true, has: true}
			record(e.seq, e.Aggregate.ID)
		case "key.suspended", "key.resumed", "key.revoked":
			k := keys[e.Aggregate.ID]
			if k == nil {
				continue
			}
			switch e.Type {
			case "key.suspended":
				k.active = false
			case "key.resumed":
				k.active = true
			default:
				k.revoked = true
			}
			record(e.seq, e.Aggregate.ID)
		case "user.disabled", "user.enabled":
			disabled[e.Aggregate.ID] = e.Type == "user.disabled"
			for id, k := range keys {
				if k.user == e.Aggregate.ID {
					record(e.seq, id)
				}
			}
		}
	}
	return l, nil
}

// storedBy is the highest sequence the stream held by t.
func (l *eventLog) storedBy(t time.Time) uint64 {
	i := sort.Search(len(l.events), func(i int) bool { return l.events[i].stored.After(t) })
	if i == 0 {
		return 0
	}
	return l.events[i-1].seq
}

// validSomewhere reports whether key is valid after some prefix of the log
// ending between lo and hi.
func (l *eventLog) validSomewhere(key string, lo, hi uint64) bool {
	tl := l.timeline[key]
	valid := false // before its key.issued
	for _, s := range tl {
		if s.seq > hi {
			break
		}
		if s.seq <= lo {
			valid = s.valid
			continue
		}
		if s.valid {
			return true
		}
	}
	return valid
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// upstream is the APIs' upstream: 200 with a small body, on its own address.
func upstream() (net.Listener, error) {
	ln, err := net.Listen("tcp", upstreamAddr+":0")
	if err != nil {
		return nil, err
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	return ln, nil
}

// print writes the report for people.
func (rep *report) print(w io.Writer) {
	n := 0
	for _, c := range rep.Faults {
		n += c
	}
	fmt.Fprintf(w, "seed %d, %s: %d faults %v\n", rep.Seed, rep.Duration, n, rep.Faults)
	fmt.Fprintf(w, "%d writes (%d acknowledged), %d events in the stream, %d requests %v\n", rep.Ops, rep.Acked, rep.Events, rep.Requests, rep.ByCode)
	a := rep.Partitions
	if a.Requests > 0 {
		fmt.Fprintf(w, "during faults on their gateway: %d requests, %.1f%% answered from the history, %.1f%% STALE, %.1f%% unanswered\n",
			a.Requests, 100*float64(a.Answered)/float64(a.Requests), 100*float64(a.Stale)/float64(a.Requests), 100*float64(a.Failed)/float64(a.Requests))
	}
	for _, kind := range slices.Sorted(maps.Keys(rep.ByFault)) {
		if a := rep.ByFault[kind]; a.Requests > 0 {
			fmt.Fprintf(w, "  %s: %d requests, %.1f%% answered, %.1f%% STALE, %.1f%% unanswered\n", kind, a.Requests,
				100*float64(a.Answered)/float64(a.Requests), 100*float64(a.Stale)/float64(a.Requests), 100*float64(a.Failed)/float64(a.Requests))
		}
	}
	var took []time.Duration
	for _, rc := range rep.Recovery {
		if rc.Took >= 0 {
			took = append(took, rc.Took)
		}
	}
	if len(took) > 0 {
		slices.Sort(took)
		fmt.Fprintf(w, "gateways answering again after a heal: median %s, worst %s\n", took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
	}
	if rep.UnsignedAtKill > 0 {
		fmt.Fprintf(w, "%d decisions unsigned because their gateway was killed before its next checkpoint (a known limit)\n", rep.UnsignedAtKill)
	}
	if len(rep.Exits) > 0 {
		fmt.Fprintf(w, "%d processes exited on their own and were restarted: %s\n", len(rep.Exits), strings.Join(rep.Exits, ", "))
	}
	for _, x := range rep.Anomalies {
		fmt.Fprintln(w, "ANOMALY", x)
	}
	fmt.Fprintf(w, "%d anomalies\n", len(rep.Anomalies))
}

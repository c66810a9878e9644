package main

import (
	"context"
	"fmt"
	"log"
	"syscall"
	"time"

	"github.com/keytrail/keytrail/events"
)

// fault is one fault the nemesis injected: what, on what, when it began
// and when it was healed.
type fault struct {
	Kind   string    `json:"kind"`
	Target string    `json:"target"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	// Gateways are the gateways it cut or slowed (availability is measured
	// on them during the fault).
	Gateways []int `json:"gateways,omitempty"`
}

// The kinds of fault.
var faultKinds = []string{
	"kill-nats", "kill-control", "kill-gateway", "pause-leader",
	"partition-nats-minority", "partition-gateway", "partition-control", "loss-gateway", "delay-gateway",
}

// nemesis injects one fault after another until ctx ends: each lasts 2 to
// 8 s, then is healed, then 1 to 4 s of calm.
func (r *run) nemesis(ctx context.Context) {
	for ctx.Err() == nil {
		calm := time.Duration(1000+r.rng.IntN(3000)) * time.Millisecond
		if !sleepCtx(ctx, calm) {
			return
		}
		kind := faultKinds[r.rng.IntN(len(faultKinds))]
		hold := time.Duration(2000+r.rng.IntN(6000)) * time.Millisecond
		f := fault{Kind: kind, Start: time.Now()}
		heal := r.inject(ctx, &f)
		log.Printf("nemesis: %s %s for %s", f.Kind, f.Target, hold.Round(time.Millisecond))
		sleepCtx(ctx, hold)
		heal()
		f.End = time.Now()
		r.faults = append(r.faults, f)
	}
}

// inject starts fault f and returns how to heal it.
func (r *run) inject(ctx context.Context, f *fault) (heal func()) {
	pick := func(ps []*proc) *proc { return ps[r.rng.IntN(len(ps))] }
	id := fmt.Sprintf("f%d", len(r.faults))
	switch f.Kind {
	case "kill-nats", "kill-control", "kill-gateway":
		p := pick(map[string][]*proc{"kill-nats": r.nats, "kill-control": r.controls, "kill-gateway": r.gateways}[f.Kind])
		f.Target = p.name
		if p.kind == "gateway" {
			f.Gateways = []int{p.idx}
		}
		p.kill9()
		return func() { r.restart(ctx, p) }
	case "pause-leader":
		p := r.streamLeader(ctx)
		if p == nil {
			p = pick(r.nats)
		}
		f.Target = p.name
		p.signal(syscall.SIGSTOP)
		return func() { p.signal(syscall.SIGCONT) }
	case "partition-nats-minority":
		// One node cut from the two others (cluster traffic both ways).
		p := pick(r.nats)
		f.Target = p.name + " | others"
		rules := append([][]string{markOwner(p.uid, clusterPort), dropMarked(p.uid, 1)}, dropTo(p.addr, clusterPort)...)
		r.net.add(id, rules...)
		return func() { r.net.heal(id) }
	case "partition-gateway":
		p := pick(r.gateways)
		f.Target, f.Gateways = p.name+" | NATS", []int{p.idx}
		r.net.add(id, markOwner(p.uid, natsPort), dropMarked(p.uid, 1))
		return func() { r.net.heal(id) }
	case "partition-control":
		p := pick(r.controls)
		f.Target = p.name + " | clients"
		r.net.add(id, dropTo(p.addr, adminPort)...)
		return func() { r.net.heal(id) }
	case "delay-gateway":
		g := r.rng.IntN(len(r.gateways))
		d := []time.Duration{20 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond}[r.rng.IntN(3)]
		f.Target, f.Gateways = fmt.Sprintf("%s | NATS, %s each way", r.gateways[g].name, d), []int{g}
		for _, dp := range r.proxies[g] {
			dp.setDelay(d)
		}
		return func() {
			for _, dp := range r.proxies[g] {
				dp.setDelay(0)
			}
		}
	case "loss-gateway":
		p := pick(r.gateways)
		loss := []float64{0.05, 0.2, 0.5}[r.rng.IntN(3)]
		f.Target, f.Gateways = fmt.Sprintf("%s | NATS, %.0f%% loss", p.name, loss*100), []int{p.idx}
		r.net.add(id, markOwner(p.uid, natsPort), dropMarked(p.uid, loss))
		return func() { r.net.heal(id) }
	}
	return func() {}
}

// restart starts a killed process again (a control node waits for its
// readiness; a failed start is logged and retried by the next restart).
func (r *run) restart(ctx context.Context, p *proc) {
	if err := p.start(); err != nil {
		log.Printf("nemesis: restart %s: %v", p.name, err)
	}
}

// streamLeader is the NATS node leading the event stream now.
func (r *run) streamLeader(ctx context.Context) *proc {
	actx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := r.js.Stream(actx, events.StreamName)
	if err != nil {
		return nil
	}
	info := s.CachedInfo()
	if info.Cluster == nil {
		return nil
	}
	for _, p := range r.nats {
		if info.Cluster.Leader == fmt.Sprintf("n%d", p.idx+1) {
			return p
		}
	}
	return nil
}

// sleepCtx waits d or until ctx ends; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

package main

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
)

// The packet filter: every rule the run adds lives in two chains of its
// own, jumped to from OUTPUT (on loopback every packet passes OUTPUT), and
// is removed on exit — also when the run fails or is interrupted — and at
// the start of a run (a killed earlier run's leftovers).
const (
	filterChain = "KEYTRAIL_CHAOS"
	markChain   = "KEYTRAIL_CHAOS_MARK"
)

type netfilter struct {
	mu    sync.Mutex
	rules map[string][][]string // fault id → rules (table, chain, spec…)
}

func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// setupNet makes the chains (after removing any left over).
func setupNet() (*netfilter, error) {
	teardownNet()
	for _, c := range []struct{ table, chain string }{{"filter", filterChain}, {"mangle", markChain}} {
		if err := iptables("-t", c.table, "-N", c.chain); err != nil {
			return nil, err
		}
		if err := iptables("-t", c.table, "-I", "OUTPUT", "-j", c.chain); err != nil {
			return nil, err
		}
	}
	return &netfilter{rules: map[string][][]string{}}, nil
}

// teardownNet removes the chains and every rule in them.
func teardownNet() {
	for _, c := range []struct{ table, chain string }{{"filter", filterChain}, {"mangle", markChain}} {
		iptables("-t", c.table, "-D", "OUTPUT", "-j", c.chain)
		iptables("-t", c.table, "-F", c.chain)
		iptables("-t", c.table, "-X", c.chain)
	}
}

// add installs rules under a fault id; each rule is table then the spec
// appended to that table's chain.
func (n *netfilter) add(id string, rules ...[]string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range rules {
		chain := filterChain
		if r[0] == "mangle" {
			chain = markChain
		}
		if err := iptables(append([]string{"-t", r[0], "-A", chain}, r[1:]...)...); err != nil {
			return err
		}
		n.rules[id] = append(n.rules[id], r)
	}
	return nil
}

// heal removes a fault's rules.
func (n *netfilter) heal(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.rules[id] {
		chain := filterChain
		if r[0] == "mangle" {
			chain = markChain
		}
		iptables(append([]string{"-t", r[0], "-D", chain}, r[1:]...)...)
	}
	delete(n.rules, id)
}

// healAll removes every fault's rules.
func (n *netfilter) healAll() {
	n.mu.Lock()
	var ids []string
	for id := range n.rules {
		ids = append(ids, id)
	}
	n.mu.Unlock()
	for _, id := range ids {
		n.heal(id)
	}
}

// The rules of each partition. Connections are told apart by the user id
// of the process that opened them (each process runs as its own): a
// connection a process opens is marked with its uid (mangle), and both
// directions of a marked connection are dropped.

// markOwner marks the connections uid opens (to port, when not empty).
func markOwner(uid int, port string) []string {
	r := []string{"mangle", "-m", "owner", "--uid-owner", fmt.Sprint(uid), "-p", "tcp"}
	if port != "" {
		r = append(r, "--dport", port)
	}
	return append(r, "-j", "CONNMARK", "--set-mark", fmt.Sprint(uid))
}

// dropMarked drops both directions of the connections marked with uid,
// all of their packets or a share (loss, 0 < p < 1).
func dropMarked(uid int, p float64) []string {
	r := []string{"filter", "-m", "connmark", "--mark", fmt.Sprint(uid)}
	if p > 0 && p < 1 {
		r = append(r, "-m", "statistic", "--mode", "random", "--probability", fmt.Sprintf("%.3f", p))
	}
	return append(r, "-j", "DROP")
}

// dropTo drops packets to addr:port and from it (both directions of the
// connections to a listener).
func dropTo(addr, port string) [][]string {
	return [][]string{
		{"filter", "-p", "tcp", "-d", addr, "--dport", port, "-j", "DROP"},
		{"filter", "-p", "tcp", "-s", addr, "--sport", port, "-j", "DROP"},
	}
}

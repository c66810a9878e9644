// Package cli is the keytrail command line's admin commands — tenant, user,
// key, api and verify — on top of the typed Go client (package client). Each
// run builds its command table anew, so nothing one command parses outlives
// it; the help and the shell completion read the same tables (Nouns).
// services/app dispatches to it and shares its flag helpers (ParseInterleaved,
// TimeFlag, DidYouMean) with the commands that need NATS (audit).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/keytrail/keytrail/client"
	"github.com/keytrail/keytrail/events"
)

// Env is what a run reads from outside: where to print, the environment
// (KEYTRAIL_TOKEN, KEYTRAIL_VERIFY_KEY), and how to find a local keytrail
// dev from its data directory.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// DataDir is --data's default.
	DataDir string
	// Locate returns the admin API URL and the root key a data directory
	// holds ("" for what it does not).
	Locate func(dataDir string) (adminURL, rootKey string)
	// DefaultServer is the admin API URL when neither --server nor the data
	// directory gives one.
	DefaultServer string
}

// UsageError is a mistake in the command line: exit status 2.
type UsageError struct{ Err error }

func (u UsageError) Error() string { return u.Err.Error() }
func (u UsageError) Unwrap() error { return u.Err }

func usagef(format string, args ...any) error { return UsageError{fmt.Errorf(format, args...)} }

// ErrNotValid is a verification whose decision is not VALID: exit status 3.
var ErrNotValid = errors.New("not valid")

// Noun is a noun of the command line and its verbs.
type Noun struct {
	Name string
	// Tenant: its commands take (and require) --tenant.
	Tenant bool
	verbs  func() map[string]verb
}

// Nouns are the admin nouns, in the order the help lists them.
func Nouns() []Noun {
	return []Noun{{"tenant", false, tenantVerbs}, {"user", true, userVerbs}, {"key", true, keyVerbs}, {"api", true, apiVerbs},
		{"policy", true, policyVerbs}, {"report", true, reportVerbs}, {"webhook", true, webhookVerbs}}
}

// NounNamed is the noun called name; ok is false when there is none.
func NounNamed(name string) (Noun, bool) {
	for _, n := range Nouns() {
		if n.Name == name {
			return n, true
		}
	}
	return Noun{}, false
}

// Verbs are the noun's verbs, sorted.
func (n Noun) Verbs() []string { return sortedKeys(n.verbs()) }

// Flags are the flags of one verb as they are typed (--name), sorted.
func (n Noun) Flags(verbName string) []string {
	v, ok := n.verbs()[verbName]
	if !ok {
		return nil
	}
	fs := flag.NewFlagSet(verbName, flag.ContinueOnError)
	(&run{}).register(fs, n.Tenant, writes(n.Name, verbName), dryRunnable[n.Name+" "+verbName])
	if v.flags != nil {
		v.flags(fs)
	}
	return FlagNames(fs)
}

// FlagNames are fs's flags as they are typed, sorted.
func FlagNames(fs *flag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			out = append(out, "-"+f.Name)
		} else {
			out = append(out, "--"+f.Name)
		}
	})
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// verb is one command of a noun: its usage line, its own flags (declared
// on the run's flag set, into storage made for the run) and what it does.
type verb struct {
	usage string
	flags func(fs *flag.FlagSet)
	run   func(ctx context.Context, r *run, args []string) error
}

// dryRunnable are the verbs whose write can deny a request that verifies
// today: they take --dry-run (the server's ?dry_run=true).
var dryRunnable = map[string]bool{
	"tenant suspend": true, "tenant revoke-keys": true,
	"user disable": true, "user delete": true, "user revoke-keys": true,
	"key update": true, "key suspend": true, "key revoke": true, "key rotate": true,
	"api update": true, "api retire": true,
	"policy update": true, "policy retire": true,
}

// writes reports whether a verb writes: all but get, list and reports.
func writes(noun, verb string) bool { return noun != "report" && verb != "get" && verb != "list" }

// Run runs `keytrail <noun> <verb> [flags] [args]`; args start with the
// verb.
func (n Noun) Run(ctx context.Context, env Env, args []string) error {
	verbs := n.verbs() // made for this run: its flag storage dies with it
	names := sortedKeys(verbs)
	args = CommandFirst(args, names)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		// Asked for: the verbs, each with its usage, on stdout.
		fmt.Fprintf(env.Stdout, "usage: keytrail %s <verb> [flags]\n\n", n.Name)
		for _, name := range names {
			fmt.Fprintf(env.Stdout, "  keytrail %s %s %s\n", n.Name, name, verbs[name].usage)
		}
		fmt.Fprintf(env.Stdout, "\nRun 'keytrail %s <verb> -h' for a verb's flags.\n", n.Name)
		return nil
	}
	if len(args) == 0 || verbs[args[0]].run == nil {
		usage := fmt.Errorf("usage: keytrail %s <%s> [flags]", n.Name, strings.Join(names, "|"))
		if len(args) == 0 {
			return UsageError{usage}
		}
		return UsageError{fmt.Errorf("unknown command %q for keytrail %s%s\n%w", args[0], n.Name, DidYouMean(args[0], names), usage)}
	}
	v := verbs[args[0]]
	fs := flag.NewFlagSet(n.Name+" "+args[0], flag.ContinueOnError)
	r := &run{env: env, stdout: env.Stdout}
	r.register(fs, n.Tenant, writes(n.Name, args[0]), dryRunnable[n.Name+" "+args[0]])
	if v.flags != nil {
		v.flags(fs)
	}
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: keytrail %s %s %s\n", n.Name, args[0], v.usage)
		fs.PrintDefaults()
	}
	positional, err := ParseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if n.Tenant && r.tenant == "" {
		return usagef("--tenant is required")
	}
	r.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { r.set[f.Name] = true })
	if err := r.connect(); err != nil {
		return err
	}
	return problemText(v.run(ctx, r, positional))
}

// problemText says a problem the API answered as "status code: detail
// (key)".
func problemText(err error) error {
	var p *client.Problem
	if !errors.As(err, &p) {
		return err
	}
	msg := fmt.Sprintf("%d %s: %s", p.Status, p.Code, p.Detail)
	if p.KeyID != "" {
		msg += " (" + p.KeyID + ")"
	}
	return errors.New(msg)
}

// ParseInterleaved parses flags that may come before or after the
// positional arguments, and returns the positional ones. A bad flag is said
// once (as a UsageError), the flag package's own line dropped.
func ParseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	defer fs.SetOutput(out)
	fs.Usage = func() {
		fs.SetOutput(out)
		defer fs.SetOutput(io.Discard)
		if usage != nil {
			usage()
		} else {
			fmt.Fprintf(out, "Usage of %s:\n", fs.Name())
			fs.PrintDefaults()
		}
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, UsageError{err}
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// one requires exactly one positional argument.
func one(args []string, what string) (string, error) {
	if len(args) != 1 {
		return "", usagef("want one %s", what)
	}
	return args[0], nil
}

// DidYouMean is ` (did you mean "x"?)` for the known word nearest to
// typed, when one is near enough (at most two edits, and fewer than half
// its letters); "" otherwise.
func DidYouMean(typed string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(typed, k); d < bestDist && 2*d < len(k) {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// CommandFirst moves the first argument that names one of known to the
// front, so that flags may come before the command they go with
// (`keytrail --data DIR key --tenant acme list`); args are unchanged when
// none does, or the first already is one.
func CommandFirst(args, known []string) []string {
	for i, a := range args {
		if slices.Contains(known, a) {
			if i == 0 {
				return args
			}
			out := append([]string{a}, args[:i]...)
			return append(out, args[i+1:]...)
		}
	}
	return args
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// TimeFlag is an optional time: RFC 3339, or how long ago ("24h", "7d").
type TimeFlag struct{ T *time.Time }

func (f *TimeFlag) String() string {
	if f == nil || f.T == nil {
		return ""
	}
	return f.T.Format(time.RFC3339)
}

// OrZero is the time given, or the zero time when none was.
func (f *TimeFlag) OrZero() time.Time {
	if f.T == nil {
		return time.Time{}
	}
	return *f.T
}

// Set takes an RFC 3339 time, or a duration ("24h", "7d") meaning that
// long ago.
func (f *TimeFlag) Set(v string) error {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		d, derr := events.ParseDuration(v)
		if derr != nil || d <= 0 {
			return errors.New("want an RFC 3339 time such as 2026-12-31T00:00:00Z, or how long ago, such as 24h or 7d")
		}
		t = time.Now().Add(-d)
	}
	f.T = &t
	return nil
}

// LocalTime is a time for people: local, to the second, with its zone (-o
// json keeps RFC 3339 with every digit).
func LocalTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }

// PreciseTime is LocalTime to the millisecond, to set beside log lines.
func PreciseTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05.000 MST") }

package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keytrail/keytrail/client"
	"github.com/keytrail/keytrail/events"
)

// clientFlags are the flags every admin command has.
type clientFlags struct {
	server   string
	token    string
	data     string
	output   string
	idemKey  string
	ifMatch  string
	minSeq   string
	getenv   func(string) string
	tenantID string
	// onBody, when set, sees every successful answer (verify's exit status).
	onBody func(map[string]any)
}

func (c *clientFlags) register(fs *flag.FlagSet, tenant, writes bool) {
	fs.StringVar(&c.server, "server", "", "admin API URL (default: <data>/addresses.json, else http://"+DefaultAdminListen+")")
	fs.StringVar(&c.token, "token", "", "admin key (default: $KEYTRAIL_TOKEN, else <data>/root.key)")
	fs.StringVar(&c.data, "data", DefaultDataDir, "data directory of a local keytrail dev")
	fs.StringVar(&c.output, "o", "table", "output: table or json")
	if writes {
		fs.StringVar(&c.idemKey, "idempotency-key", "", "Idempotency-Key for a write")
		fs.StringVar(&c.ifMatch, "if-match", "", "expected version (If-Match) for a write")
	} else {
		fs.StringVar(&c.minSeq, "min-seq", "", "Keytrail-Min-Seq for a read")
	}
	if tenant {
		fs.StringVar(&c.tenantID, "tenant", "", "tenant id (required)")
	}
}

func (c *clientFlags) resolve() error {
	if c.output != "table" && c.output != "json" {
		return usageError{errors.New("-o must be table or json")}
	}
	if c.server == "" {
		var a Addresses
		if b, err := os.ReadFile(filepath.Join(c.data, "addresses.json")); err == nil && json.Unmarshal(b, &a) == nil && a.Admin != "" {
			c.server = a.Admin
		} else {
			c.server = "http://" + DefaultAdminListen
		}
	}
	if c.token == "" {
		c.token = c.getenv("KEYTRAIL_TOKEN")
	}
	if c.token == "" {
		if b, err := os.ReadFile(filepath.Join(c.data, RootKeyFile)); err == nil {
			c.token = strings.TrimSpace(string(b))
		}
	}
	if c.token == "" {
		return usageError{errors.New("no admin key: give --token, set KEYTRAIL_TOKEN, or run next to a keytrail dev data directory")}
	}
	return nil
}

// call sends one request through the client package and prints the
// answer; a problem is an error.
func (c *clientFlags) call(ctx context.Context, stdout io.Writer, method, path string, body any, view func(io.Writer, map[string]any)) error {
	out, err := c.fetch(ctx, method, path, body)
	if err != nil {
		return err
	}
	return c.show(stdout, out, view)
}

// fetch makes one request of the admin API and returns its answer.
func (c *clientFlags) fetch(ctx context.Context, method, path string, body any) (map[string]any, error) {
	call := &client.Call{IdempotencyKey: c.idemKey}
	for _, h := range []struct {
		flag, value string
		into        *uint64
	}{{"--if-match", c.ifMatch, &call.IfMatch}, {"--min-seq", c.minSeq, &call.MinSeq}} {
		if h.value == "" {
			continue
		}
		n, err := strconv.ParseUint(strings.Trim(h.value, `"`), 10, 64)
		if err != nil {
			return nil, usageError{fmt.Errorf("%s wants a number", h.flag)}
		}
		*h.into = n
	}
	var out map[string]any
	if _, err := client.New(c.server, c.token, nil).Do(ctx, method, path, body, call, &out); err != nil {
		var p *client.Problem
		if errors.As(err, &p) {
			msg := fmt.Sprintf("%d %s: %s", p.Status, p.Code, p.Detail)
			if p.KeyID != "" {
				msg += " (" + p.KeyID + ")"
			}
			return nil, errors.New(msg)
		}
		return nil, err
	}
	if c.onBody != nil {
		c.onBody(out)
	}
	return out, nil
}

// show prints an answer: as JSON with -o json, else through view.
func (c *clientFlags) show(stdout io.Writer, out map[string]any, view func(io.Writer, map[string]any)) error {
	if c.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	view(stdout, out)
	return nil
}

// showObject prints each object of the answer as aligned name: value lines.
func showObject(names ...string) func(io.Writer, map[string]any) {
	return func(w io.Writer, out map[string]any) {
		tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		for _, n := range names {
			if n == "secret" {
				continue // last, on its own (below)
			}
			obj, ok := out[n].(map[string]any)
			if !ok {
				if v, ok := out[n]; ok {
					fmt.Fprintf(tw, "%s:\t%s\n", n, cell(v))
				}
				continue
			}
			if len(names) > 1 {
				fmt.Fprintf(tw, "[%s]\t\n", n)
			}
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(tw, "%s:\t%s\n", k, cell(obj[k]))
			}
		}
		if seq, ok := out["seq"]; ok {
			fmt.Fprintf(tw, "seq:\t%s\n", cell(seq))
		}
		tw.Flush()
		if secret, ok := out["secret"].(string); ok && slices.Contains(names, "secret") {
			// Last, where it is seen: it cannot be shown again.
			fmt.Fprintf(w, "\nsecret: %s\nThis secret is shown once: store it now. Keytrail keeps only its hash.\n", secret)
		}
	}
}

// showList prints a page of a list as a table of columns (JSON member
// names), and how to get the next page.
func showList(name string, columns ...string) func(io.Writer, map[string]any) {
	return func(w io.Writer, out map[string]any) {
		tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, strings.ToUpper(strings.Join(columns, "\t")))
		items, _ := out[name].([]any)
		for _, it := range items {
			m, _ := it.(map[string]any)
			row := make([]string, len(columns))
			for i, c := range columns {
				row[i] = cell(m[c])
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		tw.Flush()
		if next, ok := out["next_cursor"].(string); ok {
			fmt.Fprintf(w, "more: --cursor %s\n", next)
		}
	}
}

// localTime is a time for people: local, to the second, with its zone (-o
// json keeps RFC 3339 with every digit).
func localTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }

// preciseTime is localTime to the millisecond, to set beside log lines.
func preciseTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05.000 MST") }

func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		if t, err := time.Parse(time.RFC3339Nano, x); err == nil && len(x) >= len("2006-01-02T15:04:05Z") {
			return localTime(t)
		}
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, p := range x {
			parts[i] = cell(p)
		}
		return strings.Join(parts, ",")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// timeFlag is an optional RFC 3339 time.
type timeFlag struct{ t *time.Time }

func (f *timeFlag) String() string {
	if f.t == nil {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

// orZero is the time given, or the zero time when none was.
func (f *timeFlag) orZero() time.Time {
	if f.t == nil {
		return time.Time{}
	}
	return *f.t
}

// Set takes an RFC 3339 time, or a duration ("24h", "7d") meaning that
// long ago.
func (f *timeFlag) Set(v string) error {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		d, derr := events.ParseDuration(v)
		if derr != nil || d <= 0 {
			return errors.New("want an RFC 3339 time such as 2026-12-31T00:00:00Z, or how long ago, such as 24h or 7d")
		}
		t = time.Now().Add(-d)
	}
	f.t = &t
	return nil
}

// subcommand is one verb of a noun.
type subcommand struct {
	usage string
	run   func(ctx context.Context, c *clientFlags, fs *flag.FlagSet, args []string, stdout io.Writer) error
	flags func(fs *flag.FlagSet) // extra flags
}

// runNoun dispatches `keytrail <noun> <verb> [flags] [args]`.
func runNoun(noun string, table func() map[string]subcommand, tenantScoped bool) func(context.Context, []string, io.Writer, io.Writer, func(string) string) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
		// The table is made for this run: its subcommands keep their flag
		// values in storage of their own, which must not outlive the run.
		verbs := table()
		args = commandFirst(args, sortedVerbs(verbs))
		if len(args) == 0 || verbs[args[0]].run == nil {
			names := sortedVerbs(verbs)
			usage := fmt.Errorf("usage: keytrail %s <%s> [flags]", noun, strings.Join(names, "|"))
			if len(args) == 0 {
				return usageError{usage}
			}
			return usageError{fmt.Errorf("unknown command %q for keytrail %s%s\n%w", args[0], noun, didYouMean(args[0], names), usage)}
		}
		sc := verbs[args[0]]
		fs := flag.NewFlagSet(noun+" "+args[0], flag.ContinueOnError)
		c := &clientFlags{getenv: getenv}
		c.register(fs, tenantScoped, args[0] != "get" && args[0] != "list") // only get and list read
		if sc.flags != nil {
			sc.flags(fs)
		}
		fs.SetOutput(stderr)
		fs.Usage = func() {
			fmt.Fprintf(stderr, "usage: keytrail %s %s %s\n", noun, args[0], sc.usage)
			fs.PrintDefaults()
		}
		positional, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return err
		}
		if tenantScoped && c.tenantID == "" {
			return usageError{errors.New("--tenant is required")}
		}
		if err := c.resolve(); err != nil {
			return err
		}
		return sc.run(ctx, c, fs, positional, stdout)
	}
}

// parseInterleaved parses flags that may come before or after the
// positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	// A bad flag is said once, by whoever reports the error: the flag
	// package's own line is dropped, its usage text kept.
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
			return nil, usageError{err}
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
		return "", usageError{fmt.Errorf("want one %s", what)}
	}
	return url.PathEscape(args[0]), nil
}

// didYouMean is ` (did you mean "x"?)` for the known word nearest to
// typed, when one is near enough (at most two edits, and fewer than half
// its letters); "" otherwise.
func didYouMean(typed string, known []string) string {
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

// commandFirst moves the first argument that names one of known to the
// front, so that flags may come before the command they go with
// (`keytrail --data DIR key --tenant acme list`); args are unchanged when
// none does, or the first already is one.
func commandFirst(args, known []string) []string {
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

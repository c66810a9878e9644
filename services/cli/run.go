package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keytrail/keytrail/client"
)

// run is one command's state: the flags every admin command has, and the
// client and call they make.
type run struct {
	env    Env
	stdout io.Writer
	set    map[string]bool // the flags given on the command line

	server, token, data, output string
	idemKey, ifMatch, minSeq    string
	tenant                      string
	// dryRun: --dry-run, a write that only says what it would do.
	dryRun bool

	client *client.Client
	call   *client.Call
}

func (r *run) register(fs *flag.FlagSet, tenant, writes, dry bool) {
	fs.StringVar(&r.server, "server", "", "admin API URL (default: <data>/addresses.json, else "+r.env.DefaultServer+")")
	fs.StringVar(&r.token, "token", "", "admin key (default: $KEYTRAIL_TOKEN, else <data>/root.key)")
	fs.StringVar(&r.data, "data", r.env.DataDir, "data directory of a local keytrail dev")
	fs.StringVar(&r.output, "o", "table", "output: table or json")
	if writes {
		fs.StringVar(&r.idemKey, "idempotency-key", "", "Idempotency-Key for a write")
		fs.StringVar(&r.ifMatch, "if-match", "", "expected version (If-Match) for a write")
		if dry {
			fs.BoolVar(&r.dryRun, "dry-run", false, "append nothing: show the events the write would append and the keys, users and APIs it would deny")
		}
	} else {
		fs.StringVar(&r.minSeq, "min-seq", "", "Keytrail-Min-Seq for a read")
	}
	if tenant {
		fs.StringVar(&r.tenant, "tenant", "", "tenant id (required)")
	}
}

// connect resolves the server, the token and the call's headers into a
// client.
func (r *run) connect() error {
	if r.output != "table" && r.output != "json" {
		return usagef("-o must be table or json")
	}
	var located, rootKey string
	if r.env.Locate != nil {
		located, rootKey = r.env.Locate(r.data)
	}
	if r.server == "" {
		r.server = located
	}
	if r.server == "" {
		r.server = r.env.DefaultServer
	}
	if r.token == "" && r.env.Getenv != nil {
		r.token = r.env.Getenv("KEYTRAIL_TOKEN")
	}
	if r.token == "" {
		r.token = rootKey
	}
	if r.token == "" {
		return usagef("no admin key: give --token, set KEYTRAIL_TOKEN, or run next to a keytrail dev data directory")
	}
	r.call = &client.Call{IdempotencyKey: r.idemKey}
	if r.dryRun {
		r.call.DryRun = &client.Preview{}
	}
	for _, h := range []struct {
		flag, value string
		into        *uint64
	}{{"--if-match", r.ifMatch, &r.call.IfMatch}, {"--min-seq", r.minSeq, &r.call.MinSeq}} {
		if h.value == "" {
			continue
		}
		n, err := strconv.ParseUint(strings.Trim(h.value, `"`), 10, 64)
		if err != nil {
			return usagef("%s wants a number", h.flag)
		}
		*h.into = n
	}
	r.client = client.New(r.server, r.token, nil)
	return nil
}

// field is one attribute of an object as people read it.
type field struct{ name, value string }

// section is an object printed as name: value lines, under a heading when
// an answer has several.
type section struct {
	heading string
	fields  []field
}

// show prints an answer: v as JSON with -o json; else its sections, its
// sequence, and last of all a secret, which is shown once.
func (r *run) show(v any, seq uint64, secret string, sections ...section) error {
	if r.call != nil && r.call.DryRun != nil {
		return r.preview(*r.call.DryRun)
	}
	if r.output == "json" {
		enc := json.NewEncoder(r.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 2, 2, ' ', 0)
	for _, s := range sections {
		if len(sections) > 1 {
			fmt.Fprintf(tw, "[%s]\t\n", s.heading)
		}
		for _, f := range s.fields {
			fmt.Fprintf(tw, "%s:\t%s\n", f.name, f.value)
		}
	}
	if seq != 0 {
		fmt.Fprintf(tw, "seq:\t%d\n", seq)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if secret != "" {
		// Last, where it is seen: it cannot be shown again.
		_, err := fmt.Fprintf(r.stdout, "\nsecret: %s\nThis secret is shown once: store it now; no command shows it again.\n", secret)
		return err
	}
	return nil
}

// table prints rows under columns (field names), and how to get the next
// page when there is one.
func (r *run) table(columns []string, rows [][]field, next string) error {
	tw := tabwriter.NewWriter(r.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(columns, "\t")))
	for _, fields := range rows {
		cells := make([]string, len(columns))
		for i, c := range columns {
			cells[i] = "-"
			for _, f := range fields {
				if f.name == c {
					cells[i] = f.value
				}
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		_, err := fmt.Fprintf(r.stdout, "more: --cursor %s\n", next)
		return err
	}
	return nil
}

// The cells of a field, for people: "-" for nothing.
func text(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return LocalTime(t)
}

func whenPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return when(*t)
}

func names(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

func rate(r *client.RateLimit) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%s/s, burst %d", strconv.FormatFloat(r.PerSecond, 'f', -1, 64), r.Burst)
}

func metadata(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, ",")
}

func tenantFields(t client.Tenant) []field {
	f := []field{{"id", t.ID}, {"name", text(t.Name)}, {"status", t.Status}, {"keys_revoked_before", whenPtr(t.KeysRevokedBefore)},
		{"created_at", when(t.CreatedAt)}}
	if n := t.Notices; n != nil {
		f = append(f, field{"notices", fmt.Sprintf("expiry warnings %s before; unused after %s", names(n.ExpiryBefore), text(n.UnusedAfter))})
	}
	return append(f, field{"version", strconv.FormatUint(t.Version, 10)})
}

func userFields(u client.User) []field {
	return []field{{"id", u.ID}, {"tenant", u.Tenant}, {"name", text(u.Name)}, {"status", u.Status},
		{"keys_revoked_before", whenPtr(u.KeysRevokedBefore)}, {"created_at", when(u.CreatedAt)}, {"version", strconv.FormatUint(u.Version, 10)}}
}

func keyFields(k client.Key) []field {
	f := []field{{"id", k.ID}, {"tenant", k.Tenant}, {"user", k.User}, {"name", text(k.Name)}, {"status", k.Status},
		{"scopes", names(k.Scopes)}, {"hint", text(k.Hint)}, {"created_at", when(k.CreatedAt)}, {"not_before", whenPtr(k.NotBefore)},
		{"expires_at", whenPtr(k.ExpiresAt)}, {"rate_limit", rate(k.RateLimit)}, {"metadata", metadata(k.Metadata)}}
	if k.RotatedFrom != "" {
		f = append(f, field{"rotated_from", k.RotatedFrom})
	}
	if k.RotatedTo != "" {
		f = append(f, field{"rotated_to", k.RotatedTo}, field{"grace_until", whenPtr(k.GraceUntil)})
	}
	if len(k.Policies) > 0 {
		f = append(f, field{"policies", names(k.Policies)})
	}
	f = append(f, field{"last_used_at", whenPtr(k.LastUsedAt)})
	if l := k.LastUsed; l != nil {
		f = append(f, field{"last_used", fmt.Sprintf("%s via %s on %s (last VALID %s)", l.Code, l.Gateway, text(l.API), whenPtr(l.LastValidAt))})
	}
	if u := k.Usage; u != nil {
		f = append(f, field{"requests_24h", strconv.FormatUint(u.Requests24h, 10)}, field{"requests_30d", strconv.FormatUint(u.Requests30d, 10)})
	}
	return append(f, field{"version", strconv.FormatUint(k.Version, 10)})
}

func apiFields(a client.API) []field {
	return []field{{"id", a.ID}, {"tenant", a.Tenant}, {"name", text(a.Name)}, {"path_prefix", a.PathPrefix},
		{"upstreams", names(a.Upstreams)}, {"scopes", names(a.Scopes)}, {"rate_limit", rate(a.RateLimit)}, {"status", a.Status},
		{"sunset", whenPtr(a.Sunset)}, {"created_at", when(a.CreatedAt)}, {"version", strconv.FormatUint(a.Version, 10)}}
}

// preview shows a dry run's answer: what would be appended, and what it
// would deny.
func (r *run) preview(p client.Preview) error {
	if r.output == "json" {
		enc := json.NewEncoder(r.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	tw := tabwriter.NewWriter(r.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "dry run: nothing was appended\n\nwould append %d event(s):\n", len(p.Events))
	for _, e := range p.Events {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", e.Type, e.Aggregate, string(e.Data))
	}
	im := p.Impact
	fmt.Fprintf(tw, "\nwould change %d key(s) of %d user(s) on %d API(s); %d request(s) of the last 24 h were VALID and would be denied\n",
		len(im.Keys), len(im.Users), len(im.APIs), im.Requests24h)
	if len(im.Keys) > 0 {
		fmt.Fprintln(tw, "\nKEY\tUSER\tAPI\tSCOPE\tBEFORE\tAFTER\tREQUESTS_24H")
		for _, k := range im.Keys {
			for i, c := range k.Changes {
				reqs := "-"
				if i == 0 {
					reqs = strconv.FormatUint(k.Requests24h, 10)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Key, k.User, text(c.API), text(c.Scope), c.Before, c.After, reqs)
			}
		}
	}
	return tw.Flush()
}

func policyFields(p client.Policy) []field {
	f := []field{{"id", p.ID}, {"tenant", p.Tenant}, {"name", text(p.Name)}, {"status", p.Status}, {"scopes", names(p.Scopes)},
		{"rate_limit", rate(p.RateLimit)}, {"max_ttl", text(p.MaxTTL)}, {"apis", names(p.APIs)},
		{"revision", strconv.Itoa(p.Revision)}, {"created_at", when(p.CreatedAt)}}
	if p.Keys != nil {
		f = append(f, field{"keys", strconv.Itoa(*p.Keys)})
	}
	return append(f, field{"version", strconv.FormatUint(p.Version, 10)})
}

package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keytrail/keytrail/client"
)

// sparkWidth is the most columns a sparkline takes: buckets beyond it are
// added up in runs.
const sparkWidth = 48

// Usage is `keytrail usage`: a tenant's request counts by group, each
// with its total and a sparkline over the buckets, and the gaps in the
// gateways' reports.
func Usage(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("usage", flag.ContinueOnError)
	r := &run{env: env, stdout: env.Stdout}
	r.register(fs, true, false, false)
	var q client.UsageQuery
	fs.StringVar(&q.Key, "key", "", "one key's requests")
	fs.StringVar(&q.User, "user", "", "the requests with this user's keys")
	fs.StringVar(&q.API, "api", "", "the requests for this API")
	fs.StringVar(&q.Code, "code", "", "the requests decided this code (VALID, EXPIRED, …)")
	fs.StringVar(&q.GroupBy, "group-by", "code", "one series per code, key, api or user")
	fs.StringVar(&q.Bucket, "bucket", "hour", "bucket size: minute, hour or day")
	fs.StringVar(&q.Since, "since", "24h", "from: RFC 3339, or how long ago (24h, 30d)")
	fs.StringVar(&q.Until, "until", "", "until: RFC 3339, or how long ago (default now)")
	fs.SetOutput(env.Stderr)
	positional, err := ParseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(positional) != 0 {
		return usagef("usage: keytrail usage --tenant T [--key K] [--user U] [--api A] [--code C] [--group-by code|key|api|user] [--bucket minute|hour|day] [--since 24h] [--until T]")
	}
	if r.tenant == "" {
		return usagef("--tenant is required")
	}
	if err := r.connect(); err != nil {
		return err
	}
	u, err := r.client.Usage(ctx, r.tenant, q, r.call)
	if err != nil {
		return problemText(err)
	}
	if r.output == "json" {
		return r.show(u, 0, "")
	}
	return r.showUsage(u)
}

func (r *run) showUsage(u client.Usage) error {
	size := map[string]time.Duration{"minute": time.Minute, "hour": time.Hour, "day": 24 * time.Hour}[u.Bucket]
	if size == 0 {
		size = time.Hour
	}
	n := int(u.Until.Sub(u.Since)/size) + 1
	tw := tabwriter.NewWriter(r.stdout, 0, 2, 2, ' ', 0)
	fmt.Fprintf(tw, "GROUP\tREQUESTS\tBY %s, %s – %s\n", strings.ToUpper(u.Bucket), LocalTime(u.Since), LocalTime(u.Until))
	for _, s := range u.Series {
		counts := make([]uint64, n)
		for _, b := range s.Buckets {
			if i := int(b.Start.Sub(u.Since) / size); i >= 0 && i < n {
				counts[i] += b.N
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", text(s.Group), s.Total, Sparkline(counts, sparkWidth))
	}
	fmt.Fprintf(tw, "total\t%d\t\n", u.Total)
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, g := range u.Gaps {
		to := "now"
		if !g.To.IsZero() {
			to = LocalTime(g.To)
		}
		fmt.Fprintf(r.stdout, "gap: %s from %s to %s: %s\n", g.Node, LocalTime(g.From), to, g.Why)
	}
	return nil
}

// Sparkline draws counts in at most width columns (runs of buckets added
// up), scaled to the largest: a space for none, ▁ to █ for the rest.
func Sparkline(counts []uint64, width int) string {
	if len(counts) == 0 || width < 1 {
		return ""
	}
	per := (len(counts) + width - 1) / width
	var cols []uint64
	var peak uint64
	for i := 0; i < len(counts); i += per {
		var sum uint64
		for _, c := range counts[i:min(i+per, len(counts))] {
			sum += c
		}
		cols = append(cols, sum)
		peak = max(peak, sum)
	}
	bars := []rune("▁▂▃▄▅▆▇█")
	var b strings.Builder
	for _, c := range cols {
		if c == 0 || peak == 0 {
			b.WriteByte(' ')
			continue
		}
		b.WriteRune(bars[min(int((c*uint64(len(bars))-1)/peak), len(bars)-1)])
	}
	return b.String()
}

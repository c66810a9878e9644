package cli

import (
	"context"
	"flag"
	"strconv"

	"github.com/keytrail/keytrail/client"
)

// policyAttrs are the flags policy create and policy update share.
type policyAttrs struct {
	name, rate, maxTTL string
	scopes, apis       listFlag
}

func (a *policyAttrs) register(fs *flag.FlagSet) {
	fs.StringVar(&a.name, "name", "", "display name")
	fs.Var(&a.scopes, "scope", "a scope the policy grants (repeat for more; --scope '' for none)")
	fs.StringVar(&a.rate, "rate", "", "rate limit PER_SECOND/BURST (update: 'none' removes it)")
	fs.StringVar(&a.maxTTL, "max-ttl", "", "how long after its issue a key may verify, such as 90d (update: 'none' removes it)")
	fs.Var(&a.apis, "api", "an API its keys may be used on (repeat for more; none: any; --api '' for none)")
}

// nonEmpty drops the empty values a flag was given to say "none".
func nonEmpty(l listFlag) *[]string {
	out := []string{}
	for _, v := range l {
		if v != "" {
			out = append(out, v)
		}
	}
	return &out
}

func policyVerbs() map[string]verb {
	showPolicy := shown("policy", func(x client.PolicyResult) ([]field, uint64) { return policyFields(x.Policy), x.Seq })
	var attrs policyAttrs
	var reason string
	return map[string]verb{
		"list": list("--tenant T", lister[client.Policy, client.PolicyPage]{
			fetch: func(ctx context.Context, r *run, o client.ListOptions) (client.PolicyPage, error) {
				return r.client.ListPolicies(ctx, r.tenant, o, r.call)
			},
			items:  func(p client.PolicyPage) []client.Policy { return p.Policies },
			next:   func(p client.PolicyPage) string { return p.NextCursor },
			page:   func(ps []client.Policy) client.PolicyPage { return client.PolicyPage{Policies: ps} },
			fields: policyFields, columns: []string{"id", "name", "status", "scopes", "rate_limit", "max_ttl", "apis", "keys", "revision"},
		}, nil),
		"create": {usage: "--tenant T ID [--name N] [--scope S]... [--rate 5/10] [--max-ttl 90d] [--api A]...", flags: attrs.register,
			run: func(ctx context.Context, r *run, args []string) error {
				id, err := one(args, "policy id")
				if err != nil {
					return err
				}
				rl, err := rateFlag(attrs.rate)
				if err != nil {
					return err
				}
				res, err := r.client.CreatePolicy(ctx, r.tenant, client.PolicySpec{ID: id, Name: attrs.name, Scopes: *nonEmpty(attrs.scopes),
					RateLimit: rl, MaxTTL: attrs.maxTTL, APIs: *nonEmpty(attrs.apis)}, r.call)
				return showPolicy(r, res, err)
			}},
		"get": get("--tenant T POLICY", "policy id", func(ctx context.Context, r *run, id string) error {
			p, err := r.client.Policy(ctx, r.tenant, id, r.call)
			return showPolicy(r, client.PolicyResult{Policy: p}, err)
		}),
		"update": {usage: "--tenant T POLICY [--name N] [--scope S]... [--rate 5/10|none] [--max-ttl 90d|none] [--api A]... [--if-match V] [--dry-run]",
			flags: func(fs *flag.FlagSet) {
				attrs.register(fs)
				fs.StringVar(&reason, "reason", "", "why (recorded on the event)")
			},
			run: func(ctx context.Context, r *run, args []string) error {
				id, err := one(args, "policy id")
				if err != nil {
					return err
				}
				p := client.PolicyPatch{Reason: reason}
				if r.set["name"] {
					p.Name = &attrs.name
				}
				if r.set["scope"] {
					p.Scopes = nonEmpty(attrs.scopes)
				}
				if r.set["api"] {
					p.APIs = nonEmpty(attrs.apis)
				}
				switch {
				case attrs.rate == "none":
					p.NoRateLimit = true
				case attrs.rate != "":
					if p.RateLimit, err = rateFlag(attrs.rate); err != nil {
						return err
					}
				}
				switch {
				case attrs.maxTTL == "none":
					p.NoMaxTTL = true
				case attrs.maxTTL != "":
					p.MaxTTL = &attrs.maxTTL
				}
				res, err := r.client.UpdatePolicy(ctx, r.tenant, id, p, r.call)
				return showPolicy(r, res, err)
			}},
		"retire": change("--tenant T POLICY [--dry-run]", "policy id", func(ctx context.Context, r *run, id, reason string) error {
			res, err := r.client.RetirePolicy(ctx, r.tenant, id, reason, r.call)
			return showPolicy(r, res, err)
		}),
	}
}

// reportVerbs are the reports a tenant admin should look at, as tables.
func reportVerbs() map[string]verb {
	report := func(columns []string, rows func(ctx context.Context, r *run) (any, [][]field, error)) verb {
		return verb{usage: "--tenant T", run: func(ctx context.Context, r *run, args []string) error {
			if len(args) != 0 {
				return usagef("no arguments")
			}
			v, table, err := rows(ctx, r)
			if err != nil {
				return err
			}
			if r.output == "json" {
				return r.show(v, 0, "")
			}
			return r.table(columns, table, "")
		}}
	}
	return map[string]verb{
		"orphaned-keys": report([]string{"key", "name", "user", "owner", "seq"}, func(ctx context.Context, r *run) (any, [][]field, error) {
			rows, err := r.client.OrphanedKeys(ctx, r.tenant, r.call)
			var out [][]field
			for _, k := range rows {
				out = append(out, []field{{"key", k.Key}, {"name", text(k.Name)}, {"user", k.User}, {"owner", k.Owner}, {"seq", seqText(k.Seq)}})
			}
			return rows, out, err
		}),
		"retired-policy-keys": report([]string{"key", "name", "user", "policy", "seq"}, func(ctx context.Context, r *run) (any, [][]field, error) {
			rows, err := r.client.RetiredPolicyKeys(ctx, r.tenant, r.call)
			var out [][]field
			for _, k := range rows {
				out = append(out, []field{{"key", k.Key}, {"name", text(k.Name)}, {"user", k.User}, {"policy", k.Policy}, {"seq", seqText(k.Seq)}})
			}
			return rows, out, err
		}),
		"unneeded-scopes": report([]string{"key", "name", "user", "scopes", "own"}, func(ctx context.Context, r *run) (any, [][]field, error) {
			rows, err := r.client.UnneededScopes(ctx, r.tenant, r.call)
			var out [][]field
			for _, k := range rows {
				out = append(out, []field{{"key", k.Key}, {"name", text(k.Name)}, {"user", k.User}, {"scopes", names(k.Scopes)}, {"own", names(k.Own)}})
			}
			return rows, out, err
		}),
	}
}

func seqText(seq uint64) string {
	if seq == 0 {
		return "-"
	}
	return strconv.FormatUint(seq, 10)
}

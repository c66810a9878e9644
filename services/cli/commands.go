package cli

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/keytrail/keytrail/client"
)

// reasonFlag adds --reason and returns where it lands.
func reasonFlag(fs *flag.FlagSet) *string {
	return fs.String("reason", "", "why (recorded on the event)")
}

// change is a verb that changes one object's state with a reason
// (suspend, resume, disable, …); do makes the call and shows the answer.
func change(usage, what string, do func(ctx context.Context, r *run, id, reason string) error) verb {
	var reason *string
	return verb{usage: usage, flags: func(fs *flag.FlagSet) { reason = reasonFlag(fs) },
		run: func(ctx context.Context, r *run, args []string) error {
			id, err := one(args, what)
			if err != nil {
				return err
			}
			return do(ctx, r, id, *reason)
		}}
}

// get is a verb that shows one object.
func get(usage, what string, do func(ctx context.Context, r *run, id string) error) verb {
	return verb{usage: usage, run: func(ctx context.Context, r *run, args []string) error {
		id, err := one(args, what)
		if err != nil {
			return err
		}
		return do(ctx, r, id)
	}}
}

// shown is how a verb shows a write's (or a get's) answer: the object's
// fields under name and the write's sequence — or the error, when there is
// one.
func shown[R any](name string, of func(R) ([]field, uint64)) func(r *run, res R, err error) error {
	return func(r *run, res R, err error) error {
		if err != nil {
			return err
		}
		fields, seq := of(res)
		return r.show(res, seq, "", section{name, fields})
	}
}

// lister is how a list verb reads one kind of object: a page, its items
// and cursor, a page of given items (--all), and each item's fields.
type lister[T, P any] struct {
	fetch   func(ctx context.Context, r *run, o client.ListOptions) (P, error)
	items   func(P) []T
	next    func(P) string
	page    func([]T) P
	fields  func(T) []field
	columns []string
	// extra, when set, are columns the run's flags add.
	extra func() []string
}

// list pages through a collection; with --all, every page, shown as one.
// filters declares the list's own flags.
func list[T, P any](usage string, l lister[T, P], filters func(fs *flag.FlagSet)) verb {
	var o client.ListOptions
	var all bool
	return verb{usage: strings.TrimSpace(usage + " [--cursor ID] [--limit N] [--all]"),
		flags: func(fs *flag.FlagSet) {
			if filters != nil {
				filters(fs)
			}
			fs.StringVar(&o.Cursor, "cursor", "", "next page after this id")
			fs.IntVar(&o.Limit, "limit", 0, "page size (default 100)")
			fs.BoolVar(&all, "all", false, "every page, not just the first")
		},
		run: func(ctx context.Context, r *run, args []string) error {
			if len(args) != 0 {
				return usagef("no arguments")
			}
			p, err := l.fetch(ctx, r, o)
			if err != nil {
				return err
			}
			if all {
				items, seen := l.items(p), map[string]bool{}
				for next := l.next(p); next != ""; next = l.next(p) {
					if seen[next] {
						return fmt.Errorf("the server returned cursor %s twice", next)
					}
					seen[next] = true
					o.Cursor = next
					if p, err = l.fetch(ctx, r, o); err != nil {
						return err
					}
					items = append(items, l.items(p)...)
				}
				p = l.page(items)
			}
			if r.output == "json" {
				return r.show(p, 0, "")
			}
			var rows [][]field
			for _, it := range l.items(p) {
				rows = append(rows, l.fields(it))
			}
			columns := l.columns
			if l.extra != nil {
				columns = append(slices.Clone(columns), l.extra()...)
			}
			return r.table(columns, rows, l.next(p))
		}}
}

func tenantVerbs() map[string]verb {
	showTenant := shown("tenant", func(x client.TenantResult) ([]field, uint64) { return tenantFields(x.Tenant), x.Seq })
	var name, before = new(string), new(TimeFlag)
	return map[string]verb{
		"list": list("", lister[client.Tenant, client.TenantPage]{
			fetch: func(ctx context.Context, r *run, o client.ListOptions) (client.TenantPage, error) {
				return r.client.ListTenants(ctx, o, r.call)
			},
			items:  func(p client.TenantPage) []client.Tenant { return p.Tenants },
			next:   func(p client.TenantPage) string { return p.NextCursor },
			page:   func(ts []client.Tenant) client.TenantPage { return client.TenantPage{Tenants: ts} },
			fields: tenantFields, columns: []string{"id", "name", "status", "created_at"},
		}, nil),
		"create": {usage: "ID --name NAME", flags: func(fs *flag.FlagSet) { fs.StringVar(name, "name", "", "display name (required)") },
			run: func(ctx context.Context, r *run, args []string) error {
				id, err := one(args, "tenant id")
				if err != nil {
					return err
				}
				if *name == "" {
					return usagef("--name is required")
				}
				t, res, err := r.client.CreateTenant(ctx, id, *name, r.call)
				return showTenant(r, client.TenantResult{Tenant: t, Result: res}, err)
			}},
		"get": get("TENANT", "tenant id", func(ctx context.Context, r *run, id string) error {
			t, err := r.client.Tenant(ctx, id, r.call)
			return showTenant(r, client.TenantResult{Tenant: t}, err)
		}),
		"suspend": change("TENANT", "tenant id", func(ctx context.Context, r *run, id, reason string) error {
			res, err := r.client.SuspendTenant(ctx, id, reason, r.call)
			return showTenant(r, res, err)
		}),
		"resume": change("TENANT", "tenant id", func(ctx context.Context, r *run, id, reason string) error {
			res, err := r.client.ResumeTenant(ctx, id, reason, r.call)
			return showTenant(r, res, err)
		}),
		"revoke-keys": revokeKeysVerb("TENANT [--before TIME]", "tenant id", before, func(ctx context.Context, r *run, id, reason string) error {
			t, res, err := r.client.RevokeTenantKeys(ctx, id, before.T, reason, r.call)
			return showTenant(r, client.TenantResult{Tenant: t, Result: res}, err)
		}),
		"notices": func() verb {
			var expiry listFlag
			var unused, reason string
			return verb{usage: "TENANT [--expiry-before 30d]... [--unused-after 90d]", flags: func(fs *flag.FlagSet) {
				fs.Var(&expiry, "expiry-before", "warn this long before a key stops working (repeat; none: 30d, 7d, 1d)")
				fs.StringVar(&unused, "unused-after", "", "tell of a key without a request for this long (empty: 90d)")
				fs.StringVar(&reason, "reason", "", "why (recorded on the event)")
			}, run: func(ctx context.Context, r *run, args []string) error {
				id, err := one(args, "tenant id")
				if err != nil {
					return err
				}
				res, err := r.client.ConfigureNotices(ctx, id, client.NoticeSettings{ExpiryBefore: expiry, UnusedAfter: unused}, reason, r.call)
				return showTenant(r, res, err)
			}}
		}(),
	}
}

// revokeKeysVerb revokes every key of a tenant or a user issued before a
// time (now by default).
func revokeKeysVerb(usage, what string, before *TimeFlag, do func(ctx context.Context, r *run, id, reason string) error) verb {
	v := change(usage, what, do)
	reasonOnly := v.flags
	v.flags = func(fs *flag.FlagSet) {
		reasonOnly(fs)
		fs.Var(before, "before", "revoke keys issued before this time: RFC 3339, or how long ago (default now)")
	}
	return v
}

func userVerbs() map[string]verb {
	showUser := shown("user", func(x client.UserResult) ([]field, uint64) { return userFields(x.User), x.Seq })
	var name, before = new(string), new(TimeFlag)
	return map[string]verb{
		"list": list("--tenant T", lister[client.User, client.UserPage]{
			fetch: func(ctx context.Context, r *run, o client.ListOptions) (client.UserPage, error) {
				return r.client.ListUsers(ctx, r.tenant, o, r.call)
			},
			items:  func(p client.UserPage) []client.User { return p.Users },
			next:   func(p client.UserPage) string { return p.NextCursor },
			page:   func(us []client.User) client.UserPage { return client.UserPage{Users: us} },
			fields: userFields, columns: []string{"id", "name", "status", "created_at"},
		}, nil),
		"create": {usage: "--tenant T [ID] [--name NAME]", flags: func(fs *flag.FlagSet) { fs.StringVar(name, "name", "", "display name") },
			run: func(ctx context.Context, r *run, args []string) error {
				if len(args) > 1 {
					return usagef("want at most one user id")
				}
				id := ""
				if len(args) == 1 {
					id = args[0]
				}
				u, res, err := r.client.CreateUser(ctx, r.tenant, id, *name, r.call)
				return showUser(r, client.UserResult{User: u, Result: res}, err)
			}},
		"get": get("--tenant T USER", "user id", func(ctx context.Context, r *run, id string) error {
			u, err := r.client.User(ctx, r.tenant, id, r.call)
			return showUser(r, client.UserResult{User: u}, err)
		}),
		"disable": change("--tenant T USER", "user id", func(ctx context.Context, r *run, id, reason string) error {
			res, err := r.client.DisableUser(ctx, r.tenant, id, reason, r.call)
			return showUser(r, res, err)
		}),
		"enable": change("--tenant T USER", "user id", func(ctx context.Context, r *run, id, reason string) error {
			res, err := r.client.EnableUser(ctx, r.tenant, id, reason, r.call)
			return showUser(r, res, err)
		}),
		"delete": change("--tenant T USER", "user id", func(ctx context.Context, r *run, id, reason string) error {
			res, err := r.client.DeleteUser(ctx, r.tenant, id, reason, r.call)
			return showUser(r, res, err)
		}),
		"revoke-keys": revokeKeysVerb("--tenant T USER [--before TIME]", "user id", before, func(ctx context.Context, r *run, id, reason string) error {
			u, res, err := r.client.RevokeUserKeys(ctx, r.tenant, id, before.T, reason, r.call)
			return showUser(r, client.UserResult{User: u, Result: res}, err)
		}),
	}
}

// rateFlag parses --rate PER_SECOND/BURST ("" for none given).
func rateFlag(v string) (*client.RateLimit, error) {
	if v == "" {
		return nil, nil
	}
	ps, burst, ok := strings.Cut(v, "/")
	p, err1 := strconv.ParseFloat(ps, 64)
	n, err2 := strconv.Atoi(burst)
	if !ok || err1 != nil || err2 != nil {
		return nil, usagef("--rate wants PER_SECOND/BURST, such as 5/10")
	}
	return &client.RateLimit{PerSecond: p, Burst: n}, nil
}

// keyAttrs are the flags key issue and key update share.
type keyAttrs struct {
	name      string
	scopes    listFlag
	expiresAt TimeFlag
	rate      string
	meta      listFlag
	policies  listFlag
}

func (k *keyAttrs) register(fs *flag.FlagSet) {
	fs.StringVar(&k.name, "name", "", "key name")
	fs.Var(&k.scopes, "scope", "a scope, such as orders:read (repeat for more)")
	fs.Var(&k.expiresAt, "expires-at", "expiry, RFC 3339")
	fs.StringVar(&k.rate, "rate", "", "rate limit PER_SECOND/BURST, such as 5/10")
	fs.Var(&k.meta, "meta", "metadata KEY=VALUE (repeat for more)")
	fs.Var(&k.policies, "policy", "a policy the key takes scopes and limits from (repeat for more; --policy '' for none)")
}

// patch is what the flags given set; nil for what they leave alone.
func (k *keyAttrs) patch(set map[string]bool) (client.KeyPatch, error) {
	var p client.KeyPatch
	if set["name"] {
		p.Name = &k.name
	}
	if set["scope"] {
		s := []string(k.scopes)
		p.Scopes = &s
	}
	p.ExpiresAt = k.expiresAt.T
	var err error
	if p.RateLimit, err = rateFlag(k.rate); err != nil {
		return p, err
	}
	if set["policy"] {
		ps := []string{}
		for _, id := range k.policies {
			if id != "" {
				ps = append(ps, id)
			}
		}
		p.Policies = &ps
	}
	if set["meta"] {
		p.Metadata = map[string]string{}
		for _, kv := range k.meta {
			key, v, ok := strings.Cut(kv, "=")
			if !ok {
				return p, usagef("--meta %q wants KEY=VALUE", kv)
			}
			p.Metadata[key] = v
		}
	}
	return p, nil
}

func keyVerbs() map[string]verb {
	showKey := shown("key", func(x client.KeyResult) ([]field, uint64) { return keyFields(x.Key), x.Seq })
	var attrs keyAttrs
	var user, ttl, grace, reason, status, expiring, unusedFor string
	var withUsage bool
	var notBefore TimeFlag
	return map[string]verb{
		"issue": {usage: "--tenant T --user U [--name N] [--scope S]... [--policy P]... [--ttl 30d | --expires-at T] [--rate 5/10] [--meta k=v]...",
			flags: func(fs *flag.FlagSet) {
				attrs.register(fs)
				fs.StringVar(&user, "user", "", "the key's user (required)")
				fs.StringVar(&ttl, "ttl", "", "lifetime from now, such as 720h or 30d")
				fs.Var(&notBefore, "not-before", "not valid before, RFC 3339")
			},
			run: func(ctx context.Context, r *run, args []string) error {
				if len(args) != 0 || user == "" {
					return usagef("want --user and no arguments")
				}
				p, err := attrs.patch(r.set)
				if err != nil {
					return err
				}
				spec := client.KeySpec{User: user, Name: attrs.name, ExpiresAt: p.ExpiresAt, TTL: ttl, NotBefore: notBefore.T,
					RateLimit: p.RateLimit, Metadata: p.Metadata}
				if p.Scopes != nil {
					spec.Scopes = *p.Scopes
				}
				if p.Policies != nil {
					spec.Policies = *p.Policies
				}
				k, err := r.client.IssueKey(ctx, r.tenant, spec, r.call)
				if err != nil {
					return err
				}
				return r.show(k, k.Seq, k.Secret, section{"key", keyFields(k.Key)})
			}},
		"list": list("--tenant T [--user U] [--status S] [--expiring-within D] [--unused-for 90d] [--with-usage]", lister[client.Key, client.KeyPage]{
			fetch: func(ctx context.Context, r *run, o client.ListOptions) (client.KeyPage, error) {
				return r.client.ListKeys(ctx, r.tenant, client.KeyFilter{User: user, Status: status, ExpiringWithin: expiring,
					UnusedFor: unusedFor, WithUsage: withUsage, ListOptions: o}, r.call)
			},
			items:  func(p client.KeyPage) []client.Key { return p.Keys },
			next:   func(p client.KeyPage) string { return p.NextCursor },
			page:   func(ks []client.Key) client.KeyPage { return client.KeyPage{Keys: ks} },
			fields: keyFields, columns: []string{"id", "user", "name", "status", "scopes", "expires_at", "last_used_at", "hint"},
			extra: func() []string {
				if withUsage {
					return []string{"requests_24h", "requests_30d"}
				}
				return nil
			},
		}, func(fs *flag.FlagSet) {
			fs.StringVar(&unusedFor, "unused-for", "", "only keys no request presented for this long, or never, e.g. 90d")
			fs.BoolVar(&withUsage, "with-usage", false, "add each key's requests over 24 hours and 30 days")
			fs.StringVar(&user, "user", "", "only this user's keys")
			fs.StringVar(&status, "status", "", "an effective status: active, revoked, expired, user_disabled, user_deleted, user_unknown, tenant_suspended, suspended, not_yet_valid")
			fs.StringVar(&expiring, "expiring-within", "", "only keys expiring within this duration, e.g. 72h or 30d")
		}),
		"get": get("--tenant T KEY", "key id", func(ctx context.Context, r *run, id string) error {
			k, err := r.client.Key(ctx, r.tenant, id, r.call)
			return showKey(r, client.KeyResult{Key: k}, err)
		}),
		"update": {usage: "--tenant T KEY [--name N] [--scope S]... [--policy P]... [--expires-at T] [--rate 5/10] [--meta k=v]... [--if-match V] [--dry-run]",
			flags: attrs.register,
			run: func(ctx context.Context, r *run, args []string) error {
				id, err := one(args, "key id")
				if err != nil {
					return err
				}
				p, err := attrs.patch(r.set)
				if err != nil {
					return err
				}
				res, err := r.client.UpdateKey(ctx, r.tenant, id, p, r.call)
				return showKey(r, res, err)
			}},
		"suspend": change("--tenant T KEY", "key id", func(ctx context.Context, r *run, id, reason string) error {
			res, err := r.client.SuspendKey(ctx, r.tenant, id, reason, r.call)
			return showKey(r, res, err)
		}),
		"resume": change("--tenant T KEY", "key id", func(ctx context.Context, r *run, id, reason string) error {
			res, err := r.client.ResumeKey(ctx, r.tenant, id, reason, r.call)
			return showKey(r, res, err)
		}),
		"revoke": change("--tenant T KEY", "key id", func(ctx context.Context, r *run, id, reason string) error {
			k, res, err := r.client.RevokeKey(ctx, r.tenant, id, reason, r.call)
			return showKey(r, client.KeyResult{Key: k, Result: res}, err)
		}),
		"rotate": {usage: "--tenant T KEY [--grace 24h]", flags: func(fs *flag.FlagSet) {
			fs.StringVar(&grace, "grace", "24h", "how long the old key keeps working")
			fs.StringVar(&reason, "reason", "", "why (recorded on the event)")
		}, run: func(ctx context.Context, r *run, args []string) error {
			id, err := one(args, "key id")
			if err != nil {
				return err
			}
			rot, err := r.client.RotateKey(ctx, r.tenant, id, grace, reason, r.call)
			if err != nil {
				return err
			}
			return r.show(rot, rot.Seq, rot.Secret, section{"key", keyFields(rot.Key)}, section{"previous", keyFields(rot.Previous)})
		}},
	}
}

// apiAttrs are the flags api create and api update share.
type apiAttrs struct {
	name, prefix, rate string
	upstreams, scopes  listFlag
}

func (a *apiAttrs) register(fs *flag.FlagSet) {
	fs.StringVar(&a.name, "name", "", "display name")
	fs.StringVar(&a.prefix, "prefix", "", "path prefix, such as /orders")
	fs.Var(&a.upstreams, "upstream", "upstream URL (repeat for more)")
	fs.Var(&a.scopes, "scope", "scope every request needs (repeat for more)")
	fs.StringVar(&a.rate, "rate", "", "rate limit PER_SECOND/BURST")
}

// patch is what the flags given set.
func (a *apiAttrs) patch(set map[string]bool) (client.APIPatch, error) {
	var p client.APIPatch
	if set["name"] {
		p.Name = &a.name
	}
	if set["prefix"] {
		p.PathPrefix = &a.prefix
	}
	if set["upstream"] {
		p.Upstreams = a.upstreams
	}
	if set["scope"] {
		s := []string(a.scopes)
		p.Scopes = &s
	}
	var err error
	p.RateLimit, err = rateFlag(a.rate)
	return p, err
}

func apiVerbs() map[string]verb {
	showAPI := shown("api", func(x client.APIResult) ([]field, uint64) { return apiFields(x.API), x.Seq })
	var attrs apiAttrs
	var sunset TimeFlag
	var reason string
	return map[string]verb{
		"list": list("--tenant T", lister[client.API, client.APIPage]{
			fetch: func(ctx context.Context, r *run, o client.ListOptions) (client.APIPage, error) {
				return r.client.ListAPIs(ctx, r.tenant, o, r.call)
			},
			items:  func(p client.APIPage) []client.API { return p.APIs },
			next:   func(p client.APIPage) string { return p.NextCursor },
			page:   func(as []client.API) client.APIPage { return client.APIPage{APIs: as} },
			fields: apiFields, columns: []string{"id", "path_prefix", "status", "upstreams", "scopes"},
		}, nil),
		"create": {usage: "--tenant T ID --prefix /p --upstream URL... [--scope S]... [--rate 5/10]", flags: attrs.register,
			run: func(ctx context.Context, r *run, args []string) error {
				id, err := one(args, "API id")
				if err != nil {
					return err
				}
				p, err := attrs.patch(r.set)
				if err != nil {
					return err
				}
				a, res, err := r.client.CreateAPI(ctx, r.tenant, client.APISpec{ID: id, Name: attrs.name, PathPrefix: attrs.prefix,
					Upstreams: attrs.upstreams, Scopes: attrs.scopes, RateLimit: p.RateLimit}, r.call)
				return showAPI(r, client.APIResult{API: a, Result: res}, err)
			}},
		"get": get("--tenant T API", "API id", func(ctx context.Context, r *run, id string) error {
			a, err := r.client.API(ctx, r.tenant, id, r.call)
			return showAPI(r, client.APIResult{API: a}, err)
		}),
		"update": {usage: "--tenant T API [--prefix /p] [--upstream URL]... [--scope S]... [--rate 5/10]", flags: attrs.register,
			run: func(ctx context.Context, r *run, args []string) error {
				id, err := one(args, "API id")
				if err != nil {
					return err
				}
				p, err := attrs.patch(r.set)
				if err != nil {
					return err
				}
				res, err := r.client.UpdateAPI(ctx, r.tenant, id, p, r.call)
				return showAPI(r, res, err)
			}},
		"deprecate": {usage: "--tenant T API --sunset TIME", flags: func(fs *flag.FlagSet) {
			fs.Var(&sunset, "sunset", "when the API will be retired, RFC 3339 (required)")
			fs.StringVar(&reason, "reason", "", "why (recorded on the event)")
		}, run: func(ctx context.Context, r *run, args []string) error {
			id, err := one(args, "API id")
			if err != nil {
				return err
			}
			if sunset.T == nil {
				return usagef("--sunset is required")
			}
			res, err := r.client.DeprecateAPI(ctx, r.tenant, id, *sunset.T, reason, r.call)
			return showAPI(r, res, err)
		}},
		"retire": change("--tenant T API", "API id", func(ctx context.Context, r *run, id, reason string) error {
			res, err := r.client.RetireAPI(ctx, r.tenant, id, reason, r.call)
			return showAPI(r, res, err)
		}),
	}
}

// Verify is `keytrail verify KEY`: the decision, its also-failing checks
// and its evidence; ErrNotValid (exit 3) for any code but VALID.
func Verify(ctx context.Context, env Env, args []string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	r := &run{env: env, stdout: env.Stdout}
	r.register(fs, false, false, false) // a question, not a write
	tenant := fs.String("tenant", "", "the tenant the request is for (TENANT_MISMATCH otherwise)")
	var scopes listFlag
	fs.Var(&scopes, "scope", "a scope the request needs (repeat for more)")
	fs.SetOutput(env.Stderr)
	positional, err := ParseInterleaved(fs, args)
	if err != nil {
		return err
	}
	key := ""
	switch len(positional) {
	case 1:
		key = positional[0]
	case 0:
		if env.Getenv != nil {
			key = env.Getenv("KEYTRAIL_VERIFY_KEY")
		}
	}
	if key == "" || len(positional) > 1 {
		return usagef("usage: keytrail verify KEY [--tenant T] [--scope S]... (or KEYTRAIL_VERIFY_KEY, which keeps it out of the process list)")
	}
	if err := r.connect(); err != nil {
		return err
	}
	d, err := r.client.VerifyFor(ctx, client.VerifyRequest{Key: key, Tenant: *tenant, Scopes: scopes}, r.call)
	if err != nil {
		return problemText(err)
	}
	if err := r.showDecision(d); err != nil {
		return err
	}
	if d.Code != client.OutcomeValid {
		return ErrNotValid
	}
	return nil
}

// showDecision prints a decision.
func (r *run) showDecision(d client.Decision) error {
	if r.output == "json" {
		return r.show(d, 0, "")
	}
	var b strings.Builder
	b.WriteString(d.Code)
	if d.Detail != "" {
		fmt.Fprintf(&b, ": %s", d.Detail) // which check a malformed key failed
	}
	if len(d.Also) > 0 {
		fmt.Fprintf(&b, " (also %s)", strings.Join(d.Also, ","))
	}
	fmt.Fprintf(&b, "\nkey: %s  tenant: %s  user: %s  seq: %d  now: %s\n", text(d.KeyID), text(d.Tenant), text(d.User), d.Seq, when(d.Now))
	for _, e := range d.Evidence {
		fmt.Fprintf(&b, "  %s at seq %d, %s, by %s", e.Type, e.Seq, when(e.At), e.Actor)
		if e.Reason != "" {
			fmt.Fprintf(&b, ": %s", e.Reason)
		}
		b.WriteByte('\n')
	}
	_, err := fmt.Fprint(r.stdout, b.String())
	return err
}

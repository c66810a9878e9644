package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

// reasonFlag adds --reason and returns where it lands.
func reasonFlag(fs *flag.FlagSet) *string {
	return fs.String("reason", "", "why (recorded on the event)")
}

// stateChange is a verb that POSTs {"reason"} to <object>/<verb>.
func stateChange(objectPath func(c *clientFlags, id string) string, verb, what, view string) subcommand {
	var reason *string
	return subcommand{
		usage: what,
		flags: func(fs *flag.FlagSet) { reason = reasonFlag(fs) },
		run: func(ctx context.Context, c *clientFlags, _ *flag.FlagSet, args []string, out io.Writer) error {
			id, err := one(args, what)
			if err != nil {
				return err
			}
			return c.call(ctx, out, "POST", objectPath(c, id)+"/"+verb, map[string]any{"reason": *reason}, showObject(view))
		},
	}
}

// revokeKeys revokes every key of a tenant or a user issued before a time
// (now by default).
func revokeKeys(objectPath func(c *clientFlags, id string) string, usage, what, view string) subcommand {
	var reason *string
	var before timeFlag
	return subcommand{usage: usage, flags: func(fs *flag.FlagSet) {
		reason = reasonFlag(fs)
		fs.Var(&before, "before", "revoke keys issued before this time (default now)")
	}, run: func(ctx context.Context, c *clientFlags, _ *flag.FlagSet, args []string, out io.Writer) error {
		id, err := one(args, what)
		if err != nil {
			return err
		}
		body := map[string]any{"reason": *reason}
		if before.t != nil {
			body["before"] = before.t
		}
		return c.call(ctx, out, "POST", objectPath(c, id)+"/revoke-keys", body, showObject(view))
	}}
}

func tenantPath(c *clientFlags, id string) string { return "/v1/tenants/" + id }
func userPath(c *clientFlags, id string) string {
	return "/v1/tenants/" + url.PathEscape(c.tenantID) + "/users/" + id
}
func keyPath(c *clientFlags, id string) string {
	return "/v1/tenants/" + url.PathEscape(c.tenantID) + "/keys/" + id
}
func apiPath(c *clientFlags, id string) string {
	return "/v1/tenants/" + url.PathEscape(c.tenantID) + "/apis/" + id
}

// listFilter is a flag of a list that becomes a query parameter.
type listFilter struct{ flag, query, help string }

// list pages through a collection: GET path?<filters>&cursor=&limit=; with
// --all, every page, printed as one.
func list(path func(*clientFlags) string, usage, name string, filters []listFilter, columns ...string) subcommand {
	filters = append(filters, listFilter{"cursor", "cursor", "next page after this id"}, listFilter{"limit", "limit", "page size (default 100)"})
	vals := make([]*string, len(filters))
	var all *bool
	for _, f := range filters {
		usage += " [--" + f.flag + " V]"
	}
	usage += " [--all]"
	return subcommand{usage: strings.TrimSpace(usage),
		flags: func(fs *flag.FlagSet) {
			for i, f := range filters {
				vals[i] = fs.String(f.flag, "", f.help)
			}
			all = fs.Bool("all", false, "every page, not just the first")
		},
		run: func(ctx context.Context, c *clientFlags, _ *flag.FlagSet, args []string, out io.Writer) error {
			if len(args) != 0 {
				return usageError{errors.New("no arguments")}
			}
			q := url.Values{}
			for i, f := range filters {
				if *vals[i] != "" {
					q.Set(f.query, *vals[i])
				}
			}
			page := func() string {
				if len(q) == 0 {
					return path(c)
				}
				return path(c) + "?" + q.Encode()
			}
			if !*all {
				return c.call(ctx, out, "GET", page(), nil, showList(name, columns...))
			}
			var items []any
			seen := map[string]bool{}
			for {
				got, err := c.fetch(ctx, "GET", page(), nil)
				if err != nil {
					return err
				}
				more, _ := got[name].([]any)
				items = append(items, more...)
				next, _ := got["next_cursor"].(string)
				if next == "" {
					break
				}
				if seen[next] {
					return fmt.Errorf("the server returned cursor %s twice", next)
				}
				seen[next] = true
				q.Set("cursor", next)
			}
			return c.show(out, map[string]any{name: items}, showList(name, columns...))
		}}
}

func get(path func(*clientFlags, string) string, what, view string) subcommand {
	return subcommand{usage: what, run: func(ctx context.Context, c *clientFlags, _ *flag.FlagSet, args []string, out io.Writer) error {
		id, err := one(args, what)
		if err != nil {
			return err
		}
		return c.call(ctx, out, "GET", path(c, id), nil, showObject(view))
	}}
}

func tenantVerbs() map[string]subcommand {
	return map[string]subcommand{
		"list": list(func(*clientFlags) string { return "/v1/tenants" }, "", "tenants", nil, "id", "name", "status", "created_at"),
		"create": func() subcommand {
			var name *string
			return subcommand{usage: "ID [--name NAME]", flags: func(fs *flag.FlagSet) { name = fs.String("name", "", "display name") },
				run: func(ctx context.Context, c *clientFlags, _ *flag.FlagSet, args []string, out io.Writer) error {
					if len(args) != 1 {
						return usageError{errors.New("want one tenant id")}
					}
					return c.call(ctx, out, "POST", "/v1/tenants", map[string]any{"id": args[0], "name": *name}, showObject("tenant"))
				}}
		}(),
		"get":         get(tenantPath, "TENANT", "tenant"),
		"suspend":     stateChange(tenantPath, "suspend", "TENANT", "tenant"),
		"resume":      stateChange(tenantPath, "resume", "TENANT", "tenant"),
		"revoke-keys": revokeKeys(tenantPath, "TENANT [--before RFC3339]", "tenant id", "tenant"),
	}
}

func userVerbs() map[string]subcommand {
	return map[string]subcommand{
		"list": list(func(c *clientFlags) string { return "/v1/tenants/" + url.PathEscape(c.tenantID) + "/users" }, "--tenant T", "users", nil,
			"id", "name", "status", "created_at"),
		"create": func() subcommand {
			var name *string
			return subcommand{usage: "--tenant T [ID] [--name NAME]", flags: func(fs *flag.FlagSet) { name = fs.String("name", "", "display name") },
				run: func(ctx context.Context, c *clientFlags, _ *flag.FlagSet, args []string, out io.Writer) error {
					if len(args) > 1 {
						return usageError{errors.New("want at most one user id")}
					}
					body := map[string]any{"name": *name}
					if len(args) == 1 {
						body["id"] = args[0]
					}
					return c.call(ctx, out, "POST", "/v1/tenants/"+url.PathEscape(c.tenantID)+"/users", body, showObject("user"))
				}}
		}(),
		"get":     get(userPath, "--tenant T USER", "user"),
		"disable": stateChange(userPath, "disable", "--tenant T USER", "user"),
		"enable":  stateChange(userPath, "enable", "--tenant T USER", "user"),
		"delete": func() subcommand {
			var reason *string
			return subcommand{usage: "--tenant T USER", flags: func(fs *flag.FlagSet) { reason = reasonFlag(fs) },
				run: func(ctx context.Context, c *clientFlags, _ *flag.FlagSet, args []string, out io.Writer) error {
					id, err := one(args, "user id")
					if err != nil {
						return err
					}
					return c.call(ctx, out, "DELETE", userPath(c, id), map[string]any{"reason": *reason}, showObject("user"))
				}}
		}(),
		"revoke-keys": revokeKeys(userPath, "--tenant T USER [--before RFC3339]", "user id", "user"),
	}
}

// rateLimit parses --rate PER_SECOND/BURST into b["rate_limit"].
func rateLimit(rate string, b map[string]any) error {
	if rate == "" {
		return nil
	}
	ps, burst, ok := strings.Cut(rate, "/")
	p, err1 := strconv.ParseFloat(ps, 64)
	n, err2 := strconv.Atoi(burst)
	if !ok || err1 != nil || err2 != nil {
		return usageError{errors.New("--rate wants PER_SECOND/BURST, such as 5/10")}
	}
	b["rate_limit"] = map[string]any{"per_second": p, "burst": n}
	return nil
}

// keyAttrFlags are the flags shared by key issue and key update.
type keyAttrFlags struct {
	name      *string
	scopes    listFlag
	expiresAt timeFlag
	rate      *string
	meta      listFlag
}

func (k *keyAttrFlags) register(fs *flag.FlagSet) {
	k.name = fs.String("name", "", "key name")
	fs.Var(&k.scopes, "scope", "a scope, such as orders:read (repeat for more)")
	fs.Var(&k.expiresAt, "expires-at", "expiry, RFC 3339")
	k.rate = fs.String("rate", "", "rate limit PER_SECOND/BURST, such as 5/10")
	fs.Var(&k.meta, "meta", "metadata KEY=VALUE (repeat for more)")
}

// body adds the flags that were set to b.
func (k *keyAttrFlags) body(fs *flag.FlagSet, b map[string]any) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["name"] {
		b["name"] = *k.name
	}
	if set["scope"] {
		b["scopes"] = []string(k.scopes)
	}
	if k.expiresAt.t != nil {
		b["expires_at"] = k.expiresAt.t
	}
	if err := rateLimit(*k.rate, b); err != nil {
		return err
	}
	if set["meta"] {
		md := map[string]string{}
		for _, kv := range k.meta {
			key, v, ok := strings.Cut(kv, "=")
			if !ok {
				return usageError{fmt.Errorf("--meta %q wants KEY=VALUE", kv)}
			}
			md[key] = v
		}
		b["metadata"] = md
	}
	return nil
}

func keyVerbs() map[string]subcommand {
	return map[string]subcommand{
		"issue": func() subcommand {
			var attrs keyAttrFlags
			var user, ttl *string
			var notBefore timeFlag
			return subcommand{usage: "--tenant T --user U [--name N] [--scope S]... [--ttl 24h | --expires-at T] [--rate 5/10] [--meta k=v]...",
				flags: func(fs *flag.FlagSet) {
					attrs.register(fs)
					user = fs.String("user", "", "the key's user (required)")
					ttl = fs.String("ttl", "", "lifetime from now, such as 720h or 30d")
					fs.Var(&notBefore, "not-before", "not valid before, RFC 3339")
				},
				run: func(ctx context.Context, c *clientFlags, fs *flag.FlagSet, args []string, out io.Writer) error {
					if len(args) != 0 || *user == "" {
						return usageError{errors.New("want --user and no arguments")}
					}
					body := map[string]any{"user": *user}
					if err := attrs.body(fs, body); err != nil {
						return err
					}
					if *ttl != "" {
						body["ttl"] = *ttl // the API reads it ("720h", "30d") and names it if it cannot
					}
					if notBefore.t != nil {
						body["not_before"] = notBefore.t
					}
					return c.call(ctx, out, "POST", "/v1/tenants/"+url.PathEscape(c.tenantID)+"/keys", body, showObject("key", "secret"))
				}}
		}(),
		"list": list(func(c *clientFlags) string { return "/v1/tenants/" + url.PathEscape(c.tenantID) + "/keys" }, "--tenant T", "keys",
			[]listFilter{{"user", "user", "only this user's keys"},
				{"status", "status", "an effective status: active, revoked, expired, user_disabled, user_deleted, user_unknown, tenant_suspended, suspended, not_yet_valid"},
				{"expiring-within", "expiring_within", "only keys expiring within this duration, e.g. 72h"}},
			"id", "user", "name", "status", "scopes", "expires_at", "hint"),
		"get": get(keyPath, "--tenant T KEY", "key"),
		"update": func() subcommand {
			var attrs keyAttrFlags
			return subcommand{usage: "--tenant T KEY [--name N] [--scope S]... [--expires-at T] [--rate 5/10] [--meta k=v]... [--if-match V]",
				flags: attrs.register,
				run: func(ctx context.Context, c *clientFlags, fs *flag.FlagSet, args []string, out io.Writer) error {
					id, err := one(args, "key id")
					if err != nil {
						return err
					}
					body := map[string]any{}
					if err := attrs.body(fs, body); err != nil {
						return err
					}
					return c.call(ctx, out, "PATCH", keyPath(c, id), body, showObject("key"))
				}}
		}(),
		"suspend": stateChange(keyPath, "suspend", "--tenant T KEY", "key"),
		"resume":  stateChange(keyPath, "resume", "--tenant T KEY", "key"),
		"revoke":  stateChange(keyPath, "revoke", "--tenant T KEY", "key"),
		"rotate": func() subcommand {
			var grace, reason *string
			return subcommand{usage: "--tenant T KEY [--grace 24h]", flags: func(fs *flag.FlagSet) {
				grace = fs.String("grace", "24h", "how long the old key keeps working")
				reason = reasonFlag(fs)
			}, run: func(ctx context.Context, c *clientFlags, _ *flag.FlagSet, args []string, out io.Writer) error {
				id, err := one(args, "key id")
				if err != nil {
					return err
				}
				return c.call(ctx, out, "POST", keyPath(c, id)+"/rotate", map[string]any{"grace": *grace, "reason": *reason},
					showObject("key", "secret", "previous"))
			}}
		}(),
	}
}

// apiAttrFlags are the flags shared by api create and api update.
type apiAttrFlags struct {
	name, prefix, rate *string
	upstreams, scopes  listFlag
}

func (a *apiAttrFlags) register(fs *flag.FlagSet) {
	a.name = fs.String("name", "", "display name")
	a.prefix = fs.String("prefix", "", "path prefix, such as /orders")
	fs.Var(&a.upstreams, "upstream", "upstream URL (repeat for more)")
	fs.Var(&a.scopes, "scope", "scope every request needs (repeat for more)")
	a.rate = fs.String("rate", "", "rate limit PER_SECOND/BURST")
}

func (a *apiAttrFlags) body(fs *flag.FlagSet, b map[string]any) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["name"] {
		b["name"] = *a.name
	}
	if set["prefix"] {
		b["path_prefix"] = *a.prefix
	}
	if set["upstream"] {
		b["upstreams"] = []string(a.upstreams)
	}
	if set["scope"] {
		b["scopes"] = []string(a.scopes)
	}
	return rateLimit(*a.rate, b)
}

func apiVerbs() map[string]subcommand {
	return map[string]subcommand{
		"list": list(func(c *clientFlags) string { return "/v1/tenants/" + url.PathEscape(c.tenantID) + "/apis" }, "--tenant T", "apis", nil,
			"id", "path_prefix", "status", "upstreams", "scopes"),
		"create": func() subcommand {
			var attrs apiAttrFlags
			return subcommand{usage: "--tenant T ID --prefix /p --upstream URL... [--scope S]...", flags: attrs.register,
				run: func(ctx context.Context, c *clientFlags, fs *flag.FlagSet, args []string, out io.Writer) error {
					if len(args) != 1 {
						return usageError{errors.New("want one API id")}
					}
					body := map[string]any{"id": args[0]}
					if err := attrs.body(fs, body); err != nil {
						return err
					}
					return c.call(ctx, out, "POST", "/v1/tenants/"+url.PathEscape(c.tenantID)+"/apis", body, showObject("api"))
				}}
		}(),
		"get": get(apiPath, "--tenant T API", "api"),
		"update": func() subcommand {
			var attrs apiAttrFlags
			return subcommand{usage: "--tenant T API [--prefix /p] [--upstream URL]... [--scope S]...", flags: attrs.register,
				run: func(ctx context.Context, c *clientFlags, fs *flag.FlagSet, args []string, out io.Writer) error {
					id, err := one(args, "API id")
					if err != nil {
						return err
					}
					body := map[string]any{}
					if err := attrs.body(fs, body); err != nil {
						return err
					}
					return c.call(ctx, out, "PATCH", apiPath(c, id), body, showObject("api"))
				}}
		}(),
		"deprecate": func() subcommand {
			var sunset timeFlag
			var reason *string
			return subcommand{usage: "--tenant T API --sunset RFC3339", flags: func(fs *flag.FlagSet) {
				fs.Var(&sunset, "sunset", "when the API will be retired (required)")
				reason = reasonFlag(fs)
			}, run: func(ctx context.Context, c *clientFlags, _ *flag.FlagSet, args []string, out io.Writer) error {
				id, err := one(args, "API id")
				if err != nil {
					return err
				}
				if sunset.t == nil {
					return usageError{errors.New("--sunset is required")}
				}
				return c.call(ctx, out, "POST", apiPath(c, id)+"/deprecate", map[string]any{"sunset": sunset.t, "reason": *reason}, showObject("api"))
			}}
		}(),
		"retire": stateChange(apiPath, "retire", "--tenant T API", "api"),
	}
}

// errNotValid is a decision other than VALID: exit status 3.
var errNotValid = errors.New("not valid")

// verifyCmd is `keytrail verify KEY`: the decision, its also-failing checks
// and its evidence. The exit status is 0 for VALID and 3 for any other code.
func verifyCmd(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	c := &clientFlags{getenv: getenv}
	c.register(fs, false, false) // a question, not a write
	tenant := fs.String("tenant", "", "the tenant the request is for (TENANT_MISMATCH otherwise)")
	var scopes listFlag
	fs.Var(&scopes, "scope", "a scope the request needs (repeat for more)")
	fs.SetOutput(stderr)
	positional, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	key := ""
	switch len(positional) {
	case 1:
		key = positional[0]
	case 0:
		key = getenv("KEYTRAIL_VERIFY_KEY")
	}
	if key == "" || len(positional) > 1 {
		return usageError{errors.New("usage: keytrail verify KEY [--tenant T] [--scope S]... (or KEYTRAIL_VERIFY_KEY, which keeps it out of the process list)")}
	}
	if err := c.resolve(); err != nil {
		return err
	}
	var code string
	c.onBody = func(out map[string]any) { code, _ = out["code"].(string) }
	if err := c.call(ctx, stdout, "POST", "/v1/verify", map[string]any{"key": key, "tenant": *tenant, "scopes": []string(scopes)},
		showDecision); err != nil {
		return err
	}
	if code != "VALID" {
		return errNotValid
	}
	return nil
}

// showDecision prints a decision for people.
func showDecision(w io.Writer, out map[string]any) {
	fmt.Fprintf(w, "%s", cell(out["code"]))
	if detail, _ := out["detail"].(string); detail != "" {
		fmt.Fprintf(w, ": %s", detail) // which check a malformed key failed
	}
	if also, _ := out["also"].([]any); len(also) > 0 {
		fmt.Fprintf(w, " (also %s)", cell(also))
	}
	fmt.Fprintf(w, "\nkey: %s  tenant: %s  user: %s  seq: %s  now: %s\n", cell(out["key_id"]), cell(out["tenant"]), cell(out["user"]),
		cell(out["seq"]), cell(out["now"]))
	evidence, _ := out["evidence"].([]any)
	for _, e := range evidence {
		m, _ := e.(map[string]any)
		fmt.Fprintf(w, "  %s at seq %s, %s, by %s", cell(m["type"]), cell(m["seq"]), cell(m["at"]), cell(m["actor"]))
		if r, _ := m["reason"].(string); r != "" {
			fmt.Fprintf(w, ": %s", r)
		}
		fmt.Fprintln(w)
	}
}

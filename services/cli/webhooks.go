package cli

import (
	"context"
	"flag"
	"fmt"
	"strconv"

	"github.com/keytrail/keytrail/client"
)

func webhookFields(w client.Webhook) []field {
	types := names(w.Types)
	if len(w.Types) == 0 {
		types = "(all)"
	}
	return []field{{"id", w.ID}, {"tenant", w.Tenant}, {"url", w.URL}, {"types", types}, {"status", w.Status},
		{"status_by", fmt.Sprintf("%s at seq %d", w.StatusBy, w.StatusSeq)}, {"previous_secret_until", whenPtr(w.PreviousSecretUntil)},
		{"created_at", when(w.CreatedAt)}, {"version", strconv.FormatUint(w.Version, 10)}}
}

func attemptFields(a client.Attempt) []field {
	status := "-"
	if a.Status != 0 {
		status = strconv.Itoa(a.Status)
	}
	why := a.Error
	if why == "" {
		why = a.Response
	}
	if r := []rune(why); len(r) > 60 {
		why = string(r[:60]) + "…"
	}
	return []field{{"at", when(a.At)}, {"msg_id", a.MsgID}, {"type", a.Type}, {"attempt", strconv.Itoa(a.Attempt)}, {"status", status},
		{"latency_ms", strconv.FormatFloat(a.LatencyMS, 'f', 1, 64)}, {"outcome", a.Outcome}, {"next_at", whenPtr(a.NextAt)}, {"answer", text(why)}}
}

func webhookVerbs() map[string]verb {
	showWebhook := shown("webhook", func(x client.WebhookResult) ([]field, uint64) { return webhookFields(x.Webhook), x.Seq })
	showSecret := func(r *run, x client.CreatedWebhook, err error) error {
		if err != nil {
			return err
		}
		return r.show(x, x.Seq, x.Secret, section{"webhook", webhookFields(x.Webhook)})
	}
	var (
		types             listFlag
		allTypes          bool
		url, overlap, msg string
		reason            *string
		since             TimeFlag
		limit             int
	)
	typesFlag := func(fs *flag.FlagSet) {
		fs.Var(&types, "type", "a notice type to deliver (repeat for more; none: every type)")
	}
	return map[string]verb{
		"list": {usage: "--tenant T", run: func(ctx context.Context, r *run, args []string) error {
			if len(args) != 0 {
				return usagef("no arguments")
			}
			ws, err := r.client.ListWebhooks(ctx, r.tenant, r.call)
			if err != nil {
				return err
			}
			if r.output == "json" {
				return r.show(ws, 0, "")
			}
			var rows [][]field
			for _, w := range ws {
				rows = append(rows, webhookFields(w))
			}
			return r.table([]string{"id", "url", "types", "status"}, rows, "")
		}},
		"create": {usage: "--tenant T URL [--type T]...", flags: func(fs *flag.FlagSet) { typesFlag(fs); reason = reasonFlag(fs) },
			run: func(ctx context.Context, r *run, args []string) error {
				u, err := one(args, "endpoint URL")
				if err != nil {
					return err
				}
				x, err := r.client.CreateWebhook(ctx, r.tenant, client.WebhookSpec{URL: u, Types: types, Reason: *reason}, r.call)
				return showSecret(r, x, err)
			}},
		"get": get("--tenant T WEBHOOK", "webhook id", func(ctx context.Context, r *run, id string) error {
			w, err := r.client.Webhook(ctx, r.tenant, id, r.call)
			return showWebhook(r, client.WebhookResult{Webhook: w}, err)
		}),
		"update": {usage: "--tenant T WEBHOOK [--url URL] [--type T]... [--all-types]", flags: func(fs *flag.FlagSet) {
			fs.StringVar(&url, "url", "", "the endpoint's new URL")
			typesFlag(fs)
			fs.BoolVar(&allTypes, "all-types", false, "deliver every notice type again")
			reason = reasonFlag(fs)
		}, run: func(ctx context.Context, r *run, args []string) error {
			id, err := one(args, "webhook id")
			if err != nil {
				return err
			}
			p := client.WebhookPatch{Reason: *reason}
			if r.set["url"] {
				p.URL = &url
			}
			switch {
			case r.set["type"] && allTypes:
				return usagef("give --type or --all-types, not both")
			case r.set["type"]:
				t := []string(types)
				p.Types = &t
			case allTypes:
				p.Types = &[]string{}
			}
			res, err := r.client.UpdateWebhook(ctx, r.tenant, id, p, r.call)
			return showWebhook(r, res, err)
		}},
		"disable": change("--tenant T WEBHOOK", "webhook id", func(ctx context.Context, r *run, id, reason string) error {
			res, err := r.client.DisableWebhook(ctx, r.tenant, id, reason, r.call)
			return showWebhook(r, res, err)
		}),
		"enable": change("--tenant T WEBHOOK", "webhook id", func(ctx context.Context, r *run, id, reason string) error {
			res, err := r.client.EnableWebhook(ctx, r.tenant, id, reason, r.call)
			return showWebhook(r, res, err)
		}),
		"delete": change("--tenant T WEBHOOK", "webhook id", func(ctx context.Context, r *run, id, reason string) error {
			res, err := r.client.DeleteWebhook(ctx, r.tenant, id, reason, r.call)
			return showWebhook(r, res, err)
		}),
		"rotate-secret": {usage: "--tenant T WEBHOOK [--overlap 24h]", flags: func(fs *flag.FlagSet) {
			fs.StringVar(&overlap, "overlap", "", "how long the old secret signs too (default 24h, at most 7d)")
			reason = reasonFlag(fs)
		}, run: func(ctx context.Context, r *run, args []string) error {
			id, err := one(args, "webhook id")
			if err != nil {
				return err
			}
			x, err := r.client.RotateWebhookSecret(ctx, r.tenant, id, overlap, *reason, r.call)
			return showSecret(r, x, err)
		}},
		"deliveries": {usage: "--tenant T WEBHOOK [--since 7d] [--msg MSG_ID] [--limit N]", flags: func(fs *flag.FlagSet) {
			fs.Var(&since, "since", "attempts since, RFC 3339 or how long ago (default 7d)")
			fs.StringVar(&msg, "msg", "", "one message's attempts")
			fs.IntVar(&limit, "limit", 0, "the latest N attempts (default 100)")
		}, run: func(ctx context.Context, r *run, args []string) error {
			id, err := one(args, "webhook id")
			if err != nil {
				return err
			}
			q := client.AttemptQuery{MsgID: msg, Limit: limit}
			if since.T != nil {
				q.Since = since.T.Format("2006-01-02T15:04:05Z07:00")
			}
			as, err := r.client.WebhookAttempts(ctx, r.tenant, id, q, r.call)
			if err != nil {
				return err
			}
			if r.output == "json" {
				return r.show(as, 0, "")
			}
			var rows [][]field
			for _, a := range as {
				rows = append(rows, attemptFields(a))
			}
			return r.table([]string{"at", "msg_id", "type", "attempt", "status", "latency_ms", "outcome", "next_at", "answer"}, rows, "")
		}},
		"replay": {usage: "--tenant T WEBHOOK (--msg MSG_ID | --since TIME)", flags: func(fs *flag.FlagSet) {
			fs.StringVar(&msg, "msg", "", "deliver this message again (its webhook-id)")
			fs.Var(&since, "since", "deliver again every notice since, RFC 3339 or how long ago")
		}, run: func(ctx context.Context, r *run, args []string) error {
			id, err := one(args, "webhook id")
			if err != nil {
				return err
			}
			if (msg == "") == (since.T == nil) {
				return usagef("give --msg or --since")
			}
			x, err := r.client.ReplayWebhook(ctx, r.tenant, id, msg, since.T, r.call)
			if err != nil {
				return err
			}
			more := ""
			if x.More {
				more = " (more remain: replay again from the last one's time)"
			}
			return r.show(x, 0, "", section{"replay", []field{{"queued", strconv.Itoa(x.Queued) + more}}})
		}},
	}
}

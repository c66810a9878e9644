package console

import (
	"fmt"
	"html/template"
	"sort"
	"strings"
	"time"

	"github.com/keytrail/keytrail/client"
)

// chart is an SVG of requests per hour by outcome over the last 24 hours,
// drawn on the server, with a table of the same numbers beside it for
// screen readers and for reading without the picture.
type chart struct {
	SVG    template.HTML
	Legend []legendItem
}

type legendItem struct {
	Code  string
	Class string
	Total uint64
}

// codeClass is the colour class of an outcome: VALID, a denial for the
// key's own state, one for its owner, or for the request.
func codeClass(code string) string {
	switch code {
	case "VALID":
		return "c-valid"
	case "USER_DISABLED", "USER_DELETED", "USER_UNKNOWN", "TENANT_SUSPENDED":
		return "c-owner"
	case "REVOKED", "EXPIRED", "SUSPENDED", "NOT_YET_VALID":
		return "c-key"
	case "RATE_LIMITED", "STALE":
		return "c-limit"
	}
	return "c-other"
}

// usageChart draws u (grouped by code, hourly) as stacked bars, one per
// hour up to now.
func usageChart(u client.Usage, now time.Time) chart {
	const hours, w, h, left, bottom = 24, 720, 180, 48, 22
	end := now.UTC().Truncate(time.Hour)
	start := end.Add(-(hours - 1) * time.Hour)
	per := make([]map[string]uint64, hours)
	for i := range per {
		per[i] = map[string]uint64{}
	}
	var c chart
	series := append([]client.UsageSeries(nil), u.Series...)
	sort.Slice(series, func(i, j int) bool {
		return series[i].Group == "VALID" || (series[j].Group != "VALID" && series[i].Group < series[j].Group)
	})
	for _, s := range series {
		c.Legend = append(c.Legend, legendItem{Code: s.Group, Class: codeClass(s.Group), Total: s.Total})
		for _, p := range s.Buckets {
			i := int(p.Start.UTC().Sub(start) / time.Hour)
			if i >= 0 && i < hours {
				per[i][s.Group] += p.N
			}
		}
	}
	var peak uint64 = 1
	for _, m := range per {
		var sum uint64
		for _, n := range m {
			sum += n
		}
		peak = max(peak, sum)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title"><title id="chart-title">Requests per hour by outcome, last 24 hours: %d in all</title>`, w, h+bottom, u.Total)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" y1="%d" x2="%d" y2="%d"/>`, left, h, w, h)
	fmt.Fprintf(&b, `<text class="tick" x="%d" y="12" text-anchor="end">%d</text><text class="tick" x="%d" y="%d" text-anchor="end">0</text>`, left-6, peak, left-6, h)
	bar := float64(w-left) / hours
	for i, m := range per {
		x := float64(left) + float64(i)*bar
		y := float64(h)
		for _, s := range series {
			n := m[s.Group]
			if n == 0 {
				continue
			}
			hgt := float64(n) / float64(peak) * float64(h-16)
			y -= hgt
			fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s %s: %d</title></rect>`,
				codeClass(s.Group), x+1, y, bar-2, hgt, start.Add(time.Duration(i)*time.Hour).Format("15:04"), template.HTMLEscapeString(s.Group), n)
		}
		if i%4 == 0 {
			fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%d">%s</text>`, x, h+16, start.Add(time.Duration(i)*time.Hour).Format("15:04"))
		}
	}
	b.WriteString(`</svg>`)
	c.SVG = template.HTML(b.String()) // built from numbers, times and escaped codes only
	return c
}

// when prints a time in UTC.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func whenPtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return when(*t)
}

// ago says how long before now t was ("41 s ago", "3 h ago", "in 2 d").
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	suffix := " ago"
	if d < 0 {
		d, suffix = -d, ""
	}
	var s string
	switch {
	case d < time.Minute:
		s = fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", int(d.Hours()))
	default:
		s = fmt.Sprintf("%d d", int(d.Hours()/24))
	}
	if suffix == "" {
		return "in " + s
	}
	return s + suffix
}

// stops is when a key stops working: the earlier of its expiry and the end
// of its rotation's grace (nil: never).
func stops(k client.Key) *time.Time {
	switch {
	case k.EndsAt != nil: // the server's word: policies' lifetime bounds included
		return k.EndsAt
	case k.GraceUntil != nil && (k.ExpiresAt == nil || k.GraceUntil.Before(*k.ExpiresAt)):
		return k.GraceUntil
	}
	return k.ExpiresAt
}

// badge is the class of a status badge: fine, warning or bad.
func badge(status string) string {
	switch status {
	case "active", "published", "delivered":
		return "badge ok"
	case "suspended", "disabled", "deprecated", "not_yet_valid", "retrying", "user_disabled", "tenant_suspended":
		return "badge warn"
	}
	return "badge bad"
}

package events

import (
	"fmt"
	"time"
)

// The usage stream: every gateway counts each request it decides by
// (tenant, user, API, key, outcome code) in short windows and reports each
// window here, under its own identity; control nodes fold the reports into
// rollups (docs/usage.md).
const (
	UsageStream = "KEYTRAIL_USAGE"
	// UsageSubjectPrefix is followed by the reporting gateway's node name.
	UsageSubjectPrefix = "keytrail.usage."
	UsageSubjects      = UsageSubjectPrefix + ">"
	// UsageWindow is the length of a counting window. It divides a minute,
	// so that no window straddles two minute buckets.
	UsageWindow = 10 * time.Second
	// MaxUsageEntries bounds the counts in one report message; a window
	// with more is reported in several parts.
	MaxUsageEntries = 2000
)

// UsageReport is one part of one gateway's counts for one window
// [Start, End). A gateway process (Boot: random, new at every start)
// numbers its windows 1, 2, 3… without a gap, reports every window, empty
// ones included, and marks the one it closes on a clean stop Final: a
// missing window, a part missing, or a process that stopped reporting
// without a final window is a visible gap, never a guess.
type UsageReport struct {
	Node   string    `json:"node"`
	Boot   string    `json:"boot"`
	Window uint64    `json:"window"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	Part   int       `json:"part"`
	Parts  int       `json:"parts"`
	// Every is the length of the gateway's windows, in milliseconds (a
	// window is at most this long; the first and the final may be less).
	Every  int64        `json:"every_ms"`
	Final  bool         `json:"final,omitempty"`
	Counts []UsageCount `json:"counts"`
	// Applied, Lag and Confirmed are the gateway's read model when it
	// closed the window: the last event-log sequence applied, how far the
	// stream was ahead of it, and when the stream last confirmed it was
	// current — what the console shows of each gateway.
	Applied   uint64     `json:"applied,omitempty"`
	Lag       uint64     `json:"lag,omitempty"`
	Confirmed *time.Time `json:"confirmed,omitempty"`
}

// UsageCount is how many requests of one kind a window saw. Tenant is the
// key's, or the API's for a request without a key found; Key and User are
// empty for those. Last is the time of the last of them.
type UsageCount struct {
	Tenant string    `json:"t"`
	User   string    `json:"u,omitempty"`
	API    string    `json:"a,omitempty"`
	Key    string    `json:"k,omitempty"`
	Code   string    `json:"c"`
	N      uint64    `json:"n"`
	Last   time.Time `json:"l"`
}

// UsageSubject is where node reports its windows.
func UsageSubject(node string) string { return UsageSubjectPrefix + decisionToken(node) }

// UsageMsgID is a report part's Nats-Msg-Id: a part sent again (its
// acknowledgement lost) is stored once.
func UsageMsgID(r *UsageReport) string {
	return fmt.Sprintf("usage:%s:%s:%d:%d", r.Node, r.Boot, r.Window, r.Part)
}

// Validate checks a report read from the bus before it is folded.
func (r *UsageReport) Validate() error {
	switch {
	case r.Node == "" || r.Boot == "":
		return fmt.Errorf("usage report without node or boot")
	case r.Window == 0:
		return fmt.Errorf("usage report %s/%s: window 0", r.Node, r.Boot)
	case r.Every < 1000 || r.Every > UsageWindow.Milliseconds() || time.Minute.Milliseconds()%r.Every != 0:
		return fmt.Errorf("usage report %s/%s: windows of %d ms", r.Node, r.Boot, r.Every)
	case !r.End.After(r.Start) || r.End.Sub(r.Start) > time.Duration(r.Every)*time.Millisecond:
		return fmt.Errorf("usage report %s/%s window %d: bad span %s – %s", r.Node, r.Boot, r.Window, r.Start, r.End)
	case r.Parts < 1 || r.Part < 1 || r.Part > r.Parts || len(r.Counts) > MaxUsageEntries:
		return fmt.Errorf("usage report %s/%s window %d: part %d of %d with %d counts", r.Node, r.Boot, r.Window, r.Part, r.Parts, len(r.Counts))
	}
	for _, c := range r.Counts {
		if !ValidTenantID(c.Tenant) || !ValidToken(c.Code) || c.N == 0 || (c.User != "" && !ValidUserID(c.User)) ||
			(c.API != "" && !ValidAPIID(c.API)) || (c.Key != "" && !ValidKeyID(c.Key)) {
			return fmt.Errorf("usage report %s/%s window %d: bad count %+v", r.Node, r.Boot, r.Window, c)
		}
	}
	return nil
}

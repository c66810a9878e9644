package events

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// The decision log: gateways append every denial, and a sample of the
// requests they let through, to this stream; auditors re-derive each from
// the event log (keytrail audit verify-decisions).
const (
	DecisionStream = "KEYTRAIL_DECISIONS"
	// DecisionSubjectPrefix is followed by DecisionSubject's tokens.
	DecisionSubjectPrefix = "keytrail.dec."
	DecisionSubjects      = DecisionSubjectPrefix + ">"
)

// DecisionRecord is one entry of the decision log: what was decided, on
// what, and the events it rests on (their sequences and types). Never a
// secret. Folding the event log up to Seq and verifying the key at Now for
// the API gives the same Code (RATE_LIMITED: VALID, as rate limits depend on
// traffic), Also and Evidence.
type DecisionRecord struct {
	Code      string    `json:"code"`
	Also      []string  `json:"also,omitempty"`
	KeyID     string    `json:"key_id,omitempty"`
	Tenant    string    `json:"tenant,omitempty"`
	User      string    `json:"user,omitempty"`
	API       string    `json:"api,omitempty"`
	APITenant string    `json:"api_tenant,omitempty"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Node      string    `json:"node"`
	RequestID string    `json:"request_id"`
	Now       time.Time `json:"now"`
	Seq       uint64    `json:"seq"`
	Evidence  []uint64  `json:"evidence,omitempty"`
	Types     []string  `json:"evidence_types,omitempty"`
	FailOpen  bool      `json:"fail_open,omitempty"`
	// Limit is the rate limit that denied a RATE_LIMITED request.
	Limit *DecisionLimit `json:"limit,omitempty"`
}

// LoggedDecision is a decision as the decision log holds it, with its
// sequence there (a search's cursor).
type LoggedDecision struct {
	LogSeq uint64 `json:"log_seq"`
	DecisionRecord
}

// DecisionLimit is the rate limit that denied a request: whose it is (the
// key's or the API's), its terms, and how many gateways shared it then
// (each enforces its share).
type DecisionLimit struct {
	Source    string  `json:"source"` // LimitSourceKey or LimitSourceAPI
	PerSecond float64 `json:"per_second"`
	Burst     int     `json:"burst"`
	Gateways  int     `json:"gateways"`
}

// The sources of a rate limit.
const (
	LimitSourceKey = "key"
	LimitSourceAPI = "api"
)

// DecisionQuery selects decisions by the tokens of their subject; an empty
// field matches any value.
type DecisionQuery struct {
	Tenant, User, KeyID, API, Code string
}

// decisionNone stands for a field a decision does not have (no key found,
// no API routed): a token no tenant, user, key, API or code is spelled as.
const decisionNone = "_"

// decisionToken is s as a subject token: decisionNone when s is empty or
// not a token (such as a key id an attacker made up).
func decisionToken(s string) string {
	if s == "" || s == decisionNone || !ValidToken(s) {
		return decisionNone
	}
	return s
}

// DecisionSubject is where a decision goes:
// keytrail.dec.<tenant>.<user>.<key>.<api>.<code>, so that the server
// filters a tenant's, a user's, a key's, an API's or a code's decisions
// without a reader receiving anyone else's. The tenant is the key's, or,
// for a key not found, the API's.
func DecisionSubject(d *DecisionRecord) string {
	tenant := d.Tenant
	if tenant == "" {
		tenant = d.APITenant
	}
	var b strings.Builder
	b.Grow(len(DecisionSubjectPrefix) + len(tenant) + len(d.User) + len(d.KeyID) + len(d.API) + len(d.Code) + 4)
	b.WriteString(DecisionSubjectPrefix)
	for i, t := range [...]string{tenant, d.User, d.KeyID, d.API, d.Code} {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(decisionToken(t))
	}
	return b.String()
}

// Filter is the subject filter of the decisions q selects; an error names
// a field that is not a subject token.
func (q DecisionQuery) Filter() (string, error) {
	b := []byte(DecisionSubjectPrefix)
	for i, f := range [...]struct{ name, v string }{{"tenant", q.Tenant}, {"user", q.User}, {"key", q.KeyID}, {"api", q.API}, {"code", q.Code}} {
		if i > 0 {
			b = append(b, '.')
		}
		switch {
		case f.v == "":
			b = append(b, '*')
		case !ValidToken(f.v):
			return "", fmt.Errorf("%s %q is not a valid id", f.name, f.v)
		default:
			b = append(b, f.v...)
		}
	}
	return string(b), nil
}

// Decision checkpoints (docs/signing.md): a gateway with a signing key
// (a signer of role SignerRoleDecisions) publishes, every second or every
// DecisionCheckpointEvery decisions the stream acknowledged, a signed note
// naming the digest of each of them, on DecisionCheckpointSubject(its
// signer id) — in the decision stream, beside the decisions, aging out with
// them. A decision no checkpoint names was written by no gateway.
const (
	DecisionCheckpointPrefix = DecisionSubjectPrefix + "chk."
	DecisionCheckpointEvery  = 1024
	decisionCheckpointOrigin = "keytrail/decisions/v1"
)

// DecisionCheckpointSubject is where the gateway signing as signer puts its
// decision checkpoints.
func DecisionCheckpointSubject(signer string) string { return DecisionCheckpointPrefix + signer }

// IsDecisionCheckpoint reports whether subject is a decision checkpoint's
// (four tokens; a decision's subject has seven).
func IsDecisionCheckpoint(subject string) bool {
	rest, ok := strings.CutPrefix(subject, DecisionCheckpointPrefix)
	return ok && rest != "" && !strings.Contains(rest, ".")
}

// DecisionDigest is what a decision checkpoint names a decision by: the
// first 16 bytes of the SHA-256 of the bytes the gateway published.
type DecisionDigest [16]byte

// DigestDecision is the digest of a decision as published.
func DigestDecision(data []byte) DecisionDigest {
	s := sha256.Sum256(data)
	return DecisionDigest(s[:16])
}

// DecisionCheckpoint is what a gateway signs: its node name and the
// digests of decisions it wrote.
type DecisionCheckpoint struct {
	Node    string
	Digests []DecisionDigest
}

// Text is the checkpoint's note text: the origin line, the node, the
// count, the digests concatenated in base64.
func (c DecisionCheckpoint) Text() string {
	b := make([]byte, 0, 16*len(c.Digests))
	for _, d := range c.Digests {
		b = append(b, d[:]...)
	}
	return fmt.Sprintf("%s\n%s\n%d\n%s\n", decisionCheckpointOrigin, c.Node, len(c.Digests), base64.StdEncoding.EncodeToString(b))
}

// ParseDecisionCheckpoint reads a decision checkpoint's note text.
func ParseDecisionCheckpoint(text string) (DecisionCheckpoint, error) {
	lines := strings.Split(text, "\n")
	if len(lines) != 5 || lines[0] != decisionCheckpointOrigin || lines[4] != "" || lines[1] == "" {
		return DecisionCheckpoint{}, fmt.Errorf("events: not a decision checkpoint")
	}
	n, ok := parseSeq(lines[2])
	b, err := base64.StdEncoding.DecodeString(lines[3])
	if !ok || err != nil || uint64(len(b)) != 16*n {
		return DecisionCheckpoint{}, fmt.Errorf("events: a decision checkpoint whose count is not its digests'")
	}
	c := DecisionCheckpoint{Node: lines[1], Digests: make([]DecisionDigest, n)}
	for i := range c.Digests {
		copy(c.Digests[i][:], b[16*i:])
	}
	return c, nil
}

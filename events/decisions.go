package events

import "time"

// The decision log: gateways append every denial, and a sample of the
// requests they let through, to this stream; auditors re-derive each from
// the event log (keytrail audit verify-decisions).
const (
	DecisionStream = "KEYTRAIL_DECISIONS"
	// DecisionSubjectPrefix is followed by the tenant ("_" when unknown).
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
}

// DecisionSubject is where a decision on a key of tenant goes.
func DecisionSubject(tenant string) string {
	if tenant == "" {
		tenant = "_"
	}
	return DecisionSubjectPrefix + tenant
}

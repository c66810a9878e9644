package gateway

import "net/http"

// problemType is the start of every problem's type URI; the code follows.
const problemType = "https://keytrail.dev/problems/"

// ProblemCode is a problem the gateway answers that is not a decision on
// a key (those carry an outcome code: projections.Outcomes).
type ProblemCode string

// The gateway's own problem codes.
const (
	ProblemBadRequest          ProblemCode = "BAD_REQUEST"
	ProblemBadPath             ProblemCode = "BAD_PATH"
	ProblemBadMinSeq           ProblemCode = "BAD_MIN_SEQ"
	ProblemTooManyFailures     ProblemCode = "TOO_MANY_FAILURES"
	ProblemNoAPI               ProblemCode = "NO_API"
	ProblemAPIRetired          ProblemCode = "API_RETIRED"
	ProblemUpstreamUnavailable ProblemCode = "UPSTREAM_UNAVAILABLE"
	ProblemUpstreamForbidden   ProblemCode = "UPSTREAM_FORBIDDEN"
)

// GatewayProblem is one row of the gateway's problem table.
type GatewayProblem struct {
	Code ProblemCode
	// Statuses it is answered with, the usual one first.
	Statuses []int
	Title    string
	Meaning  string
}

// gatewayProblems is the one table of the gateway's own problems: the
// answers and docs/codes.md read it.
var gatewayProblems = [...]GatewayProblem{
	{ProblemBadRequest, []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusRequestURITooLong,
		http.StatusRequestHeaderFieldsTooLarge, http.StatusNotImplemented, http.StatusHTTPVersionNotSupported},
		"The request is not valid HTTP/1.1", "the request could not be read safely (the detail names the fault); the connection is closed"},
	{ProblemBadPath, []int{http.StatusBadRequest}, "The path is not in canonical form",
		"dot segments, encoded slashes, a fragment, or a prefix matched only when case is ignored"},
	{ProblemBadMinSeq, []int{http.StatusBadRequest}, "Keytrail-Min-Seq is not a sequence number", "the read-your-writes header is malformed"},
	{ProblemTooManyFailures, []int{http.StatusTooManyRequests}, "Too many requests without a valid key",
		"the address spent its failure budget; answered after a delay, with Retry-After, and not verified"},
	{ProblemNoAPI, []int{http.StatusNotFound}, "No API is published at this path", "no API's path prefix matches"},
	{ProblemAPIRetired, []int{http.StatusGone}, "This API is retired", "the API at this path was retired"},
	{ProblemUpstreamUnavailable, []int{http.StatusBadGateway, http.StatusGatewayTimeout}, "The API's upstreams did not answer",
		"no upstream answered (502), or one timed out (504)"},
	{ProblemUpstreamForbidden, []int{http.StatusBadGateway}, "The API's upstream is at an address the gateway may not reach",
		"the egress policy refused the upstream's address"},
}

// GatewayProblems are the rows of the gateway's problem table.
func GatewayProblems() []GatewayProblem { return append([]GatewayProblem(nil), gatewayProblems[:]...) }

// problemOf is code's row.
func problemOf(code ProblemCode) GatewayProblem {
	for _, p := range gatewayProblems {
		if p.Code == code {
			return p
		}
	}
	panic("gateway: no problem " + string(code)) // a programming error: every code is in the table
}

// newProblem is the problem document of code answered with status, its
// title from the table.
func newProblem(code ProblemCode, status int, detail, keyID, requestID string) Problem {
	return Problem{Type: problemType + string(code), Title: problemOf(code).Title, Status: status, Code: string(code),
		Detail: detail, KeyID: keyID, RequestID: requestID}
}

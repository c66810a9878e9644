package projections

import "slices"

// Outcome is everything said about one outcome code, in one place: the
// gateway's problems, the admin API's enums, the docs (docs/codes.md) and
// the client's constants derive from this table or are tested against it.
type Outcome struct {
	Code Code
	// Status is the HTTP status a gateway answers with (200: proxied).
	Status int
	// Meaning is what the code says, for the docs.
	Meaning string
	// Title is the problem's title, for people reading it.
	Title string
	// Detail tells the caller what to do about it.
	Detail string
}

// HTTP statuses of the outcomes (projections does no I/O, so not net/http).
const (
	statusOK              = 200
	statusUnauthorized    = 401
	statusForbidden       = 403
	statusTooManyRequests = 429
	statusUnavailable     = 503
)

// outcomes are the codes in the brief's order: MISSING, MALFORMED and
// NOT_FOUND (the secret), the catalog's checks in precedence, then
// RATE_LIMITED, STALE and VALID.
var outcomes = [...]Outcome{
	{CodeMissing, statusUnauthorized, "no key presented (gateway only)", "No API key presented",
		"send the API key in Authorization: Bearer <key> or in X-API-Key; a key in the query string is never read"},
	{CodeMalformed, statusUnauthorized, "wrong prefix, length, alphabet, or checksum", "The API key is malformed",
		"the key is not one Keytrail issued (a typo, a truncated copy, or two different keys in one request); send exactly one key as issued"},
	{CodeNotFound, statusUnauthorized, "no key with this hash", "Unknown API key",
		"no such key: it may be from another environment; ask your administrator for a key"},
	{CodeRevoked, statusForbidden, `key revoked, or revoked by a user/tenant "revoke keys issued before T"`, "The API key is revoked",
		"this key was revoked; ask your administrator for a new one"},
	{CodeExpired, statusForbidden, "past its expiry, or past the grace period after rotation", "The API key has expired",
		"this key has expired (or its rotation's grace period ended); use its successor or ask for a new one"},
	{CodeUserDeleted, statusForbidden, "the key's user was deleted", "The key's user is deleted",
		"the user this key belongs to was deleted; ask your administrator for a key of an active user"},
	{CodeUserUnknown, statusForbidden, "the key names a user that has no events", "The key's user is unknown",
		"the user this key names does not exist; ask your administrator"},
	{CodeTenantSuspended, statusForbidden, "the key's tenant is suspended", "The key's tenant is suspended",
		"the organisation this key belongs to is suspended; contact its administrator"},
	{CodeUserDisabled, statusForbidden, "the key's user is disabled", "The key's user is disabled",
		"the user this key belongs to is disabled; ask your administrator to enable them"},
	{CodeSuspended, statusForbidden, "the key itself is suspended", "The API key is suspended",
		"this key is suspended; ask your administrator to resume it"},
	{CodeNotYetValid, statusForbidden, "before the key's not-before time", "The API key is not valid yet",
		"this key is not valid yet; retry after its not-before time"},
	{CodeTenantMismatch, statusForbidden, "the key belongs to another tenant than the API or the request", "The API key belongs to another tenant",
		"this key belongs to another organisation than this API; use a key of the API's organisation"},
	{CodeInsufficientScope, statusForbidden, "the key lacks a scope the API or the request requires", "The API key lacks a required scope",
		"this key lacks a scope this API requires; ask your administrator to add it"},
	{CodeRateLimited, statusTooManyRequests, "over the key's (or API's) rate limit; checked last, and only a request that passed everything else consumes a token (with Retry-After)",
		"Rate limit exceeded", "too many requests with this key; retry after Retry-After seconds"},
	{CodeStale, statusUnavailable, "the node cannot confirm its read model is current within the staleness bound (fail-closed default; with Retry-After)",
		"The gateway cannot confirm its view is current", "the gateway cannot confirm it knows the latest revocations; retry after Retry-After seconds"},
	{CodeValid, statusOK, "all checks passed (proxied)", "Valid", ""},
}

// outcomeIndex finds a code's row.
var outcomeIndex = func() map[Code]int {
	m := make(map[Code]int, len(outcomes))
	for i, o := range outcomes {
		m[o.Code] = i
	}
	return m
}()

// Outcomes are the outcome codes' rows, in the brief's order.
func Outcomes() []Outcome { return slices.Clone(outcomes[:]) }

// Codes are the outcome codes, in the brief's order.
func Codes() []string {
	out := make([]string, len(outcomes))
	for i, o := range outcomes {
		out[i] = string(o.Code)
	}
	return out
}

// OutcomeOf is c's row; ok is false for a string that is not an outcome
// code.
func OutcomeOf(c Code) (o Outcome, ok bool) {
	i, ok := outcomeIndex[c]
	if !ok {
		return Outcome{}, false
	}
	return outcomes[i], true
}

// SecretFailure reports whether c is decided by the presented secret alone
// (MISSING, MALFORMED, NOT_FOUND): no key, so nothing in the history to
// re-derive it from.
func SecretFailure(c Code) bool {
	return c == CodeMissing || c == CodeMalformed || c == CodeNotFound
}

package adminhttp

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/projections"
)

// op documents one route for the OpenAPI document.
type op struct {
	summary  string
	request  string // schema of the body, "" for none
	status   int    // success status
	response string // schema of the success body
}

// ops documents every route of Routes; TestOpenAPIMatchesTheRouter fails
// when the two disagree.
var ops = map[string]op{
	"POST /v1/tenants":                                           {"Create a tenant (root key only)", "CreateTenant", 201, "TenantResult"},
	"GET /v1/tenants":                                            {"List tenants (root key only; ?cursor=&limit=)", "", 200, "TenantList"},
	"GET /v1/tenants/{tenant}/users":                             {"List a tenant's users (?cursor=&limit=)", "", 200, "UserList"},
	"GET /v1/tenants/{tenant}/apis":                              {"List a tenant's APIs (?cursor=&limit=)", "", 200, "APIList"},
	"GET /v1/tenants/{tenant}":                                   {"Get a tenant", "", 200, "TenantObject"},
	"POST /v1/tenants/{tenant}/suspend":                          {"Suspend a tenant: its keys fail with TENANT_SUSPENDED (root key only)", "Reason", 200, "TenantResult"},
	"POST /v1/tenants/{tenant}/resume":                           {"Resume a tenant (root key only)", "Reason", 200, "TenantResult"},
	"POST /v1/tenants/{tenant}/revoke-keys":                      {"Revoke every key of a tenant issued before a time (now by default)", "RevokeKeys", 200, "TenantResult"},
	"POST /v1/tenants/{tenant}/notice-settings":                  {"Set how long before a key stops working the tenant is told (expiry_before, e.g. [\"30d\",\"7d\"]; empty: 30d, 7d, 1d) and after how long without a request a key is told unused (unused_after; empty: 90d)", "NoticeSettings", 200, "TenantResult"},
	"POST /v1/tenants/{tenant}/users":                            {"Create a user (an id is generated when none is given)", "CreateUser", 201, "UserResult"},
	"GET /v1/tenants/{tenant}/users/{user}":                      {"Get a user", "", 200, "UserObject"},
	"POST /v1/tenants/{tenant}/users/{user}/disable":             {"Disable a user: their keys fail with USER_DISABLED", "Reason", 200, "UserResult"},
	"POST /v1/tenants/{tenant}/users/{user}/enable":              {"Enable a disabled user", "Reason", 200, "UserResult"},
	"DELETE /v1/tenants/{tenant}/users/{user}":                   {"Delete a user, for good", "Reason", 200, "UserResult"},
	"POST /v1/tenants/{tenant}/users/{user}/revoke-keys":         {"Revoke every key of a user issued before a time (now by default)", "RevokeKeys", 200, "UserResult"},
	"POST /v1/tenants/{tenant}/keys":                             {"Issue a key; the secret is in this answer and never again", "IssueKey", 201, "IssuedKey"},
	"GET /v1/tenants/{tenant}/keys":                              {"List keys (?user=&status=&expiring_within=&unused_for=&q=&cursor=&limit=)", "", 200, "KeyList"},
	"GET /v1/tenants/{tenant}/keys/{key}":                        {"Get a key (never its secret)", "", 200, "KeyObject"},
	"PATCH /v1/tenants/{tenant}/keys/{key}":                      {"Update a key's name, scopes, expiry, rate limit or metadata (If-Match)", "PatchKey", 200, "KeyResult"},
	"POST /v1/tenants/{tenant}/keys/{key}/suspend":               {"Suspend a key (If-Match)", "Reason", 200, "KeyResult"},
	"POST /v1/tenants/{tenant}/keys/{key}/resume":                {"Resume a suspended key (If-Match)", "Reason", 200, "KeyResult"},
	"POST /v1/tenants/{tenant}/keys/{key}/revoke":                {"Revoke a key, for good (If-Match)", "Reason", 200, "KeyResult"},
	"POST /v1/tenants/{tenant}/keys/{key}/rotate":                {"Rotate a key: a new key and secret; the old one works for the grace period", "Rotate", 201, "Rotation"},
	"POST /v1/tenants/{tenant}/apis":                             {"Publish an API under a path prefix no other tenant holds", "CreateAPI", 201, "APIResult"},
	"GET /v1/tenants/{tenant}/apis/{api}":                        {"Get an API", "", 200, "APIObject"},
	"PATCH /v1/tenants/{tenant}/apis/{api}":                      {"Update an API (If-Match)", "PatchAPI", 200, "APIResult"},
	"POST /v1/tenants/{tenant}/apis/{api}/deprecate":             {"Deprecate an API until a sunset time", "Deprecate", 200, "APIResult"},
	"POST /v1/tenants/{tenant}/apis/{api}/retire":                {"Retire an API, for good: the gateway answers 410", "Reason", 200, "APIResult"},
	"GET /v1/tenants/{tenant}/keys/{key}/history":                {"Every event that bears on a key: its own, its user's, its tenant's", "", 200, "History"},
	"GET /v1/tenants/{tenant}/keys/{key}/explain":                {"The decision a key would have received as of a time (at=) or sequence (seq=), for scopes (scope=) or an API (api=), with its evidence and what its policies did", "", 200, "Decision"},
	"GET /v1/tenants/{tenant}/usage":                             {"Requests counted by the gateways, by bucket, grouped by code, key, API or user, with the gaps in their reports", "", 200, "Usage"},
	"GET /v1/tenants/{tenant}/decisions":                         {"The gateways' logged decisions on the tenant's keys and APIs, by key, user, API or code, oldest first (the server filters on the subject)", "", 200, "DecisionList"},
	"POST /v1/tenants/{tenant}/webhooks":                         {"Add a webhook endpoint for the tenant's notices (types: which; none: all); its signing secret (whsec_…) is in this answer and never again", "CreateWebhook", 201, "CreatedWebhook"},
	"GET /v1/tenants/{tenant}/webhooks":                          {"List the tenant's webhook endpoints (never their secrets)", "", 200, "WebhookList"},
	"GET /v1/tenants/{tenant}/webhooks/{webhook}":                {"Get a webhook endpoint", "", 200, "WebhookObject"},
	"PATCH /v1/tenants/{tenant}/webhooks/{webhook}":              {"Change a webhook endpoint's URL or notice types (If-Match)", "PatchWebhook", 200, "WebhookResult"},
	"DELETE /v1/tenants/{tenant}/webhooks/{webhook}":             {"Delete a webhook endpoint, for good; its secrets are purged", "Reason", 200, "WebhookResult"},
	"POST /v1/tenants/{tenant}/webhooks/{webhook}/disable":       {"Stop deliveries to an endpoint until it is enabled", "Reason", 200, "WebhookResult"},
	"POST /v1/tenants/{tenant}/webhooks/{webhook}/enable":        {"Resume deliveries to a disabled endpoint (replay what it missed with /replay)", "Reason", 200, "WebhookResult"},
	"POST /v1/tenants/{tenant}/webhooks/{webhook}/rotate-secret": {"A new signing secret, in this answer only; deliveries carry both signatures for the overlap (default 24h, at most 7d)", "RotateSecret", 201, "CreatedWebhook"},
	"GET /v1/tenants/{tenant}/webhooks/{webhook}/deliveries":     {"The endpoint's delivery attempts, oldest first (?since= default 7d, ?msg_id=, ?limit=)", "", 200, "AttemptList"},
	"POST /v1/tenants/{tenant}/webhooks/{webhook}/replay":        {"Deliver again one message (msg_id) or every notice since a time (since) the endpoint wants", "Replay", 202, "Replayed"},
	"GET /v1/tenants/{tenant}/notices":                           {"The notices told to the tenant (key.expiring, keys.blocked, …), oldest first (?since= default 7d, ?type=, ?limit=)", "", 200, "NoticeList"},
	"GET /v1/gateways":                                           {"The gateway processes that report usage: each one's applied event-log sequence, lag and staleness as of its last report (a tenant admin sees lag and staleness only, the gateways unnamed)", "", 200, "GatewayList"},
	"POST /v1/verify":                                            {"Verify a key (admin or keytrail:verify keys; another tenant's key is NOT_FOUND)", "Verify", 200, "Decision"},
	"GET /healthz":                                               {"Liveness", "", 200, "Status"},
	"GET /readyz":                                                {"Readiness: 503 until the read model has caught up", "", 200, "Status"},
	"GET /openapi.json":                                          {"This document", "", 200, "Status"},
	"POST /v1/tenants/{tenant}/policies":                         {"Define an access policy: scopes granted to the keys that reference it, and an optional rate limit, lifetime bound (max_ttl) and allowed APIs", "CreatePolicy", 201, "PolicyResult"},
	"GET /v1/tenants/{tenant}/policies":                          {"List the tenant's policies, with how many keys reference each (?cursor=&limit=)", "", 200, "PolicyList"},
	"GET /v1/tenants/{tenant}/policies/{policy}":                 {"Get a policy", "", 200, "PolicyObject"},
	"PATCH /v1/tenants/{tenant}/policies/{policy}":               {"Change a policy; every key that references it verifies under the change at once (If-Match; ?dry_run=true previews)", "PatchPolicy", 200, "PolicyResult"},
	"POST /v1/tenants/{tenant}/policies/{policy}/retire":         {"Retire a policy, for good: it grants and limits nothing (?dry_run=true previews)", "Reason", 200, "PolicyResult"},
	"GET /v1/tenants/{tenant}/reports/orphaned-keys":             {"Keys (not revoked) whose user is disabled, deleted or unknown", "", 200, "OrphanedKeys"},
	"GET /v1/tenants/{tenant}/reports/retired-policy-keys":       {"Keys (not revoked) that reference a retired policy", "", 200, "RetiredPolicyKeys"},
	"GET /v1/tenants/{tenant}/reports/unneeded-scopes":           {"Keys (not revoked) holding scopes no API of the tenant requires", "", 200, "UnneededScopes"},
	"GET /metrics": {"Prometheus metrics (text exposition format)", "", 200, "Status"},
}

type obj = map[string]any

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func object(required []string, props obj) obj {
	o := obj{"type": "object", "additionalProperties": false, "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

var (
	str       = obj{"type": "string"}
	integer   = obj{"type": "integer", "minimum": 0}
	dateTime  = obj{"type": "string", "format": "date-time"}
	nullTime  = obj{"type": []string{"string", "null"}, "format": "date-time"}
	strs      = obj{"type": "array", "items": str}
	strMap    = obj{"type": "object", "additionalProperties": str}
	policyIDs = obj{"type": "array", "items": obj{"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}, "maxItems": events.MaxKeyPolicies}
	dur       = obj{"type": "string", "description": "a duration: 90m, 24h, 30d", "pattern": "^([0-9]+d|[0-9.]+(ns|us|ms|s|m|h)([0-9.]+(ns|us|ms|s|m|h))*)$"}
)

// schemas are the components of the document.
func schemas() obj {
	rate := object([]string{"per_second", "burst"}, obj{"per_second": obj{"type": "number", "exclusiveMinimum": 0}, "burst": obj{"type": "integer", "minimum": 1}})
	nullRate := obj{"oneOf": []any{ref("RateLimit"), obj{"type": "null"}}}
	withSeq := func(name, schema string) obj {
		return object([]string{name, "seq"}, obj{name: ref(schema), "seq": integer})
	}
	return obj{
		"RateLimit": rate,
		"Problem": object([]string{"type", "title", "status", "code"}, obj{"type": str, "title": str, "status": integer, "detail": str,
			"code": obj{"type": "string", "enum": problemCodeNames()}, "request_id": str, "key_id": str}),
		"Status": obj{"type": "object"},
		"Tenant": object(nil, obj{"id": str, "name": str, "status": obj{"enum": []string{"active", "suspended"}}, "keys_revoked_before": dateTime, "created_at": dateTime, "version": integer,
			"notices": object(nil, obj{"expiry_before": strs, "unused_after": str})}),
		"NoticeSettings": object(nil, obj{"expiry_before": obj{"type": "array", "items": dur, "maxItems": events.MaxExpiryThresholds}, "unused_after": dur, "reason": str}),
		"User": object(nil, obj{"id": str, "tenant": str, "name": str, "status": obj{"enum": []string{"active", "disabled", "deleted"}},
			"keys_revoked_before": dateTime, "created_at": dateTime, "version": integer,
			"keys": object([]string{"total", "active"}, obj{"total": integer, "active": integer})}),
		"Key": object(nil, obj{"id": str, "tenant": str, "user": str, "name": str, "scopes": strs,
			"status": obj{"enum": projections.EffectiveStatuses()}, "own_status": obj{"enum": []string{"active", "suspended", "revoked"}}, "hint": str, "created_at": dateTime, "not_before": nullTime,
			"expires_at": nullTime, "rate_limit": nullRate, "metadata": strMap, "rotated_from": str, "rotated_to": str,
			"grace_until": dateTime, "version": integer, "last_used_at": nullTime, "policies": strs, "ends_at": nullTime,
			"last_used": object(nil, obj{"gateway": str, "api": str, "code": str, "last_valid_at": nullTime}),
			"usage":     object(nil, obj{"requests_24h": integer, "requests_30d": integer})}),
		"DecisionList": object([]string{"decisions"}, obj{"next_cursor": str, "decisions": obj{"type": "array", "items": object(
			[]string{"log_seq", "code", "method", "path", "node", "request_id", "now", "seq"}, obj{"log_seq": integer, "code": obj{"type": "string", "enum": projections.Codes()},
				"also": strs, "key_id": str, "tenant": str, "user": str, "api": str, "api_tenant": str, "method": str, "path": str, "node": str,
				"request_id": str, "now": dateTime, "seq": integer, "evidence": obj{"type": "array", "items": integer}, "evidence_types": strs,
				"fail_open": obj{"type": "boolean"}, "limit": object(nil, obj{"source": str, "per_second": obj{"type": "number"}, "burst": integer, "gateways": integer})})}}),
		"Usage": object([]string{"bucket", "since", "until", "total", "series", "gaps"}, obj{"bucket": obj{"enum": []string{"minute", "hour", "day"}},
			"since": dateTime, "until": dateTime, "total": integer,
			"series": obj{"type": "array", "items": object(nil, obj{"group": str, "total": integer,
				"buckets": obj{"type": "array", "items": object(nil, obj{"start": dateTime, "n": integer})}})},
			"gaps": obj{"type": "array", "items": object(nil, obj{"node": str, "boot": str, "from": dateTime, "to": dateTime, "why": str,
				"missing_parts": integer})}}),
		"API": object(nil, obj{"id": str, "tenant": str, "name": str, "path_prefix": str, "upstreams": strs, "scopes": strs,
			"rate_limit": nullRate, "status": obj{"enum": []string{"published", "deprecated", "retired"}}, "sunset": dateTime,
			"created_at": dateTime, "version": integer}),
		"TenantResult": withSeq("tenant", "Tenant"),
		"TenantObject": object([]string{"tenant"}, obj{"tenant": ref("Tenant")}),
		"UserObject":   object([]string{"user"}, obj{"user": ref("User")}),
		"KeyObject":    object([]string{"key"}, obj{"key": ref("Key")}),
		"APIObject":    object([]string{"api"}, obj{"api": ref("API")}),
		"UserResult":   withSeq("user", "User"),
		"KeyResult":    withSeq("key", "Key"),
		"APIResult":    withSeq("api", "API"),
		"IssuedKey":    object([]string{"key", "secret", "seq"}, obj{"key": ref("Key"), "secret": str, "seq": integer}),
		"Rotation":     object([]string{"key", "secret", "previous", "seq"}, obj{"key": ref("Key"), "secret": str, "previous": ref("Key"), "seq": integer}),
		"KeyList":      object([]string{"keys"}, obj{"keys": obj{"type": "array", "items": ref("Key")}, "next_cursor": str}),
		"TenantList":   object([]string{"tenants"}, obj{"tenants": obj{"type": "array", "items": ref("Tenant")}, "next_cursor": str}),
		"UserList":     object([]string{"users"}, obj{"users": obj{"type": "array", "items": ref("User")}, "next_cursor": str}),
		"APIList":      object([]string{"apis"}, obj{"apis": obj{"type": "array", "items": ref("API")}, "next_cursor": str}),
		"CreateTenant": object([]string{"id", "name"}, obj{"id": obj{"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}, "name": str}),
		"CreateUser":   object(nil, obj{"id": obj{"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}, "name": str}),
		"Reason":       object(nil, obj{"reason": str}),
		"RevokeKeys":   object(nil, obj{"before": dateTime, "reason": str}),
		"IssueKey": object([]string{"user"}, obj{"user": str, "name": str, "scopes": strs, "expires_at": dateTime, "ttl": dur,
			"not_before": dateTime, "rate_limit": ref("RateLimit"), "metadata": strMap, "policies": policyIDs}),
		"PatchKey": object(nil, obj{"name": str, "scopes": strs, "expires_at": dateTime, "rate_limit": ref("RateLimit"), "metadata": strMap,
			"policies": policyIDs, "reason": str}),
		"Rotate": object(nil, obj{"grace": dur, "reason": str}),
		"CreateAPI": object([]string{"id", "path_prefix", "upstreams"}, obj{"id": str, "name": str, "path_prefix": str, "upstreams": strs,
			"scopes": strs, "rate_limit": ref("RateLimit")}),
		"PatchAPI":  object(nil, obj{"name": str, "path_prefix": str, "upstreams": strs, "scopes": strs, "rate_limit": ref("RateLimit")}),
		"Deprecate": object([]string{"sunset"}, obj{"sunset": dateTime, "reason": str}),
		"Verify":    object([]string{"key"}, obj{"key": str, "tenant": str, "scopes": strs}),
		"Evidence":  object(nil, obj{"seq": integer, "type": str, "at": dateTime, "actor": str, "reason": str}),
		"Decision": object([]string{"code", "also", "now", "seq", "evidence"}, obj{"code": obj{"type": "string", "enum": projections.Codes()},
			"also": strs, "key_id": str, "tenant": str, "user": str, "api": str, "now": dateTime, "seq": integer,
			"evidence": obj{"type": "array", "items": ref("Evidence")}, "detail": str, "policies": strs, "because": strs}),
		"Policy": object(nil, obj{"id": str, "tenant": str, "name": str, "scopes": strs, "rate_limit": nullRate, "max_ttl": dur, "apis": strs,
			"status": obj{"enum": []string{"active", "retired"}}, "revision": integer, "created_at": dateTime, "version": integer, "keys": integer}),
		"PolicyObject": object([]string{"policy"}, obj{"policy": ref("Policy")}),
		"PolicyResult": withSeq("policy", "Policy"),
		"PolicyList":   object([]string{"policies"}, obj{"policies": obj{"type": "array", "items": ref("Policy")}, "next_cursor": str}),
		"CreatePolicy": object([]string{"id"}, obj{"id": obj{"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}, "name": str,
			"scopes": strs, "rate_limit": ref("RateLimit"), "max_ttl": dur, "apis": strs}),
		"PatchPolicy": object(nil, obj{"name": str, "scopes": strs, "rate_limit": nullRate, "max_ttl": obj{"oneOf": []any{dur, obj{"type": "null"}}},
			"apis": strs, "reason": str}),
		"Preview": object([]string{"dry_run", "events", "impact"}, obj{"dry_run": obj{"type": "boolean"},
			"events": obj{"type": "array", "items": object(nil, obj{"type": str, "aggregate": str, "subject": str, "at": dateTime, "actor": str,
				"reason": str, "data": obj{"type": "object"}})},
			"impact": object([]string{"keys", "users", "apis", "requests_24h"}, obj{"users": strs, "apis": strs, "requests_24h": integer,
				"keys": obj{"type": "array", "items": object(nil, obj{"key": str, "user": str, "requests_24h": integer,
					"changes": obj{"type": "array", "items": object(nil, obj{"api": str, "scope": str, "before": str, "after": str})}})}})}),
		"OrphanedKeys": object([]string{"report", "keys"}, obj{"report": str, "keys": obj{"type": "array", "items": object(nil, obj{"key": str, "name": str,
			"user": str, "owner": obj{"enum": []string{"disabled", "deleted", "unknown"}}, "seq": integer})}}),
		"RetiredPolicyKeys": object([]string{"report", "keys"}, obj{"report": str, "keys": obj{"type": "array", "items": object(nil, obj{"key": str,
			"name": str, "user": str, "policy": str, "seq": integer})}}),
		"UnneededScopes": object([]string{"report", "keys"}, obj{"report": str, "keys": obj{"type": "array", "items": object(nil, obj{"key": str,
			"name": str, "user": str, "scopes": strs, "own": strs})}}),
		"Webhook": object(nil, obj{"id": str, "tenant": str, "url": str, "types": obj{"type": "array", "items": obj{"enum": events.NoticeTypes()}},
			"status": obj{"enum": []string{"active", "disabled", "deleted"}}, "previous_secret_until": dateTime,
			"status_seq": integer, "status_by": str, "created_at": dateTime, "version": integer}),
		"WebhookObject":  object([]string{"webhook"}, obj{"webhook": ref("Webhook")}),
		"WebhookResult":  withSeq("webhook", "Webhook"),
		"WebhookList":    object([]string{"webhooks"}, obj{"webhooks": obj{"type": "array", "items": ref("Webhook")}}),
		"CreatedWebhook": object([]string{"webhook", "secret", "seq"}, obj{"webhook": ref("Webhook"), "secret": obj{"type": "string", "pattern": "^whsec_"}, "seq": integer}),
		"CreateWebhook": object([]string{"url"}, obj{"url": obj{"type": "string", "format": "uri", "maxLength": events.MaxURLLen},
			"types": obj{"type": "array", "items": obj{"enum": events.NoticeTypes()}, "maxItems": events.MaxWebhookTypes}, "reason": str}),
		"PatchWebhook": object(nil, obj{"url": obj{"type": "string", "format": "uri"}, "types": obj{"type": "array", "items": obj{"enum": events.NoticeTypes()}}, "reason": str}),
		"RotateSecret": object(nil, obj{"overlap": dur, "reason": str}),
		"Replay":       object(nil, obj{"msg_id": str, "since": dateTime}),
		"Replayed":     object([]string{"queued"}, obj{"queued": integer, "more": obj{"type": "boolean"}}),
		"AttemptList": object([]string{"attempts"}, obj{"attempts": obj{"type": "array", "items": object(
			[]string{"msg_id", "notice_id", "type", "attempt", "at", "latency_ms", "outcome"}, obj{"msg_id": str, "notice_id": str, "type": str,
				"attempt": integer, "at": dateTime, "status": integer, "latency_ms": obj{"type": "number"}, "response": str, "error": str,
				"outcome": obj{"enum": []string{"delivered", "retrying", "gave-up", "gone", "disabled"}}, "next_at": dateTime,
				"failing_since": dateTime, "replay": obj{"type": "boolean"}, "endpoint_seq": integer})}}),
		"NoticeList": object([]string{"notices"}, obj{"notices": obj{"type": "array", "items": object([]string{"id", "type", "tenant", "at", "text"}, obj{
			"id": str, "type": obj{"enum": events.NoticeTypes()}, "tenant": str, "user": str, "key_id": str, "webhook": str, "at": dateTime, "seq": integer,
			"expires_at": dateTime, "before": str, "code": str, "cause_seq": integer, "cause_type": str, "cause_actor": str, "cause_reason": str,
			"keys": integer, "last_used_at": dateTime, "text": str})}}),
		"GatewayList": object([]string{"gateways"}, obj{"gateways": obj{"type": "array", "items": object(nil, obj{"node": str, "boot": str,
			"applied": integer, "lag": integer, "confirmed": dateTime, "reported": dateTime, "stopped": obj{"type": "boolean"},
			"silent": obj{"type": "boolean"}, "staleness_ms": obj{"type": "integer"}})}}),
		"History": object([]string{"events"}, obj{"events": obj{"type": "array", "items": object(nil, obj{"seq": integer, "type": str,
			"at": dateTime, "actor": str, "reason": str, "data": obj{"type": "object"}})}}),
	}
}

// Response headers the document declares.
var (
	requestIDHeader = obj{"description": "the request's id, also in problems and the access log", "schema": str}
	seqHeader       = obj{"description": "the stream sequence the write produced", "schema": str}
	etagHeader      = obj{"description": "the object's version, for If-Match", "schema": str}
	retryHeader     = obj{"description": "seconds to wait", "schema": str}
	allowHeader     = obj{"description": "the methods of the route", "schema": str}
)

// singleObjects are the reads of one object: they carry an ETag.
var singleObjects = map[string]bool{"GET /v1/tenants/{tenant}": true, "GET /v1/tenants/{tenant}/users/{user}": true,
	"GET /v1/tenants/{tenant}/keys/{key}": true, "GET /v1/tenants/{tenant}/apis/{api}": true,
	"GET /v1/tenants/{tenant}/webhooks/{webhook}": true, "GET /v1/tenants/{tenant}/policies/{policy}": true}

// errorStatuses are the problems a route can answer.
func errorStatuses(method, path string) []int {
	switch {
	case path == "/readyz":
		return []int{503}
	case !strings.HasPrefix(path, "/v1/"):
		return nil
	}
	st := []int{400, 401, 403, 404, 500, 503}
	if method != "GET" {
		st = append(st, 409, 415, 422)
	}
	return st
}

// OpenAPI returns the OpenAPI 3.1 document of the API: every route of
// Routes with its parameters, bodies, headers and each problem it answers.
func OpenAPI() obj {
	problem := func(status int) obj {
		headers := obj{"X-Request-Id": requestIDHeader}
		if status == 503 {
			headers["Retry-After"] = retryHeader
		}
		return obj{"description": http.StatusText(status), "headers": headers,
			"content": obj{"application/problem+json": obj{"schema": ref("Problem")}}}
	}
	paths := obj{}
	for _, route := range Routes {
		method, path, _ := strings.Cut(route, " ")
		o := ops[route]
		headers := obj{"X-Request-Id": requestIDHeader}
		if method != "GET" && path != "/v1/verify" {
			headers["Keytrail-Seq"] = seqHeader
		}
		if singleObjects[route] {
			headers["ETag"] = etagHeader
		}
		content := obj{"application/json": obj{"schema": ref(o.response)}}
		if denying[route] {
			// ?dry_run=true answers a preview instead of the result.
			content = obj{"application/json": obj{"schema": obj{"oneOf": []any{ref(o.response), ref("Preview")}}}}
		}
		if path == "/metrics" {
			content = obj{"text/plain": obj{"schema": str}}
		}
		responses := obj{strconv.Itoa(o.status): obj{"description": http.StatusText(o.status), "headers": headers, "content": content}}
		for _, st := range errorStatuses(method, path) {
			responses[strconv.Itoa(st)] = problem(st)
		}
		if denying[route] && o.status != http.StatusOK {
			responses["200"] = obj{"description": "a dry run's preview (?dry_run=true)", "headers": obj{"X-Request-Id": requestIDHeader},
				"content": obj{"application/json": obj{"schema": ref("Preview")}}}
		}
		if createsObject(path) && method == "POST" {
			responses["200"] = obj{"description": "a replayed creation (Idempotency-Key)", "headers": headers, "content": content}
		}
		operation := obj{"summary": o.summary, "operationId": operationID(method, path), "responses": responses,
			"security": []any{}}
		if strings.HasPrefix(path, "/v1/") {
			operation["security"] = []any{obj{"bearer": []string{}}}
		}
		if o.request != "" {
			operation["requestBody"] = obj{"required": method != "POST" || o.request != "Reason",
				"content": obj{"application/json": obj{"schema": ref(o.request)}}}
		}
		var params []any
		for _, name := range []string{"tenant", "user", "key", "api", "webhook", "policy"} {
			if strings.Contains(path, "{"+name+"}") {
				params = append(params, obj{"name": name, "in": "path", "required": true, "schema": str})
			}
		}
		for _, q := range queryOf(method, path) {
			params = append(params, q)
		}
		if denying[route] {
			params = append(params, obj{"name": "dry_run", "in": "query", "schema": obj{"type": "boolean"},
				"description": "answer the events the write would append and the keys, users, APIs and last day's requests it would deny; append nothing"})
		}
		for _, h := range headersOf(method, path) {
			params = append(params, obj{"name": h, "in": "header", "required": false, "schema": str})
		}
		if len(params) > 0 {
			operation["parameters"] = params
		}
		item, _ := paths[path].(obj)
		if item == nil {
			item = obj{}
			paths[path] = item
		}
		item[strings.ToLower(method)] = operation
	}
	return obj{
		"openapi": "3.1.0",
		"info": obj{"title": "Keytrail admin API", "version": "1",
			"description": "Event-sourced API key lifecycle. Errors are RFC 9457 problems with a stable code. A route answered with another method is 405 with Allow."},
		"servers": []any{obj{"url": "http://127.0.0.1:7400", "description": "keytrail dev"}},
		"paths":   paths,
		"components": obj{"schemas": schemas(),
			"securitySchemes": obj{"bearer": obj{"type": "http", "scheme": "bearer", "description": "the root key or an admin key (scope keytrail:admin)"}}},
	}
}

// queryOf are a route's query parameters.
func queryOf(method, path string) []obj {
	page := []obj{{"name": "cursor", "in": "query", "schema": str, "description": "the last id of the previous page"},
		{"name": "limit", "in": "query", "schema": obj{"type": "integer", "minimum": 1, "maximum": 1000}}}
	switch {
	case method != "GET":
		return nil
	case strings.HasSuffix(path, "/explain"):
		return []obj{{"name": "at", "in": "query", "schema": dateTime}, {"name": "seq", "in": "query", "schema": integer},
			{"name": "scope", "in": "query", "schema": str}, {"name": "api", "in": "query", "schema": str, "description": "an API of the tenant the request was for"}}
	case strings.HasSuffix(path, "/keys"):
		statuses := make([]string, 0, 9)
		for _, st := range projections.EffectiveStatuses() {
			statuses = append(statuses, string(st))
		}
		return append(page, obj{"name": "user", "in": "query", "schema": str},
			obj{"name": "status", "in": "query", "schema": obj{"type": "string", "enum": statuses}},
			obj{"name": "expiring_within", "in": "query", "schema": dur},
			obj{"name": "with", "in": "query", "schema": obj{"type": "string", "enum": []string{"usage"}}},
			obj{"name": "unused_for", "in": "query", "schema": dur},
			obj{"name": "q", "in": "query", "schema": obj{"type": "string", "maxLength": 128}, "description": "keys whose id, name or hint contains this (case ignored)"})
	case strings.HasSuffix(path, "/decisions"):
		ps := page
		for _, n := range []string{"key", "user", "api"} {
			ps = append(ps, obj{"name": n, "in": "query", "schema": str})
		}
		return append(ps, obj{"name": "code", "in": "query", "schema": obj{"type": "string", "enum": projections.Codes()}},
			obj{"name": "since", "in": "query", "schema": str, "description": "RFC 3339, or a duration before now; default 24h"},
			obj{"name": "until", "in": "query", "schema": str, "description": "RFC 3339, or a duration before now; default none"})
	case strings.HasSuffix(path, "/usage"):
		var ps []obj
		for _, n := range []string{"key", "user", "api"} {
			ps = append(ps, obj{"name": n, "in": "query", "schema": str})
		}
		return append(ps, obj{"name": "code", "in": "query", "schema": obj{"type": "string", "enum": projections.Codes()}},
			obj{"name": "group_by", "in": "query", "schema": obj{"type": "string", "enum": projections.GroupBys}},
			obj{"name": "bucket", "in": "query", "schema": obj{"type": "string", "enum": []string{"minute", "hour", "day"}}},
			obj{"name": "since", "in": "query", "schema": str, "description": "RFC 3339, or a duration before now (24h, 30d); default 24h"},
			obj{"name": "until", "in": "query", "schema": str, "description": "RFC 3339, or a duration before now; default now"})
	case strings.HasSuffix(path, "/deliveries"):
		return []obj{{"name": "since", "in": "query", "schema": str, "description": "RFC 3339, or a duration before now; default 7d"},
			{"name": "msg_id", "in": "query", "schema": str}, page[1]}
	case strings.HasSuffix(path, "/webhooks"):
		return nil
	case strings.HasSuffix(path, "/notices"):
		return []obj{{"name": "since", "in": "query", "schema": str, "description": "RFC 3339, or a duration before now; default 7d"},
			{"name": "type", "in": "query", "schema": obj{"type": "string", "enum": events.NoticeTypes()}}, page[1]}
	case strings.HasSuffix(path, "/users"):
		return append(page, obj{"name": "with", "in": "query", "schema": obj{"type": "string", "enum": []string{"key_counts"}}})
	case createsObject(path):
		return page
	}
	return nil
}

func headersOf(method, path string) []string {
	switch {
	case method == "GET" && strings.HasPrefix(path, "/v1/"):
		return []string{"Keytrail-Min-Seq"}
	case method != "GET":
		return []string{"Idempotency-Key", "If-Match"}
	}
	return nil
}

func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	for _, part := range strings.Split(path, "/") {
		part = strings.Trim(part, "{}")
		if part == "" || part == "v1" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + strings.ReplaceAll(part[1:], "-", ""))
	}
	return b.String()
}

// problemCodeNames are the problem table's codes, for the document's enum.
func problemCodeNames() []string {
	var out []string
	for _, p := range ProblemCodes() {
		out = append(out, string(p.Code))
	}
	return out
}

package events

import (
	"fmt"
	"strconv"
	"strings"
)

// Stream and subject layout. One subject per aggregate, tenant first, so that
// a gateway serving some tenants subscribes to keytrail.evt.<tenant>.> only,
// and a user's own events and their keys' share the prefix
// keytrail.evt.<tenant>.u.<user>.> (a boundary for cross-aggregate checks).
//
//	keytrail.evt.<tenant>.t                  the tenant
//	keytrail.evt.<tenant>.u.<user>.u         a user
//	keytrail.evt.<tenant>.u.<user>.k.<key>   a key of that user
//	keytrail.evt.<tenant>.a.<api>            an API
//	keytrail.evt.<tenant>.w.<webhook>        a webhook endpoint
//	keytrail.evt.<tenant>.p.<policy>         an access policy
//	keytrail.evt.keytrail-system.s           the trusted signers
const (
	StreamName  = "KEYTRAIL_EVENTS"
	SubjectRoot = "keytrail.evt"
	AllSubjects = SubjectRoot + ".>"
)

// Headers every event message carries besides its JSON body, so that readers
// (including the nats CLI) can filter without decoding.
const (
	HeaderType      = "Keytrail-Type"
	HeaderVersion   = "Keytrail-Version"
	HeaderCommandID = "Keytrail-Command-Id"
)

// ValidToken reports whether s can stand as one NATS subject token: not empty,
// no '.', '*', '>', whitespace or control characters. The id validators are
// stricter; this is the last line of defence before a subject is built.
func ValidToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= ' ', c == 0x7f, c == '.', c == '*', c == '>':
			return false
		}
	}
	return true
}

// Subject returns the subject of an aggregate of a tenant, validating every
// id that goes into it.
func Subject(tenant string, a Aggregate) (string, error) {
	if !ValidTenantID(tenant) {
		return "", fmt.Errorf("events: invalid tenant id %q", tenant)
	}
	if err := a.validate(tenant); err != nil {
		return "", fmt.Errorf("events: %w", err)
	}
	for _, tok := range []string{tenant, a.ID, a.User} {
		if tok != "" && !ValidToken(tok) {
			return "", fmt.Errorf("events: %q is not a subject token", tok)
		}
	}
	var b strings.Builder
	b.Grow(len(SubjectRoot) + len(tenant) + len(a.User) + len(a.ID) + 12)
	b.WriteString(SubjectRoot)
	b.WriteByte('.')
	b.WriteString(tenant)
	switch a.Kind {
	case KindTenant:
		b.WriteString(".t")
	case KindUser:
		b.WriteString(".u.")
		b.WriteString(a.ID)
		b.WriteString(".u")
	case KindKey:
		b.WriteString(".u.")
		b.WriteString(a.User)
		b.WriteString(".k.")
		b.WriteString(a.ID)
	case KindAPI:
		b.WriteString(".a.")
		b.WriteString(a.ID)
	case KindWebhook:
		b.WriteString(".w.")
		b.WriteString(a.ID)
	case KindPolicy:
		b.WriteString(".p.")
		b.WriteString(a.ID)
	case KindTrust:
		b.WriteString(".s")
	}
	return b.String(), nil
}

// IsSubjectOf reports, without allocating, whether subject is the one the
// event's aggregate is stored under. The event must be valid.
func IsSubjectOf(e *Event, subject string) bool {
	rest, ok := strings.CutPrefix(subject, SubjectRoot+".")
	if !ok {
		return false
	}
	if rest, ok = strings.CutPrefix(rest, e.Tenant); !ok {
		return false
	}
	a := e.Aggregate
	switch a.Kind {
	case KindTenant:
		return rest == ".t"
	case KindUser:
		return len(rest) == len(a.ID)+5 && rest[:3] == ".u." && rest[3:3+len(a.ID)] == a.ID && rest[3+len(a.ID):] == ".u"
	case KindKey:
		n := len(a.User)
		return len(rest) == n+len(a.ID)+6 && rest[:3] == ".u." && rest[3:3+n] == a.User &&
			rest[3+n:6+n] == ".k." && rest[6+n:] == a.ID
	case KindAPI:
		return len(rest) == len(a.ID)+3 && rest[:3] == ".a." && rest[3:] == a.ID
	case KindWebhook:
		return len(rest) == len(a.ID)+3 && rest[:3] == ".w." && rest[3:] == a.ID
	case KindPolicy:
		return len(rest) == len(a.ID)+3 && rest[:3] == ".p." && rest[3:] == a.ID
	case KindTrust:
		return rest == ".s"
	}
	return false
}

// SubjectOf returns the subject an event must be stored under.
func SubjectOf(e *Event) (string, error) { return Subject(e.Tenant, e.Aggregate) }

// ParseSubject is the inverse of Subject.
func ParseSubject(subj string) (tenant string, a Aggregate, err error) {
	rest, ok := strings.CutPrefix(subj, SubjectRoot+".")
	if !ok {
		return "", Aggregate{}, fmt.Errorf("events: subject %q is not under %s", subj, SubjectRoot)
	}
	tok := strings.Split(rest, ".")
	switch {
	case len(tok) == 2 && tok[1] == "t":
		a = TenantAggregate(tok[0])
	case len(tok) == 4 && tok[1] == "u" && tok[3] == "u":
		a = UserAggregate(tok[2])
	case len(tok) == 5 && tok[1] == "u" && tok[3] == "k":
		a = KeyAggregate(tok[2], tok[4])
	case len(tok) == 3 && tok[1] == "a":
		a = APIAggregate(tok[2])
	case len(tok) == 3 && tok[1] == "w":
		a = WebhookAggregate(tok[2])
	case len(tok) == 3 && tok[1] == "p":
		a = PolicyAggregate(tok[2])
	case len(tok) == 2 && tok[1] == "s":
		a = TrustAggregate()
	default:
		return "", Aggregate{}, fmt.Errorf("events: subject %q has no aggregate layout", subj)
	}
	tenant = tok[0]
	if _, err := Subject(tenant, a); err != nil {
		return "", Aggregate{}, err
	}
	return tenant, a, nil
}

// TenantFilter is the subject filter for every event of one tenant.
func TenantFilter(tenant string) (string, error) {
	if !ValidTenantID(tenant) {
		return "", fmt.Errorf("events: invalid tenant id %q", tenant)
	}
	return SubjectRoot + "." + tenant + ".>", nil
}

// UserScopeFilter is the subject filter for a user's own events and all
// their keys' events.
func UserScopeFilter(tenant, user string) (string, error) {
	if !ValidTenantID(tenant) || !ValidUserID(user) {
		return "", fmt.Errorf("events: invalid tenant or user id")
	}
	return SubjectRoot + "." + tenant + ".u." + user + ".>", nil
}

// TenantKeysFilter is the subject filter for the events of every key of a
// tenant (whatever their user). The id is checked before it is called.
func TenantKeysFilter(tenant string) string { return SubjectRoot + "." + tenant + ".u.*.k.*" }

// AllAPIsFilter matches the events of every API of every tenant: path
// prefixes are unique across tenants, so creating or moving one checks them
// all.
const AllAPIsFilter = SubjectRoot + ".*.a.*"

// MsgID is the Nats-Msg-Id of the i-th event of a command on a subject. It is
// scoped by subject so that two tenants' equal idempotency keys never collide.
func MsgID(subject, commandID string, i int) string {
	if i == 0 {
		return subject + "#" + commandID
	}
	return subject + "#" + commandID + "#" + strconv.Itoa(i)
}

// Package natsauth says who may do what on Keytrail's bus: the four NATS
// identities (control, gateway, service, auditor), each an nkey, and the
// least-privilege permissions of each, as data. The embedded server
// (natsnode) is configured from it, `keytrail nats-config` renders it as a
// nats-server configuration fragment for a real cluster, and every mode
// connects with its role's identity and inbox prefix. It imports events (the
// names on the bus) and never nats-server.
//
// Deny wins: every role, control included, is denied deleting, purging,
// updating (hence weakening or sealing) the event stream and deleting its
// messages, so that a weaker stream can only be made by an operator with an
// identity outside Keytrail's.
package natsauth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/internal/secretfile"
)

// Role is a kind of NATS client of Keytrail.
type Role string

// The roles. Each has an identity of its own.
const (
	// Control nodes append events, own the streams and buckets, write
	// snapshots and serve commands (revocations) from other services.
	Control Role = "control"
	// Gateways read the event stream and the snapshots, and publish their
	// decisions and presence.
	Gateway Role = "gateway"
	// Service is what other services (a fraud system, an HR job) use to
	// request revocations: nothing else.
	Service Role = "service"
	// Auditor reads the event and decision streams, and nothing else.
	Auditor Role = "auditor"
)

// Roles lists every role, in a fixed order.
var Roles = [...]Role{Control, Gateway, Service, Auditor}

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("natsauth: no role %q (want one of control, gateway, service, auditor)", s)
}

// InboxPrefix is the prefix of the role's reply subjects. A role may
// subscribe under its own prefix only, so that no role reads another's
// replies: clients of a role must connect with it (ConnectOptions does; the
// nats CLI takes --inbox-prefix).
func (r Role) InboxPrefix() string { return "_INBOX." + string(r) }

// SeedFile is the file name of the role's seed in a directory of seeds.
func (r Role) SeedFile() string { return string(r) + ".nk" }

// Permissions is what one identity may publish and subscribe to. A subject
// matching a deny entry is refused even when an allow entry matches it.
type Permissions struct {
	PublishAllow, PublishDeny     []string
	SubscribeAllow, SubscribeDeny []string
	// Responses lets the identity answer the requests it receives (on
	// their reply subjects, once each), without a publish permission on
	// other roles' inboxes.
	Responses bool
}

// The JetStream API subjects, built per stream.
const jsAPI = "$JS.API."

// streamRead is what reading a stream takes: its info, direct and leader
// gets, and ephemeral consumers (ordered ones, the object store's push
// consumer with its flow control, a CLI's acking one).
func streamRead(stream string) []string {
	return []string{
		jsAPI + "STREAM.INFO." + stream,
		jsAPI + "STREAM.MSG.GET." + stream,
		jsAPI + "DIRECT.GET." + stream,
		jsAPI + "DIRECT.GET." + stream + ".>",
		jsAPI + "CONSUMER.CREATE." + stream,
		jsAPI + "CONSUMER.CREATE." + stream + ".>",
		jsAPI + "CONSUMER.INFO." + stream + ".*",
		jsAPI + "CONSUMER.DELETE." + stream + ".*",
		jsAPI + "CONSUMER.MSG.NEXT." + stream + ".*",
		"$JS.FC." + stream + ".>",
		// Acknowledgements of what it read (the nats CLI acks): they change
		// nothing in a limits stream. Control's durable consumers, which do
		// ack (webhook delivery), are denied to the other roles by name
		// (durableDenied), or their stream is not readable by them at all.
		"$JS.ACK." + stream + ".>",
	}
}

// streamOwn is what creating a stream and keeping it to its settings
// takes (not deleting or purging it).
func streamOwn(stream string) []string {
	return []string{jsAPI + "STREAM.CREATE." + stream, jsAPI + "STREAM.UPDATE." + stream}
}

// Streams of the buckets: JetStream keeps an object store in OBJ_<bucket>
// and a key-value bucket in KV_<bucket>.
const (
	snapshotStream    = "OBJ_" + events.SnapshotBucket
	leaseStream       = "KV_" + events.LeaseBucket
	idempotencyStream = "KV_" + events.IdempotencyBucket
	// webhookSecretStream holds the sealed signing secrets of webhook
	// endpoints: control alone reads it.
	webhookSecretStream = "KV_" + events.WebhookSecretBucket
)

// eventStreamDenied is what no role may do to the event stream: update its
// configuration (weaken or seal it), delete or purge it, delete a message,
// restore it from a backup, or move it off its peers.
func eventStreamDenied() []string {
	s := events.StreamName
	return []string{
		jsAPI + "STREAM.UPDATE." + s,
		jsAPI + "STREAM.DELETE." + s,
		jsAPI + "STREAM.PURGE." + s,
		jsAPI + "STREAM.MSG.DELETE." + s,
		jsAPI + "STREAM.RESTORE." + s,
		jsAPI + "STREAM.PEER.REMOVE." + s,
		// the decision log is evidence too: nobody trims it from inside
		jsAPI + "STREAM.UPDATE." + events.DecisionStream,
		jsAPI + "STREAM.DELETE." + events.DecisionStream,
		jsAPI + "STREAM.PURGE." + events.DecisionStream,
		jsAPI + "STREAM.MSG.DELETE." + events.DecisionStream,
		// the usage counts likewise: a count is not taken back
		jsAPI + "STREAM.UPDATE." + events.UsageStream,
		jsAPI + "STREAM.DELETE." + events.UsageStream,
		jsAPI + "STREAM.PURGE." + events.UsageStream,
		jsAPI + "STREAM.MSG.DELETE." + events.UsageStream,
		// and the notices: what a tenant was told stays told
		jsAPI + "STREAM.UPDATE." + events.NoticeStream,
		jsAPI + "STREAM.DELETE." + events.NoticeStream,
		jsAPI + "STREAM.PURGE." + events.NoticeStream,
		jsAPI + "STREAM.MSG.DELETE." + events.NoticeStream,
		// and the webhook messages with their attempt log
		jsAPI + "STREAM.UPDATE." + events.WebhookStream,
		jsAPI + "STREAM.DELETE." + events.WebhookStream,
		jsAPI + "STREAM.PURGE." + events.WebhookStream,
		jsAPI + "STREAM.MSG.DELETE." + events.WebhookStream,
		// and the checkpoints: what was signed stays signed
		jsAPI + "STREAM.UPDATE." + events.CheckpointStream,
		jsAPI + "STREAM.DELETE." + events.CheckpointStream,
		jsAPI + "STREAM.PURGE." + events.CheckpointStream,
		jsAPI + "STREAM.MSG.DELETE." + events.CheckpointStream,
	}
}

// WebhookFanout is the durable consumer of the notice stream that control
// nodes' webhook dispatchers share (services/webhooks): acknowledging,
// pulling, deleting or redefining it would drop or resend every tenant's
// deliveries, so only control may touch it.
const WebhookFanout = "keytrail-webhooks"

// durableDenied is what the roles that may read the notice stream (with
// ordered consumers of their own) may not do to control's durable consumer
// of it.
func durableDenied() []string {
	s, c := events.NoticeStream, WebhookFanout
	return []string{
		jsAPI + "CONSUMER.CREATE." + s + "." + c,
		jsAPI + "CONSUMER.CREATE." + s + "." + c + ".>",
		jsAPI + "CONSUMER.DURABLE.CREATE." + s + "." + c,
		jsAPI + "CONSUMER.DELETE." + s + "." + c,
		jsAPI + "CONSUMER.MSG.NEXT." + s + "." + c,
		"$JS.ACK." + s + "." + c + ".>",
	}
}

// For returns the permissions of role r. Subscriptions have allow lists
// only: a subscribe deny list makes the server check every message it
// delivers against it, and the allow lists already leave out everything
// else (commands above all).
func For(r Role) Permissions {
	inbox := r.InboxPrefix() + ".>"
	deny := eventStreamDenied()
	switch r {
	case Control:
		pub := []string{events.AllSubjects, jsAPI + "INFO", jsAPI + "STREAM.CREATE." + events.StreamName}
		pub = append(pub, streamRead(events.StreamName)...)
		// the decision log: created by control, and searched for the admin API
		pub = append(pub, jsAPI+"STREAM.CREATE."+events.DecisionStream)
		pub = append(pub, streamRead(events.DecisionStream)...)
		// the usage stream: created and folded into rollups by control
		pub = append(pub, jsAPI+"STREAM.CREATE."+events.UsageStream)
		pub = append(pub, streamRead(events.UsageStream)...)
		// the notices: derived and published by control
		pub = append(pub, jsAPI+"STREAM.CREATE."+events.NoticeStream, events.NoticeSubjects)
		pub = append(pub, streamRead(events.NoticeStream)...)
		// signed checkpoints of the log
		pub = append(pub, jsAPI+"STREAM.CREATE."+events.CheckpointStream, events.CheckpointSubject)
		pub = append(pub, streamRead(events.CheckpointStream)...)
		// webhook delivery: its stream, and the sealed secrets
		pub = append(pub, jsAPI+"STREAM.CREATE."+events.WebhookStream, events.WebhookSubjects)
		pub = append(pub, streamRead(events.WebhookStream)...)
		for _, bucket := range []string{snapshotStream, leaseStream, idempotencyStream, webhookSecretStream} {
			pub = append(pub, streamOwn(bucket)...)
			pub = append(pub, streamRead(bucket)...)
		}
		// Writing an object replaces its chunks: a purge of the old ones.
		pub = append(pub, jsAPI+"STREAM.PURGE."+snapshotStream,
			"$O."+events.SnapshotBucket+".>", "$KV."+events.LeaseBucket+".>", "$KV."+events.IdempotencyBucket+".>",
			"$KV."+events.WebhookSecretBucket+".>")
		return Permissions{PublishAllow: pub, PublishDeny: deny,
			SubscribeAllow: []string{inbox, events.CommandSubjects}, Responses: true}
	case Gateway:
		pub := streamRead(events.StreamName)
		pub = append(pub, streamRead(snapshotStream)...)
		pub = append(pub, streamRead(events.CheckpointStream)...) // to catch up by
		pub = append(pub, jsAPI+"STREAM.INFO."+events.DecisionStream, events.DecisionSubjects, events.PresenceSubjects,
			jsAPI+"STREAM.INFO."+events.UsageStream, events.UsageSubjects)
		return Permissions{PublishAllow: pub, PublishDeny: append(deny, events.AllSubjects, events.CommandSubjects),
			SubscribeAllow: []string{inbox, events.PresenceSubjects}}
	case Service:
		// Services revoke keys, and hear (or read back) the notices.
		pub := append([]string{events.RevocationSubjects}, streamRead(events.NoticeStream)...)
		return Permissions{PublishAllow: pub,
			PublishDeny:    append(append(deny, events.AllSubjects), durableDenied()...),
			SubscribeAllow: []string{inbox, events.NoticeSubjects}}
	case Auditor:
		pub := streamRead(events.StreamName)
		pub = append(pub, streamRead(events.DecisionStream)...)
		pub = append(pub, streamRead(events.UsageStream)...)
		pub = append(pub, streamRead(events.NoticeStream)...)
		pub = append(pub, streamRead(events.CheckpointStream)...)
		// what the nats CLI asks before it reads a stream
		pub = append(pub, jsAPI+"INFO", jsAPI+"STREAM.NAMES", jsAPI+"STREAM.LIST")
		return Permissions{PublishAllow: pub, PublishDeny: append(append(deny, events.AllSubjects, events.CommandSubjects), durableDenied()...),
			SubscribeAllow: []string{inbox}}
	}
	// Not a role: nothing at all (an empty allow list would allow all).
	return Permissions{PublishDeny: []string{">"}, SubscribeDeny: []string{">"}}
}

// Identity is a role's nkey: the seed signs the server's challenge; the
// server knows only the public key.
type Identity struct {
	Role Role
	seed []byte
}

// NewIdentity makes a fresh identity for role.
func NewIdentity(role Role) (Identity, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Identity{}, fmt.Errorf("natsauth: new %s identity: %w", role, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return Identity{}, fmt.Errorf("natsauth: new %s identity: %w", role, err)
	}
	return Identity{Role: role, seed: seed}, nil
}

// ParseIdentity reads a seed (the contents of a .nk file, or a decorated
// nkey file) for role.
func ParseIdentity(role Role, b []byte) (Identity, error) {
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return Identity{}, fmt.Errorf("natsauth: %s seed: %w", role, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return Identity{}, fmt.Errorf("natsauth: %s seed: %w", role, err)
	}
	if !nkeys.IsValidPublicUserKey(mustPublic(kp)) {
		return Identity{}, fmt.Errorf("natsauth: %s seed is not a user seed", role)
	}
	return Identity{Role: role, seed: seed}, nil
}

func mustPublic(kp nkeys.KeyPair) string {
	pub, _ := kp.PublicKey()
	return pub
}

// PublicKey is the identity's public nkey (U…), what a server configuration
// holds.
func (id Identity) PublicKey() string {
	kp, err := nkeys.FromSeed(id.seed)
	if err != nil {
		return ""
	}
	return mustPublic(kp)
}

// ConnectOptions authenticate as the identity and keep replies under its
// role's inbox prefix.
func (id Identity) ConnectOptions() []nats.Option {
	seed := slices.Clone(id.seed)
	return []nats.Option{
		nats.Nkey(id.PublicKey(), func(nonce []byte) ([]byte, error) {
			kp, err := nkeys.FromSeed(seed)
			if err != nil {
				return nil, err
			}
			defer kp.Wipe()
			return kp.Sign(nonce)
		}),
		nats.CustomInboxPrefix(id.Role.InboxPrefix()),
	}
}

// Write writes the seed to path, mode 0600, refusing to overwrite a file.
func (id Identity) Write(path string) error {
	if err := secretfile.Create(path, append(slices.Clone(id.seed), '\n')); err != nil {
		return fmt.Errorf("natsauth: %w", err)
	}
	return nil
}

// ReadSeedFile reads the identity of role from a seed file, refusing one
// that others than its owner can read.
func ReadSeedFile(role Role, path string) (Identity, error) {
	b, err := secretfile.Read(path)
	if err != nil {
		return Identity{}, fmt.Errorf("natsauth: %w", err)
	}
	id, err := ParseIdentity(role, b)
	if err != nil {
		return Identity{}, fmt.Errorf("%w (in %s)", err, path)
	}
	return id, nil
}

// Set is one identity per role.
type Set map[Role]Identity

// NewSet makes a fresh identity for every role.
func NewSet() (Set, error) {
	s := Set{}
	for _, r := range Roles {
		id, err := NewIdentity(r)
		if err != nil {
			return nil, err
		}
		s[r] = id
	}
	return s, nil
}

// LoadOrCreateDir reads every role's seed from dir (<role>.nk), creating
// the directory (0700) and any missing seed (0600) first.
func LoadOrCreateDir(dir string) (Set, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsauth: %w", err)
	}
	s := Set{}
	for _, r := range Roles {
		path := filepath.Join(dir, r.SeedFile())
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			id, err := NewIdentity(r)
			if err != nil {
				return nil, err
			}
			if err := id.Write(path); err != nil {
				return nil, err
			}
		}
		id, err := ReadSeedFile(r, path)
		if err != nil {
			return nil, err
		}
		s[r] = id
	}
	return s, nil
}

// WriteDir writes every seed of s into dir (0700), refusing to overwrite.
func (s Set) WriteDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("natsauth: %w", err)
	}
	for _, r := range Roles {
		if id, ok := s[r]; ok {
			if err := id.Write(filepath.Join(dir, r.SeedFile())); err != nil {
				return err
			}
		}
	}
	return nil
}

// Fragment renders the identities of s with their permissions as a
// nats-server configuration fragment: an authorization block to include
// in every server's configuration. Anonymous clients are refused by any
// server that has it.
func (s Set) Fragment() string {
	var b strings.Builder
	b.WriteString("# Keytrail's NATS identities and their permissions (keytrail nats-config).\n")
	b.WriteString("# Include this file in every server's configuration. Deny wins: no identity may\n")
	b.WriteString("# update, delete or purge KEYTRAIL_EVENTS, or delete its messages.\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, r := range Roles {
		id, ok := s[r]
		if !ok {
			continue
		}
		p := For(r)
		fmt.Fprintf(&b, "    # %s (seed: %s; inbox prefix %s)\n", r, r.SeedFile(), r.InboxPrefix())
		fmt.Fprintf(&b, "    {\n      nkey: %q\n      permissions: {\n", id.PublicKey())
		fmt.Fprintf(&b, "        publish: {\n          allow: %s\n          deny: %s\n        }\n", list(p.PublishAllow), list(p.PublishDeny))
		fmt.Fprintf(&b, "        subscribe: {\n          allow: %s\n          deny: %s\n        }\n", list(p.SubscribeAllow), list(p.SubscribeDeny))
		if p.Responses {
			b.WriteString("        allow_responses: true\n")
		}
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// list renders subjects as a configuration array of quoted strings, one a
// line (quoted, so that a $ is not read as a variable).
func list(subjects []string) string {
	if len(subjects) == 0 {
		return "[]"
	}
	var b strings.Builder
	b.WriteString("[\n")
	for _, s := range subjects {
		fmt.Fprintf(&b, "            %q\n", s)
	}
	b.WriteString("          ]")
	return b.String()
}

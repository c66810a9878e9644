package events

// Everything else Keytrail puts on the bus besides the event stream and the
// decision log, named once here so that the roles that use a name and the
// permissions that allow it (services/natsauth) cannot drift apart.
const (
	// CommandSubjects are the requests control nodes serve; only control
	// may subscribe to them, since a request carries an admin bearer key.
	CommandSubjects = "keytrail.cmd.>"
	// RevocationSubjects are the revocation requests of other services:
	// keytrail.cmd.<tenant>.keys.revoke.
	RevocationSubjects = "keytrail.cmd.*.keys.revoke"

	// PresenceSubjectPrefix is followed by the group of gateways (the set of
	// tenants they serve) that announce themselves to share rate limits.
	PresenceSubjectPrefix = "keytrail.gw.presence."
	PresenceSubjects      = PresenceSubjectPrefix + ">"

	// SnapshotBucket is the object store of read-model snapshots (its stream
	// is OBJ_<bucket>); LeaseBucket the key-value bucket whose lease makes
	// one control node at a time the snapshot writer (stream KV_<bucket>).
	SnapshotBucket = "KEYTRAIL_SNAPSHOTS"
	LeaseBucket    = "KEYTRAIL_SNAPSHOT_LEASES"
)

// IdempotencyBucket is the key-value bucket (stream KV_<bucket>) where
// control nodes remember, for the idempotency window, which request each
// Idempotency-Key was first used with.
const IdempotencyBucket = "KEYTRAIL_IDEMPOTENCY"

// Webhook delivery (docs/notifications.md). WebhookSecretBucket is the
// key-value bucket (stream KV_<bucket>) holding endpoints' signing secrets,
// each sealed under the control nodes' key-encryption key. WebhookStream
// holds the messages to deliver, one subject per endpoint
// (keytrail.whk.msg.<tenant>.<webhook>), and the log of delivery attempts
// (keytrail.whk.att.<tenant>.<webhook>).
const (
	WebhookSecretBucket  = "KEYTRAIL_WEBHOOK_SECRETS"
	WebhookStream        = "KEYTRAIL_WEBHOOKS"
	WebhookSubjects      = "keytrail.whk.>"
	WebhookMsgPrefix     = "keytrail.whk.msg."
	WebhookAttemptPrefix = "keytrail.whk.att."
)

package trust

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/sumdb/note"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
)

// A checkpoint is a C2SP signed note (golang.org/x/mod/sumdb/note) whose
// key name is the signer's id.

// keyHash is a note key's hash: the first 4 bytes of SHA-256(name, "\n",
// the algorithm byte 0x01 for Ed25519, the public key).
func keyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{0x01})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

type noteSigner struct {
	key  ed25519.PrivateKey
	name string
}

func (s noteSigner) Name() string { return s.name }
func (s noteSigner) KeyHash() uint32 {
	return keyHash(s.name, s.key.Public().(ed25519.PublicKey))
}
func (s noteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

type noteVerifier struct {
	pub  ed25519.PublicKey
	name string
}

func (v noteVerifier) Name() string                { return v.name }
func (v noteVerifier) KeyHash() uint32             { return keyHash(v.name, v.pub) }
func (v noteVerifier) Verify(msg, sig []byte) bool { return ed25519.Verify(v.pub, msg, sig) }
func (v verifiers) Verifier(name string, hash uint32) (note.Verifier, error) {
	pub, ok := v[name]
	if !ok || keyHash(name, pub) != hash {
		return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
	}
	return noteVerifier{pub: pub, name: name}, nil
}

// verifiers are the signers a checkpoint may be signed by, by id.
type verifiers map[string]ed25519.PublicKey

// SignCheckpoint signs the checkpoint text of the log origin at seq.
func SignCheckpoint(key ed25519.PrivateKey, origin string, seq uint64, chain events.Hash) ([]byte, error) {
	return note.Sign(&note.Note{Text: events.CheckpointText(origin, seq, chain)},
		noteSigner{key: key, name: events.SignerID(key.Public().(ed25519.PublicKey))})
}

// OpenCheckpoint verifies a checkpoint against signers (id → public key)
// and returns what it states.
func OpenCheckpoint(msg []byte, signers map[string]ed25519.PublicKey) (origin string, seq uint64, chain events.Hash, err error) {
	n, err := note.Open(msg, verifiers(signers))
	if err != nil {
		return "", 0, events.Hash{}, fmt.Errorf("trust: checkpoint: %w", err)
	}
	return events.ParseCheckpointText(n.Text)
}

// Origin names the log a checkpoint is of: the stream and when it was
// created (a stream made anew is another log).
func Origin(created time.Time) string {
	return "keytrail/" + events.StreamName + "/" + strconv.FormatInt(created.UTC().Unix(), 10)
}

// EnsureCheckpointStream creates the stream of checkpoints if it is
// missing.
func EnsureCheckpointStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	return store.EnsureStream(ctx, js, jetstream.StreamConfig{Name: events.CheckpointStream, Description: "Keytrail signed checkpoints of the event log",
		Subjects: []string{events.CheckpointSubject}, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		Duplicates: 24 * time.Hour, DenyDelete: true, DenyPurge: true})
}

// Checkpointer folds the global chain over every message of the log and
// publishes a signed checkpoint at every CheckpointEvery-th sequence, and
// at the log's last sequence when it has been quiet for Quiet. Checkpoints
// fall on the same sequences on every control node, and carry the sequence
// as their Nats-Msg-Id: one is stored for each, whichever node signs it.
type Checkpointer struct {
	Store  store.Store
	JS     jetstream.JetStream
	Key    ed25519.PrivateKey
	Origin string
	Quiet  time.Duration
	Log    *slog.Logger
}

// Run publishes checkpoints until ctx ends.
func (c *Checkpointer) Run(ctx context.Context) error {
	if c.Quiet <= 0 {
		c.Quiet = time.Second
	}
	sub, err := c.Store.Subscribe(ctx, store.SubscribeOptions{})
	if err != nil {
		return err
	}
	defer sub.Close()
	var chain events.Hash
	var seq, published uint64
	for {
		wait, cancel := context.WithTimeout(ctx, c.Quiet)
		d, err := sub.Next(wait)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, context.DeadlineExceeded):
			if seq > published { // quiet: what has been read so far
				if c.publish(ctx, seq, chain) == nil {
					published = seq
				}
			}
			continue
		case err != nil:
			return err
		}
		if d.Seq != seq+1 {
			c.Log.Warn("checkpoints: a gap in the log; checkpoints stop here", "after", seq, "next", d.Seq)
			return fmt.Errorf("trust: the log has a gap after seq %d", seq)
		}
		seq, chain = d.Seq, events.ChainNext(chain, d.Seq, d.Raw)
		if seq%events.CheckpointEvery == 0 && c.publish(ctx, seq, chain) == nil {
			published = seq
		}
	}
}

func (c *Checkpointer) publish(ctx context.Context, seq uint64, chain events.Hash) error {
	b, err := SignCheckpoint(c.Key, c.Origin, seq, chain)
	if err == nil {
		m := nats.NewMsg(events.CheckpointSubject)
		m.Data = b
		m.Header.Set(jetstream.MsgIDHeader, "chk:"+strconv.FormatUint(seq, 10))
		_, err = c.JS.PublishMsg(ctx, m, jetstream.WithExpectStream(events.CheckpointStream))
	}
	if err != nil && ctx.Err() == nil {
		c.Log.Warn("checkpoint not published", "seq", seq, "err", err)
	}
	return err
}

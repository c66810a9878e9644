package events

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoints (docs/signing.md): signed statements of the global chain,
// folded over every message of the event log in stream order.
const (
	CheckpointStream  = "KEYTRAIL_CHECKPOINTS"
	CheckpointSubject = "keytrail.chk.events"
	// CheckpointEvery is how many messages a checkpoint spans at most.
	CheckpointEvery = 1024
	// MaxRefused bounds the sequences a checkpoint names as refused: a
	// signer publishes a checkpoint early rather than name more.
	MaxRefused = 256
)

// ChainNext folds the message at seq (msg: the SHA-256 of its stored
// bytes) into the global chain.
func ChainNext(prev Hash, seq uint64, msg Hash) Hash {
	var b [32 + 8 + 32]byte
	copy(b[:32], prev[:])
	binary.BigEndian.PutUint64(b[32:40], seq)
	copy(b[40:], msg[:])
	return sha256.Sum256(b[:])
}

// Checkpoint is what a signed checkpoint states: the log (Origin, named by
// its stream's creation), a sequence, and the global chain there. When
// Judged, its signer also judged every message after From up to Seq as the
// readers do (projections.Catalog.TrustedAt), and Refused are the
// sequences that did not count: a reader catching up takes that judgement
// for the span instead of verifying each signature.
type Checkpoint struct {
	Origin  string
	Seq     uint64
	Chain   Hash
	Judged  bool
	From    uint64
	Refused []uint64
}

// Text is the checkpoint's note text, in the C2SP tlog-checkpoint form:
// origin, sequence, chain value in base64, then — when judged — one
// extension line "judged <from>[ <refused seq>…]".
func (c Checkpoint) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Seq, base64.StdEncoding.EncodeToString(c.Chain[:]))
	if c.Judged {
		fmt.Fprintf(&b, "judged %d", c.From)
		for _, s := range c.Refused {
			fmt.Fprintf(&b, " %d", s)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Vouches reports whether the checkpoint's judgement covers seq.
func (c *Checkpoint) Vouches(seq uint64) bool { return c.Judged && c.From < seq && seq <= c.Seq }

// IsRefused reports whether the checkpoint names seq as refused.
func (c *Checkpoint) IsRefused(seq uint64) bool {
	_, found := slices.BinarySearch(c.Refused, seq)
	return found
}

func parseSeq(s string) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && strconv.FormatUint(n, 10) == s
}

// ParseCheckpoint reads a checkpoint's note text (strictly: any other
// extension line, or a judgement out of order or out of its span, is an
// error).
func ParseCheckpoint(text string) (Checkpoint, error) {
	var c Checkpoint
	bad := func(why string) (Checkpoint, error) {
		return Checkpoint{}, fmt.Errorf("events: not a checkpoint: %s", why)
	}
	lines := strings.Split(text, "\n")
	if n := len(lines); (n != 4 && n != 5) || lines[n-1] != "" || lines[0] == "" {
		return bad("three or four lines")
	}
	c.Origin = lines[0]
	var ok bool
	if c.Seq, ok = parseSeq(lines[1]); !ok {
		return bad("its sequence is not a number")
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != len(c.Chain) {
		return bad("its chain value is not 32 bytes in base64")
	}
	copy(c.Chain[:], h)
	if len(lines) == 5 {
		f := strings.Split(lines[3], " ")
		if len(f) < 2 || f[0] != "judged" || len(f)-2 > MaxRefused {
			return bad("an unknown extension line")
		}
		c.Judged = true
		if c.From, ok = parseSeq(f[1]); !ok || c.From >= c.Seq {
			return bad("the judged span is not before its sequence")
		}
		prev := c.From
		for _, s := range f[2:] {
			n, ok := parseSeq(s)
			if !ok || n <= prev || n > c.Seq {
				return bad("refused sequences out of order or out of the span")
			}
			c.Refused, prev = append(c.Refused, n), n
		}
	}
	return c, nil
}

// NoteText is a signed note's text: everything up to its blank line (what
// ParseCheckpoint reads before the signature is checked).
func NoteText(b []byte) string {
	s := string(b)
	if i := strings.Index(s, "\n\n"); i >= 0 {
		return s[:i+1]
	}
	return s
}

// A checkpoint is a C2SP signed note (golang.org/x/mod/sumdb/note) whose
// key name is the signer's id.

// noteKeyHash is a note key's hash: the first 4 bytes of SHA-256(name,
// "\n", the algorithm byte 0x01 for Ed25519, the public key).
func noteKeyHash(name string, pub ed25519.PublicKey) uint32 {
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
	return noteKeyHash(s.name, s.key.Public().(ed25519.PublicKey))
}
func (s noteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

type noteVerifier struct {
	pub  ed25519.PublicKey
	name string
}

func (v noteVerifier) Name() string                { return v.name }
func (v noteVerifier) KeyHash() uint32             { return noteKeyHash(v.name, v.pub) }
func (v noteVerifier) Verify(msg, sig []byte) bool { return ed25519.Verify(v.pub, msg, sig) }

// noteVerifiers are the signers a note may be signed by, by id.
type noteVerifiers map[string]ed25519.PublicKey

func (v noteVerifiers) Verifier(name string, hash uint32) (note.Verifier, error) {
	pub, ok := v[name]
	if !ok || noteKeyHash(name, pub) != hash {
		return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
	}
	return noteVerifier{pub: pub, name: name}, nil
}

// SignNote signs text as a note with key, named by its signer id.
func SignNote(key ed25519.PrivateKey, text string) ([]byte, error) {
	return note.Sign(&note.Note{Text: text}, noteSigner{key: key, name: SignerID(key.Public().(ed25519.PublicKey))})
}

// OpenNote verifies a note signed by one of signers (id → public key) and
// returns its text.
func OpenNote(msg []byte, signers map[string]ed25519.PublicKey) (string, error) {
	n, err := note.Open(msg, noteVerifiers(signers))
	if err != nil {
		return "", err
	}
	return n.Text, nil
}

// SignCheckpoint signs a checkpoint.
func SignCheckpoint(key ed25519.PrivateKey, c Checkpoint) ([]byte, error) {
	return SignNote(key, c.Text())
}

// OpenCheckpoint verifies a checkpoint against signers (id → public key)
// and returns what it states.
func OpenCheckpoint(msg []byte, signers map[string]ed25519.PublicKey) (Checkpoint, error) {
	text, err := OpenNote(msg, signers)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("events: checkpoint: %w", err)
	}
	return ParseCheckpoint(text)
}

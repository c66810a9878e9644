package webhooks

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/internal/secretfile"
)

// KEK is the key-encryption key that seals endpoints' signing secrets at
// rest: 32 random bytes, in hex, in a file only its owner reads. Every
// control node of a deployment holds the same one.
type KEK struct {
	aead cipher.AEAD
	id   [8]byte // names the KEK in each sealed secret, so that a wrong one is told apart from damage
}

const kekLen = 32

// ReadKEK reads a key-encryption key file, refusing one that others than
// its owner can read.
func ReadKEK(path string) (*KEK, error) {
	b, err := secretfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("webhooks: key-encryption key: %w", err)
	}
	key, err := hex.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(key) != kekLen {
		return nil, fmt.Errorf("webhooks: %s is not a key-encryption key (%d bytes in hex; make one with: head -c %d /dev/urandom | xxd -p -c %d)", path, kekLen, kekLen, kekLen)
	}
	return newKEK(key)
}

// LoadOrCreateKEK reads the key-encryption key at path, creating it (0600)
// first if it is missing: keytrail dev's <data>/kek.
func LoadOrCreateKEK(path string) (*KEK, error) {
	if secretfile.Missing(path) {
		key := make([]byte, kekLen)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := secretfile.Create(path, []byte(hex.EncodeToString(key)+"\n")); err != nil {
			return nil, fmt.Errorf("webhooks: key-encryption key: %w", err)
		}
	}
	return ReadKEK(path)
}

func newKEK(key []byte) (*KEK, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k := &KEK{aead: aead}
	sum := sha256.Sum256(append([]byte("keytrail/kek-id/v1\x00"), key...))
	copy(k.id[:], sum[:])
	return k, nil
}

// sealedMagic starts a sealed secret: format 1, AES-256-GCM.
const sealedMagic = "KTWS1"

// ErrWrongKEK: a secret sealed under another key-encryption key.
var ErrWrongKEK = errors.New("webhooks: the secret was sealed under another key-encryption key")

// seal encrypts a secret bound to where it belongs (additional data: a
// sealed secret copied to another endpoint does not open).
func (k *KEK) seal(secret []byte, ad string) ([]byte, error) {
	out := append([]byte(sealedMagic), k.id[:]...)
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, secret, []byte(ad)), nil
}

func (k *KEK) open(sealed []byte, ad string) ([]byte, error) {
	head := len(sealedMagic) + len(k.id) + k.aead.NonceSize()
	if len(sealed) < head+k.aead.Overhead() || string(sealed[:len(sealedMagic)]) != sealedMagic {
		return nil, errors.New("webhooks: not a sealed secret")
	}
	if !bytes.Equal(sealed[len(sealedMagic):len(sealedMagic)+len(k.id)], k.id[:]) {
		return nil, ErrWrongKEK
	}
	nonce := sealed[len(sealedMagic)+len(k.id) : head]
	plain, err := k.aead.Open(nil, nonce, sealed[head:], []byte(ad))
	if err != nil {
		return nil, errors.New("webhooks: a sealed secret does not open (damaged, or moved)")
	}
	return plain, nil
}

// Vault keeps endpoints' signing secrets sealed in a key-value bucket
// outside the event log: the log names a secret by its id only.
type Vault struct {
	kv  jetstream.KeyValue
	kek *KEK

	mu    sync.Mutex
	cache map[string]Secret
}

// OpenVault creates (or opens) the secrets bucket.
func OpenVault(ctx context.Context, js jetstream.JetStream, kek *KEK, replicas int) (*Vault, error) {
	if kek == nil {
		return nil, errors.New("webhooks: a key-encryption key is required")
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.WebhookSecretBucket,
		Description: "Keytrail webhook signing secrets, sealed", History: 1, Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
		MaxBytes: 64 << 20}) // about 400 000 secrets: a bound on what refused requests could leave
	if err != nil {
		return nil, fmt.Errorf("webhooks: secrets bucket: %w", err)
	}
	return &Vault{kv: kv, kek: kek, cache: map[string]Secret{}}, nil
}

func vaultKey(tenant, webhook, secretID string) string {
	return tenant + "." + webhook + "." + secretID
}

func vaultAD(tenant, webhook, secretID string) string {
	return "keytrail/webhook-secret/v1\x00" + tenant + "\x00" + webhook + "\x00" + secretID
}

// Put seals and stores a new secret (once: a secret id is never reused).
func (v *Vault) Put(ctx context.Context, tenant, webhook, secretID string, s Secret) error {
	ad := vaultAD(tenant, webhook, secretID)
	sealed, err := v.kek.seal(s.Bytes(), ad)
	if err != nil {
		return err
	}
	if _, err := v.kv.Create(ctx, vaultKey(tenant, webhook, secretID), sealed); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("webhooks: store secret: %w", err)
	}
	return nil
}

// Get returns a stored secret.
func (v *Vault) Get(ctx context.Context, tenant, webhook, secretID string) (Secret, error) {
	key := vaultKey(tenant, webhook, secretID)
	v.mu.Lock()
	s, ok := v.cache[key]
	v.mu.Unlock()
	if ok {
		return s, nil
	}
	e, err := v.kv.Get(ctx, key)
	if err != nil {
		return Secret{}, fmt.Errorf("webhooks: secret %s of %s: %w", secretID, webhook, err)
	}
	plain, err := v.kek.open(e.Value(), vaultAD(tenant, webhook, secretID))
	if err != nil {
		return Secret{}, fmt.Errorf("webhooks: secret %s of %s: %w", secretID, webhook, err)
	}
	s = Secret{key: plain}
	v.mu.Lock()
	v.cache[key] = s
	v.mu.Unlock()
	return s, nil
}

// Secrets returns the secrets a delivery at now is signed with.
func (v *Vault) Secrets(ctx context.Context, tenant, webhook string, ids []string) ([]Secret, error) {
	out := make([]Secret, 0, len(ids))
	for _, id := range ids {
		s, err := v.Get(ctx, tenant, webhook, id)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Discard purges one secret (control.WebhookSecrets).
func (v *Vault) Discard(ctx context.Context, tenant, webhook, id string) error {
	key := vaultKey(tenant, webhook, id)
	v.mu.Lock()
	delete(v.cache, key)
	v.mu.Unlock()
	return v.kv.Purge(ctx, key)
}

// Forget purges every secret of an endpoint (deleted: nothing is signed
// for it again).
func (v *Vault) Forget(ctx context.Context, tenant, webhook string) error {
	keys, err := v.kv.ListKeysFiltered(ctx, tenant+"."+webhook+".*")
	if err != nil {
		return fmt.Errorf("webhooks: forget secrets: %w", err)
	}
	var errs []error
	for key := range keys.Keys() {
		errs = append(errs, v.kv.Purge(ctx, key))
		v.mu.Lock()
		delete(v.cache, key)
		v.mu.Unlock()
	}
	return errors.Join(errs...)
}

// New makes a secret, seals and stores it under id, and returns it in the
// whsec_ form (control.WebhookSecrets).
func (v *Vault) New(ctx context.Context, tenant, webhook, id string) (string, error) {
	s, err := NewSecret()
	if err != nil {
		return "", err
	}
	if err := v.Put(ctx, tenant, webhook, id, s); err != nil {
		return "", err
	}
	return s.Reveal(), nil
}

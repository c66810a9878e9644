package webhooks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKEKFiles: dev's key-encryption key is made once, mode 0600, and read
// back the same; a file others can read, or that is not 32 bytes of hex, is
// refused with what to do; a secret sealed under one key does not open
// under another, nor for another endpoint.
func TestKEKFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kek")
	k1, err := LoadOrCreateKEK(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("kek mode %v", fi.Mode().Perm())
	}
	again, err := LoadOrCreateKEK(path)
	if err != nil || again.id != k1.id {
		t.Fatalf("read back another key: %v", err)
	}
	sealed, err := k1.seal([]byte("0123456789abcdef0123456789abcdef"), vaultAD("acme", "whk_1", "s1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.open(sealed, vaultAD("acme", "whk_1", "s1")); err != nil {
		t.Fatalf("does not open under the same key: %v", err)
	}
	if _, err := again.open(sealed, vaultAD("beta", "whk_1", "s1")); err == nil {
		t.Fatal("a secret opened for another tenant's endpoint")
	}
	k2, err := LoadOrCreateKEK(filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k2.open(sealed, vaultAD("acme", "whk_1", "s1")); !errors.Is(err, ErrWrongKEK) {
		t.Fatalf("under another key: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKEK(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a readable kek: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("not hex\n"), 0o600)
	if _, err := ReadKEK(bad); err == nil || !strings.Contains(err.Error(), "/dev/urandom") {
		t.Fatalf("a bad kek: %v", err)
	}
	if _, err := ReadKEK(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing kek read")
	}
}

// Package secretfile writes and reads the files that hold Keytrail's
// secrets — NATS seeds, the root key, signing keys, the key-encryption key:
// made once with mode 0600 (never over an existing file), and refused when
// others than their owner can read them.
package secretfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Create writes data to a new file at path, mode 0600, synced; it refuses
// to overwrite one.
func Create(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Read reads the file at path, refusing one others than its owner can read.
func Read(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	return os.ReadFile(path)
}

// Missing reports whether there is no file at path.
func Missing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

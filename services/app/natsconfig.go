package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/keytrail/keytrail/services/natsauth"
)

// AuthFragment is the file name of the nats-server configuration fragment
// `keytrail nats-config` writes.
const AuthFragment = "keytrail-auth.conf"

// runNATSConfig writes, for a real cluster, one nkey seed per role (kept
// if already there) and the nats-server configuration fragment that
// authorizes them: every server includes the fragment, every Keytrail node
// gets its role's seed.
func runNATSConfig(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nats-config", flag.ContinueOnError)
	out := fs.String("out", "", "directory for "+AuthFragment+" and the seed files (created, mode 0700)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *out == "" {
		return usageError{errors.New("-out: a directory is required")}
	}
	ids, err := natsauth.LoadOrCreateDir(*out)
	if err != nil {
		return err
	}
	path := filepath.Join(*out, AuthFragment)
	if err := os.WriteFile(path, []byte(ids.Fragment()), 0o644); err != nil {
		return fmt.Errorf("nats-config: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (include it in every NATS server's configuration)\n", path)
	for _, r := range natsauth.Roles {
		fmt.Fprintf(stdout, "  %-8s %s  (%s; inbox prefix %s)\n", r, filepath.Join(*out, r.SeedFile()), usedBy[r], r.InboxPrefix())
	}
	return nil
}

// usedBy says who connects as each role.
var usedBy = map[natsauth.Role]string{
	natsauth.Control: "keytrail serve --nats-nkey",
	natsauth.Gateway: "keytrail gateway --nats-nkey, and services verifying in-process",
	natsauth.Service: "services requesting revocations: client.ServiceOptions",
	natsauth.Auditor: "keytrail audit --nats-nkey, nats --nkey",
}

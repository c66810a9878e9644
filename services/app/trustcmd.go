package app

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"github.com/keytrail/keytrail/events"
	"github.com/keytrail/keytrail/events/store"
	"github.com/keytrail/keytrail/services/cli"
	"github.com/keytrail/keytrail/services/natsauth"
	"github.com/keytrail/keytrail/services/trust"
)

var trustVerbs = []string{"signers", "add-signer", "remove-signer"}

const trustUsage = `usage: keytrail trust <command> [flags]   (docs/signing.md)
  signers                                  the trusted signers
  add-signer --public-key B64 [--name N] [--role decisions]
                                           add a signer, signed by the root key (--trust-key):
                                           of events (a control node's) or of decisions (a gateway's)
  remove-signer --id ID                    remove one; what it signed before stays valid`

// runTrust manages the set of trusted signers with the root signing key, as
// the control identity.
func runTrust(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || !slices.Contains(trustVerbs, args[0]) {
		return usageError{errors.New(trustUsage)}
	}
	verb := args[0]
	fs := flag.NewFlagSet("trust "+verb, flag.ContinueOnError)
	var nf natsFlags
	var lf logFlags
	defer lf.close()
	nf.register(fs, natsauth.Control)
	lf.register(fs)
	rootKey := fs.String("trust-key", "", "the root signing key (default: <data>/trust.key)")
	pubKey := fs.String("public-key", "", "the signer's Ed25519 public key, base64 (add-signer)")
	name := fs.String("name", "", "a name for the signer (add-signer)")
	role := fs.String("role", events.SignerRoleEvents, "what the signer signs: events (a control node's key) or decisions (a gateway's) (add-signer)")
	id := fs.String("id", "", "the signer's id (remove-signer)")
	fs.SetOutput(stderr)
	if _, err := cli.ParseInterleaved(fs, args[1:]); err != nil {
		return err
	}
	if err := nf.validate(); err != nil {
		return err
	}
	var root ed25519.PrivateKey
	if verb != "signers" {
		if *rootKey == "" {
			*rootKey = filepath.Join(nf.data, trust.RootKeyFile)
		}
		var err error
		if root, err = trust.ReadKey(*rootKey); err != nil {
			return err
		}
	}
	_, nc, st, err := connectRole(ctx, &nf, &lf, io.Discard, store.Config{})
	if err != nil {
		return err
	}
	defer closeConn(nc)
	switch verb {
	case "signers":
		have, _, err := trust.Signers(ctx, st)
		if err != nil {
			return err
		}
		ids := make([]string, 0, len(have))
		for id := range have {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			p := have[id]
			fmt.Fprintf(stdout, "%s  %-9s  %s  %s\n", id, p.SignerRole(), base64.StdEncoding.EncodeToString(p.PublicKey), p.Name)
		}
		return nil
	case "add-signer":
		pub, err := trust.ParsePublic(*pubKey)
		if err != nil {
			return usageError{err}
		}
		if *role != events.SignerRoleEvents && *role != events.SignerRoleDecisions {
			return usageError{fmt.Errorf("--role must be %s or %s", events.SignerRoleEvents, events.SignerRoleDecisions)}
		}
		added, err := trust.AddSigner(ctx, st, root, pub, *name, *role)
		if err != nil {
			return err
		}
		if !added {
			fmt.Fprintf(stdout, "%s is trusted already\n", events.SignerID(pub))
			return nil
		}
		fmt.Fprintf(stdout, "added %s\n", events.SignerID(pub))
		return nil
	}
	if !events.ValidSignerID(*id) {
		return usageError{errors.New("--id must be a signer id (16 hex characters; keytrail trust signers lists them)")}
	}
	if err := trust.RemoveSigner(ctx, st, root, *id); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "removed %s\n", *id)
	return nil
}

// Package app wires Keytrail's roles into runnable modes: `dev` (embedded
// NATS and every role in one process), `serve` (a control node) and
// `gateway`. cmd/keytrail only calls Main; integration tests start the same
// modes in-process. It is the one package that may import every other.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/keytrail/keytrail/services/cli"
)

// Exit codes of Main.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
	// ExitNotValid: keytrail verify got a decision other than VALID.
	ExitNotValid = 3
)

// usageError marks an error in the command line: exit status 2.
type usageError struct{ error }

// helpText is the command line's help: the modes, then every noun with every
// verb of its table (so that no command can be left out of it).
func helpText() string {
	var b strings.Builder
	b.WriteString(`keytrail — event-sourced API key lifecycle service

Usage:
  keytrail dev      [flags]   embedded NATS + control + gateway on loopback
  keytrail serve    [flags]   control node against a NATS cluster
  keytrail gateway  [flags]   gateway node against a NATS cluster
  keytrail nats-config --out DIR   NATS identities (nkey seeds) and the server
                              configuration fragment for a real cluster

`)
	for _, n := range cli.Nouns() {
		scope := ""
		if n.Tenant {
			scope = "   --tenant T"
		}
		fmt.Fprintf(&b, "  keytrail %-8s %s%s\n", n.Name, strings.Join(n.Verbs(), "|"), scope)
	}
	fmt.Fprintf(&b, "  keytrail verify   KEY [--tenant T] [--scope S]...   exit 0 VALID, 3 otherwise\n")
	fmt.Fprintf(&b, "  keytrail usage    --tenant T [--key K] [--group-by code|key|api|user] [--bucket hour] [--since 24h]\n")
	fmt.Fprintf(&b, "  keytrail audit    %s   --nats URL\n", strings.Join(auditVerbs, "|"))
	fmt.Fprintf(&b, "  keytrail trust    %s   the signers of signed history\n", strings.Join(trustVerbs, "|"))
	b.WriteString("  keytrail completion bash|zsh   shell completion (source it)\n  keytrail version\n\nRun 'keytrail <command> -h' for a command's flags.\n")
	return b.String()
}

// locateDev reads the admin API's URL and the root key from a keytrail dev
// data directory ("" for what it does not hold).
func locateDev(dir string) (adminURL, rootKey string) {
	var a Addresses
	if b, err := os.ReadFile(filepath.Join(dir, "addresses.json")); err == nil && json.Unmarshal(b, &a) == nil {
		adminURL = a.Admin
	}
	if b, err := os.ReadFile(filepath.Join(dir, RootKeyFile)); err == nil {
		rootKey = strings.TrimSpace(string(b))
	}
	return adminURL, rootKey
}

// version is the binary's version: the module's, and the commit it was
// built from when the build recorded it.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "keytrail (unknown version)"
	}
	v := "keytrail " + bi.Main.Version
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = " (modified)"
			}
		}
	}
	if rev != "" {
		v += " " + rev[:min(12, len(rev))] + dirty
		if at != "" {
			v += " " + at
		}
	}
	return v + " " + bi.GoVersion
}

// Main runs the command line args (without the program name) until ctx ends
// and returns the process exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return MainEnv(ctx, args, stdout, stderr, os.Getenv)
}

// commands are the first words keytrail knows, for suggestions.
var commands = func() []string {
	out := []string{"dev", "serve", "gateway"}
	for _, n := range cli.Nouns() {
		out = append(out, n.Name)
	}
	return append(out, "verify", "usage", "audit", "trust", "nats-config", "completion", "help", "version")
}()

// MainEnv is Main with the environment injected (KEYTRAIL_TOKEN).
func MainEnv(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, helpText()) // a mistake: the help goes with the error
		return ExitUsage
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		fmt.Fprint(stdout, helpText()) // asked for
		return ExitOK
	case args[0] == "--version" || args[0] == "version":
		fmt.Fprintln(stdout, version())
		return ExitOK
	}
	var run func(context.Context, []string, io.Writer, io.Writer) error
	env := cli.Env{Stdout: stdout, Stderr: stderr, Getenv: getenv, DataDir: DefaultDataDir, Locate: locateDev,
		DefaultServer: "http://" + DefaultAdminListen}
	args = cli.CommandFirst(args, commands)
	switch args[0] {
	case "dev":
		run = runDev
	case "serve":
		run = runServe
	case "gateway":
		run = runGateway
	case "verify":
		run = func(ctx context.Context, args []string, _, _ io.Writer) error { return cli.Verify(ctx, env, args) }
	case "usage":
		run = func(ctx context.Context, args []string, _, _ io.Writer) error { return cli.Usage(ctx, env, args) }
	case "audit":
		run = runAudit
	case "trust":
		run = runTrust
	case "nats-config":
		run = runNATSConfig
	case "completion":
		run = runCompletion
	default:
		n, ok := cli.NounNamed(args[0])
		if !ok {
			fmt.Fprintf(stderr, "keytrail: unknown command %q%s\n\n%s", args[0], cli.DidYouMean(args[0], commands), helpText())
			return ExitUsage
		}
		run = func(ctx context.Context, args []string, _, _ io.Writer) error { return n.Run(ctx, env, args) }
	}
	err := run(ctx, args[1:], stdout, stderr)
	var ue usageError
	var cue cli.UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, &ue), errors.As(err, &cue):
		fmt.Fprintf(stderr, "keytrail %s: %v\n", args[0], err)
		return ExitUsage
	case errors.Is(err, cli.ErrNotValid):
		return ExitNotValid
	case errors.Is(err, errDiscrepancy):
		return ExitError // the report says what; nothing to add
	default:
		fmt.Fprintf(stderr, "keytrail %s: %v\n", args[0], err)
		return ExitError
	}
}

// parse parses a mode's flags, reporting errors as usage errors.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

// logFlags are the logging flags every mode has, and the batch its logger
// writes through.
type logFlags struct {
	level string
	batch *LogBatch
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

// logger returns a JSON logger writing to w in batches (LogBatch); the
// caller defers close.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.level)); err != nil {
		return nil, usageError{fmt.Errorf("-log-level: %w", err)}
	}
	if w != io.Discard && l.batch == nil {
		l.batch = NewLogBatch(w)
		w = l.batch
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})), nil
}

// accessLog is where a gateway's access log goes: the log's batch, when
// the level lets Info through (nil otherwise).
func (l *logFlags) accessLog() io.Writer {
	var lvl slog.Level
	if l.batch == nil || lvl.UnmarshalText([]byte(l.level)) != nil || lvl > slog.LevelInfo {
		return nil
	}
	return l.batch
}

// close writes what the logger has batched.
func (l *logFlags) close() {
	if l.batch != nil {
		l.batch.Close()
	}
}

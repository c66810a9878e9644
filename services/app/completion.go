package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/keytrail/keytrail/services/cli"
)

// runCompletion prints a shell completion script: `keytrail completion
// bash`, or zsh (through bashcompinit). It completes commands, verbs and
// each verb's flags, all read from the command tables.
func runCompletion(_ context.Context, args []string, stdout, _ io.Writer) error {
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		return usageError{errors.New("usage: keytrail completion bash|zsh")}
	}
	var b strings.Builder
	if args[0] == "zsh" {
		b.WriteString("autoload -U +X bashcompinit && bashcompinit\n")
	}
	b.WriteString("_keytrail() {\n  local cur=${COMP_WORDS[COMP_CWORD]} noun=${COMP_WORDS[1]} verb=${COMP_WORDS[2]}\n")
	fmt.Fprintf(&b, "  if [ \"$COMP_CWORD\" -eq 1 ]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return; fi\n", strings.Join(commands, " "))
	b.WriteString("  case \"$noun\" in\n")
	for _, n := range cli.Nouns() {
		names := n.Verbs()
		fmt.Fprintf(&b, "  %s)\n    if [ \"$COMP_CWORD\" -eq 2 ]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return; fi\n    case \"$verb\" in\n", n.Name, strings.Join(names, " "))
		for _, v := range names {
			fmt.Fprintf(&b, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\"));;\n", v, strings.Join(n.Flags(v), " "))
		}
		b.WriteString("    esac;;\n")
	}
	fmt.Fprintf(&b, "  audit)\n    if [ \"$COMP_CWORD\" -eq 2 ]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return; fi\n    case \"$verb\" in\n", strings.Join(auditVerbs, " "))
	for _, v := range auditVerbs {
		fs := flag.NewFlagSet(v, flag.ContinueOnError)
		registerAudit(fs, v)
		fmt.Fprintf(&b, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\"));;\n", v, strings.Join(cli.FlagNames(fs), " "))
	}
	b.WriteString("    esac;;\n")
	b.WriteString("  esac\n}\ncomplete -F _keytrail keytrail\n")
	_, err := io.WriteString(stdout, b.String())
	return err
}

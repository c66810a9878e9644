package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// noun is a noun of the command line: its table of verbs (made anew for
// each run: see runNoun) and whether it takes --tenant.
type noun struct {
	name   string
	verbs  func() map[string]subcommand
	tenant bool
}

// nouns are the command line's nouns; the dispatch, the help and the
// completion all read them.
var nouns = []noun{{"tenant", tenantVerbs, false}, {"user", userVerbs, true}, {"key", keyVerbs, true}, {"api", apiVerbs, true}}

// nounNamed is the noun called name (the zero noun when there is none).
func nounNamed(name string) noun {
	for _, n := range nouns {
		if n.name == name {
			return n
		}
	}
	return noun{}
}

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
	for _, n := range nouns {
		verbs := n.verbs()
		names := sortedVerbs(verbs)
		fmt.Fprintf(&b, "  %s)\n    if [ \"$COMP_CWORD\" -eq 2 ]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return; fi\n    case \"$verb\" in\n", n.name, strings.Join(names, " "))
		for _, v := range names {
			fmt.Fprintf(&b, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\"));;\n", v, strings.Join(flagsOf(verbs[v], n.tenant, v), " "))
		}
		b.WriteString("    esac;;\n")
	}
	fmt.Fprintf(&b, "  audit)\n    if [ \"$COMP_CWORD\" -eq 2 ]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return; fi\n    case \"$verb\" in\n", strings.Join(auditVerbs, " "))
	for _, v := range auditVerbs {
		fs := flag.NewFlagSet(v, flag.ContinueOnError)
		registerAudit(fs, v)
		fmt.Fprintf(&b, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\"));;\n", v, strings.Join(flagNames(fs), " "))
	}
	b.WriteString("    esac;;\n")
	b.WriteString("  esac\n}\ncomplete -F _keytrail keytrail\n")
	_, err := io.WriteString(stdout, b.String())
	return err
}

// flagsOf are a verb's flags, as --name, from the flag set a run would make.
func flagsOf(sc subcommand, tenant bool, verb string) []string {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	(&clientFlags{}).register(fs, tenant, verb != "get" && verb != "list")
	if sc.flags != nil {
		sc.flags(fs)
	}
	return flagNames(fs)
}

// flagNames are fs's flags as they are typed, sorted.
func flagNames(fs *flag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *flag.Flag) {
		if len(f.Name) == 1 {
			out = append(out, "-"+f.Name)
		} else {
			out = append(out, "--"+f.Name)
		}
	})
	sort.Strings(out)
	return out
}

// Package cli implements the virtmq command: lint, plan, rewrite, apply,
// status, verify, mode, exclude and include. cmd/virtmq only builds an Env
// and calls Main. The checks of verify are package verify's; here they are
// printed, their outside text made printable.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/virtmq/virtmq/internal/bounded"
	"github.com/virtmq/virtmq/internal/build"
	"github.com/virtmq/virtmq/internal/cmdline"
	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

// Env is the outside world of one CLI run.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Logger         *slog.Logger
	// DefaultPolicyPath is policy.DefaultPath outside tests.
	DefaultPolicyPath string
	// Dial connects to the libvirt QEMU system driver uri names, for the
	// commands that talk to libvirt (virt.DialURI outside tests). It never
	// connects anywhere else than uri says. The caller closes the Conn.
	Dial func(ctx context.Context, uri virt.URI) (virt.Conn, error)
	// ConnectTimeout bounds each connection to libvirt in every command
	// (DefaultConnectTimeout when zero).
	ConnectTimeout time.Duration
	// Terminal reports that stdout and stderr are a terminal: then long
	// runs (apply --all) draw a progress line on stderr.
	Terminal bool
	// StdoutTerminal reports that stdout is a terminal: then --color=auto
	// colours states and check results.
	StdoutTerminal bool
	// Columns is the width of the terminal stdout is on, 0 when it is not
	// one: tables fit $COLUMNS, else Columns, else 100.
	Columns int

	// color is set by parseAll from --color, $NO_COLOR and StdoutTerminal.
	color bool

	// collectFlags, when set, receives each command's flag set instead of
	// the command running (see completion.go).
	collectFlags func(*flag.FlagSet)
}

// Exit codes shared by the commands.
const (
	ExitOK      = 0
	ExitFailure = 1 // the command ran and found a problem (invalid policy, non-compliant domain, bad input)
	ExitUsage   = 2
)

// Command is one virtmq subcommand.
type Command struct {
	Name    string
	Summary string
	Run     func(ctx context.Context, env *Env, args []string) int
}

// Commands lists the subcommands in help order.
func Commands() []Command {
	return []Command{
		{"lint", "check the policy files; print file:line:col: errors", runLint},
		{"mode", "say in one line which mode is in force and what it does", runMode},
		{"plan", "show, per NIC, the queue count the policy wants and why", runPlan},
		{"rewrite", "print a domain XML with the policy's queues applied", runRewrite},
		{"apply", "rewrite persistent domain definitions in libvirt now", runApply},
		{"status", "show what virtmq-agent knows about each domain and NIC", runStatus},
		{"verify", "check a running domain end to end: host, QMP and guest", runVerify},
		{"exclude", "label domains so that virtmq leaves them alone", runExclude},
		{"include", "remove the exclude label: virtmq manages the domains again", runInclude},
		{"completion", "print the bash or zsh completion script", runCompletion},
	}
}

// Main runs the virtmq command line and returns the exit code.
func Main(ctx context.Context, env *Env, args []string) int {
	args, code, done := moveGlobalFlags(env, args)
	if done {
		return code
	}
	if len(args) == 0 {
		fmt.Fprintln(env.Stderr, "virtmq: no command given")
		usage(env.Stderr)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(env.Stdout)
		return ExitOK
	case "help":
		// virtmq help CMD is virtmq CMD --help.
		if len(args) == 1 {
			usage(env.Stdout)
			return ExitOK
		}
		if args[1] == "help" || args[1] == "-h" || args[1] == "--help" {
			fmt.Fprint(env.Stdout, helpHelp)
			return ExitOK
		}
		if _, ok := lookup(args[1]); !ok {
			fmt.Fprintf(env.Stderr, "virtmq help: unknown command %q\n", args[1])
			fmt.Fprintln(env.Stderr, commandList())
			return ExitUsage
		}
		if len(args) > 2 {
			fmt.Fprintf(env.Stderr, "virtmq help: unexpected argument %q: help takes one command\n%s", args[2], helpHelp)
			return ExitUsage
		}
		return Main(ctx, env, []string{args[1], "--help"})
	case "-version", "--version", "version":
		fmt.Fprintln(env.Stdout, build.String("virtmq"))
		return ExitOK
	}
	if c, ok := lookup(args[0]); ok {
		return c.Run(ctx, env, args[1:])
	}
	fmt.Fprintf(env.Stderr, "virtmq: unknown command %q\n", args[0])
	fmt.Fprintln(env.Stderr, commandList())
	return ExitUsage
}

// helpHelp is what virtmq help help prints.
const helpHelp = `Usage: virtmq help [COMMAND]

Print COMMAND's options (the same as "virtmq COMMAND --help"), or with no
COMMAND the list of commands.
`

// globalFlags are the options that may also come before the command, as
// in "virtmq -c qemu+ssh://host/system apply --all": the commands that
// take them read them (the others refuse them by name). Each takes a
// value.
var globalFlags = map[string]bool{"c": true, "connect": true, "connect-socket": true, "policy": true, "status-socket": true, "color": true}

// moveGlobalFlags moves the global options given before the command to
// just after it, so that the command's own flag set reads them; options
// after the command come later and win. Anything else before the command
// is a usage error, except --help and --version.
func moveGlobalFlags(env *Env, args []string) ([]string, int, bool) {
	var global []string
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && len(args[0]) > 1 {
		a := args[0]
		switch a {
		case "-h", "-help", "--help", "-version", "--version":
			return append([]string{a}, args[1:]...), 0, false
		case "--":
			args = args[1:]
			return insertAfterCommand(args, global), 0, false
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !globalFlags[name] {
			fmt.Fprintf(env.Stderr, "virtmq: unknown option %s before the command (the options before it are %s; a command's own options follow it)\n",
				a, "-c/--connect, --connect-socket, --policy, --status-socket and --color")
			fmt.Fprintln(env.Stderr, `Run "virtmq --help" for the commands.`)
			return nil, ExitUsage, true
		}
		n := 1
		if !hasValue {
			n = 2
			if len(args) < 2 {
				fmt.Fprintf(env.Stderr, "virtmq: missing value of option %s\n", a)
				return nil, ExitUsage, true
			}
		}
		global = append(global, args[:n]...)
		args = args[n:]
	}
	if len(global) > 0 && len(args) == 0 {
		fmt.Fprintf(env.Stderr, "virtmq: %s given but no command\n", strings.Join(global, " "))
		usage(env.Stderr)
		return nil, ExitUsage, true
	}
	return insertAfterCommand(args, global), 0, false
}

// insertAfterCommand puts global right after args[0], the command; help
// drops them ("virtmq -c URI help apply" is "virtmq help apply").
func insertAfterCommand(args, global []string) []string {
	if len(global) == 0 || len(args) == 0 || args[0] == "help" {
		return args
	}
	out := append([]string{args[0]}, global...)
	return append(out, args[1:]...)
}

// lookup returns the command named name.
func lookup(name string) (Command, bool) {
	for _, c := range Commands() {
		if c.Name == name {
			return c, true
		}
	}
	return Command{}, false
}

// commandList is the one line naming the commands, for a usage error.
func commandList() string {
	var names []string
	for _, c := range Commands() {
		names = append(names, c.Name)
	}
	return "The commands are " + strings.Join(names, ", ") + ` and help; run "virtmq --help" for what each does.`
}

func usage(w io.Writer) {
	fmt.Fprint(w, `virtmq makes multi-queue virtio-net zero-touch on libvirt hosts.

Usage: virtmq [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]

Commands:
`)
	width := len("help")
	for _, c := range Commands() {
		width = max(width, len(c.Name))
	}
	for _, c := range Commands() {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.Name, c.Summary)
	}
	fmt.Fprintf(w, "  %-*s  %s\n", width, "help", "show a command's options: virtmq help COMMAND")
	fmt.Fprint(w, "\nGlobal options, accepted before the command, or after it by the commands\nthat take them:\n")
	g := flag.NewFlagSet("virtmq", flag.ContinueOnError)
	g.String("connect", "", "libvirt connection `URI` (apply, verify, exclude, include)")
	g.String("connect-socket", "", "a local libvirt `socket` instead of -c")
	g.String("policy", "", "the policy `file` (lint, mode, plan, rewrite, apply, verify)")
	g.String("status-socket", "", "virtmq-agent's status `socket` (status, apply --cold-boot)")
	g.String("color", "", "colour on a terminal: `WHEN` is auto, always or never (every command)")
	g.Bool("version", false, "print the version")
	cmdline.PrintOptions(w, g, cmdline.Options{Short: map[string]string{"connect": "c"}})
	fmt.Fprint(w, `  -h, --help                this help

Run "virtmq help COMMAND" (or "virtmq COMMAND --help") for a command's options.
The policy is --policy FILE, else $VIRTMQ_POLICY, else /etc/virtmq/policy.yaml
(with drop-ins in /etc/virtmq/policy.d/), else the default policy built in.
Usage errors exit 2.
`)
}

// flagSet is one command's flag set and the words of its help.
type flagSet struct {
	*flag.FlagSet
	env *Env
	// cmd is how the command is called: "apply", "apply --cold-boot".
	cmd                   string
	synopsis, description string
	// checks run after the flags are parsed; each error is a usage error.
	checks []func() error
	// short maps a long option to its one-letter alias; hidden options
	// are left out of the help.
	short  map[string]string
	hidden map[string]bool
	color  *cmdline.Enum
}

// newFlags returns a command's flag set; every command takes --color.
func newFlags(env *Env, name, synopsis, description string) *flagSet {
	fs := &flagSet{
		FlagSet: flag.NewFlagSet("virtmq "+name, flag.ContinueOnError),
		env:     env, cmd: name, synopsis: synopsis, description: description,
		short: map[string]string{}, hidden: map[string]bool{},
		color: cmdline.NewEnum("auto", "auto", "always", "never"),
	}
	fs.Var(fs.color, "color", "colour states and OK/FAIL/SKIP: `WHEN` is auto (on a terminal, unless $NO_COLOR is set), always or never")
	fs.hidden["color"] = true // a global option: virtmq --help lists it
	fs.SetOutput(env.Stderr)
	fs.Usage = fs.help
	return fs
}

// help prints the command's full help.
func (fs *flagSet) help() {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: virtmq %s %s\n\n%s\n\nOptions:\n", fs.cmd, fs.synopsis, strings.TrimSpace(fs.description))
	cmdline.PrintOptions(w, fs.FlagSet, cmdline.Options{Short: fs.short, Hidden: fs.hidden})
	fmt.Fprint(w, "\nEvery command also takes --color=WHEN (auto, always or never) and --help;\nsee \"virtmq --help\".\n")
}

// check adds a check run after the flags are parsed.
func (fs *flagSet) check(f func() error) { fs.checks = append(fs.checks, f) }

// isSet reports whether the command line set the flag name.
func (fs *flagSet) isSet(name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// usageError says on stderr what was wrong, the synopsis and where the
// help is, and returns ExitUsage.
func (fs *flagSet) usageError(format string, args ...any) int {
	fmt.Fprintf(fs.env.Stderr, "virtmq %s: %s\nUsage: virtmq %s %s\nRun \"virtmq %s --help\" for more.\n",
		fs.cmd, fmt.Sprintf(format, args...), fs.cmd, fs.synopsis, fs.cmd)
	return ExitUsage
}

// parseFlags parses args allowing flags after positional arguments
// (`virtmq plan dom.xml --json`). It returns the positional arguments, or
// done with an exit code when the run is over (--help or a usage error,
// said on stderr). Between minPos and maxPos (-1: any number) positional
// arguments are accepted; operand names them for the error.
func parseFlags(env *Env, fs *flagSet, args []string, minPos, maxPos int, operand string) (pos []string, code int, done bool) {
	pos, code, done = parseAll(env, fs, args)
	if done {
		return pos, code, done
	}
	switch {
	case len(pos) < minPos:
		return nil, fs.usageError("missing %s", operand), true
	case maxPos == 0 && len(pos) > 0:
		return nil, fs.usageError("unexpected argument %q: %s takes no arguments", pos[0], fs.cmd), true
	case maxPos == 1 && len(pos) > 1:
		return nil, fs.usageError("unexpected argument %q: %s takes one %s", pos[1], fs.cmd, operand), true
	case maxPos >= 0 && len(pos) > maxPos:
		return nil, fs.usageError("unexpected argument %q: %s takes at most %d %s", pos[maxPos], fs.cmd, maxPos, operand), true
	}
	return pos, 0, false
}

// parseAll parses the flags, runs the checks and returns every positional
// argument.
func parseAll(env *Env, fs *flagSet, args []string) (pos []string, code int, done bool) {
	if env.collectFlags != nil {
		// completion asks for the command's flags: hand them over, run nothing.
		env.collectFlags(fs.FlagSet)
		return nil, ExitOK, true
	}
	if cmdline.HelpAsked(args) {
		fs.SetOutput(env.Stdout) // asked-for help goes to stdout
	} else {
		// A parse error is said by usageError, not by the flag package.
		fs.SetOutput(io.Discard)
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, ExitOK, true
			}
			return nil, fs.usageError("%s", cmdline.FlagError(err)), true
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	fs.SetOutput(env.Stderr)
	for _, c := range fs.checks {
		if err := c(); err != nil {
			return nil, fs.usageError("%v", err), true
		}
	}
	env.color = colorOn(env, fs.color.Value)
	return pos, 0, false
}

// loadPolicy resolves the policy like every virtmq program and says once on
// stderr when the built-in default is used.
func loadPolicy(env *Env, explicit string) (*policy.Policy, error) {
	p, embedded, err := policy.Resolve(explicit, env.Getenv, env.DefaultPolicyPath)
	if err != nil {
		return nil, err
	}
	if embedded {
		fmt.Fprintf(env.Stderr, "virtmq: no policy at %s and none given: using the built-in default policy (mode apply)\n", env.DefaultPolicyPath)
	}
	return p, nil
}

// readInput reads a domain XML from a named file, or from stdin for "-",
// as the libvirt hook reads its stdin: at most domxml.MaxSize bytes, a
// named file only when it is a regular one (opened without blocking, so
// a FIFO is refused at once), and a read from stdin gives up when ctx
// ends (Ctrl-C).
func readInput(ctx context.Context, env *Env, name string) ([]byte, error) {
	if name == "-" {
		b, err := bounded.Read(ctx, env.Stdin, domxml.MaxSize, "a domain XML")
		if err != nil {
			return nil, fmt.Errorf("<stdin>: %w", err)
		}
		return b, nil
	}
	return bounded.ReadFile(name, domxml.MaxSize, "a domain XML")
}

// addPolicyFlag adds --policy to a command that reads the policy; the
// file it names goes to loadPolicy (or policy.Resolve).
func addPolicyFlag(fs *flagSet) *string {
	return fs.String("policy", "", "policy `file` (default $VIRTMQ_POLICY, else /etc/virtmq/policy.yaml, else built-in)")
}

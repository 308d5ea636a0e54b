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
	"os"
	"strings"

	"github.com/virtmq/virtmq/internal/build"
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
	// ReadFile reads a named input file; os.ReadFile outside tests.
	ReadFile func(string) ([]byte, error)
	// Dial connects to the libvirt QEMU system driver uri names, for the
	// commands that talk to libvirt (virt.DialURI outside tests). It never
	// connects anywhere else than uri says. The caller closes the Conn.
	Dial func(ctx context.Context, uri virt.URI) (virt.Conn, error)
	// Terminal reports that stdout and stderr are a terminal: then long
	// runs (apply --all) draw a progress line on stderr.
	Terminal bool

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
	if env.ReadFile == nil {
		env.ReadFile = os.ReadFile
	}
	if len(args) == 0 {
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
		if _, ok := lookup(args[1]); !ok {
			fmt.Fprintf(env.Stderr, "virtmq help: unknown command %q\n\n", args[1])
			usage(env.Stderr)
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
	fmt.Fprintf(env.Stderr, "virtmq: unknown command %q\n\n", args[0])
	usage(env.Stderr)
	return ExitUsage
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

func usage(w io.Writer) {
	fmt.Fprint(w, `virtmq makes multi-queue virtio-net zero-touch on libvirt hosts.

Usage: virtmq COMMAND [options] [args]

Commands:
`)
	for _, c := range Commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.Name, c.Summary)
	}
	fmt.Fprint(w, `
Run "virtmq help COMMAND" (or "virtmq COMMAND --help") for a command's options.
"virtmq --version" prints the version.
The policy is --policy FILE, else $VIRTMQ_POLICY, else /etc/virtmq/policy.yaml
(with drop-ins in /etc/virtmq/policy.d/), else the default policy built in.
`)
}

// newFlags returns a flag set whose --help prints the command's synopsis.
func newFlags(env *Env, name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet("virtmq "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: virtmq %s %s\n\n%s\n", name, synopsis, strings.TrimSpace(description))
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprint(fs.Output(), "\nOptions:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args allowing flags after positional arguments
// (`virtmq plan dom.xml --json`). It returns the positional arguments, or
// done with an exit code when the run is over (--help or a usage error).
func parseFlags(env *Env, fs *flag.FlagSet, args []string, minPos, maxPos int) (pos []string, code int, done bool) {
	pos, code, done = parseAll(env, fs, args)
	if !done && (len(pos) < minPos || maxPos >= 0 && len(pos) > maxPos) {
		fs.Usage()
		return nil, ExitUsage, true
	}
	return pos, code, done
}

// parseAll parses the flags and returns every positional argument.
func parseAll(env *Env, fs *flag.FlagSet, args []string) (pos []string, code int, done bool) {
	if env.collectFlags != nil {
		// completion asks for the command's flags: hand them over, run nothing.
		env.collectFlags(fs)
		return nil, ExitOK, true
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(env.Stdout) // asked-for help goes to stdout
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, ExitOK, true
			}
			return nil, ExitUsage, true
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, 0, false
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), 0, false
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
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

// readInput reads a named file, or stdin for "-".
func readInput(env *Env, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(io.LimitReader(env.Stdin, 1<<30))
	}
	return env.ReadFile(name)
}

// Command virtmq-hook is the libvirt qemu hook; see package hooks.
package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/virtmq/virtmq/hooks"
	"github.com/virtmq/virtmq/internal/build"
	"github.com/virtmq/virtmq/internal/logging"
	"github.com/virtmq/virtmq/policy"
)

const usage = `Usage: virtmq-hook [--policy FILE] [--] DOMAIN OP SUBOP EXTRA < domain.xml
       virtmq-hook --help | --version

The libvirt qemu hook of virtmq. Install it as /etc/libvirt/hooks/qemu.d/50-virtmq
(libvirt >= 6.5) or /etc/libvirt/hooks/qemu; libvirt runs it on every domain
operation with the domain XML on stdin.

At "prepare begin" it decides, with the virtmq policy, the virtio-net queue
count of each NIC and, when the domain does not comply:
  mode: observe, apply  logs one line per NIC (journald, else stderr) and exits 0
  mode: enforce         prints one line per NIC on stderr and exits 1: libvirt refuses the start
It never rewrites the XML: libvirt ignores hook output at prepare. virtmq-agent
or "virtmq apply" rewrite the persistent definition instead. For migrate and
restore it prints nothing (queues must not change there) and leaves a marker
in /run/virtmq/incoming/ ($VIRTMQ_INCOMING_DIR): the prepare right after it
is an incoming migration or restore, which enforce logs but does not refuse;
the domain is enforced at its next cold boot here. Every other operation
exits 0 at once. Its own failures (bad policy, malformed XML, the
10 s time limit) never block a start unless the policy has mode: enforce and
on_error: deny. A configured policy that is missing (--policy or
$VIRTMQ_POLICY not there, or policy.yaml gone while policy.d/ holds drop-ins)
refuses every start.

The last four arguments are always DOMAIN OP SUBOP EXTRA, even when they
start with '-' (a domain may be named "--help"); options go before them.

Options:
  --policy FILE  policy file (default $VIRTMQ_POLICY, else /etc/virtmq/policy.yaml,
                 else the default policy built into the binary)
  --             end of options
  --help         show this help
  --version      print the version
`

// hangLimit bounds a hook run: libvirt waits for the hook with no timeout
// while it holds the domain, so a stuck stdin must not hang a VM start.
const hangLimit = 10 * time.Second

// libvirtArgs is how many arguments libvirt passes: DOMAIN OP SUBOP EXTRA.
const libvirtArgs = 4

// invocation is a parsed command line.
type invocation struct {
	policyPath    string
	help, version bool
	unknown       []string // options not understood, warned about and ignored
	args          []string // DOMAIN OP SUBOP EXTRA
}

// parseArgs splits the command line into options and libvirt's arguments.
// libvirt passes exactly four arguments, the first a domain name that may
// look like an option ("--help", "-h", "--policy=x"); so the last four
// arguments are never options. Options are read from the front, up to those
// four, and stop at "--" or at the first argument not starting with '-'.
// With fewer than four arguments everything up to "--" or a non-option is
// an option (virtmq-hook --help).
func parseArgs(argv []string) invocation {
	var inv invocation
	end := len(argv) // options may sit in argv[:end]
	if end >= libvirtArgs {
		end -= libvirtArgs
	}
	i := 0
	for i < end && strings.HasPrefix(argv[i], "-") {
		arg := argv[i]
		i++
		if arg == "--" {
			break
		}
		switch flag, value, hasValue := strings.Cut(arg, "="); flag {
		case "--help", "-h":
			inv.help = true
		case "--version":
			inv.version = true
		case "--policy":
			if !hasValue && i < end {
				value = argv[i]
				i++
			}
			inv.policyPath = value
		default:
			inv.unknown = append(inv.unknown, flag)
		}
	}
	inv.args = argv[i:]
	return inv
}

func main() {
	logger := logging.NewLazy(true, os.Stderr, slog.LevelInfo, "virtmq-hook")
	inv := parseArgs(os.Args[1:])
	for _, flag := range inv.unknown {
		logger.Warn("unknown hook option; ignoring", "option", flag)
	}
	if inv.help || inv.version {
		// A human asking has no other arguments; with libvirt's arguments
		// it is a wrapper passing the option on, and stdout at migrate or
		// restore would replace the domain XML: say it on stderr and run.
		w := os.Stdout
		if len(inv.args) > 0 {
			w = os.Stderr
		}
		if inv.help {
			fmt.Fprint(w, usage)
		} else {
			fmt.Fprintln(w, build.String("virtmq-hook"))
		}
		if len(inv.args) == 0 {
			return
		}
	}
	incomingDir := hooks.DefaultIncomingDir
	if dir := os.Getenv("VIRTMQ_INCOMING_DIR"); dir != "" {
		incomingDir = dir // tests, and two libvirt hosts on one machine
	}
	code := hooks.Run(hooks.Config{
		PolicyPath:        inv.policyPath,
		DefaultPolicyPath: policy.DefaultPath,
		Getenv:            os.Getenv,
		Stdin:             os.Stdin,
		Stderr:            os.Stderr,
		Logger:            logger,
		TimeLimit:         hangLimit,
		IncomingDir:       incomingDir,
	}, inv.args)
	os.Exit(code)
}

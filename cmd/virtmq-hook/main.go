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

const usage = `Usage: virtmq-hook [--policy FILE] DOMAIN OP SUBOP EXTRA < domain.xml

The libvirt qemu hook of virtmq. Install it as /etc/libvirt/hooks/qemu.d/50-virtmq
(libvirt >= 6.5) or /etc/libvirt/hooks/qemu; libvirt runs it on every domain
operation with the domain XML on stdin.

At "prepare begin" it decides, with the virtmq policy, the virtio-net queue
count of each NIC and, when the domain does not comply:
  mode: audit    logs one line per NIC (journald, else stderr) and exits 0
  mode: enforce  prints one line per NIC on stderr and exits 1: libvirt refuses the start
  mode: off      does nothing
It never rewrites the XML: libvirt ignores hook output at prepare. virtmq-agent
or "virtmq apply" rewrite the persistent definition instead. For migrate and
restore it prints nothing (queues must not change there); every other
operation exits 0 at once. Its own failures (bad policy, malformed XML)
never block a start unless the policy has mode: enforce and on_error: deny.

Options:
  --policy FILE  policy file (default $VIRTMQ_POLICY, else /etc/virtmq/policy.yaml,
                 else the default policy built into the binary)
  --help         show this help
  --version      print the version
`

// hangLimit bounds a hook run: libvirt waits for the hook with no timeout
// while it holds the domain, so a stuck stdin must not hang a VM start.
const hangLimit = 10 * time.Second

func main() {
	logger := logging.NewLazy(true, os.Stderr, slog.LevelInfo, "virtmq-hook")
	args := os.Args[1:]
	cfg := hooks.Config{
		DefaultPolicyPath: policy.DefaultPath,
		Getenv:            os.Getenv,
		Stdin:             os.Stdin,
		Stderr:            os.Stderr,
		Logger:            logger,
	}
	for len(args) > 0 && strings.HasPrefix(args[0], "--") {
		switch flag, value, _ := strings.Cut(args[0], "="); flag {
		case "--help":
			fmt.Print(usage)
			return
		case "--version":
			fmt.Println(build.String("virtmq-hook"))
			return
		case "--policy":
			if value == "" && len(args) > 1 {
				value, args = args[1], args[1:]
			}
			cfg.PolicyPath = value
		default:
			logger.Warn("unknown hook option; ignoring", "option", flag)
		}
		args = args[1:]
	}
	timer := time.AfterFunc(hangLimit, func() {
		logger.Error("virtmq hook did not finish in time; allowing the operation", "limit", hangLimit)
		os.Exit(hooks.ExitAllow)
	})
	code := hooks.Run(cfg, args)
	timer.Stop()
	os.Exit(code)
}

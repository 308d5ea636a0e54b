// Command virtmq-agent is the virtmq host daemon; see package agent.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/virtmq/virtmq/agent"
	"github.com/virtmq/virtmq/internal/build"
	"github.com/virtmq/virtmq/internal/cmdline"
	"github.com/virtmq/virtmq/internal/logging"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

const description = `virtmq-agent keeps the libvirt domains of this host at the virtio-net queue
counts the virtmq policy wants.

It connects to libvirt's QEMU driver (the first of --socket that answers) and
reconnects with backoff when the daemon restarts or exits when idle; after
every (re)connect it reconciles every domain. Then:
  - On every domain definition (virsh define, virt-install, ...) it applies the
    policy to the persistent XML, exactly as "virtmq rewrite" prints it, and
    redefines the domain (with schema validation) when that changes it. The
    new queue count applies at the domain's next cold boot: a running domain
    is reported "pending-cold-boot" (a reboot keeps the running count).
    Transient domains (virsh create) are never redefined, only reported.
  - When a guest's qemu-guest-agent connects (every boot and reboot), and
    for running domains at resync, it sets the guest's combined channel count
    with "ethtool -L IF combined M" through guest-exec, where the policy asks
    for it; --concurrency guest agent commands at a time, each step bounded by --guest-timeout,
    transient failures retried with backoff. When the guest cannot do it
    (guest-exec disabled, no ethtool, not Linux, ...) it says why in the
    status and does not retry.
  - After a start and after the guest step it verifies each NIC over QMP
    (x-query-virtio-status). Guest agent and QMP commands through libvirt
    taint the domain (custom-ga-command, custom-monitor) in libvirt's log.

"virtmq status" reads the state from --status-socket (mode 0600). Under
systemd (Type=notify) it reports READY=1 once the policy is valid and the
status socket listens, STATUS= with what it does, and pings the watchdog
(WatchdogSec=). SIGHUP reloads the policy (an invalid one is reported and
the previous one stays in force) and reconciles every domain; SIGTERM and
SIGINT stop it.`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("virtmq-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		policyPath    = fs.String("policy", "", "policy `file` (default $"+policy.EnvVar+", else "+policy.DefaultPath+" with drop-ins in policy.d/, else the default policy built in)")
		sockets       = fs.String("socket", strings.Join(virt.DefaultSockets, ","), "libvirt unix `sockets` to try in order, comma-separated")
		statusSocket  = fs.String("status-socket", status.DefaultSocket, "unix `socket` serving the agent's state as JSON (virtmq status)")
		stateDir      = fs.String("state-dir", agent.DefaultStateDir, "`folder` for what must survive the agent (the restart intents of apply_at: next-reboot)")
		metricsListen = fs.String("metrics-listen", "", "serve Prometheus metrics on `address` (e.g. 127.0.0.1:9465) at /metrics; off when empty")
		webConfig     = fs.String("web.config.file", "", "Prometheus exporter-toolkit web config `file` for the metrics endpoint: TLS, client certificates, basic auth (as node_exporter's); plain HTTP when empty")
		concurrency   = fs.Int("concurrency", agent.DefaultConcurrency, "how many guest agent commands or QMP checks are in flight at once on the libvirt connection (keep it below libvirtd's max_client_requests, 5, which reconciles share; up to 4× as many domains in guest steps)")
		guestTimeout  = fs.Duration("guest-timeout", agent.DefaultGuestTimeout, "bound for one guest step attempt of one domain (all its NICs)")
		logLevel      = cmdline.NewEnum("info", "debug", "info", "warn", "error")
		version       = fs.Bool("version", false, "print the version and exit")
	)
	fs.Var(logLevel, "log-level", "log `LEVEL`: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: virtmq-agent [OPTIONS]\n\n%s\n\nOptions:\n", description)
		cmdline.PrintOptions(fs.Output(), fs, cmdline.Options{})
	}
	if cmdline.HelpAsked(args) {
		fs.SetOutput(stdout)
	} else {
		fs.SetOutput(io.Discard) // a parse error is said below, in one line
	}
	usageError := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "virtmq-agent: %s\nRun \"virtmq-agent --help\" for the options.\n", fmt.Sprintf(format, args...))
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return usageError("%s", cmdline.FlagError(err))
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q: virtmq-agent takes options only", fs.Arg(0))
	}
	if *version {
		fmt.Fprintln(stdout, build.String("virtmq-agent"))
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel.Value)); err != nil {
		return usageError("--log-level %q: %v", logLevel.Value, err) // the Enum let only slog's names through
	}
	var socks []string
	for _, s := range strings.Split(*sockets, ",") {
		if s = strings.TrimSpace(s); s != "" {
			socks = append(socks, s)
		}
	}
	logger := logging.New(logging.Detect(false), stderr, level, "virtmq-agent")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	cfg := agent.Config{
		PolicyPath:        *policyPath,
		DefaultPolicyPath: policy.DefaultPath,
		Getenv:            os.Getenv,
		LibvirtSockets:    socks,
		StatusSocket:      *statusSocket,
		StateDir:          *stateDir,
		MetricsListen:     *metricsListen,
		MetricsWebConfig:  *webConfig,
		Concurrency:       *concurrency,
		GuestTimeout:      *guestTimeout,
		Reload:            hup,
		Logger:            logger,
	}
	logger.Info("starting", "version", build.Version, "commit", build.Commit)
	start := time.Now()
	if err := agent.Run(ctx, cfg); err != nil {
		logger.Error("virtmq-agent failed", "err", err)
		return 1
	}
	logger.Info("stopped", "uptime", time.Since(start).Round(time.Second))
	return 0
}

// Package hooks is the libvirt qemu hook: libvirt runs it synchronously on
// every domain operation, as /etc/libvirt/hooks/qemu or
// /etc/libvirt/hooks/qemu.d/50-virtmq, with `DOMAIN OP SUBOP EXTRA` as
// arguments and the domain XML on stdin.
//
// libvirt ignores hook output at prepare, so the hook cannot rewrite the
// XML there: at prepare it only decides and, by the policy's mode, logs
// each non-compliant NIC (observe, apply) or refuses the start (enforce). At migrate and restore, where libvirt would
// take a replacement XML, changing queues would break the incoming state, so
// it prints nothing; it only leaves a marker that lets the prepare right
// after it know the start is incoming, which enforce does not refuse (see
// incoming.go). It never calls libvirt (that deadlocks: libvirt holds
// the domain while the hook runs) nor the network, and it never blocks a
// start because of its own failure unless the policy says enforce with
// on_error: deny. A configured policy that is missing (see
// policy.ErrMissing) is not the hook's failure: it refuses the start, since
// it cannot know the mode and on_error that went with the file.
package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/virtmq/virtmq/internal/bounded"
	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/policy"
)

// Exit codes. libvirt aborts the operation on any non-zero exit.
const (
	ExitAllow = 0
	ExitDeny  = 1
)

// Config is what one hook run needs; every path is a parameter so tests can
// point it at fixtures.
type Config struct {
	// PolicyPath is the explicit policy (--policy); empty means VIRTMQ_POLICY,
	// then DefaultPolicyPath, then the embedded default.
	PolicyPath        string
	DefaultPolicyPath string
	Getenv            func(string) string
	Stdin             io.Reader
	// Stderr receives the enforce-mode refusal, which libvirt shows to the
	// API caller ("Hook script execution failed: ...").
	Stderr io.Writer
	Logger *slog.Logger
	// TimeLimit bounds the work at prepare (zero: no limit). libvirt waits
	// for the hook with no timeout while it holds the domain, so a stuck
	// stdin or file system must not hang a VM start. At the limit the hook
	// decides as for any of its own failures: by the policy's mode and
	// on_error when the policy was loaded by then, else it allows.
	TimeLimit time.Duration
	// IncomingDir holds the markers that tell prepare a QEMU starts for an
	// incoming migration or a restore (DefaultIncomingDir); empty: none
	// are kept, and prepare decides every start as a boot.
	IncomingDir string
}

// Run handles one hook invocation; args are DOMAIN OP SUBOP EXTRA, taken
// as data whatever they look like (a domain may be named "--help"). It
// returns the exit code, within cfg.TimeLimit when set. It writes nothing to
// stdout for any operation: for migrate and restore, empty output tells
// libvirt to keep the XML.
func Run(cfg Config, args []string) int {
	log := cfg.Logger
	if len(args) < 3 {
		log.Warn("unexpected hook arguments; ignoring", "args", strings.Join(args, " "))
		return ExitAllow
	}
	domain, op, subop := args[0], args[1], args[2]
	log = log.With("domain", domain, "op", op)
	switch op {
	case "migrate", "restore", "started", "stopped", "release":
		// migrate/restore: queues must not change there (QEMU refuses the
		// incoming state), so nothing is printed; only the incoming
		// marker is kept. Never a failure, even at the time limit.
		if _, ok := within(cfg.TimeLimit, func() int { return incoming(cfg, log, op) }); !ok {
			log.Error("the hook did not finish within the time limit; allowing", "limit", cfg.TimeLimit.String())
		}
		return ExitAllow
	}
	if op != "prepare" || subop != "begin" {
		// reconnect: a failure kills the running QEMU; everything else:
		// nothing to decide.
		return ExitAllow
	}
	if cfg.TimeLimit <= 0 {
		return prepare(cfg, log, domain, &known{})
	}
	// After the limit prepare's output is dropped: the exit code returned
	// here is the hook's answer, and the process exits with it.
	out := &gatedWriter{w: cfg.Stderr}
	inner := cfg
	inner.Stderr = out
	k := &known{}
	if code, ok := within(cfg.TimeLimit, func() int { return prepare(inner, log, domain, k) }); ok {
		return code
	}
	out.close()
	mode, onErr := k.get()
	return internalError(cfg, log, domain, mode, onErr, fmt.Errorf("the hook did not finish within %v", cfg.TimeLimit))
}

// within runs f on its own goroutine, so that the limit holds whatever
// it blocks in, and returns its code; ok is false when f did not return
// within limit (no limit when limit <= 0), and f is then left running.
func within(limit time.Duration, f func() int) (code int, ok bool) {
	if limit <= 0 {
		return f(), true
	}
	done := make(chan int, 1)
	go func() { done <- f() }()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case code := <-done:
		return code, true
	case <-timer.C:
		return 0, false
	}
}

// known is the policy's mode and on_error once prepare has loaded it, for
// the answer at the time limit.
type known struct {
	mu    sync.Mutex
	mode  policy.Mode
	onErr policy.OnError
}

func (k *known) set(mode policy.Mode, onErr policy.OnError) {
	k.mu.Lock()
	k.mode, k.onErr = mode, onErr
	k.mu.Unlock()
}

func (k *known) get() (policy.Mode, policy.OnError) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.mode, k.onErr
}

// gatedWriter passes writes on until close; then it drops them, so a
// prepare that outlived the time limit cannot add to the answer.
type gatedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gatedWriter) Write(b []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.w == nil {
		return len(b), nil
	}
	return g.w.Write(b)
}

// close stops passing writes on; it waits for a write in progress.
func (g *gatedWriter) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

func prepare(cfg Config, log *slog.Logger, domain string, k *known) int {
	// The domain XML is read and parsed while the policy loads: the two are
	// independent and each is about half of the hook's own work, which on
	// a host with a core to spare is that much off every VM start. Errors
	// are still taken in order: the policy's first, since its mode and
	// on_error say what an XML error does.
	parsed := make(chan parsedDomain, 1)
	go func() { parsed <- readDomain(cfg.Stdin) }()
	pol, _, err := policy.Resolve(cfg.PolicyPath, cfg.Getenv, cfg.DefaultPolicyPath)
	if errors.Is(err, policy.ErrMissing) {
		// A policy was configured (--policy, VIRTMQ_POLICY, or drop-ins
		// beside the default path) and its main file is gone. Its mode and
		// on_error went with it; the hook has no memory of them, and the
		// built-in default (apply) could turn an enforce host into one that
		// only logs. So it refuses, as enforce with on_error: deny does.
		k.set(policy.ModeEnforce, policy.OnErrorDeny)
		log.Error("virtmq policy is missing; refusing the start", "err", err)
		fmt.Fprintf(cfg.Stderr, "virtmq: domain %q: %v (a configured virtmq policy that is missing refuses every start)\n", domain, err)
		return ExitDeny
	}
	if err != nil {
		// Without a valid policy the mode is unknown: fall back to what the
		// file says about mode and on_error, if that much can be read.
		mode, onErr := policy.PeekMode(cfg.PolicyPath, cfg.Getenv, cfg.DefaultPolicyPath)
		k.set(mode, onErr)
		return internalError(cfg, log, domain, mode, onErr, err)
	}
	k.set(pol.Mode(), pol.OnError())
	x := <-parsed
	if x.err != nil {
		return internalError(cfg, log, domain, pol.Mode(), pol.OnError(), x.err)
	}
	// Taken at every prepare, whatever the mode: a marker excuses only the
	// start right after its migrate or restore.
	inc, err := "", error(nil)
	if cfg.IncomingDir != "" {
		if inc, err = takeIncoming(cfg.IncomingDir, x.dom.UUID, time.Now()); err != nil {
			log.Warn("cannot read the incoming marker; deciding the start as a boot", "err", err)
		}
	}
	plan := pol.Decide(x.dom)
	if plan.Orchestrator != "" && plan.Skip != "" {
		// Said once per start, so that whoever reads the log next to the
		// orchestrator's own knows why virtmq did nothing.
		log.Info("domain left to its orchestrator", "orchestrator", plan.Orchestrator, "reason", plan.Skip)
	}
	var lines []string
	for _, n := range plan.NICs {
		if !n.Change() {
			continue
		}
		log.Warn("NIC queues differ from policy",
			"mac", n.MAC, "current", n.Current, "wanted", n.Wanted, "rule", n.Rule, "reason", n.Reason, "mode", string(plan.Mode))
		lines = append(lines, refusal(domain, n))
	}
	if len(lines) == 0 || plan.Mode != policy.ModeEnforce {
		return ExitAllow
	}
	if inc != "" {
		// Its queues came with it and must not change (the migration
		// stream, the saved state): nothing to enforce until its next
		// cold boot here.
		log.Warn("incoming domain runs non-compliant; not refused: its queues travel unchanged, enforced at its next cold boot",
			"incoming", inc, "mode", string(plan.Mode))
		return ExitAllow
	}
	fmt.Fprintf(cfg.Stderr, "%s\n", strings.Join(lines, "\n"))
	return ExitDeny
}

// parsedDomain is the domain XML on stdin, read and parsed, or why not.
type parsedDomain struct {
	dom *policy.Domain
	err error
}

func readDomain(stdin io.Reader) parsedDomain {
	doc, err := bounded.Read(context.Background(), stdin, domxml.MaxSize, "a domain XML")
	if err != nil {
		return parsedDomain{err: fmt.Errorf("read domain XML from stdin: %w", err)}
	}
	dom, err := domxml.Parse(doc)
	if err != nil {
		return parsedDomain{err: fmt.Errorf("parse domain XML: %w", err)}
	}
	return parsedDomain{dom: dom}
}

// refusal is the one line per NIC that libvirt shows to whoever started the domain.
func refusal(domain string, n policy.NICPlan) string {
	mac := n.MAC
	if mac == "" {
		mac = fmt.Sprintf("interface #%d", n.Index)
	}
	return fmt.Sprintf("virtmq: domain %q NIC %s has queues=%d, policy wants %d (rule %q: %s); "+
		"run `virtmq apply %s` and start it again (virtmq-agent does this by itself for persistent domains), "+
		"or for a transient domain add <driver queues='%d'/> to the interface",
		domain, mac, n.Current, n.Wanted, n.Rule, n.Reason, domain, n.Wanted)
}

func internalError(cfg Config, log *slog.Logger, domain string, mode policy.Mode, onErr policy.OnError, err error) int {
	if mode == policy.ModeEnforce && onErr == policy.OnErrorDeny {
		log.Error("virtmq hook failed; refusing the start (on_error: deny)", "err", err)
		fmt.Fprintf(cfg.Stderr, "virtmq: domain %q: %v (policy on_error: deny refuses the start)\n", domain, err)
		return ExitDeny
	}
	log.Error("virtmq hook failed; allowing the start", "err", err)
	return ExitAllow
}

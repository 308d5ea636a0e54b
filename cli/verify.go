package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/virtmq/virtmq/internal/cmdline"
	"github.com/virtmq/virtmq/internal/facts"
	"github.com/virtmq/virtmq/internal/verify"
	"github.com/virtmq/virtmq/internal/virt"
)

// Check results, as verify prints them.
const (
	checkOK   = string(verify.OK)
	checkFail = string(verify.Fail)
	checkSkip = string(verify.Skip)
)

// check is one line of the verify report: a verify.Check as printed, its
// message sanitized.
type check struct {
	Status string `json:"status"`
	// Name identifies the check: see verify.Check.
	Name string `json:"check"`
	// MAC is the NIC the check is about; empty for domain-wide checks.
	MAC string `json:"mac,omitempty"`
	// Got and Want are the numbers compared, when there are.
	Got  *int `json:"got,omitempty"`
	Want *int `json:"want,omitempty"`
	// Message is the report line without the status.
	Message string `json:"message"`
}

// printableCheck is c as printed: what came from the guest or the host's
// tools goes through printable.
func printableCheck(c verify.Check) check {
	return check{Status: string(c.Status), Name: c.Name, MAC: c.MAC, Got: c.Got, Want: c.Want, Message: c.Message(printable)}
}

// verifyReport is what `virtmq verify --json` prints.
type verifyReport struct {
	FormatVersion int      `json:"format_version"`
	Domain        string   `json:"domain"`
	Policy        []string `json:"policy"`
	OK            bool     `json:"ok"`
	Checks        []check  `json:"checks"`
	// Error says why the checks could not run (no such domain, not
	// running, libvirt unreachable); empty when they ran.
	Error string `json:"error,omitempty"`
}

// runVerify is `virtmq verify` on the real host: see its usage text.
func runVerify(ctx context.Context, env *Env, args []string) int {
	return verifyMain(ctx, env, args, verify.DefaultHost())
}

// verifyMain is runVerify on a given host (tests pass a fixture tree).
func verifyMain(ctx context.Context, env *Env, args []string, host verify.Host) int {
	fs := newFlags(env, "verify", "[--policy FILE] [--json] [-c URI] [--timeout DURATION] DOMAIN", `
Check a running domain end to end against the policy, talking to libvirt
directly (not to virtmq-agent); the whole manual multiqueue check on demand.
For each NIC the policy manages:

  running queues   the live XML's <driver queues> = the policy's N
  QMP              x-query-virtio-status num-vqs = 2N+1, and the guest
                   negotiated VIRTIO_NET_F_MQ (when N > 1)
  tap              "ip -d link show dev TAP": numqueues + numdisabled = N,
                   and numqueues (the queues QEMU keeps attached because
                   the guest uses them) = M
  guest            when the policy's guest step is on, through
                   qemu-guest-agent: ethtool -l current combined = M,
                   max combined = N, and the virtio input interrupt lines
                   in /proc/interrupts = N

and, when /dev/vhost-net exists on a kvm domain, the vhost-<qemu pid>
worker threads (one per queue pair of each vhost NIC). First, two host
checks: libvirt's QEMU user can open /dev/kvm (without it libvirt probes
QEMU again on every call: defines and starts take seconds to minutes), and
a capabilities call made right after another answers within 1 s.

Prints one line per check: OK, FAIL or SKIP with the numbers. A check
that cannot run (no guest agent, guest-exec disabled by the guest's
qemu-ga policy, no ethtool, no vhost-net, ...) is a SKIP saying why and
does not fail. QMP commands through libvirt taint the domain
"custom-monitor" in libvirt's log; guest-agent commands "custom-ga-command".

Exits 1 when any check FAILs or the domain is not running, 0 otherwise.`)
	path := addPolicyFlag(fs)
	asJSON := fs.Bool("json", false, "print the checks as JSON")
	cf := addConnectFlags(fs)
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after `DURATION` (connecting to libvirt gives up after "+cmdline.Duration(env.connectTimeout())+")")
	pos, code, done := parseFlags(env, fs, args, 1, 1, "DOMAIN (the running domain to check)")
	if done {
		return code
	}
	name := pos[0]
	sources := []string{} // the policy's files, once it loads
	// fail reports why the checks cannot run: on stderr, and with --json
	// also as a report whose error says it.
	fail := func(format string, args ...any) int {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintf(env.Stderr, "virtmq verify: %s\n", msg)
		if *asJSON {
			writeJSON(env, "verify", verifyReport{FormatVersion: FormatVersion, Domain: name, Policy: sources, Checks: []check{}, Error: msg})
		}
		return ExitFailure
	}
	p, err := loadPolicy(env, *path)
	if err != nil {
		return fail("%v", err)
	}
	sources = orEmpty(p.Sources())
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	conn, uri, err := dialLibvirt(ctx, env, cf)
	if err != nil {
		return fail("%v", err)
	}
	defer conn.Close()
	if uri.Remote() {
		host.Remote = uri.String()
	}
	d, err := conn.LookupDomain(ctx, name)
	if errors.Is(err, virt.ErrNotFound) {
		return fail("%s: no such domain", name)
	}
	if err != nil {
		return fail("%s: look up: %v", name, err)
	}
	if !d.Active {
		return fail("%s is not running: there is nothing to verify "+
			"(\"virtmq apply --dry-run %s\" shows what its definition gets)", d.Name, d.Name)
	}
	results, err := verify.Run(ctx, conn, facts.NewReader(conn), host, d, p)
	if err != nil {
		return fail("%s: %v", d.Name, err)
	}
	checks := make([]check, len(results))
	for i, c := range results {
		checks[i] = printableCheck(c)
	}

	rep := verifyReport{FormatVersion: FormatVersion, Domain: d.Name, Policy: orEmpty(p.Sources()), OK: true, Checks: checks}
	for _, c := range checks {
		if c.Status == checkFail {
			rep.OK = false
		}
	}
	if *asJSON {
		if err := writeJSON(env, "verify", rep); err != nil {
			return ExitFailure
		}
	} else {
		printVerify(env, rep)
	}
	if !rep.OK {
		return ExitFailure
	}
	return ExitOK
}

// printVerify writes the report: a header, one line per check, a summary;
// OK, FAIL and SKIP coloured when the run colours.
func printVerify(env *Env, rep verifyReport) {
	w := env.Stdout
	fmt.Fprintf(w, "verify %s (policy %s)\n", rep.Domain, orDash(strings.Join(rep.Policy, ", ")))
	n := map[string]int{}
	for _, c := range rep.Checks {
		fmt.Fprintf(w, "%s%s %s\n", env.paintWord(c.Status), strings.Repeat(" ", max(0, 4-len(c.Status))), c.Message)
		n[c.Status]++
	}
	verdict := env.paint(sgrGreen, "complies with the policy")
	if !rep.OK {
		verdict = env.paint(sgrRed, "does NOT comply with the policy")
	}
	fmt.Fprintf(w, "%s %s: %d OK, %d FAIL, %d SKIP\n", rep.Domain, verdict, n[checkOK], n[checkFail], n[checkSkip])
}

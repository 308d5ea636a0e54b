package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/qmpcheck"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

// Check results.
const (
	checkOK   = "OK"
	checkFail = "FAIL"
	checkSkip = "SKIP"
)

// check is one line of the verify report.
type check struct {
	Status string `json:"status"`
	// Name identifies the check: running-queues, qmp-virtqueues, qmp-mq,
	// tap-queues, tap-active, vhost-workers, guest-combined, guest-max,
	// guest-interrupts, managed, guest.
	Name string `json:"check"`
	// MAC is the NIC the check is about; empty for domain-wide checks.
	MAC string `json:"mac,omitempty"`
	// Got and Want are the numbers compared, when there are.
	Got  *int `json:"got,omitempty"`
	Want *int `json:"want,omitempty"`
	// Message is the report line without the status.
	Message string `json:"message"`
}

// verifyReport is what `virtmq verify --json` prints.
type verifyReport struct {
	Domain string   `json:"domain"`
	Policy []string `json:"policy"`
	OK     bool     `json:"ok"`
	Checks []check  `json:"checks"`
}

// runVerify is `virtmq verify` on the real host: see its usage text.
func runVerify(ctx context.Context, env *Env, args []string) int {
	return verifyMain(ctx, env, args, defaultVerifyHost())
}

// verifyMain is runVerify on a given host (tests pass a fixture tree).
func verifyMain(ctx context.Context, env *Env, args []string, host verifyHost) int {
	fs := newFlags(env, "verify", "[--policy FILE] [--json] [--connect-socket PATH] [--timeout D] DOMAIN", `
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
	path := fs.String("policy", "", "policy `file` (default $VIRTMQ_POLICY, else /etc/virtmq/policy.yaml, else built-in)")
	asJSON := fs.Bool("json", false, "print the checks as JSON")
	socket := addConnectFlag(fs)
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this `duration`")
	pos, code, done := parseFlags(env, fs, args)
	if done {
		return code
	}
	if len(pos) != 1 {
		fs.Usage()
		return ExitUsage
	}
	name := pos[0]
	p, err := loadPolicy(env, *path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq verify: %v\n", err)
		return ExitFailure
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	conn, err := dialLibvirt(ctx, env, *socket)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq verify: %v\n", err)
		return ExitFailure
	}
	defer conn.Close()
	d, err := conn.LookupDomain(ctx, name)
	if errors.Is(err, virt.ErrNotFound) {
		fmt.Fprintf(env.Stderr, "virtmq verify: %s: no such domain\n", name)
		return ExitFailure
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq verify: %s: look up: %v\n", name, err)
		return ExitFailure
	}
	if !d.Active {
		fmt.Fprintf(env.Stderr, "virtmq verify: %s is not running: there is nothing to verify "+
			"(\"virtmq apply --dry-run %s\" shows what its definition gets)\n", d.Name, d.Name)
		return ExitFailure
	}
	live, err := conn.DomainXML(ctx, d, virt.XMLLive)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq verify: %s: read live XML: %v\n", d.Name, err)
		return ExitFailure
	}
	dom, err := domxml.Parse(live)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq verify: %s: live XML: %v\n", d.Name, err)
		return ExitFailure
	}
	v := verifier{conn: conn, dom: d, facts: dom, plan: p.Decide(dom), host: host}
	checks := v.run(ctx)

	rep := verifyReport{Domain: d.Name, Policy: p.Sources(), OK: true, Checks: checks}
	for _, c := range checks {
		if c.Status == checkFail {
			rep.OK = false
		}
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(env.Stderr, "virtmq verify: %v\n", err)
			return ExitFailure
		}
	} else {
		printVerify(env.Stdout, rep)
	}
	if !rep.OK {
		return ExitFailure
	}
	return ExitOK
}

// printVerify writes the report: a header, one line per check, a summary.
func printVerify(w io.Writer, rep verifyReport) {
	fmt.Fprintf(w, "verify %s (policy %s)\n", rep.Domain, orDash(strings.Join(rep.Policy, ", ")))
	n := map[string]int{}
	for _, c := range rep.Checks {
		fmt.Fprintf(w, "%-4s %s\n", c.Status, c.Message)
		n[c.Status]++
	}
	verdict := "complies with the policy"
	if !rep.OK {
		verdict = "does NOT comply with the policy"
	}
	fmt.Fprintf(w, "%s %s: %d OK, %d FAIL, %d SKIP\n", rep.Domain, verdict, n[checkOK], n[checkFail], n[checkSkip])
}

// verifier runs the checks of one running domain.
type verifier struct {
	conn  virt.Conn
	dom   virt.Domain
	facts *policy.Domain // from the live XML
	plan  policy.Plan    // decided on the live XML
	host  verifyHost
	// guestReason is set once a guest step fails for a reason that holds
	// for the whole domain (no agent, guest-exec disabled, ...): the other
	// NICs are skipped with it instead of asking again.
	guestReason error

	checks []check
}

// add appends one check.
func (v *verifier) add(status, name, mac string, got, want *int, format string, args ...any) {
	v.checks = append(v.checks, check{Status: status, Name: name, MAC: mac, Got: got, Want: want,
		Message: fmt.Sprintf(format, args...)})
}

// cmp adds an OK or FAIL check comparing got with want.
func (v *verifier) cmp(name, mac string, got, want int, what, wantWhat, hint string) {
	status, op := checkOK, "="
	if got != want {
		status, op = checkFail, "!="
	}
	msg := fmt.Sprintf("%s %d %s %s %d", what, got, op, wantWhat, want)
	if got != want && hint != "" {
		msg += " (" + hint + ")"
	}
	v.add(status, name, mac, &got, &want, "%s", msg)
}

// run returns every check, NIC by NIC, then the domain-wide ones.
func (v *verifier) run(ctx context.Context) []check {
	ifaces := map[int]policy.Interface{}
	for _, ifc := range v.facts.Interfaces {
		ifaces[ifc.Index] = ifc
	}
	v.hostHealth(ctx)
	if len(v.plan.NICs) == 0 {
		v.add(checkSkip, "managed", "", nil, nil, "%s has no <interface>", v.dom.Name)
	}
	for _, n := range v.plan.NICs {
		ifc := ifaces[n.Index]
		mac := n.MAC
		if !n.Managed {
			v.add(checkSkip, "managed", mac, nil, nil, "%s %s/%s not managed by the policy: %s",
				orDash(mac), n.Type, orDash(n.Model), printable(n.Reason))
			continue
		}
		running := max(ifc.Queues, 1)
		v.cmp("running-queues", mac, running, n.Wanted, mac+" running queues", "wanted",
			"\"virtmq apply\" sets the definition; it applies at the next cold boot: shutdown + start, a reboot keeps the old count")
		v.qmp(ctx, n, ifc)
		v.tap(ctx, n, ifc)
		v.guest(ctx, n)
	}
	v.vhost()
	return v.checks
}

// qmp checks num-vqs and VIRTIO_NET_F_MQ over QMP.
func (v *verifier) qmp(ctx context.Context, n policy.NICPlan, ifc policy.Interface) {
	if ifc.Alias == "" {
		v.add(checkSkip, "qmp-virtqueues", n.MAC, nil, nil, "%s QMP: no <alias> in the live XML", n.MAC)
		return
	}
	st, err := qmpcheck.Query(virt.Monitor{Ctx: ctx, Conn: v.conn, Domain: v.dom}, ifc.Alias)
	switch {
	case errors.Is(err, qmpcheck.ErrUnsupported):
		v.add(checkSkip, "qmp-virtqueues", n.MAC, nil, nil, "%s QMP: %v", n.MAC, err)
		return
	case err != nil:
		v.add(checkFail, "qmp-virtqueues", n.MAC, nil, nil, "%s QMP: %v", n.MAC, err)
		return
	}
	// num-vqs is 2N+1 (rx and tx per pair, plus the control queue);
	// qmpcheck derives N from it.
	v.cmp("qmp-virtqueues", n.MAC, st.Queues, n.Wanted, fmt.Sprintf("%s QMP num-vqs %d: queue pairs", n.MAC, st.NumVQs), "wanted", "")
	if n.Wanted <= 1 {
		return
	}
	if st.MQ {
		v.add(checkOK, "qmp-mq", n.MAC, nil, nil, "%s QMP guest negotiated VIRTIO_NET_F_MQ", n.MAC)
	} else {
		v.add(checkFail, "qmp-mq", n.MAC, nil, nil, "%s QMP guest did not negotiate VIRTIO_NET_F_MQ (old or not yet loaded virtio-net driver): it uses 1 queue", n.MAC)
	}
}

// tap checks the tap's queues: attached + detached = N, attached = M.
func (v *verifier) tap(ctx context.Context, n policy.NICPlan, ifc policy.Interface) {
	if ifc.TargetDev == "" {
		v.add(checkSkip, "tap-queues", n.MAC, nil, nil, "%s tap: no <target dev> in the live XML (%s NIC)", n.MAC, n.Type)
		return
	}
	tap := printable(ifc.TargetDev)
	c, err := v.host.tapQueues(ctx, ifc.TargetDev)
	switch {
	case errors.Is(err, errNoIP), errors.Is(err, errNoTapQueues):
		v.add(checkSkip, "tap-queues", n.MAC, nil, nil, "%s tap %s: %v", n.MAC, tap, err)
		return
	case errors.Is(err, os.ErrPermission):
		v.add(checkSkip, "tap-queues", n.MAC, nil, nil, "%s tap %s: %v (run as root)", n.MAC, tap, err)
		return
	case err != nil:
		v.add(checkFail, "tap-queues", n.MAC, nil, nil, "%s tap %s: %v", n.MAC, tap, err)
		return
	}
	v.cmp("tap-queues", n.MAC, c.Total(), n.Wanted, n.MAC+" tap "+tap+" queues", "wanted",
		fmt.Sprintf("numqueues %d + numdisabled %d", c.Active, c.Disabled))
	active := c.Active
	if !n.GuestStep {
		v.add(checkSkip, "tap-active", n.MAC, &active, nil,
			"%s tap %s active queues %d of %d (guest step off in the policy: not compared)", n.MAC, tap, active, c.Total())
		return
	}
	v.cmp("tap-active", n.MAC, active, n.Combined, n.MAC+" tap "+tap+" active queues", "wanted combined",
		fmt.Sprintf("numqueues %d numdisabled %d: the guest uses %d", c.Active, c.Disabled, active))
}

// domainWideGuestReason reports whether a guest step failure holds for
// every NIC of the domain.
func domainWideGuestReason(err error) bool {
	for _, r := range []error{guest.ErrNoAgent, guest.ErrExecDisabled, guest.ErrNotLinux, guest.ErrTimeout} {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// isGuestReason reports whether err is one of the guest package's reasons a
// step cannot be done (a SKIP, not a failure).
func isGuestReason(err error) bool {
	return domainWideGuestReason(err) || errors.Is(err, guest.ErrNoInterface) || errors.Is(err, guest.ErrAboveMax) ||
		errors.Is(err, guest.ErrNoEthtool) || errors.Is(err, guest.ErrDenied)
}

// guest checks ethtool -l and /proc/interrupts in the guest.
func (v *verifier) guest(ctx context.Context, n policy.NICPlan) {
	if !n.GuestStep {
		v.add(checkSkip, "guest", n.MAC, nil, nil, "%s guest: the policy's guest step is off for this NIC", n.MAC)
		return
	}
	if v.guestReason != nil {
		v.add(checkSkip, "guest", n.MAC, nil, nil, "%s guest: %s", n.MAC, printable(v.guestReason.Error()))
		return
	}
	res, err := guest.Inspect(ctx, virt.GuestAgent{Conn: v.conn, Domain: v.dom}, n.MAC, guest.Options{})
	ifname := printable(res.IfName)
	switch {
	case err == nil:
		ch := res.After
		v.cmp("guest-combined", n.MAC, ch.Current, n.Combined, "guest "+ifname+" combined", "wanted",
			fmt.Sprintf("max %d; the agent runs ethtool -L %s combined %d", ch.Max, ifname, n.Combined))
		v.cmp("guest-max", n.MAC, ch.Max, n.Wanted, "guest "+ifname+" max combined", "queues", "")
	case errors.Is(err, guest.ErrNoEthtool) && res.IfName != "" && len(res.Interrupts) > 0:
		// Inspect still read the interrupts: check them below.
		v.add(checkSkip, "guest-combined", n.MAC, nil, nil, "guest %s combined: %s", ifname, printable(err.Error()))
	case isGuestReason(err):
		if domainWideGuestReason(err) {
			v.guestReason = err
		}
		v.add(checkSkip, "guest", n.MAC, nil, nil, "%s guest: %s", n.MAC, printable(err.Error()))
		return
	default:
		v.add(checkFail, "guest", n.MAC, nil, nil, "%s guest: %s", n.MAC, printable(err.Error()))
		return
	}
	in, out := 0, 0
	for _, l := range res.Interrupts {
		switch {
		case strings.Contains(l, "-input."):
			in++
		case strings.Contains(l, "-output."):
			out++
		}
	}
	if in == 0 {
		v.add(checkSkip, "guest-interrupts", n.MAC, &in, nil,
			"guest %s interrupts: no per-queue virtio input lines in /proc/interrupts (shared or legacy interrupts)", ifname)
		return
	}
	status, op := checkOK, "="
	if in != n.Wanted {
		status, op = checkFail, "!="
	}
	v.add(status, "guest-interrupts", n.MAC, &in, &n.Wanted,
		"guest %s virtio interrupts: %d input, %d output %s queues %d", ifname, in, out, op, n.Wanted)
}

// vhost counts the vhost-<qemu pid> worker threads: one per queue pair of
// each NIC that uses vhost-net.
func (v *verifier) vhost() {
	if !v.host.hasVhostNet() {
		v.add(checkSkip, "vhost-workers", "", nil, nil,
			"vhost workers: no %s on this host: QEMU uses userspace virtio-net", v.host.DevRoot+"/vhost-net")
		return
	}
	if v.facts.Type != "kvm" {
		v.add(checkSkip, "vhost-workers", "", nil, nil,
			"vhost workers: domain type %s: libvirt uses vhost-net for kvm domains only", orDash(v.facts.Type))
		return
	}
	// Every tap-backed virtio NIC counts, managed or not.
	want := 0
	for _, ifc := range v.facts.Interfaces {
		switch ifc.Type {
		case "network", "bridge", "direct", "ethernet":
		default:
			continue
		}
		if !strings.HasPrefix(ifc.Model, "virtio") || ifc.DriverName == "qemu" {
			continue
		}
		want += max(ifc.Queues, 1)
	}
	if want == 0 {
		v.add(checkSkip, "vhost-workers", "", nil, nil, "vhost workers: no NIC of this domain can use vhost-net")
		return
	}
	pid, err := v.host.qemuPID(v.dom.Name)
	if err != nil {
		st := checkFail
		if errors.Is(err, os.ErrPermission) {
			st = checkSkip
		}
		v.add(st, "vhost-workers", "", nil, nil, "vhost workers: %v", err)
		return
	}
	got, err := v.host.vhostWorkers(pid)
	switch {
	case err != nil:
		v.add(checkFail, "vhost-workers", "", nil, &want, "vhost workers: %v", err)
	case got == 0:
		v.add(checkSkip, "vhost-workers", "", &got, &want,
			"vhost workers: none named vhost-%d: QEMU fell back to userspace virtio-net", pid)
	case got < want:
		v.add(checkFail, "vhost-workers", "", &got, &want,
			"vhost workers vhost-%d: %d < %d queue pairs on vhost NICs", pid, got, want)
	case got > want:
		v.add(checkOK, "vhost-workers", "", &got, &want,
			"vhost workers vhost-%d: %d >= %d queue pairs on vhost NICs (other vhost devices add their own)", pid, got, want)
	default:
		v.add(checkOK, "vhost-workers", "", &got, &want,
			"vhost workers vhost-%d: %d = %d queue pairs on vhost NICs", pid, got, want)
	}
}

// Package verify is the checking engine of `virtmq verify`: it checks a
// running domain end to end against the policy (the live XML's queues, QMP,
// the tap, the guest, the vhost workers) and the host libvirt runs on
// (/dev/kvm access, libvirt's answer time), and returns one Check per
// result with its raw values.
//
// The host is a boundary like libvirt and the guest agent: Host names every
// path it reads and the command runner and clock it uses, so tests point
// it at a fixture tree (package verifytest builds one).
//
// Messages and sanitizing: each Check carries its message as a format and
// arguments, not as a finished string. The arguments that come from outside
// virtmq and that a guest or a hostile host tool can choose (guest interface
// names, the guest's error text, tap names, ip's stderr, the policy's
// reason text) are Raw. Message(clean) formats the message with clean
// applied to every Raw argument: the caller decides how text is made safe
// for where it goes (the CLI passes its printable, for a terminal), and the
// engine neither sanitizes nor needs to know the terminal. The errors this
// package makes itself quote what they carry with %q, so they are safe as
// they are.
package verify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/virtmq/virtmq/internal/facts"
	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/qmpcheck"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

// Status is a check's result.
type Status string

// The results. A check that cannot run (no guest agent, no vhost-net, ...)
// is a Skip saying why; only Fail makes a domain non-compliant.
const (
	OK   Status = "OK"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
)

// Raw is text from outside virtmq that a caller must make safe before
// printing it (see the package comment).
type Raw string

// Check is one result.
type Check struct {
	Status Status
	// Name identifies the check: host-kvm, host-libvirt, managed,
	// running-queues, qmp-virtqueues, qmp-mq, tap-queues, tap-active,
	// guest, guest-combined, guest-max, guest-interrupts, vhost-workers.
	Name string
	// MAC is the NIC the check is about; empty for domain-wide checks.
	MAC string
	// Got and Want are the numbers compared, when there are.
	Got, Want *int
	// Err is the error the check reports, when it reports one; callers
	// branch on it with errors.Is (guest.ErrNoAgent, os.ErrPermission, ...).
	Err error

	msg text
}

// Message is the check's report line without the status, with clean
// applied to every Raw part (as is when clean is nil).
func (c Check) Message(clean func(string) string) string {
	args := slices.Clone(c.msg.args)
	for i, a := range args {
		if r, ok := a.(Raw); ok && clean != nil {
			args[i] = clean(string(r))
		} else if ok {
			args[i] = string(r)
		}
	}
	return fmt.Sprintf(c.msg.format, args...)
}

// text is a message: a format of trusted text and its arguments, Raw
// where they come from outside.
type text struct {
	format string
	args   []any
}

func msg(format string, args ...any) text { return text{format: format, args: args} }

// Run checks the running domain d against p: the host first, then NIC by
// NIC, then the domain-wide checks. It reads the live XML through read
// (a reader on conn: the agent's facts, networks resolved); the error is
// only about reading or parsing it (every other problem is a Check). Run
// does not look at d.Active: a domain that is not running has nothing to
// check, and saying so is the caller's.
func Run(ctx context.Context, conn virt.Conn, read *facts.Reader, host Host, d virt.Domain, p *policy.Policy) ([]Check, error) {
	live, err := read.Live(ctx, d)
	var re *facts.ReadError
	switch {
	case errors.As(err, &re):
		return nil, fmt.Errorf("read live XML: %w", re.Err)
	case err != nil:
		return nil, fmt.Errorf("live XML: %w", err)
	}
	v := verifier{conn: conn, dom: d, facts: live, plan: p.Decide(live), host: host}
	return v.run(ctx), nil
}

// verifier runs the checks of one running domain.
type verifier struct {
	conn  virt.Conn
	dom   virt.Domain
	facts *policy.Domain // from the live XML
	plan  policy.Plan    // decided on the live XML
	host  Host
	// guestReason is set once a guest step is skipped for a reason that
	// holds for the whole domain (no agent, guest-exec disabled, ...): the
	// other NICs are skipped with it instead of asking again.
	guestReason error

	checks []Check
}

// add appends one check.
func (v *verifier) add(status Status, name, mac string, got, want *int, err error, m text) {
	v.checks = append(v.checks, Check{Status: status, Name: name, MAC: mac, Got: got, Want: want, Err: err, msg: m})
}

// cmp adds an OK or FAIL check comparing got with want: "WHAT got = WANTWHAT
// want", and " (HINT)" when they differ and there is a hint.
func (v *verifier) cmp(name, mac string, got, want int, what text, wantWhat string, hint text) {
	status, op := OK, "="
	if got != want {
		status, op = Fail, "!="
	}
	m := text{format: what.format + " %d %s %s %d", args: append(slices.Clone(what.args), got, op, wantWhat, want)}
	if got != want && hint.format != "" {
		m.format += " (" + hint.format + ")"
		m.args = append(m.args, hint.args...)
	}
	v.add(status, name, mac, &got, &want, nil, m)
}

// run returns every check, NIC by NIC, then the domain-wide ones.
func (v *verifier) run(ctx context.Context) []Check {
	ifaces := map[int]policy.Interface{}
	for _, ifc := range v.facts.Interfaces {
		ifaces[ifc.Index] = ifc
	}
	v.hostHealth(ctx)
	if len(v.plan.NICs) == 0 {
		v.add(Skip, "managed", "", nil, nil, nil, msg("%s has no <interface>", v.dom.Name))
	}
	for _, n := range v.plan.NICs {
		ifc := ifaces[n.Index]
		mac := n.MAC
		if !n.Managed {
			v.add(Skip, "managed", mac, nil, nil, nil, msg("%s %s/%s not managed by the policy: %s",
				orDash(mac), n.Type, orDash(n.Model), Raw(n.Reason)))
			continue
		}
		running := max(ifc.Queues, 1)
		v.cmp("running-queues", mac, running, n.Wanted, msg("%s running queues", mac), "wanted",
			msg("%s", "\"virtmq apply\" sets the definition; it applies at the next cold boot: shutdown + start, a reboot keeps the old count"))
		v.qmp(ctx, n, ifc)
		v.tap(ctx, n, ifc)
		v.guest(ctx, n)
	}
	v.vhost()
	return v.checks
}

// qmp checks num-vqs and VIRTIO_NET_F_MQ over QMP. ifc has an alias:
// facts.Reader.Live refuses a live XML with a NIC without one (the domain
// is not running).
func (v *verifier) qmp(ctx context.Context, n policy.NICPlan, ifc policy.Interface) {
	st, err := qmpcheck.Query(virt.Monitor{Ctx: ctx, Conn: v.conn, Domain: v.dom}, ifc.Alias)
	switch {
	case errors.Is(err, qmpcheck.ErrUnsupported):
		v.add(Skip, "qmp-virtqueues", n.MAC, nil, nil, err, msg("%s QMP: %v", n.MAC, err))
		return
	case err != nil:
		v.add(Fail, "qmp-virtqueues", n.MAC, nil, nil, err, msg("%s QMP: %v", n.MAC, err))
		return
	}
	// num-vqs is 2N+1 (rx and tx per pair, plus the control queue);
	// qmpcheck derives N from it.
	v.cmp("qmp-virtqueues", n.MAC, st.Queues, n.Wanted, msg("%s QMP num-vqs %d: queue pairs", n.MAC, st.NumVQs), "wanted", text{})
	if n.Wanted <= 1 {
		return
	}
	if st.MQ {
		v.add(OK, "qmp-mq", n.MAC, nil, nil, nil, msg("%s QMP guest negotiated VIRTIO_NET_F_MQ", n.MAC))
	} else {
		v.add(Fail, "qmp-mq", n.MAC, nil, nil, nil, msg("%s QMP guest did not negotiate VIRTIO_NET_F_MQ (old or not yet loaded virtio-net driver): it uses 1 queue", n.MAC))
	}
}

// tap checks the tap's queues: attached + detached = N, attached = M.
func (v *verifier) tap(ctx context.Context, n policy.NICPlan, ifc policy.Interface) {
	if ifc.TargetDev == "" {
		v.add(Skip, "tap-queues", n.MAC, nil, nil, nil, msg("%s tap: no <target dev> in the live XML (%s NIC)", n.MAC, n.Type))
		return
	}
	tap := Raw(ifc.TargetDev)
	if v.host.Remote != "" {
		v.add(Skip, "tap-queues", n.MAC, nil, nil, nil, v.host.remoteSkip(msg("%s tap %s", n.MAC, tap)))
		return
	}
	c, err := v.host.tapQueues(ctx, ifc.TargetDev)
	switch {
	case errors.Is(err, errNoIP), errors.Is(err, errNoTapQueues):
		v.add(Skip, "tap-queues", n.MAC, nil, nil, err, msg("%s tap %s: %s", n.MAC, tap, Raw(err.Error())))
		return
	case errors.Is(err, os.ErrPermission):
		v.add(Skip, "tap-queues", n.MAC, nil, nil, err, msg("%s tap %s: %s (run as root)", n.MAC, tap, Raw(err.Error())))
		return
	case err != nil:
		v.add(Fail, "tap-queues", n.MAC, nil, nil, err, msg("%s tap %s: %s", n.MAC, tap, Raw(err.Error())))
		return
	}
	v.cmp("tap-queues", n.MAC, c.Total(), n.Wanted, msg("%s tap %s queues", n.MAC, tap), "wanted",
		msg("numqueues %d + numdisabled %d", c.Active, c.Disabled))
	active := c.Active
	if !n.GuestStep {
		v.add(Skip, "tap-active", n.MAC, &active, nil, nil,
			msg("%s tap %s active queues %d of %d (guest step off in the policy: not compared)", n.MAC, tap, active, c.Total()))
		return
	}
	v.cmp("tap-active", n.MAC, active, n.Combined, msg("%s tap %s active queues", n.MAC, tap), "wanted combined",
		msg("numqueues %d numdisabled %d: the guest uses %d", c.Active, c.Disabled, active))
}

// guestSkip classifies a guest check's error with guest.Classify: skip
// when the check cannot run for a reason of the guest's (a SKIP, not a
// failure), domainWide when that reason holds for every NIC.
//
// It keeps the SKIP/FAIL split verify has always had where Classify, made
// for the agent's retries, says otherwise:
//   - the run's own deadline (--timeout) passing during the guest check is
//     a failure: it is the caller's limit, not the guest's answer (a guest
//     command timing out, guest.ErrTimeout, is a skip);
//   - a guest command timing out holds for the whole domain even when the
//     error also says ethtool is missing (Inspect joins the two).
func guestSkip(err error) (skip, domainWide bool) {
	c := guest.Classify(err)
	timedOut := errors.Is(err, guest.ErrTimeout)
	switch {
	case c.Reason == guest.ReasonTimeout && !timedOut:
		// verify's own --timeout ran out, not the guest's command: the
		// check did not complete.
		return false, false
	}
	return c.Skip, c.Skip && (c.DomainWide || timedOut)
}

// guest checks ethtool -l and /proc/interrupts in the guest.
func (v *verifier) guest(ctx context.Context, n policy.NICPlan) {
	if !n.GuestStep {
		v.add(Skip, "guest", n.MAC, nil, nil, nil, msg("%s guest: the policy's guest step is off for this NIC", n.MAC))
		return
	}
	if v.guestReason != nil {
		v.add(Skip, "guest", n.MAC, nil, nil, v.guestReason, msg("%s guest: %s", n.MAC, Raw(v.guestReason.Error())))
		return
	}
	res, err := guest.Inspect(ctx, virt.GuestAgent{Conn: v.conn, Domain: v.dom}, n.MAC, guest.Options{})
	ifname := Raw(res.IfName)
	switch skip, domainWide := guestSkip(err); {
	case err == nil:
		ch := res.After
		v.cmp("guest-combined", n.MAC, ch.Current, n.Combined, msg("guest %s combined", ifname), "wanted",
			msg("max %d; the agent runs ethtool -L %s combined %d", ch.Max, ifname, n.Combined))
		v.cmp("guest-max", n.MAC, ch.Max, n.Wanted, msg("guest %s max combined", ifname), "queues", text{})
	case errors.Is(err, guest.ErrNoEthtool) && res.IfName != "" && len(res.Interrupts) > 0:
		// Inspect still read the interrupts: check them below.
		v.add(Skip, "guest-combined", n.MAC, nil, nil, err, msg("guest %s combined: %s", ifname, Raw(err.Error())))
	case skip:
		if domainWide {
			v.guestReason = err
		}
		v.add(Skip, "guest", n.MAC, nil, nil, err, msg("%s guest: %s", n.MAC, Raw(err.Error())))
		return
	default:
		v.add(Fail, "guest", n.MAC, nil, nil, err, msg("%s guest: %s", n.MAC, Raw(err.Error())))
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
		v.add(Skip, "guest-interrupts", n.MAC, &in, nil, nil,
			msg("guest %s interrupts: no per-queue virtio input lines in /proc/interrupts (shared or legacy interrupts)", ifname))
		return
	}
	status, op := OK, "="
	if in != n.Wanted {
		status, op = Fail, "!="
	}
	want := n.Wanted
	v.add(status, "guest-interrupts", n.MAC, &in, &want, nil,
		msg("guest %s virtio interrupts: %d input, %d output %s queues %d", ifname, in, out, op, n.Wanted))
}

// vhost counts the vhost-<qemu pid> worker threads: one per queue pair of
// each NIC that uses vhost-net.
func (v *verifier) vhost() {
	if v.host.Remote != "" {
		v.add(Skip, "vhost-workers", "", nil, nil, nil, v.host.remoteSkip(msg("vhost workers")))
		return
	}
	if !v.host.hasVhostNet() {
		v.add(Skip, "vhost-workers", "", nil, nil, nil,
			msg("vhost workers: no %s on this host: QEMU uses userspace virtio-net", v.host.DevRoot+"/vhost-net"))
		return
	}
	if v.facts.Type != "kvm" {
		v.add(Skip, "vhost-workers", "", nil, nil, nil,
			msg("vhost workers: domain type %s: libvirt uses vhost-net for kvm domains only", orDash(v.facts.Type)))
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
		v.add(Skip, "vhost-workers", "", nil, nil, nil, msg("vhost workers: no NIC of this domain can use vhost-net"))
		return
	}
	pid, err := v.host.qemuPID(v.dom.Name)
	if err != nil {
		st := Fail
		if errors.Is(err, os.ErrPermission) {
			st = Skip
		}
		v.add(st, "vhost-workers", "", nil, nil, err, msg("vhost workers: %v", err))
		return
	}
	got, err := v.host.vhostWorkers(pid)
	switch {
	case err != nil:
		v.add(Fail, "vhost-workers", "", nil, &want, err, msg("vhost workers: %v", err))
	case got == 0:
		v.add(Skip, "vhost-workers", "", &got, &want, nil,
			msg("vhost workers: none named vhost-%d: QEMU fell back to userspace virtio-net", pid))
	case got < want:
		v.add(Fail, "vhost-workers", "", &got, &want, nil,
			msg("vhost workers vhost-%d: %d < %d queue pairs on vhost NICs", pid, got, want))
	case got > want:
		v.add(OK, "vhost-workers", "", &got, &want, nil,
			msg("vhost workers vhost-%d: %d >= %d queue pairs on vhost NICs (other vhost devices add their own)", pid, got, want))
	default:
		v.add(OK, "vhost-workers", "", &got, &want, nil,
			msg("vhost workers vhost-%d: %d = %d queue pairs on vhost NICs", pid, got, want))
	}
}

// orDash is s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

package agent

import (
	"fmt"
	"strings"

	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/policy"
)

// stateInput is what a domain's state is derived from after a reconcile
// that got through. (The retrying and error states are not derived: a
// failed reconcile sets them, see retryLater and fail.)
type stateInput struct {
	v *domainView
	// redefined says this reconcile redefined the domain with v.plan.
	redefined bool
	// rewritten says the agent redefined the domain (now or before) and it
	// has not run with that definition yet.
	rewritten bool
	// would is, in mode observe (v.observe), the changes the redefine this
	// reconcile did not make would have made; empty when none.
	would string
	// old is the NICs' status before: what the guest step and QMP learned
	// is kept while the domain runs.
	old []status.NIC
	// rebootOK says the connection can turn a guest reboot into a cold
	// boot (see reboot.go): without it apply_at: next-reboot falls back
	// to cold-boot, and the problem says so.
	rebootOK bool
	// intentProblem is why the agent cannot write its restart intents
	// (empty when it can): apply_at: next-reboot cannot act then.
	intentProblem string
}

// derived is a domain's status after a reconcile.
type derived struct {
	nics    []status.NIC
	state   string
	problem string
	// rewritten is the record's rewritten flag from now on: cleared once
	// the domain runs with its definition.
	rewritten bool
	// would lists what the agent would do in mode apply (mode observe only).
	would []string
	// warnings are the plan's (policy.Plan.Warnings).
	warnings []string
	// orchestrator is the plan's (policy.Plan.Orchestrator), and
	// orchestratorMode what virtmq does to the domain because of it:
	// leave, observe or apply (status.Domain).
	orchestrator, orchestratorMode string
}

// deriveState derives the per-NIC status and the state of a domain from
// what its reconcile learned. It is pure.
//
// A plan that manages no NIC is unmanaged; when the policy leaves the whole
// domain alone (plan.Skip: the exclude label, a foreign domain type, an
// orchestrator that owns it) that is its problem. Each NIC carries the policy's reason, and kept NICs (a
// hand-set count, hand_set: keep) say so. A transient domain is compliant
// or transient (never redefined). A persistent one running with other
// queue counts than its definition is pending a cold boot; one the agent
// rewrote that has not run since is rewritten; else it is compliant. In
// mode observe, one whose definition the agent would redefine is
// would-redefine, and the status lists what the agent would do.
func deriveState(in stateInput) derived {
	d, plan := in.v.d, in.v.plan
	var running map[string]int
	taps := map[string]string{}
	if in.v.live != nil {
		running = in.v.live.QueuesByMAC()
		for _, ifc := range in.v.live.Interfaces {
			if ifc.MAC != "" && ifc.TargetDev != "" {
				taps[ifc.MAC] = ifc.TargetDev
			}
		}
	}
	old := map[string]status.NIC{}
	for _, n := range in.old {
		old[n.MAC] = n
	}
	out := derived{nics: make([]status.NIC, 0, len(plan.NICs)), rewritten: in.rewritten, warnings: plan.Warnings,
		orchestrator: plan.Orchestrator}
	switch {
	case plan.Orchestrator == "":
	case plan.Skip != "":
		out.orchestratorMode = string(policy.OrchestratorLeave)
	case in.v.observe:
		out.orchestratorMode = string(policy.OrchestratorObserve)
	default:
		out.orchestratorMode = string(policy.OrchestratorApply)
	}
	managed := false
	var pending, guestWould, replug []string
	for _, n := range plan.NICs {
		ns := status.NIC{MAC: n.MAC, Managed: n.Managed, Wanted: n.Wanted, Defined: n.Current, Rule: n.Rule,
			Reason: n.Reason, Kept: n.Kept, TargetDevice: taps[n.MAC]}
		if in.redefined && n.Change() {
			ns.Defined = n.Wanted
		}
		if n.Managed {
			managed = true
			if n.GuestStep {
				ns.GuestWanted = n.Combined
			}
		}
		if q, ok := running[n.MAC]; ok {
			ns.Running = q
			switch {
			case !n.Managed || q == n.Wanted:
			case in.v.liveOnly[n.MAC]:
				replug = append(replug, fmt.Sprintf("%s runs %d, wants %d", n.MAC, q, n.Wanted))
			default:
				pending = append(pending, fmt.Sprintf("%s runs %d, wants %d", n.MAC, q, n.Wanted))
			}
			if m := min(n.Combined, q); in.v.observe && n.Managed && n.GuestStep && m >= 1 && q > 1 {
				// What guestStep would do, without asking the guest.
				guestWould = append(guestWould, fmt.Sprintf("guest step: set combined %d on %s", m, n.MAC))
			}
		}
		if o, ok := old[n.MAC]; ok && d.Active {
			// Keep what the guest step and QMP learned during this run.
			ns.QMPVirtqueues, ns.MQ = o.QMPVirtqueues, o.MQ
			ns.GuestIfName, ns.GuestCurrent, ns.GuestMax = o.GuestIfName, o.GuestCurrent, o.GuestMax
			ns.GuestStep, ns.GuestAt, ns.Problem = o.GuestStep, o.GuestAt, o.Problem
		}
		out.nics = append(out.nics, ns)
	}
	if in.would != "" {
		out.would = append(out.would, "redefine: "+in.would)
	}
	out.would = append(out.would, guestWould...)
	switch {
	case !managed:
		out.state = status.StateUnmanaged
		out.problem = plan.Skip
	case in.would != "":
		out.state = status.StateWouldRedefine
		out.problem = "mode observe: the agent would redefine it with " + in.would +
			" (mode apply does; a running domain then needs a shut down + start)"
	case !d.Persistent:
		if plan.Compliant() {
			out.state = status.StateCompliant
		} else {
			out.state = status.StateTransient
			out.problem = "transient domain with " + describeChanges(plan) +
				": virtmq never redefines transient domains; define it persistently, or let the libvirt hook log or (mode enforce) refuse its start"
		}
	case len(pending) > 0 || len(replug) > 0:
		out.state = status.StatePendingColdBoot
		var parts []string
		if len(pending) > 0 {
			p := "running with other queue counts than its definition (" + strings.Join(pending, "; ") + "): "
			switch {
			case plan.ApplyAt == policy.ApplyNextReboot && in.rebootOK && in.intentProblem != "":
				p += "apply_at: next-reboot cannot act: " + in.intentProblem +
					"; so the agent does not stop the domain at its reboot (a reboot keeps the running count): free or fix the state folder, or cold boot it (shut down, then start)"
			case plan.ApplyAt == policy.ApplyNextReboot && in.rebootOK:
				p += "applies at the guest's next reboot (apply_at: next-reboot: virtmq-agent makes it a cold boot), or at the next cold boot"
			case plan.ApplyAt == policy.ApplyNextReboot:
				p += "applies at the next cold boot (shut down, then start): apply_at: next-reboot is not available on this libvirt connection (no REBOOT events), falling back to cold-boot"
			default:
				p += "applies at the next cold boot (shut down, then start; a reboot keeps the running count)"
			}
			parts = append(parts, p)
		}
		if len(replug) > 0 {
			// A cold boot removes a NIC plugged --live only: nothing but a
			// new plug gives it its queues.
			parts = append(parts, "hot-plugged live only, not in the definition ("+strings.Join(replug, "; ")+
				"): a cold boot removes it; detach it and attach it again with <driver queues='N'/> (add --config to keep it)")
		}
		out.problem = strings.Join(parts, "; and ")
	case in.rewritten && !d.Active:
		out.state = status.StateRewritten
	default:
		out.state = status.StateCompliant
		if in.v.live != nil {
			// It runs with the definition: the rewrite has applied.
			out.rewritten = false
		}
	}
	return out
}

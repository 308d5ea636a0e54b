package agent

import (
	"context"

	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

// Hot-plug, and definition changes libvirt emits no event for (seen with
// libvirt 9.0):
//
//   - attach-interface --live [--config]: DEVICE_ADDED only (no DEFINED).
//     handle reconciles the domain: the definition (with --config, the new
//     NIC single-queue) is rewritten, and the live NIC is planned from the
//     live XML (mergeLivePlan), so that one plugged with queues gets the
//     guest step and one plugged single-queue is reported pending.
//   - attach-interface --config alone: no event. The domain's STOPPED
//     event reconciles it before its next start; checkDefinitions re-reads
//     every definition each DefinitionCheckInterval for the rest.
//   - setvcpus --live (or a guest onlining CPUs): no event, and Linux's
//     virtio_net keeps its channel count. checkVCPUs re-reads the live XML
//     of the running domains whose M depends on the vCPUs online
//     (combined: vcpus) each VCPUCheckInterval and runs the guest step
//     again when <vcpu current=> changed.

// mergeLivePlan returns def, the plan decided on a running domain's
// definition, with what only the running domain knows, from live (the plan
// decided on its live XML): M of each NIC where it depends on the vCPUs
// online (they change with setvcpus --live), and the NICs hot-plugged
// without --config, which the definition lacks (a cold boot removes them).
// liveOnly has the MACs of those.
func mergeLivePlan(def, live policy.Plan) (out policy.Plan, liveOnly map[string]bool) {
	byMAC := make(map[string]policy.NICPlan, len(live.NICs))
	for _, n := range live.NICs {
		if n.MAC != "" {
			byMAC[n.MAC] = n
		}
	}
	out = def
	out.NICs = make([]policy.NICPlan, 0, len(def.NICs)+len(live.NICs))
	inDef := make(map[string]bool, len(def.NICs))
	for _, n := range def.NICs {
		inDef[n.MAC] = true
		if l, ok := byMAC[n.MAC]; ok && n.GuestStep && l.GuestStep {
			n.Combined = min(l.Combined, n.Wanted)
		}
		out.NICs = append(out.NICs, n)
	}
	for _, n := range live.NICs {
		if n.MAC != "" && !inDef[n.MAC] {
			out.NICs = append(out.NICs, n)
			if liveOnly == nil {
				liveOnly = map[string]bool{}
			}
			liveOnly[n.MAC] = true
		}
	}
	return out, liveOnly
}

// vcpuDependent reports whether the guest's M of a running domain depends
// on its vCPUs online (combined: vcpus on a NIC with the guest step): only
// such domains are watched by checkVCPUs. It is pure.
func vcpuDependent(pol *policy.Policy, live *policy.Domain) bool {
	if live == nil || live.MaxVCPUs <= 1 {
		return false
	}
	lo, hi := *live, *live
	lo.CurrentVCPUs, hi.CurrentVCPUs = 1, live.MaxVCPUs
	a, b := pol.Decide(&lo), pol.Decide(&hi)
	for i := range a.NICs {
		if a.NICs[i].GuestStep && a.NICs[i].Combined != b.NICs[i].Combined {
			return true
		}
	}
	return false
}

// checkVCPUs reads the live XML of every running domain whose M depends on
// the vCPUs online, and reconciles and runs the guest step again on those
// whose <vcpu current=> changed since their last view. Its cost when
// nothing changed is one live XML read and parse per such domain (see
// BenchmarkCheckVCPUs). It returns an error only when the connection is
// unusable or ctx ended.
func (a *Agent) checkVCPUs(ctx context.Context, conn virt.Conn) error {
	pol := a.pol.Load()
	for _, v := range a.store.liveViews() {
		if !v.managed() || !vcpuDependent(pol, v.live) {
			continue
		}
		live, err := a.reader(conn).Live(ctx, v.d)
		if err != nil && (a.isLost(conn, err) || ctx.Err() != nil) {
			return err
		}
		if err != nil || live.CurrentVCPUs == v.live.CurrentVCPUs {
			continue // gone or stopped (its event reconciles it), or unchanged
		}
		a.log.Info("the vCPUs online changed; setting the guest's channels again", "domain", v.d.Name,
			"before", v.live.CurrentVCPUs, "after", live.CurrentVCPUs)
		nv, err := a.reconcile(ctx, conn, v.d, false)
		if err != nil {
			return err
		}
		a.scheduleJob(v.d, nv, job{guest: true})
	}
	return nil
}

// checkDefinitions reconciles every domain from a fresh read of its
// definition, for the changes libvirt emits no event for (attach-interface
// --config, setvcpus --config). Unlike a resync it schedules no guest
// step: a domain whose definition is unchanged is left alone (no
// redefine), and a running one keeps its guest state. Its cost when
// nothing changed is ListDomains plus two XML reads and parses per running
// domain, one per shut-off one (see BenchmarkCheckDefinitions).
func (a *Agent) checkDefinitions(ctx context.Context, conn virt.Conn) error {
	doms, err := call(ctx, a, conn.ListDomains)
	if err != nil {
		return err
	}
	a.forgetFacts(conn) // a network's forward mode may have changed too
	for _, d := range doms {
		if !d.Persistent || a.retry.waiting(d) {
			continue
		}
		if _, err := a.reconcile(ctx, conn, d, true); err != nil {
			return err
		}
	}
	return nil
}

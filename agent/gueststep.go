package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/qmpcheck"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

// Guest step outcomes in status.NIC.GuestStep besides the failure reasons.
const (
	guestDone    = "done"
	guestSkipped = "skipped"
)

// runJob is the scheduler's runFunc: one attempt of a domain's guest step
// (bounded by GuestTimeout) and/or QMP check (QMPTimeout per NIC), on the
// domain's newest view (reconcile made it: nothing is looked up, read or
// decided again here). Guest agent commands and QMP checks take their
// turns through l (see scheduler).
func (a *Agent) runJob(ctx context.Context, v *domainView, j job, attempt int, l *lease) (retry bool) {
	if v.live == nil {
		return false // it stopped or is gone meanwhile: its next start schedules a job
	}
	if v.observe {
		// Queued before a reload into mode observe: no guest agent
		// command, no QMP check (it taints the domain custom-monitor).
		return false
	}
	conn := a.currentConn()
	if conn == nil {
		return false // the resync after the reconnect schedules it again
	}
	log := a.cfg.Logger.With("component", "guest", "domain", v.d.Name)
	if j.guest {
		gctx, cancel := context.WithTimeout(ctx, a.cfg.GuestTimeout)
		if attempt > 1 {
			l.demote() // it failed last time: take turns with the other slow guests
		}
		retry = a.guestStep(gctx, log, conn, v, attempt, l)
		cancel()
	}
	if ctx.Err() == nil {
		a.verify(ctx, log, conn, v, l)
	}
	return retry
}

// guestStep sets the guest's combined channel count on each NIC the plan
// asks for (guest.Step on guest.Targets) and records the outcomes. It
// reports whether a transient failure is worth another attempt.
func (a *Agent) guestStep(ctx context.Context, log *slog.Logger, conn virt.Conn, v *domainView, attempt int, l *lease) (retry bool) {
	d := v.d
	ag := turnAgent{Agent: virt.GuestAgent{Conn: conn, Domain: d}, l: l}
	var actions []string
	targets := guest.Targets(v.plan, v.live.QueuesByMAC())
	retry = guest.Step(ctx, ag, targets, a.cfg.Guest, a.cfg.GuestStep, classify, func(o guest.Outcome) {
		if o.OneQueue {
			a.recordGuest(d, o.MAC, func(ns *status.NIC) {
				ns.GuestWanted, ns.GuestStep = o.Combined, guestSkipped
				ns.Problem = "the NIC runs with one queue: nothing to set in the guest until a cold boot"
			})
			return
		}
		a.metrics.guestSteps.Inc()
		res, err, c := o.Result, o.Err, o.Class
		reason := string(c.Reason)
		now := a.cfg.Now()
		a.recordGuest(d, o.MAC, func(ns *status.NIC) {
			ns.GuestWanted = o.Combined
			ns.GuestAt = now
			if res.IfName != "" {
				ns.GuestIfName = res.IfName
			}
			if res.After.Max > 0 {
				ns.GuestCurrent, ns.GuestMax = res.After.Current, res.After.Max
			}
			if err == nil {
				ns.GuestStep, ns.Problem = guestDone, ""
				return
			}
			ns.GuestStep = reason
			ns.Problem = "guest step: " + err.Error()
			if c.Transient {
				next := a.sched.retryDelay(attempt).Round(time.Second)
				if attempt < a.cfg.GuestAttempts {
					ns.Problem += fmt.Sprintf(" (attempt %d; next try in %v)", attempt, next)
				} else {
					ns.Problem += fmt.Sprintf(" (attempt %d; next try when the guest agent reconnects, not before %v)", attempt, next)
				}
			}
		})
		switch {
		case err != nil:
			a.metrics.guestFailures.WithLabelValues(reason).Inc()
			log.Warn("guest step failed", "mac", o.MAC, "combined", o.Combined, "reason", reason, "attempt", attempt, "err", err)
			actions = append(actions, fmt.Sprintf("%s: %s", o.MAC, reason))
		case res.Changed:
			log.Info("set the guest's combined channels", "mac", o.MAC, "ifname", res.IfName,
				"before", res.Before.Current, "after", res.After.Current, "max", res.After.Max)
			actions = append(actions, fmt.Sprintf("%s combined %d→%d", res.IfName, res.Before.Current, res.After.Current))
		default:
			log.Debug("guest already has the wanted combined channels", "mac", o.MAC, "ifname", res.IfName, "combined", res.After.Current)
			actions = append(actions, fmt.Sprintf("%s combined %d already", res.IfName, res.After.Current))
		}
	})
	if len(actions) > 0 {
		now := a.cfg.Now()
		a.store.updateIfKnown(d.UUID, func(r *record) {
			r.st.LastAction = "guest step: " + strings.Join(actions, ", ")
			r.st.LastAt = now
		})
	}
	return retry
}

// verify asks QEMU, over QMP through libvirt, how many virtqueues each
// managed NIC has and whether the guest negotiated multiqueue.
func (a *Agent) verify(ctx context.Context, log *slog.Logger, conn virt.Conn, v *domainView, l *lease) {
	d := v.d
	byMAC := map[string]policy.Interface{}
	for _, ifc := range v.live.Interfaces {
		byMAC[ifc.MAC] = ifc
	}
	for _, n := range v.plan.NICs {
		ifc, ok := byMAC[n.MAC]
		if !n.Managed || !ok || ifc.Alias == "" {
			continue
		}
		var st qmpcheck.NICStatus
		var err error
		if terr := l.turn(ctx, func() {
			qctx, cancel := context.WithTimeout(ctx, a.cfg.QMPTimeout)
			st, err = qmpcheck.Query(virt.Monitor{Ctx: qctx, Conn: conn, Domain: d}, ifc.Alias)
			cancel()
		}); terr != nil {
			return // ctx ended
		}
		running := max(ifc.Queues, 1)
		a.recordGuest(d, n.MAC, func(ns *status.NIC) {
			if err != nil {
				if ns.Problem == "" || strings.HasPrefix(ns.Problem, "QMP") {
					ns.Problem = "QMP verification: " + err.Error()
				}
				return
			}
			ns.QMPVirtqueues, ns.MQ = st.NumVQs, st.MQ
			if strings.HasPrefix(ns.Problem, "QMP") {
				ns.Problem = ""
			}
			// Until the guest driver negotiates VIRTIO_NET_F_MQ, QEMU
			// reports one queue pair (num-vqs 3) whatever the definition.
			if st.MQ && st.Queues > 0 && st.Queues != running && ns.Problem == "" {
				ns.Problem = fmt.Sprintf("QMP reports %d virtqueues (%d queue pairs), libvirt %d queues", st.NumVQs, st.Queues, running)
			}
		})
		if err != nil {
			if a.isLost(conn, err) {
				return
			}
			log.Warn("QMP verification failed", "mac", n.MAC, "alias", ifc.Alias, "err", err)
			continue
		}
		log.Debug("QMP verification", "mac", n.MAC, "alias", ifc.Alias, "num_vqs", st.NumVQs, "mq", st.MQ)
	}
}

// turnAgent sends each guest agent command in a turn of the run's lease,
// under a connection slot (and a slow slot first, once the run was moved
// to the slow lane). The waits between guest-exec-status polls hold none.
type turnAgent struct {
	guest.Agent
	l *lease
}

// A command the guest leaves without a reply moves the run to the slow
// lane at once: a healthy qemu-ga answers every command the step sends
// within milliseconds.
func (t turnAgent) Command(ctx context.Context, cmd []byte, timeout time.Duration) (out []byte, err error) {
	if terr := t.l.turn(ctx, func() { out, err = t.Agent.Command(ctx, cmd, timeout) }); terr != nil {
		return nil, terr
	}
	if errors.Is(err, guest.ErrTimeout) {
		t.l.demote()
	}
	return out, err
}

// recordGuest updates one NIC of a running domain's status, if both are
// known (a domain that stopped meanwhile keeps no guest state).
func (a *Agent) recordGuest(d virt.Domain, mac string, f func(ns *status.NIC)) {
	a.store.updateIfKnown(d.UUID, func(r *record) {
		if !r.st.Active {
			return
		}
		for i := range r.st.NICs {
			if r.st.NICs[i].MAC == mac {
				f(&r.st.NICs[i])
				return
			}
		}
	})
}

// classify is guest.Classify plus the one case package guest cannot know:
// libvirt is gone, or the domain (virt.ErrDisconnected, virt.ErrNotFound).
// That holds for every NIC, and is not retried here: the resync after the
// reconnect (or the domain's next start) schedules the step again.
func classify(err error) guest.Class {
	if errors.Is(err, virt.ErrDisconnected) || errors.Is(err, virt.ErrNotFound) {
		return guest.Class{Reason: guest.ReasonLibvirt, DomainWide: true}
	}
	return guest.Classify(err)
}

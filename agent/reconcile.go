package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/virtmq/virtmq/agent/status"
	"github.com/virtmq/virtmq/agent/virt"
	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/policy"
)

// reconcile brings one domain's definition in line with the policy and
// records its state. known says d's Persistent and Active fields are fresh
// (from ListDomains); otherwise the domain is looked up first.
//
// A persistent domain's inactive XML goes through the rewrite; when the
// result differs byte for byte, the domain is redefined (with validation).
// A transient domain is never redefined. A running domain's live queue
// counts are compared with the wanted ones.
//
// It returns an error only when the caller must stop (the connection is
// lost or ctx ended); every other problem is recorded in the domain's
// status.
func (a *Agent) reconcile(ctx context.Context, conn virt.Conn, d virt.Domain, known bool) error {
	log := a.log.With("domain", d.Name)
	if !known {
		got, err := call(ctx, a.cfg.CallTimeout, func(ctx context.Context) (virt.Domain, error) {
			return conn.LookupDomain(ctx, domainKey(d))
		})
		a.sd.kick(time.Now())
		if err != nil {
			return a.readFailed(conn, d, "look up", err)
		}
		d = got
	}
	pol := a.pol.Load()

	var (
		plan      policy.Plan
		redefined bool
		changes   string
	)
	if d.Persistent {
		doc, err := call(ctx, a.cfg.CallTimeout, func(ctx context.Context) ([]byte, error) {
			return conn.DomainXML(ctx, d, virt.XMLInactive|virt.XMLSecure)
		})
		a.sd.kick(time.Now())
		if err != nil {
			return a.readFailed(conn, d, "read the definition of", err)
		}
		out, p, err := a.cfg.Rewrite(pol, doc)
		if err != nil {
			a.metrics.rewriteFailures.Inc()
			log.Warn("cannot rewrite the domain definition", "err", err)
			a.fail(d, "rewrite failed", fmt.Sprintf("cannot rewrite the definition: %v", err))
			return nil
		}
		plan = p
		if !bytes.Equal(out, doc) {
			changes = describeChanges(plan)
			n := 0
			a.store.view(d.UUID, func(r *record) { n = r.redefines })
			if n >= a.cfg.MaxRedefines {
				a.fail(d, "redefine skipped", fmt.Sprintf(
					"libvirt did not keep the rewritten definition after %d redefines (%s); not redefining again until the policy is reloaded or the agent reconnects", n, changes))
				return nil
			}
			a.metrics.rewrites.Inc()
			err := callErr(ctx, a.cfg.CallTimeout, func(ctx context.Context) error { return conn.DefineXML(ctx, out) })
			a.sd.kick(time.Now())
			if err != nil {
				a.metrics.rewriteFailures.Inc()
				if a.isLost(conn, err) || ctx.Err() != nil {
					log.Warn("connection lost while redefining the domain; retrying after reconnect", "err", err)
					return err
				}
				log.Warn("failed to redefine the domain", "changes", changes, "err", err)
				a.fail(d, "redefine failed", fmt.Sprintf("failed to redefine with %s: %v", changes, err))
				return nil
			}
			redefined = true
			log.Info("redefined the domain with the policy's queue counts", "changes", changes, "running", d.Active)
		}
	}

	var live *domxml.Domain
	if d.Active {
		doc, err := call(ctx, a.cfg.CallTimeout, func(ctx context.Context) ([]byte, error) {
			return conn.DomainXML(ctx, d, virt.XMLLive)
		})
		a.sd.kick(time.Now())
		if err != nil {
			return a.readFailed(conn, d, "read the live XML of", err)
		}
		if live, err = domxml.Parse(doc); err != nil {
			a.fail(d, "", fmt.Sprintf("cannot parse the live XML: %v", err))
			return nil
		}
		if d.Persistent && !isLive(live) {
			// The domain stopped between the lookup and the read: libvirt
			// returned the definition. Its STOPPED event follows.
			live = nil
		}
		if !d.Persistent {
			// A transient domain has no definition: decide from what runs.
			if _, plan, err = a.cfg.Rewrite(pol, doc); err != nil {
				a.fail(d, "", fmt.Sprintf("cannot apply the policy to the live XML: %v", err))
				return nil
			}
		}
	} else if !d.Persistent {
		// A transient domain that stopped is gone.
		a.store.remove(d.UUID)
		return nil
	}

	now := a.cfg.Now()
	var state string
	a.store.update(d.UUID, func(r *record) {
		r.st.Name, r.st.UUID = d.Name, d.UUID
		r.st.Persistent, r.st.Active = d.Persistent, d.Active
		r.plan, r.hasPlan = plan, true
		if redefined {
			r.rewritten = true
			r.redefines++
			r.st.LastAction = "redefined: " + changes
			r.st.LastAt = now
		} else if d.Persistent {
			r.redefines = 0
		}
		r.aliases = map[string]string{}
		running := map[string]int{}
		if live != nil {
			for _, ifc := range live.Interfaces {
				if ifc.MAC == "" {
					continue
				}
				running[ifc.MAC] = max(ifc.Queues, 1)
				if ifc.Alias != "" {
					r.aliases[ifc.MAC] = ifc.Alias
				}
			}
		}
		old := map[string]status.NIC{}
		for _, n := range r.st.NICs {
			old[n.MAC] = n
		}
		r.st.NICs = r.st.NICs[:0:0]
		managed := false
		var pending []string
		for _, n := range plan.NICs {
			ns := status.NIC{MAC: n.MAC, Managed: n.Managed, Wanted: n.Wanted, Defined: n.Current, Rule: n.Rule}
			if redefined && n.Change() {
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
				if n.Managed && q != n.Wanted {
					pending = append(pending, fmt.Sprintf("%s runs %d, wants %d", n.MAC, q, n.Wanted))
				}
			}
			if o, ok := old[n.MAC]; ok && d.Active {
				// Keep what the guest step and QMP learned during this run.
				ns.QMPVirtqueues, ns.MQ = o.QMPVirtqueues, o.MQ
				ns.GuestIfName, ns.GuestCurrent, ns.GuestMax = o.GuestIfName, o.GuestCurrent, o.GuestMax
				ns.GuestStep, ns.GuestAt, ns.Problem = o.GuestStep, o.GuestAt, o.Problem
			}
			r.st.NICs = append(r.st.NICs, ns)
		}
		r.st.Problem = ""
		switch {
		case !managed:
			state = status.StateUnmanaged
		case !d.Persistent:
			if plan.Compliant() {
				state = status.StateCompliant
			} else {
				state = status.StateTransient
				r.st.Problem = "transient domain with " + describeChanges(plan) +
					": virtmq never redefines transient domains; define it persistently, or let the libvirt hook audit or refuse its start"
			}
		case len(pending) > 0:
			state = status.StatePendingColdBoot
			r.st.Problem = "running with other queue counts than its definition (" + strings.Join(pending, "; ") +
				"): applies at the next cold boot (shut down, then start; a reboot keeps the running count)"
		case r.rewritten && !d.Active:
			state = status.StateRewritten
		default:
			state = status.StateCompliant
			if live != nil {
				// It runs with the definition: the rewrite has applied.
				r.rewritten = false
			}
		}
		r.st.State = state
	})
	log.Debug("reconciled", "state", state, "persistent", d.Persistent, "active", d.Active)
	return nil
}

// isLive reports whether a domain XML libvirt returned as live really
// describes a running domain: libvirt gives every device of a running
// domain an alias, and returns the definition instead when the domain is
// not running (any more).
func isLive(d *domxml.Domain) bool {
	for _, ifc := range d.Interfaces {
		if ifc.Alias == "" {
			return false
		}
	}
	return true
}

// readFailed handles an error reading a domain: gone (forget it), lost
// connection or cancellation (return it), else record it.
func (a *Agent) readFailed(conn virt.Conn, d virt.Domain, what string, err error) error {
	switch {
	case errors.Is(err, virt.ErrNotFound):
		a.store.remove(d.UUID)
		return nil
	case a.isLost(conn, err), errors.Is(err, context.Canceled):
		return err
	}
	a.log.Warn("cannot "+what+" the domain", "domain", d.Name, "err", err)
	a.fail(d, "", fmt.Sprintf("cannot %s the domain: %v", what, err))
	return nil
}

// fail records the error state for a domain, keeping what else is known.
func (a *Agent) fail(d virt.Domain, action, problem string) {
	now := a.cfg.Now()
	a.store.update(d.UUID, func(r *record) {
		if d.Name != "" {
			r.st.Name = d.Name
		}
		r.st.UUID = d.UUID
		r.st.Persistent, r.st.Active = d.Persistent, d.Active
		r.st.State = status.StateError
		r.st.Problem = problem
		if action != "" {
			r.st.LastAction = action
			r.st.LastAt = now
		}
	})
}

// describeChanges lists the NICs a plan changes: "52:54:00:00:00:01 1→4 queues".
func describeChanges(p policy.Plan) string {
	var parts []string
	for _, n := range p.NICs {
		if n.Change() {
			parts = append(parts, fmt.Sprintf("%s %d→%d queues", n.MAC, n.Current, n.Wanted))
		}
	}
	if len(parts) == 0 {
		return "no queue change"
	}
	return strings.Join(parts, ", ")
}

// call runs f with a context bounded by timeout.
func call[T any](ctx context.Context, timeout time.Duration, f func(ctx context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return f(cctx)
}

func callErr(ctx context.Context, timeout time.Duration, f func(ctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return f(cctx)
}

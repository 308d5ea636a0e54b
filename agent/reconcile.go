package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/facts"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
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
// A libvirt call that fails for a transient reason (a timeout, a busy
// daemon, an unclassified error) puts the domain in state retrying and
// arms its retry timer (see retries); the retry is a whole reconcile from
// a fresh read, so a redefine that timed out but landed is found there
// and not made again. Any other outcome clears the domain's retry.
//
// It returns the domain's view, the one its guest jobs run on (see
// domainView), or nil when the domain's reconcile failed (the store keeps
// its last view). A view of a domain that is gone or stopped has no live
// part. Every view goes to the scheduler (refresh), so that a job already
// queued for the domain runs on it; a job parked while the domain waited
// for its retry is scheduled with it.
//
// It returns an error only when the caller must stop (the connection is
// lost or ctx ended); every other problem is recorded in the domain's
// status. It runs on the loop goroutine or one of its reconcile workers
// (forEachDomain), never twice at once for one domain.
func (a *Agent) reconcile(ctx context.Context, conn virt.Conn, d virt.Domain, known bool) (*domainView, error) {
	v, again, err := a.reconcileOnce(ctx, conn, d, known)
	switch {
	case err != nil:
		// Lost or cancelled: the resync after the reconnect redoes every
		// domain. A pending retry stays armed (it is skipped while
		// disconnected).
		return nil, err
	case again != nil:
		a.retryLater(again)
		return nil, nil
	}
	if v != nil {
		a.sched.refresh(v)
	}
	if j, parked := a.retry.done(d); parked {
		a.scheduleJob(d, v, j)
	}
	return v, nil
}

// domainView is one reconcile's view of a domain: what the guest job of
// the domain then works with, so that it neither reads nor decides again.
// It is never changed once made (the scheduler's workers share it).
type domainView struct {
	d    virt.Domain // as looked up: Persistent and Active are fresh
	plan policy.Plan // from the definition, or the live XML of a transient domain
	// live is the running domain (its NICs' running queues and aliases);
	// nil when it does not run.
	live *policy.Domain
	// observe says the policy was in mode observe: the view gets no guest
	// job (no guest agent command, no QMP check).
	observe bool
	// liveOnly has the MACs of the NICs the running domain has and its
	// definition lacks (hot-plugged without --config): a cold boot removes
	// them, so they never make it pending one.
	liveOnly map[string]bool
}

// managed reports whether the plan manages any NIC: only then does a guest
// job send anything to the domain's guest agent or QEMU.
func (v *domainView) managed() bool {
	for _, n := range v.plan.NICs {
		if n.Managed {
			return true
		}
	}
	return false
}

// scheduleJob schedules j for d on v, the view d's reconcile just made.
// Without one (its reconcile failed, or none ran) j waits for the retry's
// view when d waits for a reconcile retry, else it runs on d's last view.
// Only a running domain whose plan manages a NIC gets a job, and only in
// a mode that acts (not observe).
func (a *Agent) scheduleJob(d virt.Domain, v *domainView, j job) {
	if v == nil {
		if a.retry.park(d, j) {
			return
		}
		v = a.store.lastView(d.UUID)
	}
	if v != nil && v.live != nil && v.managed() && !v.observe {
		a.sched.schedule(v, j)
	}
}

// failure is a libvirt call in reconcile that failed for a transient reason.
type failure struct {
	d virt.Domain
	// fresh says d's Persistent and Active fields are known.
	fresh bool
	err   error // names the operation and the domain
	// sent is the definition a failed redefine sent (it may have landed),
	// changes what it changed.
	sent    []byte
	changes string
	define  bool
}

// retryLater records the retrying state for f's domain and arms its next
// attempt.
func (a *Agent) retryLater(f *failure) {
	d := f.d
	attempt, delay := a.retry.arm(d, f.sent, f.changes)
	now := a.cfg.Now()
	a.log.Warn("libvirt call failed; retrying", "domain", d.Name, "attempt", attempt, "retry_in", delay.Round(time.Millisecond), "err", f.err)
	a.store.update(d.UUID, func(r *record) {
		if d.Name != "" {
			r.st.Name = d.Name
		}
		r.st.UUID = d.UUID
		if f.fresh {
			r.st.Persistent, r.st.Active = d.Persistent, d.Active
		}
		r.st.State = status.StateRetrying
		r.st.Problem = fmt.Sprintf("attempt %d failed, retrying in %s: %v", attempt, delay.Round(time.Millisecond), f.err)
		r.st.Attempts = attempt
		r.st.RetryAt = now.Add(delay)
		if f.define {
			r.st.LastAction = "redefine failed, retrying"
			r.st.LastAt = now
		}
	})
}

// reconcileOnce is one try of reconcile: it returns the view, the
// transient failure to retry, or the error that stops the caller.
func (a *Agent) reconcileOnce(ctx context.Context, conn virt.Conn, d virt.Domain, known bool) (*domainView, *failure, error) {
	log := a.log.With("domain", d.Name)
	// readFailed, with the domain as known at the failure.
	readFailed := func(what string, err error) (*domainView, *failure, error) {
		var gone *domainView
		if errors.Is(err, virt.ErrNotFound) {
			gone = &domainView{d: d}
		}
		f, err := a.readFailed(ctx, conn, d, what, err)
		if f != nil {
			f.d, f.fresh = d, known
		}
		return gone, f, err
	}
	if !known {
		got, err := call(ctx, a, func(ctx context.Context) (virt.Domain, error) {
			return conn.LookupDomain(ctx, domainKey(d))
		})
		if err != nil {
			return readFailed("look up", err)
		}
		d, known = got, true
	}
	pol := a.pol.Load()
	// observe: the policy's mode, or the plan's (an orchestrator's domain
	// the policy opts in to observe only).
	observe := !pol.Mode().Acts()

	var (
		plan      policy.Plan
		redefined bool // by this reconcile
		landed    bool // by an earlier one whose redefine failed, but landed
		changes   string
		would     string // the changes a redefine would make, in mode observe
	)
	rd := a.reader(conn)
	if d.Persistent {
		def, err := rd.Definition(ctx, d)
		var re *facts.ReadError
		if errors.As(err, &re) {
			return readFailed("read the "+re.What+" of", re.Err)
		}
		doc := def.Doc
		var (
			out []byte
			p   policy.Plan
		)
		if err == nil {
			out, p, err = domxml.ApplyTo(pol, doc, def.Facts)
		}
		if err != nil {
			a.metrics.rewriteFailures.Inc()
			log.Warn("cannot rewrite the domain definition", "err", err)
			a.fail(d, "rewrite failed", fmt.Sprintf("cannot rewrite the definition: %v", err))
			return nil, nil, nil
		}
		plan = p
		observe = observe || !plan.Mode.Acts()
		if sent, what := a.retry.pending(d); sent != nil && bytes.Equal(out, doc) && bytes.Equal(doc, sent) {
			// A redefine that failed (timed out) landed after all: the
			// definition is the one it sent.
			landed, changes = true, what
			log.Info("redefined the domain with the policy's queue counts (the redefine that failed had landed)", "changes", changes, "running", d.Active)
		}
		if !bytes.Equal(out, doc) && observe {
			would = describeChanges(plan)
			log.Debug("mode observe: not redefining", "would", would)
		} else if !bytes.Equal(out, doc) {
			changes = describeChanges(plan)
			n := a.store.redefines(d.UUID)
			if n >= a.cfg.MaxRedefines {
				a.fail(d, "redefine skipped", fmt.Sprintf(
					"libvirt did not keep the rewritten definition after %d redefines (%s); not redefining again until the policy is reloaded or the agent reconnects", n, changes))
				return nil, nil, nil
			}
			a.metrics.rewrites.Inc()
			_, err := call(ctx, a, func(ctx context.Context) (struct{}, error) { return struct{}{}, conn.DefineXML(ctx, out) })
			if err != nil {
				a.metrics.rewriteFailures.Inc()
				if a.isLost(conn, err) || ctx.Err() != nil {
					log.Warn("connection lost while redefining the domain; retrying after reconnect", "err", err)
					return nil, nil, err
				}
				err = fmt.Errorf("failed to redefine domain %q with %s: %w", d.Name, changes, err)
				if transient(err) {
					return nil, &failure{d: d, fresh: true, err: err, sent: out, changes: changes, define: true}, nil
				}
				log.Warn("libvirt refused the redefine", "changes", changes, "err", err)
				a.fail(d, "redefine failed", err.Error())
				return nil, nil, nil
			}
			redefined = true
			log.Info("redefined the domain with the policy's queue counts", "changes", changes, "running", d.Active)
		}
	}

	var live *policy.Domain
	var liveOnly map[string]bool
	if d.Active {
		var err error
		live, err = rd.Live(ctx, d)
		var re *facts.ReadError
		switch {
		case errors.As(err, &re):
			return readFailed("read the "+re.What+" of", re.Err)
		case errors.Is(err, facts.ErrNotRunning):
			// The domain stopped between the lookup and the read: libvirt
			// returned the definition. Its STOPPED event follows (a
			// transient domain that stopped is gone: see below).
			live = nil
			if !d.Persistent {
				a.store.remove(d.UUID)
				return &domainView{d: d}, nil, nil
			}
		case err != nil:
			a.fail(d, "", fmt.Sprintf("cannot parse the live XML: %v", err))
			return nil, nil, nil
		}
		if d.Persistent && live != nil {
			// Hot-plugged NICs and the vCPUs online (see hotplug.go).
			plan, liveOnly = mergeLivePlan(plan, pol.Decide(live))
		}
		if !d.Persistent && live != nil {
			// A transient domain has no definition: decide from what runs
			// (nothing is rewritten).
			plan = pol.Decide(live)
			observe = observe || !plan.Mode.Acts()
		}
	} else if !d.Persistent {
		// A transient domain that stopped is gone.
		a.store.remove(d.UUID)
		return &domainView{d: d}, nil, nil
	}

	v := &domainView{d: d, plan: plan, live: live, observe: observe, liveOnly: liveOnly}
	_, rebootOK := power(conn)
	now := a.cfg.Now()
	var state string
	a.store.update(d.UUID, func(r *record) {
		r.st.Name, r.st.UUID = d.Name, d.UUID
		r.st.Persistent, r.st.Active = d.Persistent, d.Active
		r.view = v
		r.st.Attempts, r.st.RetryAt = 0, time.Time{}
		switch {
		case redefined:
			r.rewritten = true
			r.redefines++
			r.st.LastAction = "redefined: " + changes
			r.st.LastAt = now
		case landed:
			r.rewritten = true
			r.redefines = 0
			r.st.LastAction = "redefined: " + changes + " (the redefine timed out or failed, but landed)"
			r.st.LastAt = now
		case d.Persistent:
			r.redefines = 0
		}
		out := deriveState(stateInput{v: v, redefined: redefined, rewritten: r.rewritten, would: would, old: r.st.NICs, rebootOK: rebootOK, intentProblem: a.intentProblemText()})
		r.st.NICs, r.st.State, r.st.Problem, r.rewritten = out.nics, out.state, out.problem, out.rewritten
		r.st.Orchestrator, r.st.OrchestratorMode = out.orchestrator, out.orchestratorMode
		r.st.Would, r.st.Warnings = out.would, out.warnings
		state = out.state
	})
	log.Debug("reconciled", "state", state, "persistent", d.Persistent, "active", d.Active)
	return v, nil, nil
}

// readFailed handles an error reading a domain: gone (forget it), lost
// connection or cancellation (return it), transient (retry it), else
// record it.
func (a *Agent) readFailed(ctx context.Context, conn virt.Conn, d virt.Domain, what string, err error) (*failure, error) {
	switch {
	case errors.Is(err, virt.ErrNotFound):
		a.store.remove(d.UUID)
		return nil, nil
	case a.isLost(conn, err), errors.Is(err, context.Canceled), ctx.Err() != nil:
		return nil, err
	}
	err = fmt.Errorf("failed to %s domain %q: %w", what, d.Name, err)
	if transient(err) {
		return &failure{err: err}, nil
	}
	a.log.Warn("cannot "+what+" the domain", "domain", d.Name, "err", err)
	a.fail(d, "", err.Error())
	return nil, nil
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
		r.st.Attempts, r.st.RetryAt = 0, time.Time{}
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

package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
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
	p := &pass{a: a, ctx: ctx, conn: conn, read: a.reader(conn), d: d, known: known, log: a.log.With("domain", d.Name)}
	e := p.run()
	v := e.view
	switch {
	case e.err != nil:
		// Lost or cancelled: the resync after the reconnect redoes every
		// domain. A pending retry stays armed (it is skipped while
		// disconnected).
		return nil, e.err
	case e.retry != nil:
		a.retryLater(e.retry)
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

// pass is one try of reconcile on one domain, in steps over one read of
// each XML: lookup (unless the caller knows the domain), definition (read,
// decide, redefine), live (read the running domain, merge its plan),
// record (the view and the status). Each step either adds to the pass or
// ends it (an *end). One pass per domain at once (see forEachDomain).
type pass struct {
	a    *Agent
	ctx  context.Context
	conn virt.Conn
	read *facts.Reader // on conn, through call
	log  *slog.Logger

	d     virt.Domain
	known bool // d's Persistent and Active are fresh

	pol *policy.Policy
	// observe: the policy's mode, or the plan's (an orchestrator's domain
	// the policy opts in to observe only).
	observe bool

	plan      policy.Plan // from the definition, then merged with the live one
	redefined bool        // by this pass
	landed    bool        // by an earlier one whose redefine failed, but landed
	changes   string      // what the redefine changed
	would     string      // the changes a redefine would make, in mode observe
	live      *policy.Domain
	liveOnly  map[string]bool
}

// compliantDef is a definition a pass found compliant: its digest, the
// policy that decided, and the plan. A later pass reading the same bytes
// under the same policy takes the plan as it is (the networks it depends
// on are cached as long: both are forgotten together, see forgetFacts).
type compliantDef struct {
	sum  [sha256.Size]byte
	pol  *policy.Policy
	plan policy.Plan
}

// end is how a pass ended: the view it made (nil when it recorded an
// error: the store keeps the last view; a view without a live part for a
// domain that is gone or stopped), or the transient failure to retry, or
// the error that stops the caller (connection lost, ctx ended).
type end struct {
	view  *domainView
	retry *failure
	err   error
}

// run runs the steps in order until one ends the pass.
func (p *pass) run() end {
	for _, step := range []func() *end{p.lookup, p.definition, p.liveStep} {
		if e := step(); e != nil {
			return *e
		}
	}
	return p.record()
}

// lookup looks the domain up when the caller does not know its state,
// and takes the policy in force.
func (p *pass) lookup() *end {
	if !p.known {
		got, err := call(p.ctx, p.a, func(ctx context.Context) (virt.Domain, error) {
			return p.conn.LookupDomain(ctx, domainKey(p.d))
		})
		if err != nil {
			return p.readFailed("look up", err)
		}
		p.d, p.known = got, true
	}
	p.pol = p.a.pol.Load()
	p.observe = !p.pol.Mode().Acts()
	return nil
}

// definition reads a persistent domain's definition, decides its plan and
// redefines it when the rewrite differs (not in mode observe).
func (p *pass) definition() *end {
	a, d, log := p.a, p.d, p.log
	if !d.Persistent {
		return nil
	}
	doc, err := p.read.DefinitionXML(p.ctx, d)
	var re *facts.ReadError
	if errors.As(err, &re) {
		return p.readFailed("read the "+re.What+" of", re.Err)
	}
	out := doc
	sum := sha256.Sum256(doc)
	if k, ok := a.knownCompliant(p.conn, d.UUID); ok && k.pol == p.pol && k.sum == sum {
		// The bytes this policy found compliant last time (the redefine's
		// own DEFINED, a start, a periodic check): the same plan, without
		// parsing and deciding again.
		p.plan = k.plan
	} else {
		a.setCompliant(p.conn, d.UUID, nil)
		var dom *policy.Domain
		dom, err = p.read.Parse(p.ctx, doc)
		if errors.As(err, &re) {
			return p.readFailed("read the "+re.What+" of", re.Err)
		}
		if err == nil {
			out, p.plan, err = domxml.ApplyTo(p.pol, doc, dom)
		}
		if err != nil {
			a.metrics.rewriteFailures.Inc()
			log.Warn("cannot rewrite the domain definition", "err", err)
			a.fail(d, "rewrite failed", fmt.Sprintf("cannot rewrite the definition: %v", err))
			return &end{}
		}
		if bytes.Equal(out, doc) {
			a.setCompliant(p.conn, d.UUID, &compliantDef{sum: sum, pol: p.pol, plan: p.plan})
		}
	}
	p.observe = p.observe || !p.plan.Mode.Acts()
	if sent, what := a.retry.pending(d); sent != nil && bytes.Equal(out, doc) && bytes.Equal(doc, sent) {
		// A redefine that failed (timed out) landed after all: the
		// definition is the one it sent.
		p.landed, p.changes = true, what
		log.Info("redefined the domain with the policy's queue counts (the redefine that failed had landed)", "changes", p.changes, "running", d.Active)
	}
	switch {
	case bytes.Equal(out, doc):
		return nil
	case p.observe:
		p.would = describeChanges(p.plan)
		log.Debug("mode observe: not redefining", "would", p.would)
		return nil
	}
	return p.redefine(out)
}

// redefine defines out, the rewritten definition, unless libvirt did not
// keep the last MaxRedefines.
func (p *pass) redefine(out []byte) *end {
	a, d, log := p.a, p.d, p.log
	p.changes = describeChanges(p.plan)
	if n := a.store.redefines(d.UUID); n >= a.cfg.MaxRedefines {
		a.fail(d, "redefine skipped", fmt.Sprintf(
			"libvirt did not keep the rewritten definition after %d redefines (%s); not redefining again until the policy is reloaded or the agent reconnects", n, p.changes))
		return &end{}
	}
	a.metrics.rewrites.Inc()
	_, err := call(p.ctx, a, func(ctx context.Context) (struct{}, error) { return struct{}{}, p.conn.DefineXML(ctx, out) })
	if err != nil {
		a.metrics.rewriteFailures.Inc()
		if a.isLost(p.conn, err) || p.ctx.Err() != nil {
			log.Warn("connection lost while redefining the domain; retrying after reconnect", "err", err)
			return &end{err: err}
		}
		err = fmt.Errorf("failed to redefine domain %q with %s: %w", d.Name, p.changes, err)
		if transient(err) {
			return &end{retry: &failure{d: d, fresh: true, err: err, sent: out, changes: p.changes, define: true}}
		}
		log.Warn("libvirt refused the redefine", "changes", p.changes, "err", err)
		a.fail(d, "redefine failed", err.Error())
		return &end{}
	}
	p.redefined = true
	log.Info("redefined the domain with the policy's queue counts", "changes", p.changes, "running", d.Active)
	return nil
}

// liveStep reads a running domain's live XML: a persistent domain's plan
// gets what only the running domain knows (mergeLivePlan), a transient
// one's plan is decided from it. A transient domain that stopped is gone.
func (p *pass) liveStep() *end {
	d := p.d
	gone := func() *end {
		p.a.store.remove(d.UUID)
		return &end{view: &domainView{d: d}}
	}
	if !d.Active {
		if !d.Persistent {
			return gone()
		}
		return nil
	}
	live, err := p.read.Live(p.ctx, d)
	var re *facts.ReadError
	switch {
	case errors.As(err, &re):
		return p.readFailed("read the "+re.What+" of", re.Err)
	case errors.Is(err, facts.ErrNotRunning) && !d.Persistent:
		return gone()
	case errors.Is(err, facts.ErrNotRunning):
		// The domain stopped between the lookup and the read: libvirt
		// returned the definition. Its STOPPED event follows.
		return nil
	case err != nil:
		p.a.fail(d, "", fmt.Sprintf("cannot parse the live XML: %v", err))
		return &end{}
	}
	p.live = live
	if d.Persistent {
		// Hot-plugged NICs and the vCPUs online (see hotplug.go).
		p.plan, p.liveOnly = mergeLivePlan(p.plan, p.pol.Decide(live))
		return nil
	}
	// A transient domain has no definition: decide from what runs
	// (nothing is rewritten).
	p.plan = p.pol.Decide(live)
	p.observe = p.observe || !p.plan.Mode.Acts()
	return nil
}

// record makes the pass's view and records it and the status it derives.
func (p *pass) record() end {
	a, d := p.a, p.d
	v := &domainView{d: d, plan: p.plan, live: p.live, observe: p.observe, liveOnly: p.liveOnly}
	rebootOK := p.conn.RebootEvents()
	now := a.cfg.Now()
	var state string
	a.store.update(d.UUID, func(r *record) {
		r.st.Name, r.st.UUID = d.Name, d.UUID
		r.st.Persistent, r.st.Active = d.Persistent, d.Active
		r.view = v
		r.st.Attempts, r.st.RetryAt = 0, time.Time{}
		switch {
		case p.redefined:
			r.rewritten = true
			r.redefines++
			r.st.LastAction = "redefined: " + p.changes
			r.st.LastAt = now
		case p.landed:
			r.rewritten = true
			r.redefines = 0
			r.st.LastAction = "redefined: " + p.changes + " (the redefine timed out or failed, but landed)"
			r.st.LastAt = now
		case d.Persistent:
			r.redefines = 0
		}
		out := deriveState(stateInput{v: v, redefined: p.redefined, rewritten: r.rewritten, would: p.would, old: r.st.NICs, rebootOK: rebootOK, intentProblem: a.intentProblemText()})
		r.st.NICs, r.st.State, r.st.Problem, r.rewritten = out.nics, out.state, out.problem, out.rewritten
		r.st.Orchestrator, r.st.OrchestratorMode = out.orchestrator, out.orchestratorMode
		r.st.Would, r.st.Warnings = out.would, out.warnings
		state = out.state
	})
	p.log.Debug("reconciled", "state", state, "persistent", d.Persistent, "active", d.Active)
	return end{view: v}
}

// readFailed ends the pass after a failed read: a domain that is gone is
// forgotten (its view has no live part), a lost connection or a
// cancellation stops the caller, a transient failure is retried, any
// other is recorded.
func (p *pass) readFailed(what string, err error) *end {
	a, d := p.a, p.d
	switch {
	case errors.Is(err, virt.ErrNotFound):
		a.store.remove(d.UUID)
		return &end{view: &domainView{d: d}}
	case a.isLost(p.conn, err), errors.Is(err, context.Canceled), p.ctx.Err() != nil:
		return &end{err: err}
	}
	err = fmt.Errorf("failed to %s domain %q: %w", what, d.Name, err)
	if transient(err) {
		return &end{retry: &failure{d: d, fresh: p.known, err: err}}
	}
	a.log.Warn("cannot "+what+" the domain", "domain", d.Name, "err", err)
	a.fail(d, "", err.Error())
	return &end{}
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

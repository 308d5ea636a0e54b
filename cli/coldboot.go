package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/facts"
	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/verify"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

// ExitLeftOff is apply --cold-boot's exit code when a domain that was
// running could not be started again: it is shut off now.
const ExitLeftOff = 3

// coldBootUsage is apply --cold-boot's usage text.
const coldBootUsage = `
A rolling cold boot of running domains whose NICs run with other queue
counts than the policy wants (pending-cold-boot), for a maintenance window,
like "kubectl rollout restart" for VMs. The definition is rewritten first
when needed (as plain apply does). Then, --parallel domains at a time:

  1. graceful shutdown: the ACPI power button; wait up to --shutdown-timeout
     (with --force, then force it off; without, leave it running and report)
  2. start (a cold boot: a new QEMU process, with the new queue counts)
  3. wait up to --boot-timeout for the guest step: when virtmq-agent answers
     on --status-socket, until it reports the domain compliant and its guest
     step done (or skipped for a reason the guest gives); otherwise this
     command runs the guest step itself through qemu-guest-agent
  4. verify it end to end (the checks of "virtmq verify")

Select domains by name or shell glob ('web-*'), or --all for every pending
one. Only running domains are restarted: a shut-off one gets the new
definition at its next start. Refused, with the reason: transient domains
(no definition to boot into) and domains whose NICs the policy leaves alone
(excluded or unmanaged). --dry-run lists what would restart and why.

One progress line per step and domain, a summary table at the end.
A domain that was running is never left off on purpose: a start that fails
is tried again, and only then reported as LEFT OFF.

Exit codes: 0 every selected domain is back and compliant (or needed
nothing); 1 any domain failed (shutdown timeout, verification FAIL, refused
by name, libvirt error); 2 usage; 3 a domain that was running is left shut
off (its start failed).`

// wantsColdBoot reports whether apply's arguments ask for --cold-boot.
func wantsColdBoot(args []string) bool { return boolArg(args, "cold-boot") }

// coldBoot is one apply --cold-boot run.
type coldBoot struct {
	env      *Env
	conn     virt.Conn
	read     *facts.Reader // on conn
	policy   *policy.Policy
	host     verify.Host
	statusAt string
	force    bool
	shutdown time.Duration
	boot     time.Duration
	poll     time.Duration

	mu sync.Mutex // serializes output
}

// coldBootTarget is one selected domain and why it restarts.
type coldBootTarget struct {
	d       virt.Domain
	plan    policy.Plan
	doc     []byte // the definition as read, and out as rewritten
	out     []byte
	why     string // "52:54:00:00:00:01 runs 1, wants 4"
	refused string // set when the domain is not restarted, with the reason
	skip    string // not pending: nothing to do
}

// coldBootResult is the summary row of one domain.
type coldBootResult struct {
	name     string
	result   string // compliant, FAILED, LEFT OFF, skipped, refused, would restart
	downtime time.Duration
	total    time.Duration
	detail   string
	code     int
}

func runColdBoot(ctx context.Context, env *Env, args []string) int {
	return coldBootMain(ctx, env, args, verify.DefaultHost(), time.Second)
}

// coldBootMain is runColdBoot on a given host with a given poll interval
// (tests pass a fixture tree and a short one).
func coldBootMain(ctx context.Context, env *Env, args []string, host verify.Host, poll time.Duration) int {
	fs := newFlags(env, "apply --cold-boot", "[--dry-run] [--parallel K] [--shutdown-timeout DURATION] [--force] [--boot-timeout DURATION] [--policy FILE] [-c URI] [--status-socket PATH] (--all | DOMAIN|GLOB...)", coldBootUsage)
	fs.Bool("cold-boot", true, "restart the selected pending domains (this mode)")
	pol := addPolicyFlag(fs)
	dryRun := fs.Bool("dry-run", false, "list what would restart and why; change nothing")
	all := fs.Bool("all", false, "every running domain pending a cold boot")
	parallel := fs.Int("parallel", 1, "restart up to `K` domains at once")
	shutdown := fs.Duration("shutdown-timeout", 2*time.Minute, "wait up to `DURATION` for the guest to power off")
	force := fs.Bool("force", false, "force the domain off (virsh destroy) after --shutdown-timeout")
	boot := fs.Duration("boot-timeout", 5*time.Minute, "wait up to `DURATION` after the start for the guest step and verification")
	statusAt := fs.String("status-socket", status.DefaultSocket, "virtmq-agent's status `socket`, polled for the guest step")
	cf := addConnectFlags(fs)
	fs.check(func() error {
		switch {
		case *parallel < 1:
			return fmt.Errorf("--parallel %d: give at least 1", *parallel)
		case *shutdown <= 0:
			return fmt.Errorf("--shutdown-timeout %s: give a duration above 0, such as 2m", *shutdown)
		case *boot <= 0:
			return fmt.Errorf("--boot-timeout %s: give a duration above 0, such as 5m", *boot)
		}
		return nil
	})
	pos, code, done := parseFlags(env, fs, args, 0, -1, "")
	if done {
		return code
	}
	switch {
	case !*all && len(pos) == 0:
		return fs.usageError("give --all or domain names or globs")
	case *all && len(pos) > 0:
		return fs.usageError("give --all or domain names or globs, not both")
	}
	for _, g := range pos {
		if _, err := path.Match(g, ""); err != nil {
			return fs.usageError("bad glob %q: %v", g, err)
		}
	}
	p, err := loadPolicy(env, *pol)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq apply: %v\n", err)
		return ExitFailure
	}
	conn, uri, err := dialLibvirt(ctx, env, cf)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq apply: %v\n", err)
		return ExitFailure
	}
	defer conn.Close()
	if uri.Remote() {
		// The host checks and the agent's status socket are this host's,
		// not the remote one's: skip the former, and run the guest step
		// here unless --status-socket names a socket on purpose.
		host.Remote = uri.String()
		if !fs.isSet("status-socket") {
			*statusAt = ""
		}
	}
	cb := &coldBoot{env: env, conn: conn, read: facts.NewReader(conn), policy: p, host: host, statusAt: *statusAt, force: *force,
		shutdown: *shutdown, boot: *boot, poll: poll}

	doms, err := conn.ListDomains(ctx)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq apply: list domains: %v\n", err)
		return ExitFailure
	}
	slices.SortFunc(doms, func(a, b virt.Domain) int { return strings.Compare(a.Name, b.Name) })
	var targets []*coldBootTarget
	status := ExitOK
	for _, g := range pos {
		if !slices.ContainsFunc(doms, func(d virt.Domain) bool { m, _ := path.Match(g, d.Name); return m }) {
			fmt.Fprintf(env.Stderr, "virtmq apply: %s: no such domain\n", g)
			status = ExitFailure
		}
	}
	for _, d := range doms {
		if len(pos) > 0 && !slices.ContainsFunc(pos, func(g string) bool { m, _ := path.Match(g, d.Name); return m }) {
			continue
		}
		t := cb.select1(ctx, d)
		if *all && t.refused != "" {
			// --all selects pending domains: a refusal is only worth a line.
			t.skip, t.refused = t.refused, ""
		}
		targets = append(targets, t)
	}

	results := make([]coldBootResult, len(targets))
	sem := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		switch {
		case t.refused != "":
			cb.progress(t.d.Name, "refused: %s", t.refused)
			results[i] = coldBootResult{name: t.d.Name, result: "refused", detail: t.refused, code: ExitFailure}
			continue
		case t.skip != "":
			cb.progress(t.d.Name, "skipped: %s", t.skip)
			results[i] = coldBootResult{name: t.d.Name, result: "skipped", detail: t.skip}
			continue
		case *dryRun:
			cb.progress(t.d.Name, "would restart: %s", t.why)
			results[i] = coldBootResult{name: t.d.Name, result: "would restart", detail: t.why}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = cb.restart(ctx, t)
		}()
	}
	wg.Wait()
	printColdBootSummary(env, results)
	for _, r := range results {
		if r.code == ExitLeftOff || (r.code == ExitFailure && status == ExitOK) {
			status = r.code
		}
	}
	return status
}

// select1 decides whether d restarts, and rewrites its definition when it
// needs it (not with --dry-run: the caller never restarts then).
func (cb *coldBoot) select1(ctx context.Context, d virt.Domain) *coldBootTarget {
	t := &coldBootTarget{d: d}
	if !d.Persistent {
		t.refused = "transient domain: it has no definition to cold boot into (virsh create); change the XML it is created from"
		return t
	}
	def, err := cb.read.Definition(ctx, d)
	if err != nil {
		t.refused = readFailure(err, "rewrite")
		return t
	}
	doc := def.Doc
	out, plan, err := domxml.ApplyTo(cb.policy, doc, def.Facts)
	if err != nil {
		t.refused = fmt.Sprintf("rewrite: %v", err)
		return t
	}
	t.doc, t.out, t.plan = doc, out, plan
	managed := slices.ContainsFunc(plan.NICs, func(n policy.NICPlan) bool { return n.Managed })
	if !managed {
		var why []string
		for _, n := range plan.NICs {
			why = append(why, fmt.Sprintf("%s: %s", orDash(n.MAC), printable(n.Reason)))
		}
		t.refused = "the policy leaves its NICs alone (" + orDash(strings.Join(why, "; ")) + ")"
		return t
	}
	if !d.Active {
		t.skip = "shut off: it starts with the policy's definition (nothing restarted)"
		return t
	}
	differ, err := runningDiffers(ctx, cb.read, d, plan, "wants")
	if err != nil {
		t.refused = err.Error()
		return t
	}
	if len(differ) == 0 {
		t.skip = "runs with the policy's queue counts: no cold boot needed"
		return t
	}
	t.why = strings.Join(differ, "; ")
	return t
}

// progress prints one progress line.
func (cb *coldBoot) progress(name, format string, args ...any) {
	cb.mu.Lock()
	defer cb.mu.Unlock()
	fmt.Fprintf(cb.env.Stdout, "%s %s: %s\n", time.Now().Format("15:04:05"), printable(name), fmt.Sprintf(format, args...))
}

// restart cold boots one pending domain and checks it came back compliant.
func (cb *coldBoot) restart(ctx context.Context, t *coldBootTarget) coldBootResult {
	d, name := t.d, t.d.Name
	start := time.Now()
	res := coldBootResult{name: name}
	fail := func(code int, format string, args ...any) coldBootResult {
		res.result, res.code, res.detail = "FAILED", code, fmt.Sprintf(format, args...)
		if code == ExitLeftOff {
			res.result = "LEFT OFF"
		}
		res.total = time.Since(start)
		cb.progress(name, "%s: %s", res.result, res.detail)
		return res
	}
	if !bytes.Equal(t.out, t.doc) {
		if err := cb.conn.DefineXML(ctx, t.out); err != nil {
			return fail(ExitFailure, "redefine: %v (not restarted)", err)
		}
		cb.progress(name, "redefined: %s", t.why)
	}
	cb.progress(name, "shutting down (ACPI power button; %s)", t.why)
	wait := cb.shutdown
	if err := cb.conn.ShutdownDomain(ctx, d); errors.Is(err, virt.ErrInvalidState) {
		// Not running: shut off meanwhile, or paused (libvirt refuses to
		// shut a paused domain down, and it stays paused).
		if got, lerr := cb.conn.LookupDomain(ctx, d.UUID); lerr == nil && got.Active {
			if !cb.force {
				return fail(ExitFailure, "paused (or not running): libvirt cannot shut it down; left as it is (resume it first, or --force destroys it)")
			}
			cb.progress(name, "paused: libvirt cannot shut it down; forcing it off (--force)")
			wait = 0
		}
	} else if err != nil {
		return fail(ExitFailure, "shutdown: %v (still running)", err)
	}
	off, err := cb.waitOff(ctx, d, wait)
	if err != nil {
		return fail(ExitFailure, "waiting for the shutdown: %v", err)
	}
	if !off {
		// wait is 0 only for a paused domain under --force, said above.
		if wait > 0 {
			if !cb.force {
				return fail(ExitFailure, "did not power off within %s; left running (--force destroys it after the timeout)", cb.shutdown)
			}
			cb.progress(name, "did not power off within %s: forcing it off", cb.shutdown)
		}
		if err := cb.conn.DestroyDomain(ctx, d); err != nil && !errors.Is(err, virt.ErrInvalidState) {
			return fail(ExitFailure, "destroy: %v", err)
		}
		if off, err = cb.waitOff(ctx, d, 30*time.Second); err != nil || !off {
			return fail(ExitFailure, "still running after destroy: %v", err)
		}
	}
	down := time.Now()
	cb.progress(name, "shut off after %s; starting", down.Sub(start).Round(100*time.Millisecond))
	// Never leave it off: the start is tried again, also when ctx ended
	// (an interrupted run still starts what it stopped).
	sctx := context.WithoutCancel(ctx)
	var serr error
	for attempt := range 3 {
		if attempt > 0 {
			time.Sleep(2 * time.Second)
		}
		if serr = cb.conn.StartDomain(sctx, d); serr == nil || errors.Is(serr, virt.ErrInvalidState) {
			serr = nil
			break
		}
		cb.progress(name, "start attempt %d failed: %v", attempt+1, serr)
	}
	if serr != nil {
		return fail(ExitLeftOff, "start failed 3 times, the domain is shut off: %v", serr)
	}
	booted := time.Now()
	res.downtime = booted.Sub(down)
	bctx, cancel := context.WithTimeout(ctx, cb.boot)
	defer cancel()
	how, err := cb.waitGuestStep(bctx, t, booted)
	if err != nil {
		return fail(ExitFailure, "started, but the guest step did not finish: %v", err)
	}
	cb.progress(name, "started; guest step %s; verifying", how)
	fails, err := cb.verify(bctx, d)
	if err != nil {
		return fail(ExitFailure, "started, but verification: %v", err)
	}
	if len(fails) > 0 {
		return fail(ExitFailure, "started, but verification failed: %s", strings.Join(fails, "; "))
	}
	res.result, res.total = "compliant", time.Since(start)
	res.detail = t.why
	cb.progress(name, "back and compliant in %s", res.total.Round(100*time.Millisecond))
	return res
}

// waitOff polls until d is shut off (true) or the timeout passes (false).
func (cb *coldBoot) waitOff(ctx context.Context, d virt.Domain, timeout time.Duration) (bool, error) {
	end := time.Now().Add(timeout)
	for {
		got, err := cb.conn.LookupDomain(ctx, d.UUID)
		if err != nil {
			return false, err
		}
		if !got.Active {
			return true, nil
		}
		if time.Now().After(end) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(min(cb.poll, time.Until(end)+time.Millisecond)):
		}
	}
}

// waitGuestStep waits for the guest step of the domain's new boot: by
// virtmq-agent when its status socket answers, else by running it here.
func (cb *coldBoot) waitGuestStep(ctx context.Context, t *coldBootTarget, booted time.Time) (string, error) {
	if cb.statusAt != "" {
		if _, err := status.Fetch(ctx, cb.statusAt); err == nil {
			return "by virtmq-agent", cb.waitAgent(ctx, t.d, booted)
		}
	}
	return "run here", cb.guestStep(ctx, t)
}

// waitAgent polls the agent's status until it reports the domain running
// compliant, with every guest step of this boot finished.
func (cb *coldBoot) waitAgent(ctx context.Context, d virt.Domain, booted time.Time) error {
	last := "no status yet"
	for {
		if s, err := status.Fetch(ctx, cb.statusAt); err == nil {
			last = agentProgress(s, d, booted)
			if last == "" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (virtmq-agent: %s)", ctx.Err(), last)
		case <-time.After(cb.poll):
		}
	}
}

// agentProgress returns what the agent's snapshot still lacks for d's new
// boot, or "" when it is done.
func agentProgress(s status.Snapshot, d virt.Domain, booted time.Time) string {
	for _, sd := range s.Domains {
		if sd.UUID != d.UUID {
			continue
		}
		if !sd.Active || sd.State != status.StateCompliant {
			return "state " + sd.State
		}
		for _, n := range sd.NICs {
			if !n.Managed || n.GuestWanted == 0 {
				continue
			}
			if n.GuestStep == "" || n.GuestAt.Before(booted) {
				return n.MAC + ": guest step pending"
			}
			if c := n.GuestStep; c == string(guest.ReasonNoAgent) || c == string(guest.ReasonTimeout) || c == string(guest.ReasonNoInterface) {
				return n.MAC + ": guest step " + c + " (retrying)"
			}
		}
		return ""
	}
	return "domain not in the agent's status"
}

// guestStep runs the guest step (guest.Step, as the agent does) until
// every NIC that has one is done or skipped for a reason the guest gives
// (verify then says it), waiting poll between rounds for the guest agent
// and the interfaces to come up: a round that failed for a transient
// reason, or because the agent is not connected yet, is tried again with
// the NICs it did not finish. Any other failure is returned.
func (cb *coldBoot) guestStep(ctx context.Context, t *coldBootTarget) error {
	live, err := cb.read.Live(ctx, t.d)
	if err != nil {
		return err
	}
	targets := guest.Targets(cb.policy.Decide(live), live.QueuesByMAC())
	ag := virt.GuestAgent{Conn: cb.conn, Domain: t.d}
	var last error // the last answer, for the message
	for len(targets) > 0 {
		var again []guest.Target
		var final error
		next := 0 // the targets before it got an answer
		guest.Step(ctx, ag, targets, guest.Options{}, guest.Configure, nil, func(o guest.Outcome) {
			next++
			c := o.Class
			switch {
			case o.Err == nil:
				return // done, or one queue: nothing to set
			case ctx.Err() != nil:
				if last == nil {
					last = o.Err
				}
				return
			case c.Reason == guest.ReasonNoAgent, c.Reason == guest.ReasonNoInterface:
			case c.Skip:
				return // a reason the guest gives: verify says it
			case !c.Transient:
				final = o.Err
				return
			}
			last = o.Err
			again = append(again, o.Target)
		})
		if ctx.Err() != nil {
			// The boot timeout ran out during the step: not the guest's
			// answer (a timeout Classify would let pass). Say what the
			// guest answered before, if it did.
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		}
		if final != nil {
			return final
		}
		// The targets a domain-wide failure left untried go again too.
		targets = append(again, targets[next:]...)
		if len(targets) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(cb.poll):
		}
	}
	return nil
}

// verify runs the checks of virtmq verify and returns the failed ones.
func (cb *coldBoot) verify(ctx context.Context, d virt.Domain) ([]string, error) {
	checks, err := verify.Run(ctx, cb.conn, cb.read, cb.host, d, cb.policy)
	if err != nil {
		return nil, err
	}
	var fails []string
	for _, c := range checks {
		if c.Status == verify.Fail {
			fails = append(fails, printableCheck(c).Message)
		}
	}
	return fails, nil
}

// printColdBootSummary prints the summary table, fitted to the table
// width, results coloured.
func printColdBootSummary(env *Env, rs []coldBootResult) {
	w := env.Stdout
	if len(rs) == 0 {
		fmt.Fprintln(w, "apply --cold-boot: no domain selected")
		return
	}
	fmt.Fprintln(w)
	t := &table{header: []string{"DOMAIN", "RESULT", "DOWN", "TOTAL", "DETAIL"}, width: env.tableWidth(),
		shrink: []shrinkCol{{col: 4, min: 40}, {col: 0, min: 16}, {col: 4, min: 20}}}
	t.color = func(col int, cell string) string {
		if col == 1 {
			return env.paintWord(cell)
		}
		return cell
	}
	count := map[string]int{}
	for _, r := range rs {
		count[r.result]++
		t.add(printable(r.name), r.result, dur(r.downtime), dur(r.total), printable(r.detail))
	}
	t.write(w, false)
	var parts []string
	for _, k := range []string{"compliant", "would restart", "skipped", "refused", "FAILED", "LEFT OFF"} {
		if count[k] > 0 {
			parts = append(parts, env.paint(wordColor(k), fmt.Sprintf("%d %s", count[k], k)))
		}
	}
	fmt.Fprintf(w, "apply --cold-boot: %s\n", strings.Join(parts, ", "))
}

func dur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(100 * time.Millisecond).String()
}

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

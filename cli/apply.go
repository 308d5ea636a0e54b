package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/facts"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

// coldBootNote says when a new queue count reaches a running domain.
const coldBootNote = "applies at the next cold boot (shutdown + start; a reboot keeps the old count)"

// applyOutcome is what apply did with one domain.
type applyOutcome int

const (
	applyCompliant applyOutcome = iota // definition already as the policy wants
	applyRedefined                     // redefined (or would be, with --dry-run)
	applyTransient                     // transient: cannot be redefined
	applyFailed                        // could not read, rewrite or redefine
)

// runApply is `virtmq apply`: see its usage text.
func runApply(ctx context.Context, env *Env, args []string) int {
	if wantsColdBoot(args) {
		if wantsDetailed(args) {
			fmt.Fprintln(env.Stderr, "virtmq apply: --detailed-exitcode is not an option of --cold-boot (see its exit codes in apply --cold-boot --help)")
			return ExitFailure
		}
		return runColdBoot(ctx, env, args)
	}
	fs := newFlags(env, "apply", "[--dry-run] [--detailed-exitcode] [-o wide] [--policy FILE] [-c URI] (--all | DOMAIN...)", `
Rewrite the persistent definitions of existing libvirt domains to the
policy now, talking to libvirt directly (the same rewrite "virtmq rewrite"
prints and virtmq-agent applies when a domain is defined).

For each domain it reads the inactive (persistent) XML, prints the plan for
each NIC (MAC, current -> wanted queues, the deciding rule and why) and the
changed lines as -/+ with their line numbers, then redefines the domain
only when the rewritten XML differs. With --dry-run nothing is redefined.
The definition is read with its secrets, so that redefining keeps console
passwords; the diff prints them masked (passwd='***').

A running domain keeps the queue count it booted with: the new definition
`+coldBootNote+`.
Transient domains (virsh create) have no definition to rewrite: they are
reported, and the libvirt hook audits them at start (or refuses the start
with mode: enforce).

With --cold-boot, pending running domains are also shut down and started
again, one rolling batch at a time: see "virtmq apply --cold-boot --help".

Exits 1 when any domain could not be read, rewritten or redefined, or when
a domain named on the command line is transient and does not comply, or
when libvirt cannot be reached at the URI (-c, else $LIBVIRT_DEFAULT_URI:
never another host); 2 on a usage error; 0 otherwise. With
--detailed-exitcode (terraform's convention, for drift checks with
--dry-run): 0 no definition changes, 2 some domain was (with --dry-run:
would be) redefined, 1 on any error, usage errors included.`)
	fs.Bool("cold-boot", false, "rolling cold boot of pending domains (see apply --cold-boot --help)")
	path := addPolicyFlag(fs)
	dryRun := fs.Bool("dry-run", false, "print the plan and the diff but redefine nothing")
	all := fs.Bool("all", false, "apply to every domain libvirt knows")
	format, wideFlag := addOutputFlags(fs, "wide")
	detailed := fs.Bool("detailed-exitcode", false, detailedUsage)
	cf := addConnectFlags(fs)
	pos, code, done := parseFlags(env, fs, args, 0, -1, "")
	if done {
		return detailedExit(wantsDetailed(args), code, false)
	}
	if *all == (len(pos) > 0) {
		what := "give --all or domain names"
		if *all {
			what = "give --all or domain names, not both"
		}
		return detailedExit(*detailed, fs.usageError("%s", what), false)
	}
	wide, _ := outputFormat(format, *wideFlag, false)
	p, err := loadPolicy(env, *path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq apply: %v\n", err)
		return ExitFailure
	}
	conn, _, err := dialLibvirt(ctx, env, cf)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq apply: %v\n", err)
		return ExitFailure
	}
	defer conn.Close()

	a := applier{env: env, conn: conn, read: facts.NewReader(conn), policy: p, dryRun: *dryRun, wide: wide}
	status := ExitOK
	var doms []virt.Domain
	if *all {
		doms, err = conn.ListDomains(ctx)
		if err != nil {
			fmt.Fprintf(env.Stderr, "virtmq apply: list domains: %v\n", err)
			return ExitFailure
		}
		slices.SortFunc(doms, func(a, b virt.Domain) int { return strings.Compare(a.Name, b.Name) })
	} else {
		seen := map[string]bool{}
		for _, name := range pos {
			if seen[name] {
				continue
			}
			seen[name] = true
			d, err := conn.LookupDomain(ctx, name)
			if err != nil {
				if errors.Is(err, virt.ErrNotFound) {
					fmt.Fprintf(env.Stderr, "virtmq apply: %s: no such domain\n", name)
				} else {
					fmt.Fprintf(env.Stderr, "virtmq apply: %s: look up: %v\n", name, err)
				}
				a.count[applyFailed]++
				status = ExitFailure
				continue
			}
			doms = append(doms, d)
		}
	}
	prog := newProgress(env, len(doms))
	for i, d := range doms {
		prog.clear()
		if i > 0 {
			fmt.Fprintln(env.Stdout)
		}
		out, compliant := a.domain(ctx, d)
		a.count[out]++
		if out == applyFailed || (out == applyTransient && !*all && !compliant) {
			status = ExitFailure
		}
		prog.update(i+1, a.progressText())
	}
	prog.done()
	if len(doms) > 0 {
		fmt.Fprintln(env.Stdout)
	} else if *all {
		fmt.Fprintln(env.Stdout, "libvirt has no domains")
	}
	verb := "redefined"
	if *dryRun {
		verb = "to redefine (dry run)"
	}
	fmt.Fprintf(env.Stdout, "apply: %s, %s, %s, %s\n",
		fmt.Sprintf("%d %s", a.count[applyRedefined], verb), fmt.Sprintf("%d already compliant", a.count[applyCompliant]),
		fmt.Sprintf("%d transient", a.count[applyTransient]), env.paint(failColor(a.count[applyFailed]), fmt.Sprintf("%d failed", a.count[applyFailed])))
	return detailedExit(*detailed, status, a.count[applyRedefined] > 0)
}

// applier applies the policy to one domain at a time.
type applier struct {
	env    *Env
	conn   virt.Conn
	read   *facts.Reader // on conn
	policy *policy.Policy
	dryRun bool
	wide   bool
	count  [applyFailed + 1]int
}

// progressText is the tally the progress line shows.
func (a *applier) progressText() string {
	verb := "redefined"
	if a.dryRun {
		verb = "to redefine"
	}
	return fmt.Sprintf("%d %s, %d compliant, %d transient, %d failed",
		a.count[applyRedefined], verb, a.count[applyCompliant], a.count[applyTransient], a.count[applyFailed])
}

// domain rewrites and redefines one domain, printing what it does. It
// returns the outcome and, for transient domains, whether the running
// configuration already complies.
func (a *applier) domain(ctx context.Context, d virt.Domain) (applyOutcome, bool) {
	w := a.env.Stdout
	fail := func(format string, args ...any) (applyOutcome, bool) {
		fmt.Fprintf(a.env.Stderr, "virtmq apply: %s: %s\n", d.Name, fmt.Sprintf(format, args...))
		return applyFailed, false
	}
	state := "shut off"
	if d.Active {
		state = "running"
	}
	if !d.Persistent {
		// A transient domain's "inactive" XML is its live definition: show
		// the plan so the user sees what the hook reports.
		live, err := a.read.Live(ctx, d)
		if err != nil {
			return fail("%s", readFailure(err, "live XML"))
		}
		plan := a.policy.Decide(live)
		fmt.Fprintf(w, "%s (transient, %s):\n", d.Name, state)
		printApplyPlan(a.env, plan, a.wide)
		if plan.Compliant() {
			fmt.Fprintf(w, "  complies; a transient domain has no definition to rewrite anyway.\n")
			return applyTransient, true
		}
		fmt.Fprintf(w, "  cannot be redefined: a transient domain (virsh create) has no persistent definition.\n"+
			"  Change the XML it is created from; the libvirt hook audits such starts, and refuses them with mode: enforce.\n")
		return applyTransient, false
	}

	// The definition is redefined from: it must hold the secrets libvirt
	// leaves out otherwise (console passwords), and so it is only ever
	// printed masked.
	def, err := a.read.Definition(ctx, d)
	if err != nil {
		return fail("%s", readFailure(err, "rewrite"))
	}
	doc := def.Doc
	out, plan, err := domxml.ApplyTo(a.policy, doc, def.Facts)
	if err != nil {
		return fail("rewrite: %v", err)
	}
	changed := !bytes.Equal(out, doc)
	fmt.Fprintf(w, "%s (%s):\n", d.Name, state)
	printApplyPlan(a.env, plan, a.wide)
	if changed {
		fmt.Fprintf(w, "  --- %s defined\n  +++ %s rewritten\n", d.Name, d.Name)
		printDiff(w, "  ", lineDiff(maskSecrets(doc), maskSecrets(out)))
	}

	outcome := applyCompliant
	switch {
	case !changed:
		fmt.Fprintln(w, "  the definition complies: nothing to redefine.")
	case a.dryRun:
		fmt.Fprintln(w, "  dry run: would redefine.")
		outcome = applyRedefined
	default:
		if err := a.conn.DefineXML(ctx, out); err != nil {
			return fail("redefine: %v", err)
		}
		fmt.Fprintln(w, "  redefined.")
		outcome = applyRedefined
	}
	if d.Active {
		a.runningNote(ctx, w, d, plan, changed)
	}
	return outcome, true
}

// runningNote tells, for a running domain, whether its running queue
// counts differ from what the definition now (or after --dry-run would) has.
func (a *applier) runningNote(ctx context.Context, w io.Writer, d virt.Domain, plan policy.Plan, changed bool) {
	differ, err := runningDiffers(ctx, a.read, d, plan, "definition")
	switch {
	case err != nil && changed:
		fmt.Fprintf(w, "  %s is running: the new definition %s.\n", d.Name, coldBootNote)
	case err != nil:
		fmt.Fprintf(w, "  %s is running; could not read its live XML to compare: %v\n", d.Name, err)
	case len(differ) > 0:
		fmt.Fprintf(w, "  %s is running (%s): the definition %s.\n", d.Name, strings.Join(differ, "; "), coldBootNote)
	}
}

// readFailure says why a facts.Reader read failed: "read WHAT: libvirt's
// error" for a libvirt call, else "PARSE: the document's error".
func readFailure(err error, parse string) string {
	var re *facts.ReadError
	if errors.As(err, &re) {
		return "read " + re.What + ": " + re.Err.Error()
	}
	return parse + ": " + err.Error()
}

// printApplyPlan prints one line per NIC of the plan, cut to the table
// width unless wide.
func printApplyPlan(env *Env, plan policy.Plan, wide bool) {
	w := env.Stdout
	if len(plan.NICs) == 0 {
		fmt.Fprintln(w, "  no <interface>")
		return
	}
	t := &table{width: env.tableWidth(), shrink: []shrinkCol{{col: 4, min: 20}}}
	for _, n := range plan.NICs {
		var q string
		switch {
		case n.Change():
			q = fmt.Sprintf("queues %d -> %d", n.Current, n.Wanted)
		case n.Managed:
			q = fmt.Sprintf("queues %d (complies)", n.Current)
		default:
			q = fmt.Sprintf("queues %d (left alone)", n.Current)
		}
		t.add("  "+orDash(n.MAC), n.Type+"/"+orDash(n.Model), q, "rule "+orDash(n.Rule), printable(n.Reason))
	}
	t.header, t.rows = t.rows[0], t.rows[1:]
	t.write(w, wide)
}

// runningDiffers reads a running domain's live XML and lists its managed
// NICs that run with other queue counts than the plan wants, as
// "MAC runs R, WHAT N".
func runningDiffers(ctx context.Context, read *facts.Reader, d virt.Domain, plan policy.Plan, what string) ([]string, error) {
	live, err := read.Live(ctx, d)
	if err != nil {
		return nil, errors.New(readFailure(err, "live XML"))
	}
	running := live.QueuesByMAC()
	var differ []string
	for _, n := range plan.NICs {
		if q, ok := running[n.MAC]; ok && n.Managed && q != n.Wanted {
			differ = append(differ, fmt.Sprintf("%s runs %d, %s %d", n.MAC, q, what, n.Wanted))
		}
	}
	return differ, nil
}

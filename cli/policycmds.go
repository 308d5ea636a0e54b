package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/policy"
)

func runLint(_ context.Context, env *Env, args []string) int {
	fs := newFlags(env, "lint", "[--json] [--strict] [--policy FILE | [--drop-in] FILE...]", `
Check the policy file and its policy.d/ drop-ins: the one in force
(--policy, else $VIRTMQ_POLICY, else /etc/virtmq/policy.yaml, else
built-in), or each FILE named, like yamllint FILE. A FILE inside a
policy.d/ directory is checked as a drop-in, by itself; any other FILE as
a main policy file with the policy.d/ beside it. --drop-in checks every
FILE as a drop-in wherever it is: a configuration tool checks its
temporary copy before putting it in place (Ansible's validate: virtmq
lint --strict --drop-in %s).

Prints one "file:line:col: path: message" line per problem and exits 1, or
exits 0 when the policy is valid: one "file:line:col: path: warning:
message" line per warning, then a one-line summary per policy. A valid
policy may still get warnings: a mode of an earlier release (audit, off),
a policy.d/ file ignored for its name (50-x.yml, .dpkg-old, ~), a rule
after a catch-all or shadowed by an earlier rule (it can never match), a
number written in hexadecimal, octal or binary, a limit no domain can
reach; and a note ("note: ...") on rules that only libosinfo metadata can
select. Warnings exit 0 unless --strict (notes never fail). With --json it
prints one JSON document instead (see docs/json.md).`)
	path := addPolicyFlag(fs)
	asJSON := fs.Bool("json", false, "print one JSON document instead of lines")
	strict := fs.Bool("strict", false, "exit 1 when there are warnings")
	dropIn := fs.Bool("drop-in", false, "check each FILE as a policy.d/ drop-in, by itself, wherever it is")
	pos, code, done := parseFlags(env, fs, args, 0, -1, "")
	if done {
		return code
	}
	if len(pos) > 0 && *path != "" {
		return fs.usageError("give --policy FILE or FILE arguments, not both")
	}
	if *dropIn && len(pos) == 0 {
		return fs.usageError("--drop-in needs FILE arguments")
	}
	targets := pos
	if len(targets) == 0 {
		targets = []string{*path} // "": the policy in force
	}
	rep := lintReport{FormatVersion: FormatVersion, OK: true, Policies: []lintPolicy{}}
	for _, t := range targets {
		lp := lintOne(env, t, *dropIn)
		rep.OK = rep.OK && lp.OK
		rep.Policies = append(rep.Policies, lp)
	}
	if *asJSON {
		if err := writeJSON(env, "lint", rep); err != nil {
			return ExitFailure
		}
	} else {
		for _, lp := range rep.Policies {
			printLint(env.Stdout, lp)
		}
	}
	if !rep.OK {
		return ExitFailure
	}
	if *strict {
		for _, lp := range rep.Policies {
			if lp.warnings() > 0 {
				return ExitFailure
			}
		}
	}
	return ExitOK
}

// lintReport is what `virtmq lint --json` prints.
type lintReport struct {
	FormatVersion int          `json:"format_version"`
	OK            bool         `json:"ok"`
	Policies      []lintPolicy `json:"policies"`
}

// lintPolicy is the check of one policy: a main file with its drop-ins,
// one drop-in by itself, or the built-in default.
type lintPolicy struct {
	// File is the file named (the main file, or the drop-in).
	File string `json:"file"`
	// DropIn reports that File was checked as a drop-in, by itself.
	DropIn bool `json:"drop_in"`
	OK     bool `json:"ok"`
	// Sources, Mode, OnError and Rules describe the policy when it loads
	// (OK); Sources is empty and the rest zero otherwise.
	Sources  []string      `json:"sources"`
	Mode     string        `json:"mode,omitempty"`
	OnError  string        `json:"on_error,omitempty"`
	Rules    int           `json:"rules"`
	Errors   []lintProblem `json:"errors"`
	Warnings []lintProblem `json:"warnings"`
}

// lintProblem is one error, warning or note, located.
type lintProblem struct {
	// Severity is error, warning or note (notes never fail, even with
	// --strict).
	Severity string `json:"severity"`
	File     string `json:"file"`
	Line     int    `json:"line"`   // 1-based; 0 when unknown
	Column   int    `json:"column"` // 1-based; 0 when unknown
	Path     string `json:"path"`   // e.g. rules[2].match.vcpus; "" for the whole file
	Message  string `json:"message"`
}

// toLintProblem turns a policy error, or a warning whose Msg starts with
// "warning: " or "note: ", into a lintProblem.
func toLintProblem(e *policy.Error, severity string) lintProblem {
	msg := e.Msg
	if severity != "error" {
		severity = "warning"
		for _, s := range []string{"warning", "note"} {
			if m, ok := strings.CutPrefix(e.Msg, s+": "); ok {
				severity, msg = s, m
			}
		}
	}
	return lintProblem{Severity: severity, File: e.File, Line: e.Line, Column: e.Column, Path: e.Path, Message: msg}
}

// warnings counts the warnings of lp, notes left out.
func (lp lintPolicy) warnings() int {
	n := 0
	for _, w := range lp.Warnings {
		if w.Severity == "warning" {
			n++
		}
	}
	return n
}

// lintOne checks one target: "" is the policy in force. A target in a
// policy.d/ directory, or any with dropIn, is checked as a drop-in.
func lintOne(env *Env, target string, dropIn bool) lintPolicy {
	lp := lintPolicy{File: target, Sources: []string{}, Errors: []lintProblem{}, Warnings: []lintProblem{}}
	var p *policy.Policy
	var err error
	if target != "" && (dropIn || filepath.Base(filepath.Dir(target)) == policy.DropInDir) {
		lp.DropIn = true
		var data []byte
		if data, err = policy.ReadFile(target); err == nil {
			p, err = policy.ParseDropIn(target, data)
		}
	} else {
		p, err = loadPolicy(env, target)
	}
	if err != nil {
		var list policy.ErrorList
		var pe *fs.PathError
		switch {
		case errors.As(err, &list):
			for _, e := range list {
				lp.Errors = append(lp.Errors, toLintProblem(e, "error"))
			}
		case errors.As(err, &pe):
			// The line starts with the file: the message says only what
			// happened to it ("read FILE: " once is enough).
			msg := strings.Replace(err.Error(), pe.Error(), pe.Err.Error(), 1)
			lp.Errors = append(lp.Errors, lintProblem{Severity: "error", File: pe.Path, Message: msg})
		default:
			lp.Errors = append(lp.Errors, lintProblem{Severity: "error", File: target, Message: err.Error()})
		}
		return lp
	}
	src := p.Sources()
	if lp.File == "" {
		lp.File = src[0]
	}
	lp.OK, lp.Sources, lp.Mode, lp.OnError, lp.Rules = true, src, string(p.Mode()), string(p.OnError()), len(p.Rules())
	for _, w := range p.Warnings() {
		lp.Warnings = append(lp.Warnings, toLintProblem(w, "warning"))
	}
	return lp
}

// printLint prints one policy's check as lines: an error per line, else
// a warning per line and the summary.
func printLint(w io.Writer, lp lintPolicy) {
	for _, e := range lp.Errors {
		if e.Path == "" && e.Line == 0 && strings.HasPrefix(e.Message, e.File) {
			fmt.Fprintln(w, e.Message) // already names its file
			continue
		}
		fmt.Fprintln(w, &policy.Error{File: e.File, Line: e.Line, Column: e.Column, Path: e.Path, Msg: e.Message})
	}
	if !lp.OK {
		return
	}
	for _, e := range lp.Warnings {
		fmt.Fprintln(w, &policy.Error{File: e.File, Line: e.Line, Column: e.Column, Path: e.Path, Msg: e.Severity + ": " + e.Message})
	}
	summary := ""
	if n := lp.warnings(); n > 0 {
		summary = fmt.Sprintf(", warnings: %d", n)
	}
	if lp.DropIn {
		fmt.Fprintf(w, "%s: ok (a drop-in checked by itself: rules: %d%s)\n", lp.File, lp.Rules, summary)
		return
	}
	fmt.Fprintf(w, "%s: ok (mode %s, on_error %s, rules: %d%s)\n",
		strings.Join(lp.Sources, ", "), lp.Mode, lp.OnError, lp.Rules, summary)
}

// planOutput is one domain's plan as `virtmq plan --json` prints it.
type planOutput struct {
	File    string      `json:"file"`
	Domain  string      `json:"domain"`
	Mode    policy.Mode `json:"mode"`
	Changes bool        `json:"changes"`
	// Skip says why virtmq leaves the whole domain alone, when it does.
	Skip string `json:"skip,omitempty"`
	// Orchestrator names the stack that defines the domain (nova, ovirt,
	// ...), whether the policy leaves the domain to it or opts it in.
	Orchestrator string          `json:"orchestrator,omitempty"`
	NICs         []planNICOutput `json:"nics"`
	Warnings     []string        `json:"warnings"`
}

type planNICOutput struct {
	Index     int    `json:"index"`
	MAC       string `json:"mac"`
	Type      string `json:"type"`
	Model     string `json:"model"`
	Current   int    `json:"current_queues"`
	Wanted    int    `json:"wanted_queues"`
	Change    bool   `json:"change"`
	Managed   bool   `json:"managed"`
	Kept      bool   `json:"kept,omitempty"`
	GuestStep bool   `json:"guest_step"`
	Combined  int    `json:"guest_combined,omitempty"`
	Rule      string `json:"rule"`
	Reason    string `json:"reason"`
}

// planReport is what `virtmq plan --json` prints.
type planReport struct {
	FormatVersion int          `json:"format_version"`
	Policy        []string     `json:"policy"`
	Domains       []planOutput `json:"domains"`
	// Errors lists the files that could not be read or parsed; their
	// domains are not in Domains.
	Errors []fileError `json:"errors"`
}

// fileError is one input file that could not be used.
type fileError struct {
	File  string `json:"file"`
	Error string `json:"error"`
}

func runPlan(ctx context.Context, env *Env, args []string) int {
	fs := newFlags(env, "plan", "[--policy FILE] [--json | -o wide|json] [--detailed-exitcode] DOMAIN.xml...", `
Show, for each NIC of each domain XML file ("-" reads stdin), the current
queue count, the count N the policy wants, the in-guest combined count M,
the rule that decided and why; every NIC virtmq leaves alone says why
(not virtio, vhost-user, set by hand, the domain's exclude label, ...).
Warnings (a NIC cut below its rule's wish by the domain's budget) follow
the table. Reads files only; talks to nothing, so it cannot know which
type network NICs sit on a hostdev pool (virtmq-agent reads the network
and skips them). Take the XML from "virsh dumpxml --inactive DOMAIN" (the
definition, which is what virtmq rewrites).

The table fits the terminal ($COLUMNS, else its width, else 100 columns):
it leaves out TYPE and MODEL, heads CURRENT, WANTED and GUEST M as CUR,
WANT and M, and cuts long cells ("…"); -o wide prints every column in
full. With several files, a FILE column
says where each domain comes from. With --json it prints one JSON
document (see docs/json.md), with the files that failed in "errors".

Exits 1 when a file cannot be read or parsed, 2 on a usage error, else 0.
With --detailed-exitcode (terraform's): 0 no definition changes, 2 some
does, 1 on any error.`)
	path := addPolicyFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	format, wideFlag := addOutputFlags(fs, "wide", "json")
	fs.check(func() error { return outputConflict(format, *wideFlag, *asJSON) })
	detailed := fs.Bool("detailed-exitcode", false, detailedUsage)
	pos, code, done := parseFlags(env, fs, args, 1, -1, `DOMAIN.xml (one or more domain XML files; "-" reads stdin)`)
	if done {
		return detailedExit(wantsDetailed(args), code, false)
	}
	wide, jsonOut := outputFormat(format, *wideFlag, *asJSON)
	p, err := loadPolicy(env, *path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq plan: %v\n", err)
		return ExitFailure
	}
	rep := planReport{FormatVersion: FormatVersion, Policy: orEmpty(p.Sources()), Domains: []planOutput{}, Errors: []fileError{}}
	status := ExitOK
	for _, name := range pos {
		doc, err := readInput(ctx, env, name)
		if err != nil {
			fmt.Fprintf(env.Stderr, "virtmq plan: %v\n", err)
			rep.Errors = append(rep.Errors, fileError{File: name, Error: err.Error()})
			status = ExitFailure
			continue
		}
		dom, err := domxml.Parse(doc)
		if err != nil {
			fmt.Fprintf(env.Stderr, "virtmq plan: %s: %v\n", name, err)
			rep.Errors = append(rep.Errors, fileError{File: name, Error: err.Error()})
			status = ExitFailure
			continue
		}
		rep.Domains = append(rep.Domains, toPlanOutput(name, p.Decide(dom)))
	}
	if jsonOut {
		if err := writeJSON(env, "plan", rep); err != nil {
			return ExitFailure
		}
		return detailedExit(*detailed, status, planChanges(rep.Domains))
	}
	if err := printPlan(env, rep.Domains, len(pos) > 1, wide); err != nil {
		return ExitFailure
	}
	return detailedExit(*detailed, status, planChanges(rep.Domains))
}

// printPlan prints the plan table, one row per NIC, and the legend of
// what its rows hold: with file, a FILE column first; with wide, TYPE and
// MODEL too and nothing cut. With no domain (every input failed) it
// prints nothing.
func printPlan(env *Env, doms []planOutput, file, wide bool) error {
	w := env.Stdout
	if len(doms) == 0 {
		return nil
	}
	t := &table{header: []string{"FILE", "DOMAIN", "MAC", "TYPE", "MODEL", "CURRENT", "WANTED", "GUEST M", "RULE", "REASON"}, width: env.tableWidth()}
	const reason = 9
	t.shrink = []shrinkCol{{col: reason, min: 30}, {col: 0, min: 16, left: true}, {col: 1, min: 16}, {col: 8, min: 12},
		{col: reason, min: 16}, {col: 0, min: 10, left: true}, {col: 1, min: 10}, {col: reason, min: 1}}
	changes := false
	for _, d := range doms {
		for _, n := range d.NICs {
			m := "-"
			if n.GuestStep {
				m = fmt.Sprint(n.Combined)
			}
			wanted := fmt.Sprint(n.Wanted)
			if n.Change {
				wanted += " *"
				changes = true
			}
			t.add(printable(d.File), printable(d.Domain), orDash(n.MAC), n.Type, orDash(n.Model), fmt.Sprint(n.Current), wanted, m, orDash(n.Rule), printable(n.Reason))
		}
		if len(d.NICs) == 0 {
			why := "no <interface>"
			if d.Skip != "" {
				why = d.Skip
			}
			t.add(printable(d.File), printable(d.Domain), "-", "-", "-", "-", "-", "-", "-", printable(why))
		}
	}
	var drop []int
	if !file {
		drop = append(drop, 0)
	}
	if !wide {
		drop = append(drop, 3, 4)
		t.header[5], t.header[6], t.header[7] = "CUR", "WANT", "M"
	}
	t.dropColumns(drop...)
	if err := t.write(w, wide); err != nil {
		return err
	}
	for _, d := range doms {
		for _, warn := range d.Warnings {
			fmt.Fprintf(w, "warning: %s: %s\n", printable(d.Domain), printable(warn))
		}
	}
	if changes {
		fmt.Fprintln(w, "(* = the definition changes; the running domain takes it at its next cold boot)")
	}
	if t.clipped {
		fmt.Fprintln(w, clippedNote(t.width))
	}
	return nil
}

func toPlanOutput(file string, plan policy.Plan) planOutput {
	o := planOutput{File: file, Domain: plan.Domain, Mode: plan.Mode, Changes: !plan.Compliant(), Skip: plan.Skip, Orchestrator: plan.Orchestrator,
		NICs: []planNICOutput{}, Warnings: orEmpty(plan.Warnings)}
	for _, n := range plan.NICs {
		o.NICs = append(o.NICs, planNICOutput{
			Index: n.Index, MAC: n.MAC, Type: n.Type, Model: n.Model,
			Current: n.Current, Wanted: n.Wanted, Change: n.Change(), Managed: n.Managed, Kept: n.Kept,
			GuestStep: n.GuestStep, Combined: n.Combined, Rule: n.Rule, Reason: n.Reason,
		})
	}
	return o
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runRewrite(ctx context.Context, env *Env, args []string) int {
	fs := newFlags(env, "rewrite", "[--policy FILE] [DOMAIN.xml|-]", `
Print the domain XML (a file, or stdin for "-" or no argument) with the
policy's queue counts applied: exactly the definition virtmq-agent and
"virtmq apply" would define. Only the queues attribute of <interface>/<driver>
changes (a <driver queues='N'/> is added where there is none), and virtmq's
record of the counts it wrote, <virtmq:written> in <metadata>, is added or
updated (so a later count that differs from it reads as set by hand); every
other byte stays as it was. Exits 1 with a message on bad input.`)
	path := addPolicyFlag(fs)
	pos, code, done := parseFlags(env, fs, args, 0, 1, `DOMAIN.xml (a domain XML file; "-" or none reads stdin)`)
	if done {
		return code
	}
	name := "-"
	if len(pos) == 1 {
		name = pos[0]
	}
	p, err := loadPolicy(env, *path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq rewrite: %v\n", err)
		return ExitFailure
	}
	doc, err := readInput(ctx, env, name)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq rewrite: %v\n", err)
		return ExitFailure
	}
	out, _, err := domxml.Apply(p, doc)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq rewrite: %s: %v\n", displayName(name), err)
		return ExitFailure
	}
	if _, err := env.Stdout.Write(out); err != nil {
		return ExitFailure
	}
	return ExitOK
}

func displayName(name string) string {
	if name == "-" {
		return "<stdin>"
	}
	return name
}

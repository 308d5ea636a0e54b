package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/policy"
)

func runLint(_ context.Context, env *Env, args []string) int {
	fs := newFlags(env, "lint", "[--policy FILE] [--strict]", `
Check the policy file and its policy.d/ drop-ins. Prints one
"file:line:col: path: message" line per problem and exits 1, or exits 0
when the policy is valid: one "file:line:col: path: warning: message"
line per warning, then a one-line summary. A valid policy may still get
warnings: a mode of an earlier release (audit, off), a rule after a
catch-all or shadowed by an earlier rule (it can never match), a number
written in hexadecimal, octal or binary, a limit no domain can reach; and
a note ("note: ...") on rules that only libosinfo metadata can select.
Warnings exit 0 unless --strict (notes never fail).`)
	path := fs.String("policy", "", "policy `file` (default $VIRTMQ_POLICY, else /etc/virtmq/policy.yaml, else built-in)")
	strict := fs.Bool("strict", false, "exit 1 when there are warnings")
	pos, code, done := parseFlags(env, fs, args)
	if done {
		return code
	}
	if len(pos) > 0 {
		fs.Usage()
		return ExitUsage
	}
	p, err := loadPolicy(env, *path)
	if err != nil {
		var list policy.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				fmt.Fprintln(env.Stdout, e)
			}
		} else {
			fmt.Fprintf(env.Stdout, "%v\n", err)
		}
		return ExitFailure
	}
	warnings := 0
	for _, w := range p.Warnings() {
		fmt.Fprintln(env.Stdout, w)
		if strings.HasPrefix(w.Msg, "warning: ") {
			warnings++
		}
	}
	summary := ""
	if warnings > 0 {
		summary = fmt.Sprintf(", warnings: %d", warnings)
	}
	fmt.Fprintf(env.Stdout, "%s: ok (mode %s, on_error %s, rules: %d%s)\n",
		strings.Join(p.Sources(), ", "), p.Mode(), p.OnError(), len(p.Rules()), summary)
	if warnings > 0 && *strict {
		return ExitFailure
	}
	return ExitOK
}

// planOutput is one domain's plan as `virtmq plan --json` prints it.
type planOutput struct {
	File    string      `json:"file"`
	Domain  string      `json:"domain"`
	Mode    policy.Mode `json:"mode"`
	Changes bool        `json:"changes"`
	// Skip says why virtmq leaves the whole domain alone, when it does.
	Skip     string         `json:"skip,omitempty"`
	NICs     []planNICOuput `json:"nics"`
	Warnings []string       `json:"warnings,omitempty"`
}

type planNICOuput struct {
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

func runPlan(_ context.Context, env *Env, args []string) int {
	fs := newFlags(env, "plan", "[--policy FILE] [--json] DOMAIN.xml...", `
Show, for each NIC of each domain XML file ("-" reads stdin), the current
queue count, the count N the policy wants, the in-guest combined count M,
the rule that decided and why; every NIC virtmq leaves alone says why
(not virtio, vhost-user, set by hand, the domain's exclude label, ...).
Warnings (a NIC cut below its rule's wish by the domain's budget) follow
the table. Reads files only; talks to nothing, so it cannot know which
type network NICs sit on a hostdev pool (virtmq-agent reads the network
and skips them). Exits 1 when a file cannot be read or parsed.`)
	path := fs.String("policy", "", "policy `file`")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	pos, code, done := parseFlags(env, fs, args)
	if done {
		return code
	}
	if len(pos) == 0 {
		fs.Usage()
		return ExitUsage
	}
	p, err := loadPolicy(env, *path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "virtmq plan: %v\n", err)
		return ExitFailure
	}
	var out []planOutput
	status := ExitOK
	for _, name := range pos {
		doc, err := readInput(env, name)
		if err != nil {
			fmt.Fprintf(env.Stderr, "virtmq plan: %v\n", err)
			status = ExitFailure
			continue
		}
		dom, err := domxml.Parse(doc)
		if err != nil {
			fmt.Fprintf(env.Stderr, "virtmq plan: %s: %v\n", name, err)
			status = ExitFailure
			continue
		}
		out = append(out, toPlanOutput(name, p.Decide(dom)))
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // reasons quote XML like <model>
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(env.Stderr, "virtmq plan: %v\n", err)
			return ExitFailure
		}
		return status
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tMAC\tTYPE\tMODEL\tCURRENT\tWANTED\tGUEST M\tRULE\tREASON")
	for _, d := range out {
		for _, n := range d.NICs {
			m := "-"
			if n.GuestStep {
				m = fmt.Sprint(n.Combined)
			}
			wanted := fmt.Sprint(n.Wanted)
			if n.Change {
				wanted += " *"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n",
				d.Domain, orDash(n.MAC), n.Type, orDash(n.Model), n.Current, wanted, m, n.Rule, n.Reason)
		}
		if len(d.NICs) == 0 {
			why := "no <interface>"
			if d.Skip != "" {
				why = d.Skip
			}
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t%s\n", d.Domain, why)
		}
	}
	if err := tw.Flush(); err != nil {
		return ExitFailure
	}
	for _, d := range out {
		for _, w := range d.Warnings {
			fmt.Fprintf(env.Stdout, "warning: %s: %s\n", d.Domain, w)
		}
	}
	fmt.Fprintln(env.Stdout, "(* = the definition changes; the running domain takes it at its next cold boot)")
	return status
}

func toPlanOutput(file string, plan policy.Plan) planOutput {
	o := planOutput{File: file, Domain: plan.Domain, Mode: plan.Mode, Changes: !plan.Compliant(), Skip: plan.Skip,
		NICs: []planNICOuput{}, Warnings: plan.Warnings}
	for _, n := range plan.NICs {
		o.NICs = append(o.NICs, planNICOuput{
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

func runRewrite(_ context.Context, env *Env, args []string) int {
	fs := newFlags(env, "rewrite", "[--policy FILE] [DOMAIN.xml|-]", `
Print the domain XML (a file, or stdin for "-" or no argument) with the
policy's queue counts applied: exactly the definition virtmq-agent and
"virtmq apply" would define. Only the queues attribute of <interface>/<driver>
changes (a <driver queues='N'/> is added where there is none); every other
byte stays as it was. Exits 1 with a message on bad input.`)
	path := fs.String("policy", "", "policy `file`")
	pos, code, done := parseFlags(env, fs, args)
	if done {
		return code
	}
	if len(pos) > 1 {
		fs.Usage()
		return ExitUsage
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
	doc, err := readInput(env, name)
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

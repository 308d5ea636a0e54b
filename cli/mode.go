package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/virtmq/virtmq/policy"
)

// modeEffects says, for each mode, what virtmq-agent and the hook do.
var modeEffects = map[policy.Mode]string{
	policy.ModeObserve: "virtmq-agent and the hook only report (virtmq status, metrics, logs): " +
		"no domain is redefined, no command runs in any guest; set mode: apply to converge",
	policy.ModeApply: "virtmq-agent redefines persistent domains whose NIC queues differ from the policy " +
		"(%s) and runs ethtool -L in running guests; " +
		"the hook logs non-compliant starts; set mode: observe to only report",
	policy.ModeEnforce: "virtmq-agent redefines persistent domains whose NIC queues differ from the policy " +
		"(%s) and runs ethtool -L in running guests; " +
		"the hook refuses to start a non-compliant VM",
}

// whenApplied says when a running VM gets new queues under the policy's
// default apply_at (rules may say otherwise; plan shows it per domain).
var whenApplied = map[policy.ApplyAt]string{
	policy.ApplyNextReboot: "a running VM gets them at its next reboot, which virtmq-agent makes a cold boot",
	policy.ApplyColdBoot:   "a running VM gets them at its next shut down + start",
}

func runMode(_ context.Context, env *Env, args []string) int {
	fs := newFlags(env, "mode", "[--policy FILE]", `
Print one line saying which mode the policy puts in force, where it comes
from and what virtmq-agent and the libvirt hook do in it (the packages'
install scripts print it). Exits 1, with the first problem, when the
policy does not load: then virtmq lint lists every problem.`)
	path := addPolicyFlag(fs)
	_, code, done := parseFlags(env, fs, args, 0, 0, "")
	if done {
		return code
	}
	p, embedded, err := policy.Resolve(*path, env.Getenv, env.DefaultPolicyPath)
	if err != nil {
		first := err
		var list policy.ErrorList
		if errors.As(err, &list) && len(list) > 0 {
			first = list[0]
		}
		fmt.Fprintf(env.Stdout, "virtmq: the policy does not load, virtmq-agent will not start (virtmq lint lists every problem): %v\n", first)
		return ExitFailure
	}
	from := strings.Join(p.Sources(), ", ")
	if embedded {
		from = "the built-in default, no " + env.DefaultPolicyPath
	}
	note := ""
	n := 0
	for _, w := range p.Warnings() {
		if !strings.HasPrefix(w.Msg, "note: ") { // notes are no reason to act
			n++
		}
	}
	if n > 0 {
		note = fmt.Sprintf(" (virtmq lint: %d warning(s))", n)
	}
	effects := modeEffects[p.Mode()]
	if strings.Contains(effects, "%s") {
		effects = fmt.Sprintf(effects, whenApplied[p.Defaults().ApplyAt])
	}
	fmt.Fprintf(env.Stdout, "virtmq: mode %s (from %s)%s: %s\n", p.Mode(), from, note, effects)
	return ExitOK
}

package guest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/virtmq/virtmq/policy"
)

// Target is one NIC of a running domain for the guest step.
type Target struct {
	MAC string
	// Combined is M, the channel count to set: the plan's, at most the
	// queues the NIC runs with.
	Combined int
	// OneQueue says the NIC runs with one queue: there is nothing to set
	// in the guest until a cold boot, and no command is sent for it.
	OneQueue bool
}

// Targets returns the NICs the guest step sets on a running domain, in
// the plan's order: each NIC the plan manages with the guest step on that
// the running domain has (running is its queues by MAC, from the live
// XML; a hot-unplugged NIC is left out). The guest cannot have more
// channels than the NIC runs with, so M is min(the plan's Combined,
// running): a domain pending a cold boot gets what it can now. It is pure.
func Targets(plan policy.Plan, running map[string]int) []Target {
	var ts []Target
	for _, n := range plan.NICs {
		if !n.Managed || !n.GuestStep || n.Combined < 1 {
			continue
		}
		q, ok := running[n.MAC]
		if !ok {
			continue
		}
		ts = append(ts, Target{MAC: n.MAC, Combined: min(n.Combined, q), OneQueue: q <= 1})
	}
	return ts
}

// Outcome is the guest step of one Target.
type Outcome struct {
	Target
	// Result and Err are Configure's; both are zero for a OneQueue target.
	Result Result
	Err    error
	// Class is Err classified.
	Class Class
}

// ConfigureFunc sets one NIC's channel count in the guest: Configure, or
// a test's stand-in.
type ConfigureFunc func(ctx context.Context, a Agent, mac string, combined int, opt Options) (Result, error)

// Step is the guest step of one domain: it runs configure on each target
// in order and hands each outcome to report (a OneQueue target's at once,
// without a command). classify classifies the errors (nil: Classify; a
// caller that knows the transport adds its own reasons, as the agent does
// for a lost libvirt connection). After a failure whose reason holds for
// the whole domain (Class.DomainWide: no agent, guest-exec disabled, a
// timeout, ...) the other targets are not tried. It returns whether a
// failure is worth another attempt (Class.Transient), and returns at once,
// reporting nothing more, when ctx is cancelled (not when its deadline
// passes: that is the guest's timeout, and reported).
// The targets share one qemu-ga: guest-info and guest-get-osinfo are sent
// once for all of them.
func Step(ctx context.Context, a Agent, targets []Target, opt Options, configure ConfigureFunc, classify func(error) Class, report func(Outcome)) (retry bool) {
	if classify == nil {
		classify = Classify
	}
	a = &stepAgent{Agent: a}
	for _, t := range targets {
		if t.OneQueue {
			report(Outcome{Target: t})
			continue
		}
		res, err := configure(ctx, a, t.MAC, t.Combined, opt)
		if err != nil && errors.Is(ctx.Err(), context.Canceled) {
			return false
		}
		c := classify(err)
		report(Outcome{Target: t, Result: res, Err: err, Class: c})
		if err == nil {
			continue
		}
		retry = retry || c.Transient
		if c.DomainWide {
			break
		}
	}
	return retry
}

// stepAgent is the Agent of one Step: the guest's qemu-ga facts
// (guest-info, guest-get-osinfo) are asked once for all of the domain's
// NICs, not once per NIC; each answer is kept for the step only (seconds:
// the same qemu-ga). Only successful replies are kept.
type stepAgent struct {
	Agent

	mu   sync.Mutex
	kept map[string][]byte // by the command's bytes
}

// keptCommands are the ones whose reply does not change within a step.
var keptCommands = [][]byte{
	[]byte(`{"execute":"guest-info"}`),
	[]byte(`{"execute":"guest-get-osinfo"}`),
}

func (s *stepAgent) Command(ctx context.Context, cmd []byte, timeout time.Duration) ([]byte, error) {
	keep := false
	for _, k := range keptCommands {
		keep = keep || bytes.Equal(cmd, k)
	}
	if !keep {
		return s.Agent.Command(ctx, cmd, timeout)
	}
	s.mu.Lock()
	out, ok := s.kept[string(cmd)]
	s.mu.Unlock()
	if ok {
		return out, nil
	}
	out, err := s.Agent.Command(ctx, cmd, timeout)
	if err != nil || bytes.Contains(out, []byte(`"error"`)) {
		return out, err
	}
	s.mu.Lock()
	if s.kept == nil {
		s.kept = map[string][]byte{}
	}
	s.kept[string(cmd)] = out
	s.mu.Unlock()
	return out, nil
}

// Unwrap returns the Agent the step was given.
func (s *stepAgent) Unwrap() Agent { return s.Agent }

// Package policy decides, from a fleet-wide YAML policy and the facts of one
// domain, how many virtio-net queue pairs each NIC gets (N), how many the
// guest turns on (M), and why. It is pure: facts in, decision out; no I/O
// beyond Load reading the policy files.
package policy

// Mode is the one knob for what virtmq does about a domain the policy
// wants changed, for the agent and the libvirt hook alike.
type Mode string

// Modes. Each includes what the one before it does.
const (
	// ModeObserve: the agent and the hook only report what they would do
	// (status, metrics, logs); the agent redefines nothing and sends no
	// command to guests or QEMU.
	ModeObserve Mode = "observe"
	// ModeApply: the agent redefines persistent domains and runs the guest
	// step; the hook logs each non-compliant NIC at start and lets it start.
	ModeApply Mode = "apply"
	// ModeEnforce: apply, and the hook refuses a non-compliant start.
	ModeEnforce Mode = "enforce"
)

// DefaultMode is the mode of a policy that sets none: what the agent has
// always done without one.
const DefaultMode = ModeApply

// modeAliases are the modes of earlier releases, accepted with a warning:
// both meant what apply does now for the agent, which never read the
// mode; audit's hook logged as apply's does, off's hook was silent.
var modeAliases = map[string]Mode{"audit": ModeApply, "off": ModeApply}

// aliasNote is what changes for the hook when an alias is read as its mode.
var aliasNote = map[string]string{"off": " (and the hook now logs non-compliant starts)"}

// Acts reports whether the agent changes anything in this mode: redefines
// domains, runs guest steps and QMP checks.
func (m Mode) Acts() bool { return m != ModeObserve }

// OnError says what the hook does in enforce mode when virtmq itself fails
// (bad policy, unreadable XML).
type OnError string

// Error behaviours.
const (
	OnErrorAllow OnError = "allow"
	OnErrorDeny  OnError = "deny"
)

// Hard limits applied whatever the policy says.
const (
	// MaxTapQueues is the kernel's limit of queues per tap device
	// (drivers/net/tun.c MAX_TAP_QUEUES); beyond it the start fails with E2BIG.
	MaxTapQueues = 256
)

// Plan is the decision for one domain.
type Plan struct {
	Domain  string
	Mode    Mode
	OnError OnError
	// Mode is the policy's mode, or less for an orchestrator's domain
	// the policy opts in (see OrchestratorMode): what the agent and the
	// hook do about this domain.
	//
	// Skip says why virtmq leaves the whole domain alone (a domain type
	// other than qemu or kvm, the domain's exclude label, an orchestrator
	// that owns it); empty when the
	// NICs were decided one by one. Every NIC then carries the same reason.
	Skip string
	// Orchestrator is the Name of the orchestrator whose marker the domain
	// carries (see Orchestrator), whether the policy leaves the domain to
	// it (Skip says so) or opts it in; empty for other domains.
	Orchestrator string
	NICs         []NICPlan
	// Warnings are decisions worth a look that are not errors, e.g. a NIC
	// that ends below its rule's wish because the domain's budget is
	// shared; `virtmq plan` prints them.
	Warnings []string
	// ApplyAt says when a running domain gets the new queue counts:
	// ApplyNextReboot when the settings of any managed NIC ask for it (one
	// cold boot applies every NIC), else ApplyColdBoot; empty when no NIC
	// is managed.
	ApplyAt ApplyAt
}

// NICPlan is the decision for one <interface>.
type NICPlan struct {
	// Index, MAC, Type and Model identify the NIC (copied from the facts).
	Index int
	MAC   string
	Type  string
	Model string
	// Current is the queue count the definition has now (1 when absent).
	Current int
	// Wanted is N, the queue count the policy wants; equal to Current when
	// the NIC is skipped or excluded.
	Wanted int
	// Managed reports whether virtmq manages this NIC at all (false when
	// excluded, kept, or skipped because the NIC cannot do multiqueue).
	Managed bool
	// Kept reports a NIC left alone because its queue count was set by
	// hand (virtmq's record does not say it wrote it) and the rule says
	// hand_set: keep.
	Kept bool
	// GuestStep reports whether the agent sets the guest's combined count.
	GuestStep bool
	// Combined is M, the in-guest combined channel count (0 when GuestStep is false).
	Combined int
	// Rule is the name of the rule that decided ("defaults" when none
	// matched); empty when the NIC was skipped before rules apply (it cannot
	// do multiqueue).
	Rule string
	// Reason explains the number: the source of N and each cap that applied,
	// or why the NIC is skipped.
	Reason string
}

// Change reports whether the definition must be rewritten for this NIC.
func (n NICPlan) Change() bool { return n.Managed && n.Wanted != n.Current }

// Compliant reports whether no NIC of the plan needs a change.
func (p Plan) Compliant() bool {
	for _, n := range p.NICs {
		if n.Change() {
			return false
		}
	}
	return true
}

// Queues returns the rewrite input of domxml.Apply: the wanted count of
// each NIC that must change, by interface index.
func (p Plan) Queues() map[int]int {
	q := map[int]int{}
	for _, n := range p.NICs {
		if n.Change() {
			q[n.Index] = n.Wanted
		}
	}
	return q
}

package policy

import (
	"math"
	"strconv"
)

// Policy is a validated policy: the merge of a main file and its drop-ins.
// It is immutable once built, so one value can serve concurrent Decide calls.
type Policy struct {
	mode     Mode
	onError  OnError
	defaults Settings
	// rules are in evaluation order: drop-in rules first, then the main file's.
	rules []Rule
	// orchestrators has the orchestrators a file set, by name; the others
	// are left alone (OrchestratorLeave).
	orchestrators map[string]OrchestratorMode
	sources       []string
	warnings      ErrorList
}

// Mode returns what the agent and the hook do about a non-compliant
// domain (see Mode); an alias of an earlier release is already resolved.
func (p *Policy) Mode() Mode { return p.mode }

// Warnings returns what `virtmq lint` reports as warnings: things that are
// valid but probably not what the author meant (a mode of an earlier
// release, a rule that can never match, a number written in hexadecimal,
// a limit no domain can reach), and a note on rules that match only
// through libosinfo metadata. Each is located like an error, in file
// order; Msg starts with "warning: " or "note: ".
func (p *Policy) Warnings() []*Error { return append([]*Error(nil), p.warnings...) }

// OnError returns what the hook does in enforce mode when virtmq fails.
func (p *Policy) OnError() OnError { return p.onError }

// Defaults returns the merged default settings (built-in defaults
// overridden by the main file, then by each drop-in).
func (p *Policy) Defaults() Settings { return p.defaults }

// Rules returns the rules in evaluation order (drop-in rules first). The
// Match values share memory with the policy and must not be modified.
func (p *Policy) Rules() []Rule { return append([]Rule(nil), p.rules...) }

// Sources lists the files the policy was built from, in the order they were
// read: the main file, then each drop-in; "(embedded default)" for Default.
func (p *Policy) Sources() []string { return append([]string(nil), p.sources...) }

// Settings are the knobs that decide N and M for a NIC. Every field has a
// built-in default (see builtinSettings), so a policy may set none of them.
type Settings struct {
	// Queues is where N starts.
	Queues QueuesSetting
	// Min is the floor for N.
	Min int
	// Max is the cap for N (at most MaxTapQueues).
	Max int
	// MinVCPUs: domains with fewer maximum vCPUs are left alone.
	MinVCPUs int
	// Budget is the most queues a domain gets across its managed NICs;
	// 0 means unlimited.
	Budget int
	// AllowAboveVCPUs allows N above the domain's maximum vCPUs.
	AllowAboveVCPUs bool
	// GuestStep reports whether the agent runs ethtool -L in the guest.
	GuestStep bool
	// Combined is where M, the in-guest combined channel count, comes from.
	Combined CombinedSetting
	// AllowVHostUser opts vhost-user NICs in. They are left alone by
	// default: QEMU refuses to start a domain whose vhost-user backend
	// (OVS-DPDK, passt, snabb, ...) supports fewer queues than asked, and
	// virtmq cannot see the backend's limit.
	AllowVHostUser bool
	// HandSet says what happens to a queue count virtmq did not write
	// (a person's <driver queues='1'/> on a firewall appliance): keep it
	// (the default) or override it.
	HandSet HandSet
	// ApplyAt says when a running domain that is pending a cold boot gets
	// its new queue count: at the next cold boot someone makes, or at the
	// guest's next reboot, which virtmq-agent turns into a cold boot.
	ApplyAt ApplyAt
}

// HandSet is the value of `hand_set`.
type HandSet string

// What Decide does with a queue count virtmq did not write.
const (
	HandSetKeep     HandSet = "keep"     // leave it, report "kept: set by hand"
	HandSetOverride HandSet = "override" // decide as if it were not there
)

// ApplyAt is the value of `apply_at`.
type ApplyAt string

// When a running domain gets a new queue count.
const (
	// ApplyColdBoot waits for someone to shut the domain down and start it.
	ApplyColdBoot ApplyAt = "cold-boot"
	// ApplyNextReboot makes the guest's next reboot a cold boot (the agent
	// stops the domain at the reset and starts it again).
	ApplyNextReboot ApplyAt = "next-reboot"
)

// builtinSettings are the defaults when no file sets a key. They are the
// values docs/policy.md documents; change both together.
func builtinSettings() Settings {
	return Settings{
		Queues:    QueuesSetting{Kind: QueuesVCPUs},
		Min:       1,
		Max:       8,
		MinVCPUs:  2,
		Budget:    64,
		GuestStep: true,
		Combined:  CombinedSetting{Kind: CombinedQueues},
		HandSet:   HandSetKeep,
		ApplyAt:   ApplyNextReboot,
	}
}

// QueuesKind says how a queues setting computes N from the domain.
type QueuesKind int

// Kinds of queues settings.
const (
	QueuesFixed   QueuesKind = iota // N is the integer N
	QueuesVCPUs                     // N is the maximum vCPU count
	QueuesDivided                   // N is vCPUs / N, rounded down, at least 1
	QueuesPercent                   // N is N% of vCPUs, rounded down, at least 1
)

// QueuesSetting is the parsed value of `queues`.
type QueuesSetting struct {
	Kind QueuesKind
	// N is the count (QueuesFixed), the divisor (QueuesDivided) or the
	// percentage (QueuesPercent); unused for QueuesVCPUs.
	N int
}

// String returns the setting as written in the policy: "8", "vcpus",
// "vcpus/2" or "50%".
func (q QueuesSetting) String() string { return string(q.appendTo(nil)) }

func (q QueuesSetting) appendTo(b []byte) []byte {
	switch q.Kind {
	case QueuesVCPUs:
		return append(b, "vcpus"...)
	case QueuesDivided:
		return strconv.AppendInt(append(b, "vcpus/"...), int64(q.N), 10)
	case QueuesPercent:
		return append(strconv.AppendInt(b, int64(q.N), 10), '%')
	default:
		return strconv.AppendInt(b, int64(q.N), 10)
	}
}

// eval computes N from the maximum vCPU count, before any cap.
func (q QueuesSetting) eval(vcpus int) int {
	n := q.N
	switch q.Kind {
	case QueuesVCPUs:
		n = vcpus
	case QueuesDivided:
		if q.N > 0 {
			n = vcpus / q.N
		}
	case QueuesPercent:
		// Widen so that a huge hand-built value cannot overflow.
		n = int(min(int64(vcpus)*int64(q.N)/100, math.MaxInt32))
	}
	return max(n, 1)
}

// CombinedKind says how a combined setting computes M.
type CombinedKind int

// Kinds of combined settings.
const (
	CombinedQueues CombinedKind = iota // M is N
	CombinedVCPUs                      // M is the vCPUs online (<vcpu current=>; then capped at N)
	CombinedFixed                      // M is the integer N (then capped at N queues)
)

// CombinedSetting is the parsed value of `combined`.
type CombinedSetting struct {
	Kind CombinedKind
	// N is the count for CombinedFixed.
	N int
}

// String returns the setting as written in the policy: "queues", "vcpus" or "4".
func (c CombinedSetting) String() string {
	switch c.Kind {
	case CombinedQueues:
		return "queues"
	case CombinedVCPUs:
		return "vcpus"
	default:
		return strconv.Itoa(c.N)
	}
}

// eval computes M from N and the vCPUs online: never above N, at least 1.
func (c CombinedSetting) eval(n, online int) int {
	m := n
	switch c.Kind {
	case CombinedVCPUs:
		m = online
	case CombinedFixed:
		m = c.N
	}
	return max(min(m, n), 1)
}

// Rule is one entry of `rules`.
type Rule struct {
	// Name is unique across all files of the policy.
	Name string
	// Source is where the rule starts, "FILE:LINE:COL".
	Source string
	// Match holds the conditions; all must hold.
	Match Match
	// Exclude makes virtmq leave matching NICs alone.
	Exclude bool
	// Settings are the effective settings for the NICs this rule decides:
	// the merged defaults overridden by the rule's set.
	Settings Settings

	// excludeReason is built once so Decide does not allocate it per NIC.
	excludeReason string
}

// Match holds a rule's conditions. A nil field is no condition; a list
// holds if any of its entries does. Domain-level fields (Domain, VCPUs, OS,
// Labels) are tested against the domain, NIC-level ones (NICType, Network,
// Bridge, MACPrefix) against each interface.
type Match struct {
	// Domain are globs (path.Match) on the domain name.
	Domain []string
	// VCPUs are ranges of the maximum vCPU count.
	VCPUs []Range
	// OS are globs on the libosinfo OS id; a domain without one never matches.
	OS []string
	// Labels maps a virtmq label key to globs on its value; the key must exist.
	Labels map[string][]string
	// NICType are interface types (exact).
	NICType []string
	// Network are globs on <source network>; an empty source never matches.
	Network []string
	// Bridge are globs on <source bridge>; an empty source never matches.
	Bridge []string
	// MACPrefix are lower-case MAC prefixes.
	MACPrefix []string
}

// Range is an inclusive range of integers; Max is math.MaxInt when open.
type Range struct {
	Min, Max int
}

// Contains reports whether n is in the range.
func (r Range) Contains(n int) bool { return n >= r.Min && n <= r.Max }

// String returns the range as written in the policy: "4", "4-16", "4-" or "-16".
func (r Range) String() string {
	switch {
	case r.Min == r.Max:
		return strconv.Itoa(r.Min)
	case r.Max == math.MaxInt:
		return strconv.Itoa(r.Min) + "-"
	case r.Min == 0:
		return "-" + strconv.Itoa(r.Max)
	default:
		return strconv.Itoa(r.Min) + "-" + strconv.Itoa(r.Max)
	}
}

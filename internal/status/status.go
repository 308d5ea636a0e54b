// Package status defines the agent's per-domain, per-NIC state as JSON and
// serves it on a unix socket: a client connects, reads one JSON document,
// and the server closes the connection. `virtmq status` is such a client.
package status

import "time"

// Domain compliance states.
const (
	StateCompliant       = "compliant"         // definition and running config match the policy
	StateRewritten       = "rewritten"         // the agent redefined it; applies at next start
	StatePendingColdBoot = "pending-cold-boot" // running with fewer/more queues than its (rewritten) definition
	StateTransient       = "transient"         // transient and non-compliant: only the hook can act (log, or refuse in mode enforce)
	StateUnmanaged       = "unmanaged"         // no NIC the policy manages
	StateRetrying        = "retrying"          // a libvirt call failed for a transient reason (timeout, busy daemon); retried with backoff
	StateError           = "error"             // the agent could not read or redefine it, and will not retry by itself
	// StateWouldRedefine: mode observe, and the definition differs from
	// the policy: the agent would redefine it in mode apply (Domain.Would
	// says how).
	StateWouldRedefine = "would-redefine"
)

// FormatVersion is the format_version of the Snapshot's JSON: it changes
// only when a field changes meaning or goes away (docs/json.md).
const FormatVersion = 1

// Snapshot is the whole state the agent serves.
type Snapshot struct {
	// FormatVersion is FormatVersion; 0 from agents older than the field,
	// whose snapshot has the shape of version 1.
	FormatVersion int       `json:"format_version"`
	Generated     time.Time `json:"generated"`
	Version       string    `json:"version"`
	Libvirt       Libvirt   `json:"libvirt"`
	Policy        Policy    `json:"policy"`
	Domains       []Domain  `json:"domains"`
}

// Libvirt is the agent's connection state.
type Libvirt struct {
	Connected  bool      `json:"connected"`
	Socket     string    `json:"socket,omitempty"`
	Since      time.Time `json:"since,omitzero"`
	Reconnects int       `json:"reconnects"`
	LastError  string    `json:"last_error,omitempty"`
}

// Policy says which policy is in force.
type Policy struct {
	Sources  []string  `json:"sources"`
	Mode     string    `json:"mode"`
	LoadedAt time.Time `json:"loaded_at"`
	// Digest identifies what the policy in force decides (policy.Policy.Digest):
	// hosts with the same digest decide the same.
	Digest string `json:"digest,omitempty"`
	// LastReloadError is set when the last SIGHUP reload failed and the
	// previous policy stayed in force.
	LastReloadError string `json:"last_reload_error,omitempty"`
}

// Domain is one domain's state.
type Domain struct {
	Name       string    `json:"name"`
	UUID       string    `json:"uuid"`
	Persistent bool      `json:"persistent"`
	Active     bool      `json:"active"`
	State      string    `json:"state"`
	LastAction string    `json:"last_action,omitempty"`
	LastAt     time.Time `json:"last_action_at,omitzero"`
	Problem    string    `json:"problem,omitempty"`
	// Attempts and RetryAt are set in state retrying: how many tries in
	// a row failed, and when the next one is due.
	Attempts int       `json:"attempts,omitempty"`
	RetryAt  time.Time `json:"retry_at,omitzero"`
	// Would is set in mode observe: what the agent would do to the domain
	// in mode apply and does not, one action per entry, e.g.
	// "redefine: 52:54:00:00:00:01 1→4 queues" or
	// "guest step: set combined 4 on 52:54:00:00:00:01".
	Would []string `json:"would,omitempty"`
	// Warnings are the plan's decisions worth a look that are not
	// problems (policy.Plan.Warnings), e.g. a NIC the domain's queue
	// budget holds below its rule's wish.
	Warnings []string `json:"warnings,omitempty"`
	// Orchestrator names the stack that defines the domain (policy.Plan.Orchestrator:
	// nova, ovirt, ...), and OrchestratorMode what virtmq does to it
	// because of that: leave (nothing; Problem says why and names the
	// stack's own setting), observe or apply. Both are empty for other
	// domains.
	Orchestrator     string `json:"orchestrator,omitempty"`
	OrchestratorMode string `json:"orchestrator_mode,omitempty"`
	NICs             []NIC  `json:"nics"`

	// StateSince is when the domain entered State; zero when unknown.
	StateSince time.Time `json:"state_since,omitzero"`
}

// NIC is one interface's state. Zero counts mean unknown.
type NIC struct {
	MAC     string `json:"mac"`
	Managed bool   `json:"managed"`
	Wanted  int    `json:"wanted_queues"`
	Defined int    `json:"defined_queues"`
	Running int    `json:"running_queues,omitempty"`
	// QMPVirtqueues is num-vqs from x-query-virtio-status (2N+1).
	QMPVirtqueues int `json:"qmp_virtqueues,omitempty"`
	// MQ reports whether the guest negotiated VIRTIO_NET_F_MQ.
	MQ   bool   `json:"mq_negotiated,omitempty"`
	Rule string `json:"rule,omitempty"`
	// Reason is the policy's reason for the decision (policy.NICPlan.Reason):
	// how the wanted count was reached, or why the NIC is left alone.
	Reason string `json:"reason,omitempty"`
	// Kept says the NIC keeps a queue count a person set (hand_set: keep);
	// Reason then reads "kept: set by hand (rule R says keep)".
	Kept         bool   `json:"kept,omitempty"`
	GuestIfName  string `json:"guest_ifname,omitempty"`
	GuestWanted  int    `json:"guest_wanted,omitempty"`
	GuestCurrent int    `json:"guest_current,omitempty"`
	GuestMax     int    `json:"guest_max,omitempty"`
	// GuestStep is the last guest step outcome: done, skipped, or the reason it could not run.
	GuestStep string    `json:"guest_step,omitempty"`
	GuestAt   time.Time `json:"guest_at,omitzero"`
	Problem   string    `json:"problem,omitempty"`

	// TargetDevice is the host side of the NIC, <target dev> in the live
	// XML (the tap, e.g. vnet3); empty while the domain is not running or
	// while the reconcile loop does not fill it in.
	TargetDevice string `json:"target_device,omitempty"`
}

package guest

import (
	"context"
	"errors"
)

// Reason says why a guest step (Configure) or check (Inspect) could not be
// done, as a short fixed label: the values of the agent's
// virtmq_guest_step_failures_total{reason} and of its status, and what
// `virtmq verify` skips on. The set is fixed so that the label stays bounded.
type Reason string

// The reasons, from what the guest says to what went wrong on the way.
const (
	ReasonNoAgent      Reason = "no_agent"         // qemu-ga is not connected
	ReasonExecDisabled Reason = "exec_disabled"    // qemu-ga's allow-list excludes guest-exec
	ReasonCmdDisabled  Reason = "command_disabled" // another command virtmq needs is disabled
	ReasonNotLinux     Reason = "not_linux"        // no ethtool -L to run
	ReasonNoEthtool    Reason = "no_ethtool"       // Linux without ethtool
	ReasonNoInterface  Reason = "no_interface"     // no guest interface has the NIC's MAC (yet)
	ReasonDenied       Reason = "denied"           // permission or SELinux denial
	ReasonAboveMax     Reason = "above_max"        // M is above the guest's maximum
	ReasonTimeout      Reason = "timeout"          // the guest did not answer in time
	ReasonBudget       Reason = "budget"           // the guest made the step send too many commands
	ReasonLibvirt      Reason = "libvirt"          // libvirt is gone, or the domain (the caller tells)
	ReasonError        Reason = "error"            // anything else
)

// Reasons lists every Reason, in a stable order.
var Reasons = []Reason{
	ReasonNoAgent, ReasonExecDisabled, ReasonCmdDisabled, ReasonNotLinux, ReasonNoEthtool,
	ReasonNoInterface, ReasonDenied, ReasonAboveMax, ReasonTimeout, ReasonBudget, ReasonLibvirt, ReasonError,
}

// Class is what a Reason means for the caller.
type Class struct {
	Reason Reason
	// DomainWide is true when the reason holds for every NIC of the
	// domain: the caller asks no more for its other NICs.
	DomainWide bool
	// Transient is true when another attempt later may succeed (a timeout,
	// a NIC not up yet, an unknown error). The reasons the guest gives
	// (guest-exec disabled, no ethtool, ...) are final: retrying them
	// would only taint the domain and fill the logs. A guest agent that is
	// not connected is not retried either: its connect event brings the
	// next attempt.
	Transient bool
	// Skip is true when the reason is the guest's configuration, not a
	// failure: a check that cannot run says SKIP with it.
	Skip bool
}

// Classify returns the class of an error of Configure or Inspect. An error
// of the libvirt connection underneath is the caller's to recognise
// (ReasonLibvirt): this package does not know libvirt.
func Classify(err error) Class {
	switch {
	case err == nil:
		return Class{}
	case errors.Is(err, ErrExecDisabled):
		return Class{Reason: ReasonExecDisabled, DomainWide: true, Skip: true}
	case errors.Is(err, ErrCommandDisabled):
		return Class{Reason: ReasonCmdDisabled, DomainWide: true, Skip: true}
	case errors.Is(err, ErrNotLinux):
		return Class{Reason: ReasonNotLinux, DomainWide: true, Skip: true}
	case errors.Is(err, ErrNoAgent):
		return Class{Reason: ReasonNoAgent, DomainWide: true, Skip: true}
	case errors.Is(err, ErrNoEthtool):
		return Class{Reason: ReasonNoEthtool, Skip: true}
	case errors.Is(err, ErrDenied):
		return Class{Reason: ReasonDenied, Skip: true}
	case errors.Is(err, ErrAboveMax):
		return Class{Reason: ReasonAboveMax, Skip: true}
	case errors.Is(err, ErrNoInterface):
		// Early in boot the NIC may not be up yet.
		return Class{Reason: ReasonNoInterface, Transient: true, Skip: true}
	case errors.Is(err, ErrBudget):
		return Class{Reason: ReasonBudget, DomainWide: true, Transient: true}
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return Class{Reason: ReasonTimeout, DomainWide: true, Transient: true, Skip: true}
	}
	return Class{Reason: ReasonError, Transient: true}
}

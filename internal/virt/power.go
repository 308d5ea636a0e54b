package virt

import (
	"context"
	"fmt"

	"github.com/digitalocean/go-libvirt"
)

// DomainState is a domain's run state (virDomainGetState), as far as
// virtmq cares.
type DomainState int

// Domain states.
const (
	StateOther   DomainState = iota // anything else (crashed, pmsuspended, ...)
	StateRunning                    // running (or blocked)
	StatePaused                     // paused (suspended, or during a save or migration)
	StateShutoff                    // shut off
)

// String returns the state's name, for logs.
func (s DomainState) String() string {
	switch s {
	case StateRunning:
		return "running"
	case StatePaused:
		return "paused"
	case StateShutoff:
		return "shut off"
	}
	return "other"
}

// Power starts, stops, pauses and resumes domains: apply --cold-boot's
// rolling restart, and the agent turning a guest's reboot into a cold boot
// (apply_at: next-reboot: pause the domain at its reset, stop it, start it
// again from its definition; without RebootEvents that falls back to
// cold-boot).
type Power interface {
	// StartDomain starts (cold boots) a persistent domain that is shut off
	// (virDomainCreateWithFlags with VIR_DOMAIN_START_FORCE_BOOT: a managed
	// save image is discarded, never restored with the old queues). It
	// returns once QEMU runs, not when the guest has booted.
	StartDomain(ctx context.Context, d Domain) error
	// ShutdownDomain asks the guest to power off by pressing the ACPI power
	// button (virDomainShutdownFlags with VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN).
	// It returns at once: the domain stops when (and if) the guest obeys;
	// watch for EventStopped or look the domain up.
	ShutdownDomain(ctx context.Context, d Domain) error
	// DestroyDomain forces a running domain off (virDomainDestroy: the
	// QEMU process is killed, the guest gets no say), like pulling the plug.
	DestroyDomain(ctx context.Context, d Domain) error
	// SuspendDomain pauses the domain's vCPUs (virDomainSuspend).
	SuspendDomain(ctx context.Context, d Domain) error
	// ResumeDomain undoes SuspendDomain (virDomainResume).
	ResumeDomain(ctx context.Context, d Domain) error
	// DomainState returns the domain's run state.
	DomainState(ctx context.Context, d Domain) (DomainState, error)
	// RebootEvents reports whether the last Events call also subscribed
	// to libvirt's REBOOT events (EventRebooted).
	RebootEvents() bool
}

var _ Power = (*libvirtConn)(nil)

// RebootEvents implements Power.
func (c *libvirtConn) RebootEvents() bool { return c.rebootEvents.Load() }

// DomainState implements Power.
func (c *libvirtConn) DomainState(ctx context.Context, d Domain) (DomainState, error) {
	ld, err := c.ref(ctx, d)
	if err != nil {
		return StateOther, fmt.Errorf("failed to look up domain %q: %w", d.Name, err)
	}
	st, err := call(ctx, c, func() (int32, error) {
		s, _, err := c.l.DomainGetState(ld, 0)
		return s, err
	})
	if err != nil {
		return StateOther, fmt.Errorf("failed to get the state of domain %q: %w", d.Name, err)
	}
	switch libvirt.DomainState(st) {
	case libvirt.DomainRunning, libvirt.DomainBlocked:
		return StateRunning, nil
	case libvirt.DomainPaused:
		return StatePaused, nil
	case libvirt.DomainShutoff:
		return StateShutoff, nil
	}
	return StateOther, nil
}

func (c *libvirtConn) power(ctx context.Context, d Domain, what string, f func(libvirt.Domain) error) error {
	ld, err := c.ref(ctx, d)
	if err != nil {
		return fmt.Errorf("failed to look up domain %q: %w", d.Name, err)
	}
	if _, err := call(ctx, c, func() (struct{}, error) { return struct{}{}, f(ld) }); err != nil {
		return fmt.Errorf("failed to %s domain %q: %w", what, d.Name, stateErr(err))
	}
	return nil
}

// SuspendDomain implements Power.
func (c *libvirtConn) SuspendDomain(ctx context.Context, d Domain) error {
	return c.power(ctx, d, "suspend", c.l.DomainSuspend)
}

// ResumeDomain implements Power.
func (c *libvirtConn) ResumeDomain(ctx context.Context, d Domain) error {
	return c.power(ctx, d, "resume", c.l.DomainResume)
}

// DestroyDomain implements Power.
func (c *libvirtConn) DestroyDomain(ctx context.Context, d Domain) error {
	return c.power(ctx, d, "destroy", func(ld libvirt.Domain) error { return c.l.DomainDestroyFlags(ld, 0) })
}

// StartDomain implements Power.
func (c *libvirtConn) StartDomain(ctx context.Context, d Domain) error {
	return c.power(ctx, d, "start", func(ld libvirt.Domain) error {
		_, err := c.l.DomainCreateWithFlags(ld, uint32(libvirt.DomainStartForceBoot))
		return err
	})
}

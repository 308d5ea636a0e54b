package virttest

import (
	"bytes"
	"context"
	"fmt"
	"regexp"

	"github.com/virtmq/virtmq/internal/virt"
)

// Method names of the virt.Power calls, for FailNext and Calls.
const (
	MethodDomainState   = "DomainState"
	MethodSuspendDomain = "SuspendDomain"
	MethodResumeDomain  = "ResumeDomain"
)

var _ virt.Power = (*Conn)(nil)

// SetRebootEvents sets what RebootEvents reports (default true), as a
// daemon that refused the REBOOT event subscription would.
func (c *Conn) SetRebootEvents(ok bool) {
	c.d.mu.Lock()
	c.d.noReboot = !ok
	c.d.mu.Unlock()
}

// RebootEvents implements virt.Power.
func (c *Conn) RebootEvents() bool {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	return !c.d.noReboot
}

// powerCall runs f on the domain v names with d.mu held, counting the call
// and taking its fault; f returns the event to emit after (Kind 0: none).
func (c *Conn) powerCall(ctx context.Context, method string, v virt.Domain, f func(x *domain) (virt.EventKind, error)) error {
	if err := c.begin(ctx, method); err != nil {
		c.end(method, v, err)
		return err
	}
	c.d.mu.Lock()
	x := c.d.findDomain(v)
	if x == nil {
		c.d.mu.Unlock()
		err := notFound(v.Name)
		c.end(method, v, err)
		return err
	}
	kind, err := f(x)
	ev := virt.Event{Kind: kind, Domain: virt.Domain{Name: x.name, UUID: x.uuid}}
	c.d.mu.Unlock()
	if err == nil && kind != virt.EventOther {
		c.d.emit(ev)
	}
	c.end(method, v, err)
	return err
}

// invalidState is libvirt's VIR_ERR_OPERATION_INVALID wording, which the
// real Conn marks with virt.ErrInvalidState.
func invalidState(name, what string) error {
	return fmt.Errorf("%w: Requested operation is not valid: domain %q %s", virt.ErrInvalidState, name, what)
}

// errNotRunning is invalidState for a domain that is not running.
func errNotRunning(name string) error { return invalidState(name, "is not running") }

// DomainState implements virt.Power.
func (c *Conn) DomainState(ctx context.Context, v virt.Domain) (virt.DomainState, error) {
	st := virt.StateOther
	err := c.powerCall(ctx, MethodDomainState, v, func(x *domain) (virt.EventKind, error) {
		switch {
		case !x.active:
			st = virt.StateShutoff
		case x.paused:
			st = virt.StatePaused
		default:
			st = virt.StateRunning
		}
		return virt.EventOther, nil
	})
	return st, err
}

// SuspendDomain implements virt.Power. (libvirt emits SUSPENDED, which the
// agent does not look at: no event here.)
func (c *Conn) SuspendDomain(ctx context.Context, v virt.Domain) error {
	return c.setPaused(ctx, MethodSuspendDomain, v, true)
}

// ResumeDomain implements virt.Power.
func (c *Conn) ResumeDomain(ctx context.Context, v virt.Domain) error {
	return c.setPaused(ctx, MethodResumeDomain, v, false)
}

// setPaused pauses or resumes a running domain's vCPUs.
func (c *Conn) setPaused(ctx context.Context, method string, v virt.Domain, paused bool) error {
	return c.powerCall(ctx, method, v, func(x *domain) (virt.EventKind, error) {
		if !x.active {
			return 0, errNotRunning(x.name)
		}
		x.paused = paused
		return virt.EventOther, nil
	})
}

// DestroyDomain implements virt.Power: like Stop, emitting EventStopped.
func (c *Conn) DestroyDomain(ctx context.Context, v virt.Domain) error {
	return c.powerCall(ctx, MethodDestroyDomain, v, func(x *domain) (virt.EventKind, error) {
		if !x.active {
			return 0, errNotRunning(x.name)
		}
		c.d.stopLocked(x)
		return virt.EventStopped, nil
	})
}

// StartDomain implements virt.Power: a forced boot from the definition
// (a managed save image is discarded), emitting EventStarted.
func (c *Conn) StartDomain(ctx context.Context, v virt.Domain) error {
	return c.powerCall(ctx, MethodStartDomain, v, func(x *domain) (virt.EventKind, error) {
		switch {
		case x.active:
			return 0, invalidState(x.name, "is already running")
		case !x.persistent:
			return 0, notFound(x.name)
		}
		x.active, x.paused, x.saved = true, false, nil
		x.live = c.d.liveXML(x.inactive)
		return virt.EventStarted, nil
	})
}

// ShutdownDomain implements virt.Conn like virDomainShutdownFlags with the
// ACPI power button: the call returns at once and the guest powers off
// afterwards, in its own time (a goroutine stops the domain, emitting
// EventStopped), unless SetIgnoreACPI made it deaf. A shut-off domain gives
// virt.ErrInvalidState, and so does a paused one, which stays paused (seen
// on libvirt 9.0 for every shutdown mode: "Requested operation is not
// valid: domain is not running"; a later resume does not shut it down).
func (c *Conn) ShutdownDomain(ctx context.Context, v virt.Domain) error {
	return c.powerCall(ctx, MethodShutdownDomain, v, func(x *domain) (virt.EventKind, error) {
		if !x.active || x.paused {
			return 0, errNotRunning(x.name)
		}
		if name := x.name; !c.d.deafACPI[name] {
			go func() { _ = c.Stop(name) }()
		}
		return virt.EventOther, nil
	})
}

// Paused reports whether a domain is suspended.
func (c *Conn) Paused(name string) bool {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	x := c.d.find(name)
	return x != nil && x.active && x.paused
}

// Active reports whether a domain runs (or is paused).
func (c *Conn) Active(name string) bool {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	x := c.d.find(name)
	return x != nil && x.active
}

// GuestReboot resets a running domain as a guest `reboot`, `virsh reboot`
// (through qemu-ga, or ACPI with libvirt's fake reboot) or `virsh reset`
// do: the same QEMU process goes on with the same devices (the live XML
// is unchanged), and libvirt emits its REBOOT event twice, as seen on
// libvirt 9.0 / QEMU 7.2 (about 40 ms apart).
func (c *Conn) GuestReboot(name string) error {
	c.d.mu.Lock()
	x := c.d.find(name)
	if x == nil || !x.active {
		c.d.mu.Unlock()
		return errNotRunning(name)
	}
	ev := virt.Event{Kind: virt.EventRebooted, Domain: virt.Domain{Name: x.name, UUID: x.uuid}}
	c.d.mu.Unlock()
	c.d.emit(ev)
	c.d.emit(ev)
	return nil
}

// GuestPoweroff is a guest `poweroff` or `virsh shutdown`: the domain
// stops (EventStopped), unless its definition says
// <on_poweroff>restart</on_poweroff>: then libvirt takes its fake reboot
// path (reset and go on, in the same QEMU process), which emits REBOOT.
func (c *Conn) GuestPoweroff(name string) error {
	c.d.mu.Lock()
	x := c.d.find(name)
	if x == nil || !x.active {
		c.d.mu.Unlock()
		return errNotRunning(name)
	}
	restart := bytes.Contains(x.live, []byte("<on_poweroff>restart</on_poweroff>"))
	c.d.mu.Unlock()
	if restart {
		return c.GuestReboot(name)
	}
	return c.Stop(name)
}

// ManagedSave saves a running domain (virsh managedsave, libvirt-guests
// suspend): it stops (EventStopped), and the next plain Start restores
// the live XML it ran with, old queues included. StartDomain discards it.
func (c *Conn) ManagedSave(name string) error {
	c.d.mu.Lock()
	x := c.d.find(name)
	if x == nil || !x.active || !x.persistent {
		c.d.mu.Unlock()
		return errNotRunning(name)
	}
	saved := bytes.Clone(x.live)
	c.d.mu.Unlock()
	if err := c.Stop(name); err != nil {
		return err
	}
	c.d.mu.Lock()
	if x := c.d.find(name); x != nil {
		x.saved = saved
	}
	c.d.mu.Unlock()
	return nil
}

// SetIgnoreACPI makes the named domain's guest ignore (deaf true) or obey
// ShutdownDomain, like a guest without ACPI support or one stuck in its
// boot loader.
func (c *Conn) SetIgnoreACPI(name string, deaf bool) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if c.d.deafACPI == nil {
		c.d.deafACPI = map[string]bool{}
	}
	c.d.deafACPI[name] = deaf
}

var devicesEnd = regexp.MustCompile(`</devices>`)

// AttachInterface hot-plugs an <interface> (iface, as given to virsh
// attach-device) like libvirt 9.0 does: live adds it to the running
// domain's live XML (with a tap name and the next alias netK) and emits
// EventDeviceAdded, and nothing else; config adds it to the persistent
// definition, with no event at all (not even DEFINED: seen on the real
// stack for attach-interface --config, with or without --live).
func (c *Conn) AttachInterface(name string, iface []byte, live, config bool) error {
	c.d.mu.Lock()
	x := c.d.find(name)
	if x == nil {
		c.d.mu.Unlock()
		return notFound(name)
	}
	if live && !x.active {
		c.d.mu.Unlock()
		return invalidState(name, "is not running")
	}
	alias := ""
	if live {
		n := bytes.Count(x.live, []byte("<interface "))
		c.d.nextID++
		alias = fmt.Sprintf("net%d", n)
		dev := bytes.Replace(iface, []byte("</interface>"),
			[]byte(fmt.Sprintf("<target dev='vnet%d'/><alias name='%s'/></interface>", c.d.nextID, alias)), 1)
		x.live = insertDevice(x.live, dev)
	}
	if config && x.persistent {
		x.inactive = insertDevice(x.inactive, iface)
	}
	v := virt.Domain{Name: x.name, UUID: x.uuid}
	c.d.mu.Unlock()
	if live {
		c.d.emit(virt.Event{Kind: virt.EventDeviceAdded, Domain: v, Alias: alias})
	}
	return nil
}

func insertDevice(doc, dev []byte) []byte {
	loc := devicesEnd.FindIndex(doc)
	if loc == nil {
		return doc
	}
	out := append([]byte{}, doc[:loc[0]]...)
	out = append(out, dev...)
	return append(out, doc[loc[0]:]...)
}

var vcpuElem = regexp.MustCompile(`<vcpu\b[^>]*>\s*(\d+)\s*</vcpu>`)

// SetLiveVCPUs changes a running domain's online vCPU count in its live
// XML (<vcpu current='n'>), like virsh setvcpus --live: libvirt emits no
// event for it.
func (c *Conn) SetLiveVCPUs(name string, n int) error {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	x := c.d.find(name)
	if x == nil || !x.active {
		return invalidState(name, "is not running")
	}
	m := vcpuElem.FindSubmatch(x.live)
	if m == nil {
		return fmt.Errorf("domain %q has no <vcpu>", name)
	}
	repl := fmt.Sprintf("<vcpu placement='static' current='%d'>%s</vcpu>", n, m[1])
	x.live = vcpuElem.ReplaceAll(x.live, []byte(repl))
	return nil
}

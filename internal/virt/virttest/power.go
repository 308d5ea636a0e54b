package virttest

import (
	"bytes"
	"context"
	"fmt"
	"regexp"

	"github.com/virtmq/virtmq/internal/virt"
)

// invalidState is libvirt's VIR_ERR_OPERATION_INVALID wording.
func invalidState(name, what string) error {
	return fmt.Errorf("%w: Requested operation is not valid: domain %q %s", virt.ErrInvalidState, name, what)
}

// StartDomain implements virt.Conn like virDomainCreate: a shut-off
// persistent domain starts (see Start); a running one gives
// virt.ErrInvalidState.
func (c *Conn) StartDomain(ctx context.Context, v virt.Domain) error {
	err := c.power(ctx, MethodStartDomain, v, func(x *domain) error {
		if x.active {
			return invalidState(x.name, "is already running")
		}
		return nil
	}, c.Start)
	c.end(MethodStartDomain, v, err)
	return err
}

// ShutdownDomain implements virt.Conn like virDomainShutdownFlags with the
// ACPI power button: the call returns at once and the guest powers off
// afterwards, in its own time (a goroutine stops the domain, emitting
// EventStopped), unless SetIgnoreACPI made it deaf. A shut-off domain gives
// virt.ErrInvalidState.
func (c *Conn) ShutdownDomain(ctx context.Context, v virt.Domain) error {
	err := c.power(ctx, MethodShutdownDomain, v, func(x *domain) error {
		if !x.active {
			return invalidState(x.name, "is not running")
		}
		return nil
	}, func(name string) error {
		c.d.mu.Lock()
		deaf := c.d.deafACPI[name]
		c.d.mu.Unlock()
		if !deaf {
			go func() { _ = c.Stop(name) }()
		}
		return nil
	})
	c.end(MethodShutdownDomain, v, err)
	return err
}

// DestroyDomain implements virt.Conn like virDomainDestroy: a running
// domain stops at once (EventStopped); a shut-off one gives
// virt.ErrInvalidState.
func (c *Conn) DestroyDomain(ctx context.Context, v virt.Domain) error {
	err := c.power(ctx, MethodDestroyDomain, v, func(x *domain) error {
		if !x.active {
			return invalidState(x.name, "is not running")
		}
		return nil
	}, c.Stop)
	c.end(MethodDestroyDomain, v, err)
	return err
}

// power runs a power operation: fault injection, lookup, the state check,
// then act on the domain's name.
func (c *Conn) power(ctx context.Context, method string, v virt.Domain, check func(*domain) error, act func(string) error) error {
	if err := c.begin(ctx, method); err != nil {
		return err
	}
	c.d.mu.Lock()
	x := c.d.findDomain(v)
	if x == nil {
		c.d.mu.Unlock()
		return notFound(v.Name)
	}
	name := x.name
	err := check(x)
	c.d.mu.Unlock()
	if err != nil {
		return err
	}
	return act(name)
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

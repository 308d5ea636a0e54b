package virt

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// DefaultSockets are the libvirt sockets Dial probes, in order: the modular
// QEMU driver daemon (virtqemud) first, then the monolithic libvirtd. Both
// may be socket-activated: the daemon starts on connect and exits when idle.
var DefaultSockets = []string{"/run/libvirt/virtqemud-sock", "/run/libvirt/libvirt-sock"}

// DefaultDialTimeout bounds connecting to one socket (including libvirt's
// handshake) when the context has no deadline.
const DefaultDialTimeout = 10 * time.Second

// Dial connects to the first of sockets that accepts a qemu:///system
// connection and returns the connection and the socket it used. A socket
// path that does not exist is skipped. When none works, the error joins
// every socket's error. The context bounds each attempt (DefaultDialTimeout
// when it has no deadline); cancelling it abandons the attempt.
func Dial(ctx context.Context, sockets []string) (Conn, string, error) {
	if len(sockets) == 0 {
		return nil, "", errors.New("no libvirt socket to connect to")
	}
	var errs socketErrors
	for _, p := range sockets {
		if err := ctx.Err(); err != nil {
			return nil, "", err
		}
		if _, err := os.Stat(p); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path is said once, below
			}
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		c, err := dialOne(ctx, func(timeout time.Duration) socket.Dialer {
			return dialers.NewLocal(dialers.WithSocket(p), dialers.WithLocalTimeout(timeout))
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			continue
		}
		return c, p, nil
	}
	return nil, "", fmt.Errorf("failed to connect to libvirt: %w", errs)
}

// socketErrors is why each socket Dial tried failed, said on one line:
// "/run/libvirt/virtqemud-sock: no such file or directory; /run/...".
type socketErrors []error

func (e socketErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e socketErrors) Unwrap() []error { return e }

// dialOne connects through the dialer newDialer returns for the attempt's
// timeout and makes libvirt's qemu:///system handshake on it.
func dialOne(ctx context.Context, newDialer func(timeout time.Duration) socket.Dialer) (*libvirtConn, error) {
	timeout := DefaultDialTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	l := libvirt.NewWithDialer(newDialer(timeout))
	done := make(chan error, 1)
	go func() { done <- l.ConnectToURI(libvirt.QEMUSystem) }()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case err := <-done:
		if err != nil {
			return nil, err
		}
	case <-tctx.Done():
		// The handshake hangs (a stuck daemon). Close it once it returns.
		go func() {
			if <-done == nil {
				_ = l.Disconnect()
			}
		}()
		return nil, fmt.Errorf("connect: %w", tctx.Err())
	}
	return &libvirtConn{l: l, disconnected: l.Disconnected()}, nil
}

// libvirtConn implements Conn with go-libvirt.
type libvirtConn struct {
	l *libvirt.Libvirt
	// disconnected is captured right after connecting: go-libvirt replaces
	// its channel on each ConnectToURI.
	disconnected <-chan struct{}
	// rebootEvents says the last Events call got the REBOOT events.
	rebootEvents atomic.Bool
}

var _ Conn = (*libvirtConn)(nil)

// call runs f, which cannot be cancelled (go-libvirt calls take no
// context), and returns early with ctx's error when ctx ends first; f then
// finishes in the background and its result is dropped.
func call[T any](ctx context.Context, c *libvirtConn, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, c.mapErr(r.err)
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// mapErr turns go-libvirt errors into this package's sentinels, keeping
// the original in the chain.
func (c *libvirtConn) mapErr(err error) error {
	if err == nil {
		return nil
	}
	var le libvirt.Error
	if errors.As(err, &le) {
		switch libvirt.ErrorNumber(le.Code) {
		case libvirt.ErrNoDomain:
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		case libvirt.ErrNoNetwork:
			return fmt.Errorf("%w: %w", ErrNoNetwork, err)
		case libvirt.ErrAgentUnresponsive:
			return fmt.Errorf("%w: %w", ErrAgentUnavailable, err)
		case libvirt.ErrAgentCommandTimeout:
			return fmt.Errorf("%w: %w", ErrTimeout, err)
		case libvirt.ErrOperationTimeout:
			return fmt.Errorf("%w: %w", ErrCallTimeout, err)
		case libvirt.ErrXMLError, libvirt.ErrXMLDetail, libvirt.ErrXMLInvalidSchema, libvirt.ErrConfigUnsupported:
			return fmt.Errorf("%w: %w", ErrInvalidDefinition, err)
		}
		if ae := agentError(le, err); ae != nil {
			return ae
		}
		return err
	}
	if errors.Is(err, libvirt.ErrInterrupted) || errors.Is(err, syscall.EINVAL) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) || c.isDisconnected() {
		return fmt.Errorf("%w: %w", ErrDisconnected, err)
	}
	return err
}

// agentMsg is how libvirt (qemuAgentCheckError) words a guest agent's
// error reply: VIR_ERR_INTERNAL_ERROR up to libvirt 9.x, then
// VIR_ERR_AGENT_COMMAND_FAILED.
const agentMsg = "unable to execute QEMU agent command '"

func agentError(le libvirt.Error, err error) *AgentError {
	code := libvirt.ErrorNumber(le.Code)
	if code != libvirt.ErrInternalError && code != libvirt.ErrAgentCommandFailed {
		return nil
	}
	_, rest, ok := strings.Cut(le.Message, agentMsg)
	if !ok {
		return nil
	}
	name, desc, ok := strings.Cut(rest, "': ")
	if !ok {
		name, _, _ = strings.Cut(rest, "'")
	}
	return &AgentError{Command: name, Desc: desc, Err: err}
}

func (c *libvirtConn) isDisconnected() bool {
	select {
	case <-c.disconnected:
		return true
	default:
		return false
	}
}

// ListDomains implements Conn. It makes three calls (all, active,
// transient) rather than two per domain.
func (c *libvirtConn) ListDomains(ctx context.Context) ([]Domain, error) {
	list := func(flags libvirt.ConnectListAllDomainsFlags) ([]libvirt.Domain, error) {
		return call(ctx, c, func() ([]libvirt.Domain, error) {
			ds, _, err := c.l.ConnectListAllDomains(1, flags)
			return ds, err
		})
	}
	all, err := list(libvirt.ConnectListDomainsActive | libvirt.ConnectListDomainsInactive)
	if err != nil {
		return nil, fmt.Errorf("failed to list domains: %w", err)
	}
	active, err := list(libvirt.ConnectListDomainsActive)
	if err != nil {
		return nil, fmt.Errorf("failed to list active domains: %w", err)
	}
	transient, err := list(libvirt.ConnectListDomainsTransient)
	if err != nil {
		return nil, fmt.Errorf("failed to list transient domains: %w", err)
	}
	isActive := map[libvirt.UUID]bool{}
	for _, d := range active {
		isActive[d.UUID] = true
	}
	isTransient := map[libvirt.UUID]bool{}
	for _, d := range transient {
		isTransient[d.UUID] = true
	}
	out := make([]Domain, 0, len(all))
	for _, d := range all {
		out = append(out, Domain{
			Name:       d.Name,
			UUID:       formatUUID(d.UUID),
			Persistent: !isTransient[d.UUID],
			// A domain that started between the calls is reported inactive:
			// its STARTED event follows.
			Active: isActive[d.UUID],
		})
	}
	return out, nil
}

// LookupDomain implements Conn. It makes two calls: the lookup, whose
// reply carries the domain's ID (-1 when it does not run, as virsh domid
// shows), and DomainIsPersistent.
func (c *libvirtConn) LookupDomain(ctx context.Context, nameOrUUID string) (Domain, error) {
	ld, err := c.lookup(ctx, nameOrUUID)
	if err != nil {
		return Domain{}, fmt.Errorf("failed to look up domain %q: %w", nameOrUUID, err)
	}
	d := Domain{Name: ld.Name, UUID: formatUUID(ld.UUID), Active: ld.ID != -1}
	persistent, err := call(ctx, c, func() (int32, error) { return c.l.DomainIsPersistent(ld) })
	if err != nil {
		return Domain{}, fmt.Errorf("failed to get persistence of domain %q: %w", d.Name, err)
	}
	d.Persistent = persistent == 1
	return d, nil
}

func (c *libvirtConn) lookup(ctx context.Context, nameOrUUID string) (libvirt.Domain, error) {
	if u, ok := parseUUID(nameOrUUID); ok {
		d, err := call(ctx, c, func() (libvirt.Domain, error) { return c.l.DomainLookupByUUID(u) })
		if err == nil || !errors.Is(err, ErrNotFound) {
			return d, err
		}
		// A domain may be named like a UUID: fall through to the name.
	}
	return call(ctx, c, func() (libvirt.Domain, error) { return c.l.DomainLookupByName(nameOrUUID) })
}

// ref returns the RPC reference of d: libvirt resolves a remote domain by
// its UUID, so no lookup is needed when the UUID is known.
func (c *libvirtConn) ref(ctx context.Context, d Domain) (libvirt.Domain, error) {
	if u, ok := parseUUID(d.UUID); ok {
		return libvirt.Domain{Name: d.Name, UUID: u, ID: -1}, nil
	}
	return c.lookup(ctx, d.Name)
}

// DomainXML implements Conn. Errors never hold the XML: go-libvirt fails
// before or instead of returning it.
func (c *libvirtConn) DomainXML(ctx context.Context, d Domain, flags XMLFlags) ([]byte, error) {
	ld, err := c.ref(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("failed to look up domain %q: %w", d.Name, err)
	}
	var lf libvirt.DomainXMLFlags
	if flags&XMLInactive != 0 {
		lf |= libvirt.DomainXMLInactive
	}
	if flags&XMLSecure != 0 {
		// Without it libvirt omits <graphics passwd=...>, and a redefine
		// from that XML deletes the console password.
		lf |= libvirt.DomainXMLSecure
	}
	s, err := call(ctx, c, func() (string, error) { return c.l.DomainGetXMLDesc(ld, lf) })
	if err != nil {
		return nil, fmt.Errorf("failed to get XML of domain %q: %w", d.Name, err)
	}
	return []byte(s), nil
}

// DefineXML implements Conn.
func (c *libvirtConn) DefineXML(ctx context.Context, xml []byte) error {
	_, err := call(ctx, c, func() (libvirt.Domain, error) {
		return c.l.DomainDefineXMLFlags(string(xml), libvirt.DomainDefineValidate)
	})
	if err != nil {
		return fmt.Errorf("failed to define domain: %w", err)
	}
	return nil
}

// SetMetadata implements Conn.
func (c *libvirtConn) SetMetadata(ctx context.Context, d Domain, ns, key, element string) error {
	ld, err := c.ref(ctx, d)
	if err != nil {
		return fmt.Errorf("failed to look up domain %q: %w", d.Name, err)
	}
	var flags libvirt.DomainModificationImpact
	if d.Persistent {
		flags |= libvirt.DomainAffectConfig
	}
	if d.Active {
		flags |= libvirt.DomainAffectLive
	}
	var meta libvirt.OptString
	if element != "" {
		meta = libvirt.OptString{element}
	}
	_, err = call(ctx, c, func() (struct{}, error) {
		return struct{}{}, c.l.DomainSetMetadata(ld, int32(libvirt.DomainMetadataElement), meta,
			libvirt.OptString{key}, libvirt.OptString{ns}, flags)
	})
	if err != nil {
		return fmt.Errorf("failed to set metadata %s of domain %q: %w", ns, d.Name, err)
	}
	return nil
}

// AgentCommand implements Conn. libvirt counts the timeout in whole
// seconds: it is rounded up, and at least one second.
func (c *libvirtConn) AgentCommand(ctx context.Context, d Domain, cmd []byte, timeout time.Duration) ([]byte, error) {
	ld, err := c.ref(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("failed to look up domain %q: %w", d.Name, err)
	}
	secs := int32(max((timeout+time.Second-1)/time.Second, 1))
	r, err := call(ctx, c, func() (libvirt.OptString, error) {
		return c.l.QEMUDomainAgentCommand(ld, string(cmd), secs, 0)
	})
	if errors.Is(err, ErrCallTimeout) {
		// libvirt could not take the domain's job in time: for the guest
		// step that is a guest agent timeout like any other.
		err = fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	var le libvirt.Error
	if errors.As(err, &le) && libvirt.ErrorNumber(le.Code) == libvirt.ErrOperationInvalid {
		// "domain is not running": no agent to talk to.
		err = fmt.Errorf("%w: %w", ErrAgentUnavailable, err)
	}
	if err != nil {
		return nil, fmt.Errorf("guest agent command on %q: %w", d.Name, err)
	}
	if len(r) == 0 {
		return nil, nil
	}
	return []byte(r[0]), nil
}

// Capabilities implements Conn.
func (c *libvirtConn) Capabilities(ctx context.Context) ([]byte, error) {
	s, err := call(ctx, c, c.l.ConnectGetCapabilities)
	if err != nil {
		return nil, fmt.Errorf("failed to get the host capabilities: %w", err)
	}
	return []byte(s), nil
}

// NetworkForward implements Conn.
func (c *libvirtConn) NetworkForward(ctx context.Context, name string) (string, error) {
	n, err := call(ctx, c, func() (libvirt.Network, error) { return c.l.NetworkLookupByName(name) })
	if err != nil {
		return "", fmt.Errorf("failed to look up network %q: %w", name, err)
	}
	s, err := call(ctx, c, func() (string, error) { return c.l.NetworkGetXMLDesc(n, 0) })
	if err != nil {
		return "", fmt.Errorf("failed to get XML of network %q: %w", name, err)
	}
	mode, err := ForwardMode([]byte(s))
	if err != nil {
		return "", fmt.Errorf("network %q: %w", name, err)
	}
	return mode, nil
}

// MonitorCommand implements Conn. The reply is QEMU's whole QMP reply
// ({"return": ...} or {"error": ...}): libvirt passes it through.
func (c *libvirtConn) MonitorCommand(ctx context.Context, d Domain, cmd []byte) ([]byte, error) {
	ld, err := c.ref(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("failed to look up domain %q: %w", d.Name, err)
	}
	r, err := call(ctx, c, func() (string, error) { return c.l.QEMUDomainMonitorCommand(ld, string(cmd), 0) })
	if err != nil {
		return nil, fmt.Errorf("QMP command on %q: %w", d.Name, err)
	}
	return []byte(r), nil
}

// stateErr adds ErrInvalidState to libvirt's "operation is not valid"
// (already running, not running).
func stateErr(err error) error {
	var le libvirt.Error
	if errors.As(err, &le) && libvirt.ErrorNumber(le.Code) == libvirt.ErrOperationInvalid {
		return fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	return err
}

// ShutdownDomain implements Conn: the ACPI power button.
func (c *libvirtConn) ShutdownDomain(ctx context.Context, d Domain) error {
	return c.power(ctx, d, "shut down", func(ld libvirt.Domain) error {
		return c.l.DomainShutdownFlags(ld, libvirt.DomainShutdownAcpiPowerBtn)
	})
}

// Events implements Conn: lifecycle events merged with guest-agent
// lifecycle and device-added events. The channel is closed when ctx ends or the connection
// drops; the caller must keep reading it until then.
func (c *libvirtConn) Events(ctx context.Context) (<-chan Event, error) {
	ctx, cancel := context.WithCancel(ctx)
	lc, err := c.l.LifecycleEvents(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("failed to subscribe to lifecycle events: %w", c.mapErr(err))
	}
	ag, err := c.l.SubscribeEvents(ctx, libvirt.DomainEventIDAgentLifecycle, libvirt.OptDomain{})
	if err != nil {
		cancel()
		drain(lc)
		return nil, fmt.Errorf("failed to subscribe to guest agent events: %w", c.mapErr(err))
	}
	dev, err := c.l.SubscribeEvents(ctx, libvirt.DomainEventIDDeviceAdded, libvirt.OptDomain{})
	if err != nil {
		cancel()
		drain(lc)
		drain(ag)
		return nil, fmt.Errorf("failed to subscribe to device-added events: %w", c.mapErr(err))
	}
	// The REBOOT event is optional: without it apply_at: next-reboot falls
	// back to cold-boot (see RebootEvents).
	rb, err := c.l.SubscribeEvents(ctx, libvirt.DomainEventIDReboot, libvirt.OptDomain{})
	if err != nil {
		rb = nil
	}
	c.rebootEvents.Store(err == nil)
	// Metadata changes (`virtmq exclude`) are wanted but not vital: a
	// libvirt without the event still serves everything else.
	md, err := c.l.SubscribeEvents(ctx, libvirt.DomainEventIDMetadataChange, libvirt.OptDomain{})
	if err != nil {
		md = nil
	}
	out := make(chan Event, 64)
	go func() {
		defer close(out)
		defer func() {
			// go-libvirt's stream goroutines block sending to their channel
			// until they see the cancellation: keep draining until closed.
			cancel()
			go drain(lc)
			go drain(ag)
			go drain(dev)
			if rb != nil {
				go drain(rb)
			}
			if md != nil {
				go drain(md)
			}
		}()
		for {
			var ev Event
			select {
			case m, ok := <-lc:
				if !ok {
					return
				}
				ev = lifecycleEvent(m)
			case m, ok := <-ag:
				if !ok {
					return
				}
				a, isAgent := m.(*libvirt.DomainEventCallbackAgentLifecycleMsg)
				if !isAgent {
					continue
				}
				ev = agentEvent(a)
			case m, ok := <-dev:
				if !ok {
					return
				}
				a, isDev := m.(*libvirt.DomainEventCallbackDeviceAddedMsg)
				if !isDev {
					continue
				}
				ev = Event{Kind: EventDeviceAdded, Domain: Domain{Name: a.Dom.Name, UUID: formatUUID(a.Dom.UUID)}, Alias: a.DevAlias}
			case m, ok := <-rb:
				if !ok {
					return
				}
				r, isReboot := m.(*libvirt.DomainEventCallbackRebootMsg)
				if !isReboot {
					continue
				}
				ev = Event{Kind: EventRebooted, Domain: Domain{Name: r.Msg.Dom.Name, UUID: formatUUID(r.Msg.Dom.UUID)}}
			case m, ok := <-md:
				if !ok {
					return
				}
				mc, isMeta := m.(*libvirt.DomainEventCallbackMetadataChangeMsg)
				if !isMeta {
					continue
				}
				ev = Event{Kind: EventMetadataChanged, Domain: Domain{Name: mc.Dom.Name, UUID: formatUUID(mc.Dom.UUID)}, Detail: int(mc.Type)}
				if len(mc.Nsuri) > 0 {
					ev.Namespace = mc.Nsuri[0]
				}
			case <-c.disconnected:
				return
			case <-ctx.Done():
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func drain[T any](ch <-chan T) {
	for range ch {
	}
}

// lifecycleKinds and agentKinds map libvirt's event numbers to the kinds
// the agent reacts to; any other is EventOther.
var (
	lifecycleKinds = map[libvirt.DomainEventType]EventKind{
		libvirt.DomainEventDefined:   EventDefined,
		libvirt.DomainEventUndefined: EventUndefined,
		libvirt.DomainEventStarted:   EventStarted,
		libvirt.DomainEventStopped:   EventStopped,
	}
	agentKinds = map[libvirt.ConnectDomainEventAgentLifecycleState]EventKind{
		libvirt.ConnectDomainEventAgentLifecycleStateConnected:    EventAgentConnected,
		libvirt.ConnectDomainEventAgentLifecycleStateDisconnected: EventAgentDisconnected,
	}
)

func lifecycleEvent(m libvirt.DomainEventLifecycleMsg) Event {
	return Event{Kind: lifecycleKinds[libvirt.DomainEventType(m.Event)],
		Domain: Domain{Name: m.Dom.Name, UUID: formatUUID(m.Dom.UUID)}, Detail: int(m.Detail)}
}

func agentEvent(m *libvirt.DomainEventCallbackAgentLifecycleMsg) Event {
	return Event{Kind: agentKinds[libvirt.ConnectDomainEventAgentLifecycleState(m.State)],
		Domain: Domain{Name: m.Dom.Name, UUID: formatUUID(m.Dom.UUID)}, Detail: int(m.Reason)}
}

// Disconnected implements Conn.
func (c *libvirtConn) Disconnected() <-chan struct{} { return c.disconnected }

// Close implements Conn.
func (c *libvirtConn) Close() error {
	if c.isDisconnected() {
		return nil
	}
	if err := c.l.Disconnect(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("failed to close libvirt connection: %w", err)
	}
	return nil
}

// formatUUID returns the canonical 8-4-4-4-12 text form of u.
func formatUUID(u libvirt.UUID) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// parseUUID parses the 8-4-4-4-12 form (or 32 hex digits).
func parseUUID(s string) (libvirt.UUID, bool) {
	var u libvirt.UUID
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 || (len(s) != 32 && len(s) != 36) {
		return u, false
	}
	if len(s) == 36 && (s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') {
		return u, false
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, false
	}
	return u, true
}

package virt

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/digitalocean/go-libvirt"
)

func TestUUID(t *testing.T) {
	const s = "89f1babf-fc2d-42db-949c-cb0b98d8e3dd"
	u, ok := parseUUID(s)
	if !ok || formatUUID(u) != s {
		t.Errorf("roundtrip: %v %q", ok, formatUUID(u))
	}
	if u2, ok := parseUUID("89f1babffc2d42db949ccb0b98d8e3dd"); !ok || u2 != u {
		t.Error("32 hex digits not accepted")
	}
	for _, bad := range []string{"web1", "", "89f1babf-fc2d-42db-949c-cb0b98d8e3d", "89f1babf-fc2d-42db-949c-cb0b98d8e3dz", "89f1babffc2d-42db-949c-cb0b-98d8e3dd"} {
		if _, ok := parseUUID(bad); ok {
			t.Errorf("parseUUID(%q) accepted", bad)
		}
	}
}

func TestMapErr(t *testing.T) {
	c := &libvirtConn{disconnected: make(chan struct{})}
	lerr := func(code libvirt.ErrorNumber, msg string) error {
		return libvirt.Error{Code: uint32(code), Message: msg}
	}
	for _, tc := range []struct {
		in   error
		want error
	}{
		{lerr(libvirt.ErrNoDomain, "Domain not found: no domain with matching name 'x'"), ErrNotFound},
		{lerr(libvirt.ErrAgentUnresponsive, "Guest agent is not responding: QEMU guest agent is not connected"), ErrAgentUnavailable},
		{lerr(libvirt.ErrAgentCommandTimeout, "guest agent command timed out"), ErrTimeout},
		{lerr(libvirt.ErrOperationTimeout, "Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainCreateWithFlags)"), ErrCallTimeout},
		{lerr(libvirt.ErrXMLInvalidSchema, "XML document failed to validate against schema: Unable to validate doc against /usr/share/libvirt/schemas/domain.rng"), ErrInvalidDefinition},
		{lerr(libvirt.ErrXMLError, "XML error: Invalid value for attribute queues"), ErrInvalidDefinition},
		{lerr(libvirt.ErrConfigUnsupported, "unsupported configuration: multiqueue is not supported"), ErrInvalidDefinition},
		{libvirt.ErrInterrupted, ErrDisconnected},
		{fmt.Errorf("write: %w", syscall.EPIPE), ErrDisconnected},
		{syscall.EINVAL, ErrDisconnected},
	} {
		got := c.mapErr(tc.in)
		if !errors.Is(got, tc.want) || !errors.Is(got, tc.in) {
			t.Errorf("mapErr(%v) = %v, want %v wrapping the original", tc.in, got, tc.want)
		}
	}
	other := lerr(libvirt.ErrOperationFailed, "operation failed")
	if got := c.mapErr(other); got != other {
		t.Errorf("mapErr(other) = %v", got)
	}
	// A libvirt-side timeout is not the guest agent's: only AgentCommand
	// adds ErrTimeout to it.
	if got := c.mapErr(lerr(libvirt.ErrOperationTimeout, "Timed out during operation")); errors.Is(got, ErrTimeout) {
		t.Errorf("mapErr(operation timeout) = %v: is ErrTimeout", got)
	}
}

// The messages are what libvirt 9.0 said on the e2e stack
// (internal/testdata/recorded/guest-exec.*.error.txt, without virsh's "error: ").
func TestAgentError(t *testing.T) {
	c := &libvirtConn{disconnected: make(chan struct{})}
	for _, tc := range []struct {
		code       libvirt.ErrorNumber
		msg        string
		cmd, desc  string
		agentError bool
	}{
		{libvirt.ErrInternalError, "internal error: unable to execute QEMU agent command 'guest-exec': Command guest-exec has been disabled",
			"guest-exec", "Command guest-exec has been disabled", true},
		{libvirt.ErrInternalError, "internal error: unable to execute QEMU agent command 'guest-exec': Guest agent command failed, error was 'Failed to execute child process “/usr/sbin/ethtool” (No such file or directory)'",
			"guest-exec", "Guest agent command failed, error was 'Failed to execute child process “/usr/sbin/ethtool” (No such file or directory)'", true},
		{libvirt.ErrAgentCommandFailed, "guest agent command failed: unable to execute QEMU agent command 'guest-get-time': Command guest-get-time has been disabled: the command is not allowed",
			"guest-get-time", "Command guest-get-time has been disabled: the command is not allowed", true},
		{libvirt.ErrInternalError, "internal error: something else", "", "", false},
	} {
		err := c.mapErr(libvirt.Error{Code: uint32(tc.code), Message: tc.msg})
		var ae *AgentError
		if errors.As(err, &ae) != tc.agentError {
			t.Errorf("%q: AgentError = %v", tc.msg, !tc.agentError)
			continue
		}
		if tc.agentError && (ae.Command != tc.cmd || ae.Desc != tc.desc || ae.Error() != tc.msg) {
			t.Errorf("%q: %+v", tc.msg, ae)
		}
	}
}

func TestEventMapping(t *testing.T) {
	var u libvirt.UUID
	u[15] = 1
	dom := libvirt.Domain{Name: "vm", UUID: u}
	for ev, want := range map[libvirt.DomainEventType]EventKind{
		libvirt.DomainEventDefined:   EventDefined,
		libvirt.DomainEventUndefined: EventUndefined,
		libvirt.DomainEventStarted:   EventStarted,
		libvirt.DomainEventStopped:   EventStopped,
		libvirt.DomainEventSuspended: EventOther,
		libvirt.DomainEventCrashed:   EventOther,
	} {
		got := lifecycleEvent(libvirt.DomainEventLifecycleMsg{Dom: dom, Event: int32(ev), Detail: 1})
		if got.Kind != want || got.Domain.Name != "vm" || got.Domain.UUID != "00000000-0000-0000-0000-000000000001" || got.Detail != 1 {
			t.Errorf("event %d → %+v", ev, got)
		}
	}
	if got := agentEvent(&libvirt.DomainEventCallbackAgentLifecycleMsg{Dom: dom, State: int32(libvirt.ConnectDomainEventAgentLifecycleStateConnected)}); got.Kind != EventAgentConnected {
		t.Errorf("agent connected → %+v", got)
	}
	if got := agentEvent(&libvirt.DomainEventCallbackAgentLifecycleMsg{Dom: dom, State: int32(libvirt.ConnectDomainEventAgentLifecycleStateDisconnected)}); got.Kind != EventAgentDisconnected {
		t.Errorf("agent disconnected → %+v", got)
	}
}

func TestDialNoSocket(t *testing.T) {
	_, _, err := Dial(t.Context(), []string{"/nonexistent/a-sock", "/nonexistent/b-sock"})
	if err == nil || !errors.Is(err, syscall.ENOENT) {
		t.Errorf("Dial = %v", err)
	}
	if _, _, err := Dial(t.Context(), nil); err == nil {
		t.Error("Dial without sockets succeeded")
	}
}

package virt

import (
	"context"
	"errors"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/virtmq/virtmq/internal/guest"
)

// GuestAgent adapts a connection to guest.Agent for one domain
// (virDomainQemuAgentCommand). Each command taints the domain
// "custom-ga-command" in libvirt's log.
type GuestAgent struct {
	Conn   Guest
	Domain Domain
}

var _ guest.Agent = GuestAgent{}

// Command implements guest.Agent, translating libvirt's errors into the
// ones package guest understands: an agent's error reply becomes a
// *guest.CommandError, "not connected" guest.ErrNoAgent, a timeout
// guest.ErrTimeout.
func (g GuestAgent) Command(ctx context.Context, cmd []byte, timeout time.Duration) ([]byte, error) {
	out, err := g.Conn.AgentCommand(ctx, g.Domain, cmd, timeout)
	if err == nil {
		return out, nil
	}
	var ae *AgentError
	switch {
	case errors.As(err, &ae):
		return nil, &guest.CommandError{Command: ae.Command, Desc: ae.Desc}
	case errors.Is(err, ErrAgentUnavailable):
		return nil, reasonError{guest.ErrNoAgent, err}
	case errors.Is(err, ErrTimeout):
		return nil, reasonError{guest.ErrTimeout, err}
	}
	return nil, err
}

// reasonError is err, also matching reason with errors.Is, without
// repeating reason's text: libvirt's message already says it.
type reasonError struct {
	reason, err error
}

func (e reasonError) Error() string   { return e.err.Error() }
func (e reasonError) Unwrap() []error { return []error{e.reason, e.err} }

// Monitor adapts a connection to go-qemu's qmp.Monitor for one domain
// (virDomainQemuMonitorCommand). Connect and Disconnect do nothing: libvirt
// owns the monitor. qmp.Monitor's Run takes no context, so Monitor carries
// the one of the check that made it. Every command taints the domain
// "custom-monitor": virtmq only verifies with it.
type Monitor struct {
	Ctx    context.Context
	Conn   Guest
	Domain Domain
}

var _ qmp.Monitor = Monitor{}

// Connect does nothing: libvirt holds the monitor connection.
func (Monitor) Connect() error { return nil }

// Disconnect does nothing: libvirt holds the monitor connection.
func (Monitor) Disconnect() error { return nil }

// Run sends one QMP command through libvirt and returns QEMU's whole reply.
func (m Monitor) Run(cmd []byte) ([]byte, error) {
	return m.Conn.MonitorCommand(m.Ctx, m.Domain, cmd)
}

// Events is not supported through libvirt's passthrough.
func (Monitor) Events(context.Context) (<-chan qmp.Event, error) {
	return nil, qmp.ErrEventsNotSupported
}

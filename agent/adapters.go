package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/virtmq/virtmq/agent/guest"
	"github.com/virtmq/virtmq/agent/virt"
)

// guestAgent adapts a libvirt connection to guest.Agent for one domain
// (virDomainQemuAgentCommand). Each command taints the domain
// "custom-ga-command" in libvirt's log.
type guestAgent struct {
	conn virt.Conn
	dom  virt.Domain
}

var _ guest.Agent = guestAgent{}

// Command implements guest.Agent, translating libvirt's errors into the
// ones package guest understands.
func (g guestAgent) Command(ctx context.Context, cmd []byte, timeout time.Duration) ([]byte, error) {
	out, err := g.conn.AgentCommand(ctx, g.dom, cmd, timeout)
	if err == nil {
		return out, nil
	}
	var ae *virt.AgentError
	switch {
	case errors.As(err, &ae):
		return nil, &guest.CommandError{Command: ae.Command, Desc: ae.Desc}
	case errors.Is(err, virt.ErrAgentUnavailable):
		return nil, fmt.Errorf("%w: %w", guest.ErrNoAgent, err)
	case errors.Is(err, virt.ErrTimeout):
		return nil, fmt.Errorf("%w: %w", guest.ErrTimeout, err)
	}
	return nil, err
}

// qmpMonitor adapts a libvirt connection to go-qemu's qmp.Monitor for one
// domain (virDomainQemuMonitorCommand). Connect and Disconnect do nothing:
// libvirt owns the monitor. Every command taints the domain
// "custom-monitor", so the agent only verifies with it.
type qmpMonitor struct {
	ctx  context.Context
	conn virt.Conn
	dom  virt.Domain
}

var _ qmp.Monitor = qmpMonitor{}

func (qmpMonitor) Connect() error    { return nil }
func (qmpMonitor) Disconnect() error { return nil }

// Run implements qmp.Monitor; the reply is QEMU's whole QMP reply.
func (m qmpMonitor) Run(cmd []byte) ([]byte, error) {
	return m.conn.MonitorCommand(m.ctx, m.dom, cmd)
}

// Events implements qmp.Monitor: not available through libvirt here.
func (qmpMonitor) Events(context.Context) (<-chan qmp.Event, error) {
	return nil, qmp.ErrEventsNotSupported
}

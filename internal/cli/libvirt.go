package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/digitalocean/go-qemu/qmp"

	"github.com/virtmq/virtmq/agent/guest"
	"github.com/virtmq/virtmq/agent/virt"
)

// SocketEnvVar names the environment variable that picks the libvirt socket
// apply and verify connect through, when --connect-socket is not given.
const SocketEnvVar = "VIRTMQ_LIBVIRT_SOCKET"

// addConnectFlag adds --connect-socket to a command that talks to libvirt.
func addConnectFlag(fs *flag.FlagSet) *string {
	return fs.String("connect-socket", "",
		"libvirt unix `socket` (default $"+SocketEnvVar+", else /run/libvirt/virtqemud-sock, then /run/libvirt/libvirt-sock)")
}

// dialLibvirt connects through the --connect-socket value, else
// $VIRTMQ_LIBVIRT_SOCKET, else the default sockets.
func dialLibvirt(ctx context.Context, env *Env, socket string) (virt.Conn, error) {
	if socket == "" && env.Getenv != nil {
		socket = env.Getenv(SocketEnvVar)
	}
	if env.Dial == nil {
		return nil, errors.New("connect to libvirt: no dialer configured")
	}
	c, err := env.Dial(ctx, socket)
	if err != nil {
		if socket != "" {
			return nil, fmt.Errorf("connect to libvirt at %s: %w", socket, err)
		}
		return nil, fmt.Errorf("connect to libvirt: %w", err)
	}
	return c, nil
}

// guestAgent is a guest.Agent over libvirt's qemu-guest-agent passthrough
// (virDomainQemuAgentCommand) for one domain.
type guestAgent struct {
	conn virt.Conn
	dom  virt.Domain
}

var _ guest.Agent = guestAgent{}

// Command sends cmd to the domain's guest agent. libvirt's "agent not
// connected" and "timed out" come back wrapping guest.ErrNoAgent and
// guest.ErrTimeout, as package guest expects.
func (a guestAgent) Command(ctx context.Context, cmd []byte, timeout time.Duration) ([]byte, error) {
	out, err := a.conn.AgentCommand(ctx, a.dom, cmd, timeout)
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, virt.ErrAgentUnavailable):
		return nil, reasonError{guest.ErrNoAgent, err}
	case errors.Is(err, virt.ErrTimeout):
		return nil, reasonError{guest.ErrTimeout, err}
	}
	return nil, err
}

// reasonError is err, also matching reason with errors.Is, without
// repeating reason's text (libvirt's message already says it).
type reasonError struct {
	reason, err error
}

func (e reasonError) Error() string   { return e.err.Error() }
func (e reasonError) Unwrap() []error { return []error{e.reason, e.err} }

// qmpMonitor is a qmp.Monitor over libvirt's QMP passthrough
// (virDomainQemuMonitorCommand) for one domain. libvirt owns the monitor
// socket, so Connect and Disconnect do nothing. qmp.Monitor's Run takes no
// context, so the monitor carries the one of the verify run that made it.
type qmpMonitor struct {
	ctx  context.Context
	conn virt.Conn
	dom  virt.Domain
}

var _ qmp.Monitor = qmpMonitor{}

// Connect does nothing: libvirt holds the monitor connection.
func (qmpMonitor) Connect() error { return nil }

// Disconnect does nothing: libvirt holds the monitor connection.
func (qmpMonitor) Disconnect() error { return nil }

// Run sends one QMP command through libvirt and returns QEMU's reply.
func (m qmpMonitor) Run(cmd []byte) ([]byte, error) {
	return m.conn.MonitorCommand(m.ctx, m.dom, cmd)
}

// Events is not supported through libvirt's passthrough.
func (qmpMonitor) Events(context.Context) (<-chan qmp.Event, error) {
	return nil, qmp.ErrEventsNotSupported
}

package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/virtmq/virtmq/internal/virt"
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

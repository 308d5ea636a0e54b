package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/virtmq/virtmq/internal/virt"
)

// The environment variables that pick the libvirt connection of the
// commands that talk to libvirt, when no flag does.
const (
	// URIEnvVar is libvirt's own, as virsh reads it.
	URIEnvVar = "LIBVIRT_DEFAULT_URI"
	// SocketEnvVar is a local socket: qemu+unix:///system?socket=PATH.
	SocketEnvVar = "VIRTMQ_LIBVIRT_SOCKET"
)

// connectFlags are -c/--connect and --connect-socket.
type connectFlags struct {
	uri, socket string
}

// connectUsage is the help line of -c/--connect.
const connectUsage = "libvirt connection `URI`, as virsh -c: qemu:///system, qemu+unix:///system?socket=PATH, " +
	"qemu+ssh://[USER@]HOST[:PORT]/system, qemu+tcp://HOST/system, qemu+tls://HOST/system " +
	"(default $" + URIEnvVar + ", else $" + SocketEnvVar + ", else qemu:///system)"

// addConnectFlags adds -c/--connect and --connect-socket to a command that
// talks to libvirt.
func addConnectFlags(fs *flag.FlagSet) *connectFlags {
	cf := &connectFlags{}
	fs.StringVar(&cf.uri, "c", "", "short for --connect `URI`")
	fs.StringVar(&cf.uri, "connect", "", connectUsage)
	fs.StringVar(&cf.socket, "connect-socket", "",
		"local libvirt unix `socket`: short for -c qemu+unix:///system?socket=PATH (default $"+SocketEnvVar+
			", else /run/libvirt/virtqemud-sock, then /run/libvirt/libvirt-sock)")
	return cf
}

// resolve returns the URI to connect to and where it comes from, as virsh
// picks it: -c/--connect (or its local alias --connect-socket), else
// $LIBVIRT_DEFAULT_URI, else $VIRTMQ_LIBVIRT_SOCKET, else qemu:///system.
// A URI that cannot be used is an error, never a reason to fall back to
// the local host. $VIRTMQ_LIBVIRT_SOCKET together with a
// $LIBVIRT_DEFAULT_URI is accepted only when both name the local system
// driver (qemu:///system without socket=): it then picks the socket.
func (cf *connectFlags) resolve(env *Env) (virt.URI, string, error) {
	getenv := env.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	envURI, envSocket := getenv(URIEnvVar), getenv(SocketEnvVar)
	switch {
	case cf.uri != "" && cf.socket != "":
		return virt.URI{}, "", errors.New("give -c/--connect or --connect-socket, not both")
	case cf.uri != "":
		u, err := virt.ParseURI(cf.uri)
		return u, "-c", err
	case cf.socket != "":
		u, err := virt.UnixSocketURI(cf.socket)
		return u, "--connect-socket", err
	case envURI != "":
		u, err := virt.ParseURI(envURI)
		if err != nil {
			return u, "$" + URIEnvVar, fmt.Errorf("$%s: %w", URIEnvVar, err)
		}
		if envSocket == "" {
			return u, "$" + URIEnvVar, nil
		}
		if u.Transport != virt.TransportUnix || u.Socket != "" {
			return virt.URI{}, "", fmt.Errorf("$%s=%s and $%s=%s name different connections: unset one, or give -c",
				URIEnvVar, envURI, SocketEnvVar, envSocket)
		}
		u, err = virt.UnixSocketURI(envSocket)
		return u, "$" + SocketEnvVar, err
	case envSocket != "":
		u, err := virt.UnixSocketURI(envSocket)
		return u, "$" + SocketEnvVar, err
	}
	u, err := virt.ParseURI(virt.LocalURI)
	return u, "default", err
}

// dialLibvirt connects to the URI the flags and environment pick (see
// resolve) and returns the connection and that URI. The error names the
// URI and where it came from.
func dialLibvirt(ctx context.Context, env *Env, cf *connectFlags) (virt.Conn, virt.URI, error) {
	u, source, err := cf.resolve(env)
	if err != nil {
		return nil, u, fmt.Errorf("connect to libvirt: %w", err)
	}
	if env.Dial == nil {
		return nil, u, errors.New("connect to libvirt: no dialer configured")
	}
	c, err := env.Dial(ctx, u)
	if err != nil {
		return nil, u, fmt.Errorf("connect to libvirt at %s (from %s): %w", u, source, err)
	}
	return c, u, nil
}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"time"

	"github.com/virtmq/virtmq/internal/cmdline"
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
// talks to libvirt. Given empty (-c "$UNSET"), or both, they are a usage
// error: an empty -c must not fall through to another connection.
func addConnectFlags(fs *flagSet) *connectFlags {
	cf := &connectFlags{}
	fs.StringVar(&cf.uri, "c", "", "short for --connect `URI`")
	fs.StringVar(&cf.uri, "connect", "", connectUsage)
	fs.short["connect"] = "c"
	fs.StringVar(&cf.socket, "connect-socket", "",
		"local libvirt unix `socket`: short for -c qemu+unix:///system?socket=PATH (default $"+SocketEnvVar+
			", else /run/libvirt/virtqemud-sock, then /run/libvirt/libvirt-sock)")
	fs.check(func() error {
		switch {
		case (fs.isSet("c") || fs.isSet("connect")) && cf.uri == "":
			return errors.New("-c/--connect: the URI is empty (an unset variable?); give a libvirt URI such as qemu:///system, or leave -c out")
		case fs.isSet("connect-socket") && cf.socket == "":
			return errors.New("--connect-socket: the path is empty (an unset variable?); give a socket path, or leave --connect-socket out")
		case cf.uri != "" && cf.socket != "":
			return errors.New("give -c/--connect or --connect-socket, not both")
		}
		return nil
	})
	return cf
}

// DefaultConnectTimeout bounds connecting to libvirt, the handshake
// included, in every command: a host that does not answer is given up on
// after it, whatever the command's own timeout (verify --timeout).
const DefaultConnectTimeout = virt.DefaultDialTimeout

// connectTimeout is Env.ConnectTimeout, else DefaultConnectTimeout.
func (env *Env) connectTimeout() time.Duration {
	if env.ConnectTimeout > 0 {
		return env.ConnectTimeout
	}
	return DefaultConnectTimeout
}

// resolve returns the URI to connect to and where it comes from, as virsh
// picks it: -c/--connect (or its local alias --connect-socket), else
// $LIBVIRT_DEFAULT_URI, else $VIRTMQ_LIBVIRT_SOCKET, else qemu:///system.
// A URI that cannot be used is an error, never a reason to fall back to
// the local host. $VIRTMQ_LIBVIRT_SOCKET together with a
// $LIBVIRT_DEFAULT_URI is accepted only when both name the local system
// driver (qemu:///system without socket=): it then picks the socket.
func (cf *connectFlags) resolve(env *Env) (virt.URI, string, error) {
	getenv := env.getenv()
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
	dctx, cancel := context.WithTimeout(ctx, env.connectTimeout())
	defer cancel()
	c, err := env.Dial(dctx, u)
	if err != nil {
		ce := &connectError{uri: u, source: source, err: err}
		if dctx.Err() != nil && ctx.Err() == nil {
			ce.timeout = env.connectTimeout()
		}
		return nil, u, ce
	}
	return c, u, nil
}

// connectError is a failed connection to libvirt: one line saying the
// URI, where it came from, why, and what to do.
type connectError struct {
	uri    virt.URI
	source string
	err    error
	// timeout is set when the connect timeout ran out.
	timeout time.Duration
}

func (e *connectError) Unwrap() error { return e.err }

func (e *connectError) Error() string {
	// virt's errors start with what this one says already.
	cause := strings.TrimPrefix(e.err.Error(), "failed to connect to libvirt: ")
	cause = strings.TrimPrefix(cause, "failed to connect to libvirt at "+e.uri.Addr()+": ")
	cause = strings.ReplaceAll(strings.TrimSpace(cause), "\n", "; ")
	if e.timeout > 0 {
		cause = fmt.Sprintf("no answer within %s (%s)", cmdline.Duration(e.timeout), cause)
	}
	msg := fmt.Sprintf("cannot connect to libvirt at %s (from %s): %s", e.uri, e.source, cause)
	var hint string
	switch {
	case e.uri.Remote():
		hint = "check that libvirtd listens there and the host answers; -c URI picks another connection"
	case errors.Is(e.err, fs.ErrPermission):
		hint = "the libvirt socket is for root and the libvirt group: run as root (sudo) or join the group"
	case errors.Is(e.err, fs.ErrNotExist), errors.Is(e.err, syscall.ECONNREFUSED):
		hint = "is libvirt running? start virtqemud (systemctl start virtqemud.socket) or libvirtd; -c URI picks another connection"
	default:
		hint = "-c URI picks another connection"
	}
	return msg + "; " + hint
}

package virt

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/digitalocean/go-libvirt/socket"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// DialOptions is the outside world DialURI reads. The zero value is the
// real one.
type DialOptions struct {
	// Getenv reads HOME, USER and SSH_AUTH_SOCK for ssh (os.Getenv when nil).
	Getenv func(string) string
	// Sockets are the daemon sockets probed, in order, when the URI has no
	// socket=: on this host for unix, on the remote host for ssh
	// (DefaultSockets when nil).
	Sockets []string
	// GlobalKnownHosts is the system-wide known_hosts file read after the
	// user's, when it exists (/etc/ssh/ssh_known_hosts when empty).
	GlobalKnownHosts string
}

func (o DialOptions) getenv(k string) string {
	if o.Getenv == nil {
		return os.Getenv(k)
	}
	return o.Getenv(k)
}

func (o DialOptions) sockets(explicit string) []string {
	switch {
	case explicit != "":
		return []string{explicit}
	case o.Sockets != nil:
		return o.Sockets
	}
	return DefaultSockets
}

// home is $HOME, else the account's home directory.
func (o DialOptions) home() string {
	if h := o.getenv("HOME"); h != "" {
		return h
	}
	if u, err := user.Current(); err == nil {
		return u.HomeDir
	}
	return ""
}

// DialURI connects to the QEMU system driver that u names and returns the
// connection and where it went (a socket path, or host:port and the
// remote socket). Like Dial, the context bounds each attempt
// (DefaultDialTimeout when it has no deadline). The error says what failed
// (for ssh, why a host key or a login was refused: ErrHostKey) but not u:
// the caller names the URI and where it came from. DialURI never falls
// back to another host or transport than u's.
func DialURI(ctx context.Context, u URI, opts DialOptions) (Conn, string, error) {
	switch u.Transport {
	case TransportUnix:
		return Dial(ctx, opts.sockets(u.Socket))
	case TransportTCP:
		return dialRemote(ctx, u, func(timeout time.Duration) socket.Dialer {
			host, port := splitAddr(u.Addr())
			return dialers.NewRemote(host, dialers.UsePort(port), dialers.WithRemoteTimeout(timeout))
		})
	case TransportTLS:
		return dialRemote(ctx, u, func(time.Duration) socket.Dialer {
			host, port := splitAddr(u.Addr())
			o := []dialers.TLSOption{dialers.UseTLSPort(port)}
			if u.PKIPath != "" {
				o = append(o, dialers.UsePKIPath(filepath.Clean(u.PKIPath)+"/"))
			}
			return dialers.NewTLS(host, o...)
		})
	case TransportSSH:
		return dialSSH(ctx, u, opts)
	}
	return nil, "", fmt.Errorf("%w %q: no transport (parse it with ParseURI)", ErrURI, u)
}

// dialRemote connects over a go-libvirt network dialer.
func dialRemote(ctx context.Context, u URI, newDialer func(time.Duration) socket.Dialer) (Conn, string, error) {
	c, err := dialOne(ctx, newDialer)
	if err != nil {
		return nil, "", fmt.Errorf("failed to connect to libvirt at %s: %w", u.Addr(), err)
	}
	return c, u.Addr(), nil
}

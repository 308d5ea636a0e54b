package virt

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Transport is how a URI reaches libvirt.
type Transport string

// The transports DialURI knows.
const (
	TransportUnix Transport = "unix" // the local daemon's unix socket
	TransportTCP  Transport = "tcp"  // plain TCP (libvirtd listen_tcp, auth_tcp = "none": no SASL here)
	TransportTLS  Transport = "tls"  // TLS with the client certificate of libvirt's PKI layout
	TransportSSH  Transport = "ssh"  // the remote daemon's unix socket through an SSH connection
)

// Default ports, as libvirt has them.
const (
	DefaultTCPPort = "16509"
	DefaultTLSPort = "16514"
	DefaultSSHPort = "22"
)

// ErrURI is returned (wrapped) for a connection URI virtmq cannot use.
var ErrURI = errors.New("unsupported libvirt URI")

// LocalURI is the URI of the local system QEMU driver: what virtmq
// connects to when it is given none.
const LocalURI = "qemu:///system"

// URI is a parsed libvirt connection URI for the QEMU system driver, as
// virsh -c takes it:
//
//	qemu:///system                        local, probing DefaultSockets
//	qemu+unix:///system?socket=PATH       local, through PATH
//	qemu+tcp://HOST[:PORT]/system         TCP (port 16509)
//	qemu+tls://HOST[:PORT]/system         TLS (port 16514); also qemu://HOST/system
//	qemu+ssh://[USER@]HOST[:PORT]/system  SSH (port 22) to the remote socket
//
// Query parameters: socket (unix, ssh: the daemon's socket), keyfile and
// known_hosts (ssh), pkipath (tls), no_tty (accepted: virtmq never asks).
// Anything else, other drivers, /session and no_verify are refused.
type URI struct {
	Transport Transport
	// User is the ssh login; empty for the local user name.
	User string
	// Host is empty for TransportUnix.
	Host string
	// Port is empty for the transport's default.
	Port string
	// Socket is the socket= parameter: the local socket (unix) or the
	// remote one (ssh); empty to probe DefaultSockets.
	Socket string
	// KeyFile is keyfile= (ssh): the private key to offer besides the agent's.
	KeyFile string
	// KnownHosts is known_hosts= (ssh): the known_hosts file instead of ~/.ssh/known_hosts.
	KnownHosts string
	// PKIPath is pkipath= (tls): the directory of cacert.pem, clientcert.pem and clientkey.pem.
	PKIPath string

	raw string
}

// ParseURI parses a libvirt connection URI; the error (wrapping ErrURI)
// says what virtmq cannot use in it.
func ParseURI(s string) (URI, error) {
	bad := func(format string, args ...any) (URI, error) {
		return URI{}, fmt.Errorf("%w %q: %s", ErrURI, s, fmt.Sprintf(format, args...))
	}
	pu, err := url.Parse(s)
	if err != nil {
		return bad("%v", err)
	}
	if pu.Opaque != "" || pu.Scheme == "" {
		return bad("not a URI like qemu:///system or qemu+ssh://root@host/system")
	}
	driver, transport, _ := strings.Cut(pu.Scheme, "+")
	if driver != "qemu" {
		return bad("driver %q: virtmq manages QEMU domains (qemu:///system, qemu+ssh://host/system, ...)", driver)
	}
	u := URI{raw: s, Host: pu.Hostname(), Port: pu.Port()}
	if pu.User != nil {
		if _, ok := pu.User.Password(); ok {
			return bad("a password in the URI: virtmq uses ssh keys and the ssh agent")
		}
		u.User = pu.User.Username()
	}
	switch transport {
	case "":
		// As libvirt: no transport and a host means TLS.
		u.Transport = TransportUnix
		if u.Host != "" {
			u.Transport = TransportTLS
		}
	case "unix":
		u.Transport = TransportUnix
	case "tcp":
		u.Transport = TransportTCP
	case "tls":
		u.Transport = TransportTLS
	case "ssh", "libssh", "libssh2":
		u.Transport = TransportSSH
	default:
		return bad("transport %q: virtmq speaks unix, tcp, tls and ssh", transport)
	}
	switch {
	case u.Transport == TransportUnix && (pu.Host != "" || pu.User != nil):
		return bad("a unix socket URI names no host: qemu:///system or qemu+unix:///system?socket=PATH")
	case u.Transport != TransportUnix && u.Host == "":
		return bad("qemu+%s needs a host: qemu+%s://HOST/system", u.Transport, u.Transport)
	case u.User != "" && u.Transport != TransportSSH:
		return bad("a user name is only used by qemu+ssh")
	}
	switch pu.Path {
	case "/system":
	case "/session":
		return bad("qemu:///session is a user's private QEMU driver: virtmq manages the system driver (/system)")
	default:
		return bad("path %q: virtmq manages the system driver: end the URI with /system", pu.Path)
	}
	if pu.Fragment != "" {
		return bad("a #fragment means nothing here")
	}
	q, err := url.ParseQuery(pu.RawQuery)
	if err != nil {
		return bad("query: %v", err)
	}
	for k, v := range q {
		if len(v) != 1 {
			return bad("parameter %s given %d times", k, len(v))
		}
		val := v[0]
		switch {
		case k == "socket" && (u.Transport == TransportUnix || u.Transport == TransportSSH):
			if !strings.HasPrefix(val, "/") {
				return bad("socket=%s: give an absolute path", val)
			}
			u.Socket = val
		case k == "keyfile" && u.Transport == TransportSSH:
			u.KeyFile = val
		case k == "known_hosts" && u.Transport == TransportSSH:
			u.KnownHosts = val
		case k == "pkipath" && u.Transport == TransportTLS:
			u.PKIPath = val
		case k == "no_tty":
			// virtmq never prompts: nothing to turn off.
		case k == "no_verify":
			return bad("no_verify: virtmq always verifies the server (known_hosts for ssh, the CA for tls)")
		default:
			return bad("parameter %s is not used with qemu+%s (virtmq knows socket, keyfile, known_hosts, pkipath, no_tty)", k, u.Transport)
		}
	}
	return u, nil
}

// UnixSocketURI is the URI of the local system driver through socket
// (qemu+unix:///system?socket=PATH), what --connect-socket means.
func UnixSocketURI(socket string) (URI, error) {
	q := socket
	if strings.ContainsFunc(q, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) {
		q = url.QueryEscape(q)
	}
	return ParseURI("qemu+unix:///system?socket=" + q)
}

// Remote reports whether the URI reaches libvirt over the network: its
// domains run on another host (as far as virtmq can tell: a tcp or ssh URI
// to this host's own address counts as remote too).
func (u URI) Remote() bool { return u.Transport != "" && u.Transport != TransportUnix }

// String returns the URI as it was given (LocalURI for the zero URI).
func (u URI) String() string {
	if u.raw == "" {
		return LocalURI
	}
	return u.raw
}

// Addr is host:port of a remote URI, with the transport's default port.
func (u URI) Addr() string {
	port := u.Port
	if port == "" {
		switch u.Transport {
		case TransportTCP:
			port = DefaultTCPPort
		case TransportTLS:
			port = DefaultTLSPort
		case TransportSSH:
			port = DefaultSSHPort
		}
	}
	return net.JoinHostPort(u.Host, port)
}

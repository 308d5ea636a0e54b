package virt

import (
	"errors"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	for _, tt := range []struct {
		in     string
		want   URI // raw is ignored
		addr   string
		remote bool
	}{
		{in: "qemu:///system", want: URI{Transport: TransportUnix}},
		{in: "qemu+unix:///system", want: URI{Transport: TransportUnix}},
		{in: "qemu+unix:///system?socket=/run/libvirt/libvirt-sock", want: URI{Transport: TransportUnix, Socket: "/run/libvirt/libvirt-sock"}},
		{in: "qemu+tcp://host1/system", want: URI{Transport: TransportTCP, Host: "host1"}, addr: "host1:16509", remote: true},
		{in: "qemu+tcp://host1:1234/system", want: URI{Transport: TransportTCP, Host: "host1", Port: "1234"}, addr: "host1:1234", remote: true},
		{in: "qemu://host1/system", want: URI{Transport: TransportTLS, Host: "host1"}, addr: "host1:16514", remote: true},
		{in: "qemu+tls://host1/system?pkipath=/etc/pki/x", want: URI{Transport: TransportTLS, Host: "host1", PKIPath: "/etc/pki/x"}, addr: "host1:16514", remote: true},
		{in: "qemu+ssh://root@127.0.0.1/system", want: URI{Transport: TransportSSH, User: "root", Host: "127.0.0.1"}, addr: "127.0.0.1:22", remote: true},
		{in: "qemu+ssh://h:2222/system?socket=/run/libvirt/virtqemud-sock&keyfile=/k&known_hosts=/kh&no_tty=1",
			want: URI{Transport: TransportSSH, Host: "h", Port: "2222", Socket: "/run/libvirt/virtqemud-sock", KeyFile: "/k", KnownHosts: "/kh"}, addr: "h:2222", remote: true},
		{in: "qemu+ssh://admin@[::1]:2222/system", want: URI{Transport: TransportSSH, User: "admin", Host: "::1", Port: "2222"}, addr: "[::1]:2222", remote: true},
		{in: "qemu+libssh2://h/system", want: URI{Transport: TransportSSH, Host: "h"}, addr: "h:22", remote: true},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseURI(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.in {
				t.Errorf("String() = %q", got.String())
			}
			got.raw = ""
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if got.Remote() != tt.remote {
				t.Errorf("Remote() = %v", got.Remote())
			}
			if tt.addr != "" && got.Addr() != tt.addr {
				t.Errorf("Addr() = %q, want %q", got.Addr(), tt.addr)
			}
		})
	}
}

func TestParseURIRefused(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", "not a URI"},
		{"/run/libvirt/libvirt-sock", "not a URI"},
		{"qemu:///session", "session is a user's private QEMU driver"},
		{"qemu+ssh://h/session", "session"},
		{"qemu:///", "end the URI with /system"},
		{"qemu+ssh://h", "end the URI with /system"},
		{"lxc:///system", `driver "lxc"`},
		{"test:///default", `driver "test"`},
		{"qemu+ext:///system?command=/bin/x", `transport "ext"`},
		{"qemu+unix://host/system", "names no host"},
		{"qemu+tcp:///system", "needs a host"},
		{"qemu+ssh:///system", "needs a host"},
		{"qemu+tcp://u@h/system", "only used by qemu+ssh"},
		{"qemu+ssh://u:pw@h/system", "a password in the URI"},
		{"qemu+ssh://h/system?no_verify=1", "always verifies"},
		{"qemu+ssh://h/system?netcat=nc", "parameter netcat"},
		{"qemu+tcp://h/system?socket=/x", "parameter socket"},
		{"qemu+unix:///system?socket=relative", "absolute path"},
		{"qemu+unix:///system?socket=/a&socket=/b", "given 2 times"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseURI(tt.in)
			if !errors.Is(err, ErrURI) {
				t.Fatalf("err = %v, want ErrURI", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to say %q", err, tt.want)
			}
		})
	}
}

func TestUnixSocketURI(t *testing.T) {
	u, err := UnixSocketURI("/tmp/a b&c")
	if err != nil {
		t.Fatal(err)
	}
	if u.Transport != TransportUnix || u.Socket != "/tmp/a b&c" || u.Remote() {
		t.Errorf("got %+v", u)
	}
	if u, _ := UnixSocketURI("/run/libvirt/libvirt-sock"); u.String() != "qemu+unix:///system?socket=/run/libvirt/libvirt-sock" {
		t.Errorf("String() = %q", u)
	}
	if (URI{}).Remote() || (URI{}).String() != LocalURI {
		t.Error("zero URI is not the local one")
	}
}

package cli

import (
	"strings"
	"testing"
)

// TestConnectResolve: the precedence of virsh (-c, then
// $LIBVIRT_DEFAULT_URI, then the local default), with --connect-socket and
// $VIRTMQ_LIBVIRT_SOCKET as local aliases, and no fallback ever.
func TestConnectResolve(t *testing.T) {
	for _, tt := range []struct {
		name        string
		uri, socket string
		vars        map[string]string
		want        string // the URI, or the error text
		source      string
		fails       bool
	}{
		{name: "default", want: "qemu:///system", source: "default"},
		{name: "-c", uri: "qemu+ssh://root@h/system", want: "qemu+ssh://root@h/system", source: "-c"},
		{name: "--connect-socket", socket: "/s", want: "qemu+unix:///system?socket=/s", source: "--connect-socket"},
		{name: "both flags", uri: "qemu:///system", socket: "/s", fails: true, want: "not both"},
		{name: "env URI", vars: map[string]string{URIEnvVar: "qemu+tcp://h/system"}, want: "qemu+tcp://h/system", source: "$LIBVIRT_DEFAULT_URI"},
		{name: "env socket", vars: map[string]string{SocketEnvVar: "/e"}, want: "qemu+unix:///system?socket=/e", source: "$VIRTMQ_LIBVIRT_SOCKET"},
		{name: "-c beats env", uri: "qemu:///system", vars: map[string]string{URIEnvVar: "qemu+tcp://h/system"}, want: "qemu:///system", source: "-c"},
		{name: "--connect-socket beats env URI", socket: "/s", vars: map[string]string{URIEnvVar: "qemu+tcp://h/system"},
			want: "qemu+unix:///system?socket=/s", source: "--connect-socket"},
		{name: "env socket picks the socket of a local env URI", vars: map[string]string{URIEnvVar: "qemu:///system", SocketEnvVar: "/e"},
			want: "qemu+unix:///system?socket=/e", source: "$VIRTMQ_LIBVIRT_SOCKET"},
		{name: "env socket and a remote env URI conflict", vars: map[string]string{URIEnvVar: "qemu+ssh://h/system", SocketEnvVar: "/e"},
			fails: true, want: "name different connections"},
		{name: "bad env URI", vars: map[string]string{URIEnvVar: "xen:///system"}, fails: true, want: "$LIBVIRT_DEFAULT_URI: unsupported libvirt URI"},
		{name: "bad -c", uri: "qemu:///session", fails: true, want: "session"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRun(t, nil, tt.vars)
			cf := &connectFlags{uri: tt.uri, socket: tt.socket}
			u, source, err := cf.resolve(r.env)
			switch {
			case tt.fails && err == nil:
				t.Fatalf("resolved %s", u)
			case tt.fails:
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("err = %v, want it to say %q", err, tt.want)
				}
			case err != nil:
				t.Fatal(err)
			case u.String() != tt.want || source != tt.source:
				t.Errorf("got %s from %s, want %s from %s", u, source, tt.want, tt.source)
			}
		})
	}
}

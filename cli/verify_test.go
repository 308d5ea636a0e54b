package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/verify"
	"github.com/virtmq/virtmq/internal/verify/verifytest"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// startDB defines and starts testdata/db.xml (kvm, 4 vCPUs, one network
// NIC with 4 queues: compliant) and returns its host fixture.
func startDB(t *testing.T, fake *virttest.Conn, vhostWorkers int) *verifytest.Host {
	t.Helper()
	define(t, fake, "db.xml")
	if err := fake.Start("db"); err != nil {
		t.Fatal(err)
	}
	return verifytest.NewHost(t, "db", true, vhostWorkers)
}

func runVerifyTest(t *testing.T, fake *virttest.Conn, host verify.Host, args ...string) (code int, r *testRun) {
	t.Helper()
	r = newTestRun(t, fake, nil)
	args = append([]string{"--policy", testPolicy}, args...)
	return verifyMain(context.Background(), r.env, args, host), r
}

func TestVerifyPass(t *testing.T) {
	fake := virttest.New()
	h := startDB(t, fake, 4)
	tap := verifytest.LiveTap(t, fake, "db", 0)
	h.SetTap(tap, 4, 0)
	verifytest.SetMonitor(fake, map[string]int{"net0": 9}, true)
	verifytest.SetGuest(fake, verifytest.LinuxGuest("52:54:00:ab:cd:01", guest.Channels{Max: 4, Current: 4}))

	code, r := runVerifyTest(t, fake, h.Host, "db")
	if code != ExitOK {
		t.Errorf("exit %d; stderr:\n%s\nstdout:\n%s", code, r.stderr, r.stdout)
	}
	want := []string{
		"verify db (policy testdata/policy.yaml)",
		"OK   host: libvirt answers a capabilities call in 0s",
		"OK   52:54:00:ab:cd:01 running queues 4 = wanted 4",
		"OK   52:54:00:ab:cd:01 QMP num-vqs 9: queue pairs 4 = wanted 4",
		"OK   52:54:00:ab:cd:01 QMP guest negotiated VIRTIO_NET_F_MQ",
		"OK   52:54:00:ab:cd:01 tap " + tap + " queues 4 = wanted 4",
		"OK   52:54:00:ab:cd:01 tap " + tap + " active queues 4 = wanted combined 4",
		"OK   guest eth0 combined 4 = wanted 4",
		"OK   guest eth0 max combined 4 = queues 4",
		"OK   guest eth0 virtio interrupts: 4 input, 4 output = queues 4",
		"OK   vhost workers vhost-4242: 4 = 4 queue pairs on vhost NICs",
		"db complies with the policy: 10 OK, 0 FAIL, 0 SKIP",
	}
	if got := strings.TrimSpace(r.stdout.String()); got != strings.Join(want, "\n") {
		t.Errorf("report:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if taps := h.Taps(); len(taps) == 0 || taps[0] != tap {
		t.Errorf("ip ran on %q, want %q", taps, tap)
	}
	if fake.Connections() != 1 {
		t.Errorf("verify left %d connections open", fake.Connections()-1)
	}
	if n := fake.Calls(virttest.MethodDomainXMLSecure); n != 0 {
		t.Errorf("verify read XML with secrets %d times; it redefines nothing", n)
	}
}

// TestVerifyRemote: on a remote URI the checks that read this host are
// skipped, saying so; those through libvirt run.
func TestVerifyRemote(t *testing.T) {
	fake := virttest.New()
	h := startDB(t, fake, 4)
	tap := verifytest.LiveTap(t, fake, "db", 0)
	h.SetTap(tap, 1, 3) // would FAIL if it were read
	verifytest.SetMonitor(fake, map[string]int{"net0": 9}, true)
	verifytest.SetGuest(fake, verifytest.LinuxGuest("52:54:00:ab:cd:01", guest.Channels{Max: 4, Current: 4}))

	const uri = "qemu+ssh://root@host2/system"
	code, r := runVerifyTest(t, fake, h.Host, "-c", uri, "db")
	if code != ExitOK {
		t.Errorf("exit %d; stderr:\n%s\nstdout:\n%s", code, r.stderr, r.stdout)
	}
	wantLines(t, "report", r.stdout.String(),
		"SKIP host: /dev/kvm: remote host ("+uri+"): host-local check not run",
		"OK   host: libvirt answers a capabilities call",
		"OK   52:54:00:ab:cd:01 QMP num-vqs 9: queue pairs 4 = wanted 4",
		"SKIP 52:54:00:ab:cd:01 tap "+tap+": remote host ("+uri+"): host-local check not run",
		"OK   guest eth0 combined 4 = wanted 4",
		"SKIP vhost workers: remote host ("+uri+"): host-local check not run",
	)
	if taps := h.Taps(); len(taps) != 0 {
		t.Errorf("ip ran on %q for a remote domain", taps)
	}
	if strings.Join(r.uris, ",") != uri {
		t.Errorf("dialed %q", r.uris)
	}
}

func TestVerifyFailures(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(t *testing.T, fake *virttest.Conn) *verifytest.Host
		args      []string
		wantCode  int
		want, not []string
	}{
		{
			name: "guest left at one queue",
			setup: func(t *testing.T, fake *virttest.Conn) *verifytest.Host {
				h := startDB(t, fake, 4)
				h.SetTap(verifytest.LiveTap(t, fake, "db", 0), 1, 3)
				verifytest.SetMonitor(fake, map[string]int{"net0": 9}, true)
				verifytest.SetGuest(fake, verifytest.LinuxGuest("52:54:00:ab:cd:01", guest.Channels{Max: 4, Current: 1}))
				return h
			},
			wantCode: ExitFailure,
			want: []string{
				"OK   52:54:00:ab:cd:01 running queues 4 = wanted 4",
				" queues 4 = wanted 4",
				" active queues 1 != wanted combined 4 (numqueues 1 numdisabled 3: the guest uses 1)",
				"FAIL guest eth0 combined 1 != wanted 4 (max 4; the agent runs ethtool -L eth0 combined 4)",
				"db does NOT comply with the policy: 8 OK, 2 FAIL, 0 SKIP",
			},
		},
		{
			name: "running with the old count",
			setup: func(t *testing.T, fake *virttest.Conn) *verifytest.Host {
				define(t, fake, "web.xml")
				if err := fake.Start("web"); err != nil {
					t.Fatal(err)
				}
				h := verifytest.NewHost(t, "web", true, 4)
				h.SetTap(verifytest.LiveTap(t, fake, "web", 0), 1, 0)
				h.SetTap(verifytest.LiveTap(t, fake, "web", 1), 2, 0)
				verifytest.SetMonitor(fake, map[string]int{"net0": 3, "net1": 5}, true)
				return h
			},
			args:     []string{"web"},
			wantCode: ExitFailure,
			want: []string{
				"FAIL 52:54:00:12:34:56 running queues 1 != wanted 4 (\"virtmq apply\" sets the definition; it applies at the next cold boot: shutdown + start, a reboot keeps the old count)",
				"FAIL 52:54:00:12:34:56 QMP num-vqs 3: queue pairs 1 != wanted 4",
				"FAIL 52:54:00:12:34:57 running queues 2 != wanted 4",
				"FAIL 52:54:00:12:34:57 tap vnet2 queues 2 != wanted 4",
				"SKIP 52:54:00:12:34:58 network/virtio not managed by the policy: excluded by rule mgmt",
				"SKIP 52:54:00:12:34:59 user/e1000 not managed by the policy: model e1000 is not virtio",
				"SKIP 52:54:00:12:34:56 guest: guest-info: guest agent is not connected",
				"SKIP 52:54:00:12:34:57 guest: guest-info: guest agent is not connected",
				"OK   vhost workers vhost-4242: 4 = 4 queue pairs on vhost NICs", // the unmanaged mgmt NIC uses vhost too
			},
		},
		{
			name: "guest-exec disabled",
			setup: func(t *testing.T, fake *virttest.Conn) *verifytest.Host {
				h := startDB(t, fake, 4)
				h.SetTap(verifytest.LiveTap(t, fake, "db", 0), 4, 0)
				verifytest.SetMonitor(fake, map[string]int{"net0": 9}, true)
				g := verifytest.LinuxGuest("52:54:00:ab:cd:01", guest.Channels{Max: 4, Current: 4})
				g.Disabled = []string{"guest-exec", "guest-exec-status"}
				verifytest.SetGuest(fake, g)
				return h
			},
			wantCode: ExitOK,
			want: []string{
				"SKIP 52:54:00:ab:cd:01 guest: ",
				"guest-exec is disabled by the guest's qemu-ga policy",
				"db complies with the policy: 7 OK, 0 FAIL, 1 SKIP",
			},
		},
		{
			name: "MQ not negotiated",
			setup: func(t *testing.T, fake *virttest.Conn) *verifytest.Host {
				h := startDB(t, fake, 4)
				h.SetTap(verifytest.LiveTap(t, fake, "db", 0), 4, 0)
				verifytest.SetMonitor(fake, map[string]int{"net0": 9}, false)
				return h
			},
			wantCode: ExitFailure,
			want:     []string{"FAIL 52:54:00:ab:cd:01 QMP guest did not negotiate VIRTIO_NET_F_MQ"},
		},
		{
			name: "old QEMU, no vhost-net, tap gone",
			setup: func(t *testing.T, fake *virttest.Conn) *verifytest.Host {
				define(t, fake, "db.xml")
				if err := fake.Start("db"); err != nil {
					t.Fatal(err)
				}
				return verifytest.NewHost(t, "db", false, 0)
			},
			wantCode: ExitFailure,
			want: []string{
				"SKIP 52:54:00:ab:cd:01 QMP: ",
				"needs QEMU 7.2 or newer",
				"FAIL 52:54:00:ab:cd:01 tap vnet1: ip -d link show dev vnet1: ",
				"/vhost-net on this host: QEMU uses userspace virtio-net",
			},
		},
		{
			name: "TCG domain with a guest combined count below N",
			setup: func(t *testing.T, fake *virttest.Conn) *verifytest.Host {
				define(t, fake, "half-vm.xml")
				if err := fake.Start("half-vm"); err != nil {
					t.Fatal(err)
				}
				h := verifytest.NewHost(t, "half-vm", true, 0)
				h.SetTap(verifytest.LiveTap(t, fake, "half-vm", 0), 2, 2)
				verifytest.SetMonitor(fake, map[string]int{"net0": 9}, true)
				verifytest.SetGuest(fake, verifytest.LinuxGuest("52:54:00:aa:00:01", guest.Channels{Max: 4, Current: 2}))
				return h
			},
			args:     []string{"half-vm"},
			wantCode: ExitOK,
			want: []string{
				" active queues 2 = wanted combined 2",
				"OK   guest eth0 combined 2 = wanted 2",
				"OK   guest eth0 max combined 4 = queues 4",
				"SKIP vhost workers: domain type qemu: libvirt uses vhost-net for kvm domains only",
			},
		},
		{
			name: "no ethtool in the guest",
			setup: func(t *testing.T, fake *virttest.Conn) *verifytest.Host {
				h := startDB(t, fake, 4)
				h.SetTap(verifytest.LiveTap(t, fake, "db", 0), 4, 0)
				verifytest.SetMonitor(fake, map[string]int{"net0": 9}, true)
				g := verifytest.LinuxGuest("52:54:00:ab:cd:01", guest.Channels{Max: 4, Current: 4})
				delete(g.Programs, "/usr/sbin/ethtool")
				verifytest.SetGuest(fake, g)
				return h
			},
			wantCode: ExitOK,
			want: []string{
				"SKIP guest eth0 combined: ",
				"ethtool not found in the guest",
				"OK   guest eth0 virtio interrupts: 4 input, 4 output = queues 4",
			},
		},
		{
			name: "guest NIC not found",
			setup: func(t *testing.T, fake *virttest.Conn) *verifytest.Host {
				h := startDB(t, fake, 4)
				h.SetTap(verifytest.LiveTap(t, fake, "db", 0), 4, 0)
				verifytest.SetMonitor(fake, map[string]int{"net0": 9}, true)
				verifytest.SetGuest(fake, verifytest.LinuxGuest("52:54:00:00:00:99", guest.Channels{Max: 4, Current: 4}))
				return h
			},
			wantCode: ExitOK,
			want:     []string{"SKIP 52:54:00:ab:cd:01 guest: ", "no guest interface has the NIC's MAC address"},
		},
		{
			name: "vhost fell back to userspace",
			setup: func(t *testing.T, fake *virttest.Conn) *verifytest.Host {
				h := startDB(t, fake, 0)
				h.SetTap(verifytest.LiveTap(t, fake, "db", 0), 4, 0)
				verifytest.SetMonitor(fake, map[string]int{"net0": 9}, true)
				return h
			},
			wantCode: ExitOK,
			want:     []string{"SKIP vhost workers: none named vhost-4242: QEMU fell back to userspace virtio-net"},
		},
		{
			name: "too few vhost workers",
			setup: func(t *testing.T, fake *virttest.Conn) *verifytest.Host {
				h := startDB(t, fake, 2)
				h.SetTap(verifytest.LiveTap(t, fake, "db", 0), 4, 0)
				verifytest.SetMonitor(fake, map[string]int{"net0": 9}, true)
				return h
			},
			wantCode: ExitFailure,
			want:     []string{"FAIL vhost workers vhost-4242: 2 < 4 queue pairs on vhost NICs"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := virttest.New()
			h := tt.setup(t, fake)
			args := tt.args
			if args == nil {
				args = []string{"db"}
			}
			code, r := runVerifyTest(t, fake, h.Host, args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.wantCode, r.stderr)
			}
			if r.stderr.Len() > 0 {
				t.Logf("stderr: %s", r.stderr)
			}
			wantLines(t, "report", r.stdout.String(), tt.want...)
			wantNot(t, "report", r.stdout.String(), tt.not...)
		})
	}
}

func TestVerifyJSON(t *testing.T) {
	fake := virttest.New()
	h := startDB(t, fake, 4)
	h.SetTap(verifytest.LiveTap(t, fake, "db", 0), 1, 3)
	verifytest.SetMonitor(fake, map[string]int{"net0": 9}, true)

	code, r := runVerifyTest(t, fake, h.Host, "--json", "db")
	if code != ExitFailure {
		t.Errorf("exit %d, want %d", code, ExitFailure)
	}
	var rep verifyReport
	if err := json.Unmarshal(r.stdout.Bytes(), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, r.stdout)
	}
	if rep.Domain != "db" || rep.OK || len(rep.Checks) == 0 {
		t.Errorf("report: %+v", rep)
	}
	var found bool
	for _, c := range rep.Checks {
		if c.Name == "tap-active" {
			found = true
			if c.Status != checkFail || c.Got == nil || *c.Got != 1 || c.Want == nil || *c.Want != 4 || c.MAC != "52:54:00:ab:cd:01" {
				t.Errorf("tap-active check: %+v", c)
			}
		}
	}
	if !found {
		t.Errorf("no tap-active check in %+v", rep.Checks)
	}
}

func TestVerifyNotRunning(t *testing.T) {
	fake := virttest.New()
	define(t, fake, "db.xml")
	tests := []struct {
		name     string
		args     []string
		fake     *virttest.Conn
		wantCode int
		stderr   string
	}{
		{"shut off", []string{"db"}, fake, ExitFailure, "virtmq verify: db is not running: there is nothing to verify"},
		{"unknown", []string{"nosuch"}, fake, ExitFailure, "virtmq verify: nosuch: no such domain"},
		{"no libvirt", []string{"db"}, nil, ExitFailure, "virtmq verify: cannot connect to libvirt at qemu:///system (from default):"},
		{"no domain given", nil, fake, ExitUsage, "Usage: virtmq verify"},
		{"two domains", []string{"db", "web"}, fake, ExitUsage, "Usage: virtmq verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, r := runVerifyTest(t, tt.fake, verify.DefaultHost(), tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d", code, tt.wantCode)
			}
			wantLines(t, "stderr", r.stderr.String(), tt.stderr)
		})
	}
}

func TestVerifyHelp(t *testing.T) {
	r := newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, []string{"verify", "--help"}); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	wantLines(t, "help", r.stdout.String(), "Usage: virtmq verify", "x-query-virtio-status", "ip -d link show dev TAP",
		"ethtool -l", "vhost-<qemu pid>", "SKIP", "custom-monitor", "-c URI", "-connect URI", "-connect-socket", "--timeout", "Exits 1")
}

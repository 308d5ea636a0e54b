package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/guest/guesttest"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

const qemuPID = 4242

// hostFixture is a fake host for verify: /proc, /run, /dev and ip.
type hostFixture struct {
	host verifyHost
	// ipOut is what the fake ip prints, by tap name.
	mu    sync.Mutex
	ipOut map[string]string
	taps  []string
}

// newHostFixture builds a host with /dev/vhost-net (when vhost), a QEMU
// pid file for domain and QEMU tasks including workers vhost threads.
func newHostFixture(t *testing.T, domain string, vhost bool, workers int) *hostFixture {
	t.Helper()
	root := t.TempDir()
	f := &hostFixture{ipOut: map[string]string{}}
	f.host = verifyHost{
		ProcRoot: filepath.Join(root, "proc"),
		RunRoot:  filepath.Join(root, "run"),
		DevRoot:  filepath.Join(root, "dev"),
		EtcRoot:  filepath.Join(root, "etc"),
		Now:      func() time.Time { return time.Unix(1e9, 0) },
		IPPaths:  []string{filepath.Join(root, "sbin", "ip")},
		RunIP: func(_ context.Context, path string, args ...string) ([]byte, error) {
			tap := args[len(args)-1]
			f.mu.Lock()
			defer f.mu.Unlock()
			f.taps = append(f.taps, tap)
			out, ok := f.ipOut[tap]
			if !ok {
				return nil, fmt.Errorf("%s: exit status 1: Device %q does not exist.", path, tap)
			}
			return []byte(out), nil
		},
	}
	writeExecutable(t, f.host.IPPaths[0], "#!/bin/false\n")
	if err := os.MkdirAll(f.host.DevRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	if vhost {
		if err := os.WriteFile(filepath.Join(f.host.DevRoot, "vhost-net"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pidDir := filepath.Join(f.host.RunRoot, "libvirt", "qemu")
	if err := os.MkdirAll(pidDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pidDir, domain+".pid"), []byte(strconv.Itoa(qemuPID)), 0o644); err != nil {
		t.Fatal(err)
	}
	tasks := []string{"qemu-system-x86", "CPU 0/KVM"}
	for range workers {
		tasks = append(tasks, "vhost-"+strconv.Itoa(qemuPID))
	}
	procTree(t, f.host.ProcRoot, qemuPID, tasks, nil)
	return f
}

// setTap makes the fake ip report a tap with active queues attached and
// disabled ones detached (numqueues active numdisabled disabled).
func (f *hostFixture) setTap(tap string, active, disabled int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ipOut[tap] = fmt.Sprintf("9: %s: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq master virbr0 state UNKNOWN mode DEFAULT\n"+
		"    tun type tap pi off vnet_hdr on multi_queue numqueues %d numdisabled %d persist off\n", tap, active, disabled)
}

// virtioStatusReply is QEMU 7.2's x-query-virtio-status reply for a
// virtio-net device with numVQs queues, through libvirt.
func virtioStatusReply(numVQs int, mq bool) []byte {
	feats := []string{
		`"VIRTIO_NET_F_GUEST_ANNOUNCE: Driver sending gratuitous packets supported"`,
		`"VIRTIO_NET_F_CTRL_VQ: Control channel available"`,
		`"VIRTIO_NET_F_MAC: Device has given MAC address"`,
	}
	if mq {
		feats = append([]string{`"VIRTIO_NET_F_MQ: Multiqueue with automatic receive steering supported"`}, feats...)
	}
	return fmt.Appendf(nil, `{"return":{"name":"virtio-net","device-id":1,"vhost-started":false,"device-endian":"little",`+
		`"guest-features":{"dev-features":[%s],"transports":["VIRTIO_RING_F_EVENT_IDX: Used & avail. event fields enabled","VIRTIO_F_VERSION_1: Device compliant for v1 spec (legacy)"]},`+
		`"num-vqs":%d,"status":{"statuses":["VIRTIO_CONFIG_S_DRIVER_OK: Driver setup and ready"]},"isr":0,"queue-sel":%d,`+
		`"vm-running":true,"broken":false,"disabled":false,"use-started":true,"started":true,"start-on-kick":false,`+
		`"disable-legacy-check":false,"bus-name":"","use-guest-notifier-mask":true},"id":"libvirt-421"}`,
		strings.Join(feats, ","), numVQs, numVQs-1)
}

var qomPath = regexp.MustCompile(`/machine/peripheral/([A-Za-z0-9_-]+)/virtio-backend`)

// setMonitor scripts QMP: num-vqs by alias, and whether MQ was negotiated.
func setMonitor(fake *virttest.Conn, numVQs map[string]int, mq bool) {
	fake.SetMonitor(func(_ context.Context, _ virt.Domain, cmd []byte) ([]byte, error) {
		var c struct {
			Execute string `json:"execute"`
		}
		if err := json.Unmarshal(cmd, &c); err != nil {
			return nil, err
		}
		if c.Execute != "x-query-virtio-status" {
			return []byte(`{"error":{"class":"CommandNotFound","desc":"The command ` + c.Execute + ` has not been found"}}`), nil
		}
		m := qomPath.FindSubmatch(cmd)
		n, ok := numVQs[string(m[1])]
		if m == nil || !ok {
			return []byte(`{"error":{"class":"GenericError","desc":"Path /machine/peripheral/x/virtio-backend is not a VirtIODevice"}}`), nil
		}
		return virtioStatusReply(n, mq), nil
	})
}

// linuxGuest is a Debian guest with eth0 at mac and its channel counts.
func linuxGuest(t *testing.T, mac string, ch guest.Channels) *guesttest.Guest {
	return &guesttest.Guest{
		Interfaces: []guesttest.Interface{{Name: "lo", MAC: "00:00:00:00:00:00"}, {Name: "eth0", MAC: mac}},
		Programs: map[string]guesttest.Program{
			"/usr/sbin/ethtool": (&guesttest.Ethtool{NICs: map[string]*guest.Channels{"eth0": &ch}}).Run,
			"/bin/cat":          guesttest.Files(map[string][]byte{"/proc/interrupts": readFixture(t, "proc-interrupts.txt")}),
			"/usr/bin/readlink": guesttest.Links(map[string]string{"/sys/class/net/eth0/device": "../../../virtio0"}),
		},
	}
}

// setGuest connects g as the fake's guest agent.
func setGuest(fake *virttest.Conn, g *guesttest.Guest) {
	a := g.Agent()
	fake.SetAgent(func(ctx context.Context, _ virt.Domain, cmd []byte, timeout time.Duration) ([]byte, error) {
		return a.Command(ctx, cmd, timeout)
	})
}

// liveTap returns the tap name the fake gave NIC index i of a running domain.
func liveTap(t *testing.T, fake *virttest.Conn, name string, i int) string {
	t.Helper()
	live, ok := fake.LiveXML(name)
	if !ok {
		t.Fatalf("%s is not running", name)
	}
	m := regexp.MustCompile(`<target dev='([^']+)'/>`).FindAllSubmatch(live, -1)
	if i >= len(m) {
		t.Fatalf("no tap %d in live XML", i)
	}
	return string(m[i][1])
}

// startDB defines and starts testdata/db.xml (kvm, 4 vCPUs, one network
// NIC with 4 queues: compliant) and returns its host fixture.
func startDB(t *testing.T, fake *virttest.Conn, vhostWorkers int) *hostFixture {
	t.Helper()
	define(t, fake, "db.xml")
	if err := fake.Start("db"); err != nil {
		t.Fatal(err)
	}
	return newHostFixture(t, "db", true, vhostWorkers)
}

func runVerifyTest(t *testing.T, fake *virttest.Conn, host verifyHost, args ...string) (code int, r *testRun) {
	t.Helper()
	r = newTestRun(t, fake, nil)
	args = append([]string{"--policy", testPolicy}, args...)
	return verifyMain(context.Background(), r.env, args, host), r
}

func TestVerifyPass(t *testing.T) {
	fake := virttest.New()
	h := startDB(t, fake, 4)
	tap := liveTap(t, fake, "db", 0)
	h.setTap(tap, 4, 0)
	setMonitor(fake, map[string]int{"net0": 9}, true)
	setGuest(fake, linuxGuest(t, "52:54:00:ab:cd:01", guest.Channels{Max: 4, Current: 4}))

	code, r := runVerifyTest(t, fake, h.host, "db")
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
	if h.taps[0] != tap {
		t.Errorf("ip ran on %q, want %q", h.taps, tap)
	}
	if fake.Connections() != 1 {
		t.Errorf("verify left %d connections open", fake.Connections()-1)
	}
	if n := fake.Calls(virttest.MethodDomainXMLSecure); n != 0 {
		t.Errorf("verify read XML with secrets %d times; it redefines nothing", n)
	}
}

func TestVerifyFailures(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(t *testing.T, fake *virttest.Conn) *hostFixture
		args      []string
		wantCode  int
		want, not []string
	}{
		{
			name: "guest left at one queue",
			setup: func(t *testing.T, fake *virttest.Conn) *hostFixture {
				h := startDB(t, fake, 4)
				h.setTap(liveTap(t, fake, "db", 0), 1, 3)
				setMonitor(fake, map[string]int{"net0": 9}, true)
				setGuest(fake, linuxGuest(t, "52:54:00:ab:cd:01", guest.Channels{Max: 4, Current: 1}))
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
			setup: func(t *testing.T, fake *virttest.Conn) *hostFixture {
				define(t, fake, "web.xml")
				if err := fake.Start("web"); err != nil {
					t.Fatal(err)
				}
				h := newHostFixture(t, "web", true, 4)
				h.setTap(liveTap(t, fake, "web", 0), 1, 0)
				h.setTap(liveTap(t, fake, "web", 1), 2, 0)
				setMonitor(fake, map[string]int{"net0": 3, "net1": 5}, true)
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
			setup: func(t *testing.T, fake *virttest.Conn) *hostFixture {
				h := startDB(t, fake, 4)
				h.setTap(liveTap(t, fake, "db", 0), 4, 0)
				setMonitor(fake, map[string]int{"net0": 9}, true)
				g := linuxGuest(t, "52:54:00:ab:cd:01", guest.Channels{Max: 4, Current: 4})
				g.Disabled = []string{"guest-exec", "guest-exec-status"}
				setGuest(fake, g)
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
			setup: func(t *testing.T, fake *virttest.Conn) *hostFixture {
				h := startDB(t, fake, 4)
				h.setTap(liveTap(t, fake, "db", 0), 4, 0)
				setMonitor(fake, map[string]int{"net0": 9}, false)
				return h
			},
			wantCode: ExitFailure,
			want:     []string{"FAIL 52:54:00:ab:cd:01 QMP guest did not negotiate VIRTIO_NET_F_MQ"},
		},
		{
			name: "old QEMU, no vhost-net, tap gone",
			setup: func(t *testing.T, fake *virttest.Conn) *hostFixture {
				define(t, fake, "db.xml")
				if err := fake.Start("db"); err != nil {
					t.Fatal(err)
				}
				return newHostFixture(t, "db", false, 0)
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
			setup: func(t *testing.T, fake *virttest.Conn) *hostFixture {
				define(t, fake, "half-vm.xml")
				if err := fake.Start("half-vm"); err != nil {
					t.Fatal(err)
				}
				h := newHostFixture(t, "half-vm", true, 0)
				h.setTap(liveTap(t, fake, "half-vm", 0), 2, 2)
				setMonitor(fake, map[string]int{"net0": 9}, true)
				setGuest(fake, linuxGuest(t, "52:54:00:aa:00:01", guest.Channels{Max: 4, Current: 2}))
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
			setup: func(t *testing.T, fake *virttest.Conn) *hostFixture {
				h := startDB(t, fake, 4)
				h.setTap(liveTap(t, fake, "db", 0), 4, 0)
				setMonitor(fake, map[string]int{"net0": 9}, true)
				g := linuxGuest(t, "52:54:00:ab:cd:01", guest.Channels{Max: 4, Current: 4})
				delete(g.Programs, "/usr/sbin/ethtool")
				setGuest(fake, g)
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
			setup: func(t *testing.T, fake *virttest.Conn) *hostFixture {
				h := startDB(t, fake, 4)
				h.setTap(liveTap(t, fake, "db", 0), 4, 0)
				setMonitor(fake, map[string]int{"net0": 9}, true)
				setGuest(fake, linuxGuest(t, "52:54:00:00:00:99", guest.Channels{Max: 4, Current: 4}))
				return h
			},
			wantCode: ExitOK,
			want:     []string{"SKIP 52:54:00:ab:cd:01 guest: ", "no guest interface has the NIC's MAC address"},
		},
		{
			name: "vhost fell back to userspace",
			setup: func(t *testing.T, fake *virttest.Conn) *hostFixture {
				h := startDB(t, fake, 0)
				h.setTap(liveTap(t, fake, "db", 0), 4, 0)
				setMonitor(fake, map[string]int{"net0": 9}, true)
				return h
			},
			wantCode: ExitOK,
			want:     []string{"SKIP vhost workers: none named vhost-4242: QEMU fell back to userspace virtio-net"},
		},
		{
			name: "too few vhost workers",
			setup: func(t *testing.T, fake *virttest.Conn) *hostFixture {
				h := startDB(t, fake, 2)
				h.setTap(liveTap(t, fake, "db", 0), 4, 0)
				setMonitor(fake, map[string]int{"net0": 9}, true)
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
			code, r := runVerifyTest(t, fake, h.host, args...)
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
	h.setTap(liveTap(t, fake, "db", 0), 1, 3)
	setMonitor(fake, map[string]int{"net0": 9}, true)

	code, r := runVerifyTest(t, fake, h.host, "--json", "db")
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
		{"no libvirt", []string{"db"}, nil, ExitFailure, "virtmq verify: connect to libvirt:"},
		{"no domain given", nil, fake, ExitUsage, "Usage: virtmq verify"},
		{"two domains", []string{"db", "web"}, fake, ExitUsage, "Usage: virtmq verify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, r := runVerifyTest(t, tt.fake, defaultVerifyHost(), tt.args...)
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
		"ethtool -l", "vhost-<qemu pid>", "SKIP", "custom-monitor", "--connect-socket", "--timeout", "Exits 1")
}

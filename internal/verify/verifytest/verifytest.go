// Package verifytest provides a fake host for package verify: a fixture
// tree (/proc with a QEMU process and its vhost workers, /run with its pid
// file, /dev, /etc) and an ip command that prints what the test sets per
// tap. It also scripts the other two boundaries the checks talk to: QMP
// (SetMonitor) and the guest agent (LinuxGuest, SetGuest), on a
// virttest.Conn.
package verifytest

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/guest/guesttest"
	"github.com/virtmq/virtmq/internal/verify"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// QEMUPID is the pid of the fake QEMU process.
const QEMUPID = 4242

// Clock is the time the fake host's clock always says: every libvirt call
// takes 0s.
var Clock = time.Unix(1e9, 0)

// Host is a fake host. Its Host field is what verify.Run takes.
type Host struct {
	Host verify.Host

	mu    sync.Mutex
	ipOut map[string]string // what the fake ip prints, by tap name
	taps  []string
}

// NewHost builds a host under t.TempDir() with DEV/vhost-net (when vhost),
// QEMU's pid file for domain, and QEMU's tasks including workers threads
// named vhost-QEMUPID. Its ip knows no tap until SetTap or SetIPOutput.
func NewHost(t testing.TB, domain string, vhost bool, workers int) *Host {
	t.Helper()
	root := t.TempDir()
	h := &Host{ipOut: map[string]string{}}
	h.Host = verify.Host{
		ProcRoot: filepath.Join(root, "proc"),
		RunRoot:  filepath.Join(root, "run"),
		DevRoot:  filepath.Join(root, "dev"),
		EtcRoot:  filepath.Join(root, "etc"),
		Now:      func() time.Time { return Clock },
		IPPaths:  []string{filepath.Join(root, "sbin", "ip")},
		RunIP: func(_ context.Context, path string, args ...string) ([]byte, error) {
			tap := args[len(args)-1]
			h.mu.Lock()
			defer h.mu.Unlock()
			h.taps = append(h.taps, tap)
			out, ok := h.ipOut[tap]
			if !ok {
				return nil, fmt.Errorf("%s: exit status 1: Device %q does not exist", path, tap)
			}
			return []byte(out), nil
		},
	}
	write(t, h.Host.IPPaths[0], "#!/bin/false\n", 0o755)
	if err := os.MkdirAll(h.Host.DevRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	if vhost {
		write(t, filepath.Join(h.Host.DevRoot, "vhost-net"), "", 0o600)
	}
	write(t, filepath.Join(h.Host.RunRoot, "libvirt", "qemu", domain+".pid"), strconv.Itoa(QEMUPID), 0o644)
	tasks := []string{"qemu-system-x86", "CPU 0/KVM"}
	for range workers {
		tasks = append(tasks, "vhost-"+strconv.Itoa(QEMUPID))
	}
	pid := strconv.Itoa(QEMUPID)
	write(t, filepath.Join(h.Host.ProcRoot, pid, "comm"), "qemu-system-x86\n", 0o644)
	for i, name := range tasks {
		write(t, filepath.Join(h.Host.ProcRoot, pid, "task", strconv.Itoa(QEMUPID+i), "comm"), name+"\n", 0o644)
	}
	return h
}

// write writes a file, making its directory.
func write(t testing.TB, path, s string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
}

// SetTap makes the fake ip report a tap with active queues attached and
// disabled ones detached (numqueues active numdisabled disabled).
func (h *Host) SetTap(tap string, active, disabled int) {
	h.SetIPOutput(tap, fmt.Sprintf("9: %s: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq master virbr0 state UNKNOWN mode DEFAULT\n"+
		"    tun type tap pi off vnet_hdr on multi_queue numqueues %d numdisabled %d persist off\n", tap, active, disabled))
}

// SetIPOutput makes the fake ip print out for tap (a recorded output, say).
func (h *Host) SetIPOutput(tap, out string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ipOut[tap] = out
}

// Taps returns the taps ip was run on, in order.
func (h *Host) Taps() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.taps)
}

// VirtioStatusReply is QEMU 7.2's x-query-virtio-status reply for a
// virtio-net device with numVQs queues, through libvirt.
func VirtioStatusReply(numVQs int, mq bool) []byte {
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

// SetMonitor scripts QMP: num-vqs by device alias, and whether the guest
// negotiated MQ. Other commands are not found, other devices are not
// virtio devices, as QEMU 7.2 answers.
func SetMonitor(fake *virttest.Conn, numVQs map[string]int, mq bool) {
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
		if m == nil {
			return []byte(`{"error":{"class":"GenericError","desc":"Path /machine/peripheral/x/virtio-backend is not a VirtIODevice"}}`), nil
		}
		n, ok := numVQs[string(m[1])]
		if !ok {
			return []byte(`{"error":{"class":"GenericError","desc":"Path /machine/peripheral/x/virtio-backend is not a VirtIODevice"}}`), nil
		}
		return VirtioStatusReply(n, mq), nil
	})
}

// procInterrupts is /proc/interrupts of a Debian guest with one 4-queue
// virtio-net NIC (virtio0).
//
//go:embed testdata/proc-interrupts.txt
var procInterrupts []byte

// LinuxGuest is a Debian guest with eth0 (virtio0, 4 queue pairs in
// /proc/interrupts) at mac and its channel counts.
func LinuxGuest(mac string, ch guest.Channels) *guesttest.Guest {
	return &guesttest.Guest{
		Interfaces: []guesttest.Interface{{Name: "lo", MAC: "00:00:00:00:00:00"}, {Name: "eth0", MAC: mac}},
		Programs: map[string]guesttest.Program{
			"/usr/sbin/ethtool": (&guesttest.Ethtool{NICs: map[string]*guest.Channels{"eth0": &ch}}).Run,
			"/bin/cat":          guesttest.Files(map[string][]byte{"/proc/interrupts": procInterrupts}),
			"/usr/bin/readlink": guesttest.Links(map[string]string{"/sys/class/net/eth0/device": "../../../virtio0"}),
		},
	}
}

// SetGuest connects g as the fake's guest agent.
func SetGuest(fake *virttest.Conn, g *guesttest.Guest) {
	a := g.Agent()
	fake.SetAgent(func(ctx context.Context, _ virt.Domain, cmd []byte, timeout time.Duration) ([]byte, error) {
		return a.Command(ctx, cmd, timeout)
	})
}

// LiveTap returns the tap name the fake gave NIC index i of a running domain.
func LiveTap(t testing.TB, fake *virttest.Conn, name string, i int) string {
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

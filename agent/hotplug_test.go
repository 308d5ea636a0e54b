package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// steps records the M of every guest step per MAC.
type steps struct {
	mu sync.Mutex
	m  map[string][]int
}

func (s *steps) fn(_ context.Context, _, mac string, m int) (guest.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string][]int{}
	}
	s.m[mac] = append(s.m[mac], m)
	return okResult(m), nil
}

func (s *steps) last(mac string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.m[mac]; len(l) > 0 {
		return l[len(l)-1]
	}
	return 0
}

func nicXML(m string, queues int) []byte {
	d := ""
	if queues > 0 {
		d = fmt.Sprintf("<driver queues='%d'/>", queues)
	}
	return []byte(fmt.Sprintf("<interface type='bridge'><mac address='%s'/><source bridge='br0'/><model type='virtio'/>%s</interface>\n", m, d))
}

func nicByMAC(d status.Domain, m string) (status.NIC, bool) {
	for _, n := range d.NICs {
		if n.MAC == m {
			return n, true
		}
	}
	return status.NIC{}, false
}

func TestHotplugNIC(t *testing.T) {
	h := newHarness(t)
	// The plugged NICs' queues='4' are a person's (no record of virtmq's):
	// this test is about hot-plug, so virtmq owns them (TestHotplugHandSetKept
	// is the default).
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(testPolicy+"  hand_set: override\n"), 0o644))
	var st steps
	h.cfg.GuestStep = newFakeGuestStep(st.fn).step
	h.start()
	mustDefine(t, h.fake, domainXML("hp", 4, 4, mac(1)))
	must(t, h.fake.Start("hp"))
	must(t, h.fake.AgentConnect("hp"))
	h.waitState("hp", status.StateCompliant)

	// --live --config with queues: DEVICE_ADDED only; the guest step runs.
	must(t, h.fake.AttachInterface("hp", nicXML(mac(2), 4), true, true))
	h.waitFor("guest step on the plugged NIC", func(s status.Snapshot) bool {
		d, _ := findDomain(s, "hp")
		n, ok := nicByMAC(d, mac(2))
		return ok && n.GuestStep == guestDone && d.State == status.StateCompliant
	})

	// --live only with queues: not in the definition, still stepped.
	must(t, h.fake.AttachInterface("hp", nicXML(mac(3), 4), true, false))
	h.waitFor("guest step on the live-only NIC", func(s status.Snapshot) bool {
		d, _ := findDomain(s, "hp")
		n, ok := nicByMAC(d, mac(3))
		return ok && n.GuestStep == guestDone
	})
	if st.last(mac(3)) != 4 {
		t.Errorf("M of the live-only NIC = %d, want 4", st.last(mac(3)))
	}

	// --live --config single-queue: pending, and the definition rewritten.
	must(t, h.fake.AttachInterface("hp", nicXML(mac(4), 0), true, true))
	d := h.waitState("hp", status.StatePendingColdBoot)
	if !strings.Contains(d.Problem, mac(4)+" runs 1, wants 4") {
		t.Errorf("problem = %q", d.Problem)
	}
	h.settle()
	def, _ := h.fake.InactiveXML("hp")
	if i := bytes.Index(def, []byte(mac(4))); i < 0 || !bytes.Contains(def[i:], []byte("queues='4'")) {
		t.Errorf("the persistent copy of the plugged NIC was not rewritten:\n%s", def)
	}
	if bytes.Contains(def, []byte(mac(3))) {
		t.Error("the live-only NIC was written into the definition")
	}
}

// A NIC plugged --live only and single-queue: the message says to plug it
// again with queues (a cold boot removes it), and under apply_at:
// next-reboot the domain's reboot is not turned into a cold boot for it.
func TestHotplugLiveOnlySingleQueue(t *testing.T) {
	h := newHarness(t)
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(nextRebootPolicy), 0o644))
	h.start()
	mustDefine(t, h.fake, domainXML("lo", 4, 4, mac(1)))
	must(t, h.fake.Start("lo"))
	h.waitState("lo", status.StateCompliant)
	must(t, h.fake.AttachInterface("lo", nicXML(mac(2), 0), true, false))
	d := h.waitState("lo", status.StatePendingColdBoot)
	for _, want := range []string{mac(2) + " runs 1, wants 4", "a cold boot removes it", "attach it again with <driver queues='N'/>"} {
		if !strings.Contains(d.Problem, want) {
			t.Errorf("problem = %q, want it to contain %q", d.Problem, want)
		}
	}
	if strings.Contains(d.Problem, "applies at") {
		t.Errorf("problem = %q: a live-only NIC gets nothing from a reboot or a cold boot", d.Problem)
	}
	must(t, h.fake.GuestReboot("lo"))
	h.settle()
	if n := h.fake.Calls(virttest.MethodSuspendDomain) + h.fake.Calls(virttest.MethodDestroyDomain); n != 0 {
		t.Errorf("suspend+destroy calls = %d: the reboot was made a cold boot that removes the plugged NIC", n)
	}
	if def, _ := h.fake.InactiveXML("lo"); bytes.Contains(def, []byte(mac(2))) {
		t.Error("the live-only NIC was written into the definition")
	}
}

// TestHotplugHandSetKept: a NIC plugged with a queue count virtmq did not
// write is kept by default: no guest step, and status says why.
func TestHotplugHandSetKept(t *testing.T) {
	h := newHarness(t)
	var st steps
	h.cfg.GuestStep = newFakeGuestStep(st.fn).step
	h.start()
	mustDefine(t, h.fake, domainXML("hk", 4, 4, mac(1)))
	must(t, h.fake.Start("hk"))
	must(t, h.fake.AgentConnect("hk"))
	h.waitState("hk", status.StateCompliant)
	must(t, h.fake.AttachInterface("hk", nicXML(mac(2), 2), true, true))
	s := h.waitFor("the plugged NIC kept", func(s status.Snapshot) bool {
		d, _ := findDomain(s, "hk")
		n, ok := nicByMAC(d, mac(2))
		return ok && n.Kept
	})
	h.settle()
	d, _ := findDomain(s, "hk")
	n, _ := nicByMAC(d, mac(2))
	if n.Managed || n.Reason != "kept: set by hand (rule defaults says keep)" || n.Defined != 2 {
		t.Errorf("plugged NIC = %+v", n)
	}
	if st.last(mac(2)) != 0 {
		t.Errorf("guest step ran on the kept NIC with M=%d", st.last(mac(2)))
	}
	def, _ := h.fake.InactiveXML("hk")
	if i := bytes.Index(def, []byte(mac(2))); i < 0 || !bytes.Contains(def[i:], []byte("queues='2'")) {
		t.Errorf("the kept NIC's definition changed:\n%s", def)
	}
}

// A NIC added with --config only sends no event: the STOPPED event's
// reconcile rewrites it before the next start.
func TestConfigOnlyNICRewrittenAtStop(t *testing.T) {
	h := newHarness(t)
	h.start()
	mustDefine(t, h.fake, domainXML("co", 4, 4, mac(1)))
	must(t, h.fake.Start("co"))
	h.waitState("co", status.StateCompliant)
	must(t, h.fake.AttachInterface("co", nicXML(mac(2), 0), false, true))
	h.settle()
	must(t, h.fake.Stop("co"))
	h.waitFor("rewritten", func(status.Snapshot) bool {
		def, _ := h.fake.InactiveXML("co")
		i := bytes.Index(def, []byte(mac(2)))
		return i >= 0 && bytes.Contains(def[i:], []byte("queues='4'"))
	})
}

// TestDeviceAddedRechecksDefinition: libvirt may store the --config copy
// of a NIC plugged --live --config after its DEVICE_ADDED event (seen on
// the real stack): a reconcile a moment later rewrites it.
func TestDeviceAddedRechecksDefinition(t *testing.T) {
	h := newHarness(t)
	var timers manualTimers
	h.cfg.AfterFunc = timers.afterFunc
	// Only the recheck's timer: the definition check would rewrite the
	// NIC too, and the test would not show the recheck.
	h.cfg.VCPUCheckInterval, h.cfg.DefinitionCheckInterval = -1, -1
	h.start()
	mustDefine(t, h.fake, domainXML("late", 4, 4, mac(1)))
	must(t, h.fake.Start("late"))
	h.waitState("late", status.StateCompliant)
	plugged := func() bool {
		def, _ := h.fake.InactiveXML("late")
		i := bytes.Index(def, []byte(mac(2)))
		return i >= 0 && bytes.Contains(def[i:], []byte("queues='4'"))
	}
	must(t, h.fake.AttachInterface("late", nicXML(mac(2), 0), true, false)) // the event
	h.settle()
	must(t, h.fake.AttachInterface("late", nicXML(mac(2), 0), false, true)) // the copy, no event
	h.settle()
	if plugged() {
		t.Fatal("rewritten before the recheck: the test does not show the recheck")
	}
	if n := timers.fire(); n == 0 {
		t.Fatal("no recheck timer armed after DEVICE_ADDED")
	}
	h.waitFor("the persistent copy rewritten", func(status.Snapshot) bool { return plugged() })
}

// A shut-off domain changed with --config (no event) is found by the
// periodic re-read of the definitions.
func TestDefinitionCheck(t *testing.T) {
	h := newHarness(t)
	h.cfg.DefinitionCheckInterval = 150 * time.Millisecond // > settle's quiet time
	h.start()
	mustDefine(t, h.fake, domainXML("off", 4, 4, mac(1)))
	h.waitState("off", status.StateCompliant)
	must(t, h.fake.AttachInterface("off", nicXML(mac(2), 0), false, true))
	h.waitFor("rewritten", func(status.Snapshot) bool {
		def, _ := h.fake.InactiveXML("off")
		i := bytes.Index(def, []byte(mac(2)))
		return i >= 0 && bytes.Contains(def[i:], []byte("queues='4'"))
	})
	// Nothing else: a compliant definition is not redefined again.
	time.Sleep(50 * time.Millisecond)
	n := h.fake.Calls(virttest.MethodDefineXML)
	time.Sleep(400 * time.Millisecond)
	if m := h.fake.Calls(virttest.MethodDefineXML); m != n {
		t.Errorf("%d redefines of a compliant definition", m-n)
	}
}

const vcpusPolicy = `version: 1
mode: audit
defaults:
  queues: vcpus
  max: 8
  min_vcpus: 2
  guest_step: true
  combined: vcpus
`

func vcpuDomain(name string, maxV, cur int, m string) []byte {
	return bytes.Replace(domainXML(name, maxV, maxV, m),
		[]byte(fmt.Sprintf("<vcpu placement='static'>%d</vcpu>", maxV)),
		[]byte(fmt.Sprintf("<vcpu placement='static' current='%d'>%d</vcpu>", cur, maxV)), 1)
}

func TestVCPUHotplug(t *testing.T) {
	h := newHarness(t)
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(vcpusPolicy), 0o644))
	h.cfg.VCPUCheckInterval = 150 * time.Millisecond
	var st steps
	h.cfg.GuestStep = newFakeGuestStep(st.fn).step
	h.start()
	mustDefine(t, h.fake, vcpuDomain("cpu", 4, 2, mac(1)))
	must(t, h.fake.Start("cpu"))
	must(t, h.fake.AgentConnect("cpu"))
	h.waitFor("M=2", func(s status.Snapshot) bool {
		d, _ := findDomain(s, "cpu")
		n, ok := nicByMAC(d, mac(1))
		return ok && n.GuestStep == guestDone && n.GuestWanted == 2
	})
	must(t, h.fake.SetLiveVCPUs("cpu", 4))
	h.waitFor("M=4", func(s status.Snapshot) bool {
		d, _ := findDomain(s, "cpu")
		n, ok := nicByMAC(d, mac(1))
		return ok && n.GuestWanted == 4 && n.GuestCurrent == 4 && st.last(mac(1)) == 4
	})
}

// The periodic checks' idle cost with 100 running domains and nothing
// changed: one round of the check is one op; µs/domain/round and
// xml-reads/domain/round are per domain.
func BenchmarkCheckVCPUs(b *testing.B)       { benchCheck(b, true) }
func BenchmarkCheckDefinitions(b *testing.B) { benchCheck(b, false) }

func benchCheck(b *testing.B, vcpus bool) {
	const domains = 100
	h := newHarness(b)
	must(b, os.WriteFile(h.cfg.PolicyPath, []byte(vcpusPolicy), 0o644))
	h.cfg.VCPUCheckInterval, h.cfg.DefinitionCheckInterval = -1, -1
	h.cfg.GuestStep = newFakeGuestStep(func(_ context.Context, _, _ string, m int) (guest.Result, error) {
		return okResult(m), nil
	}).step
	h.start()
	for i := range domains {
		name := fmt.Sprintf("vm%d", i)
		mustDefine(b, h.fake, vcpuDomain(name, 4, 2, mac(i)))
		must(b, h.fake.Start(name))
	}
	h.settle()
	conn := h.agent.currentConn()
	ctx := context.Background()
	calls := h.fake.Calls(virttest.MethodDomainXML)
	b.ResetTimer()
	for range b.N {
		var err error
		if vcpus {
			err = h.agent.checkVCPUs(ctx, conn)
		} else {
			err = h.agent.checkDefinitions(ctx, conn)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/domains, "µs/domain/round")
	b.ReportMetric(float64(h.fake.Calls(virttest.MethodDomainXML)-calls)/float64(b.N)/domains, "xml-reads/domain/round")
}

var _ virt.Conn = (*virttest.Conn)(nil)

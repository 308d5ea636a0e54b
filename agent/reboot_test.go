package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

const nextRebootPolicy = testPolicy + "  apply_at: next-reboot\n" // also the built-in default

// pendingHarness runs an agent with policy over a domain "web" that was
// running with one queue before the agent rewrote its definition to 4: it
// is pending a cold boot.
func pendingHarness(t *testing.T, policy string, doc []byte) (*harness, virt.Domain) {
	t.Helper()
	h := newHarness(t)
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(policy), 0o644))
	if doc == nil {
		doc = domainXML("web", 4, 0, mac(1))
	}
	d := mustDefine(t, h.fake, doc)
	must(t, h.fake.Start("web"))
	h.start()
	h.waitState("web", status.StatePendingColdBoot)
	return h, d
}

// runningQueues is the first NIC's queue count in the live XML.
func runningQueues(t *testing.T, fake *virttest.Conn, name string) int {
	t.Helper()
	doc, ok := fake.LiveXML(name)
	if !ok {
		return -1
	}
	d, err := domxml.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	return max(d.Interfaces[0].Queues, 1)
}

func intentFiles(t *testing.T, h *harness) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(h.cfg.StateDir, "restart", "*"))
	return m
}

func TestNextRebootColdBoots(t *testing.T) {
	h, _ := pendingHarness(t, nextRebootPolicy, nil)
	d := h.waitState("web", status.StatePendingColdBoot)
	if !strings.Contains(d.Problem, "applies at the guest's next reboot") {
		t.Errorf("problem = %q", d.Problem)
	}
	must(t, h.fake.GuestReboot("web")) // two REBOOT events, like libvirt
	d = h.waitState("web", status.StateCompliant)
	h.settle()
	if got := runningQueues(t, h.fake, "web"); got != 4 {
		t.Errorf("running queues = %d, want 4", got)
	}
	for m, want := range map[string]int{virttest.MethodSuspendDomain: 1, virttest.MethodDestroyDomain: 1, virttest.MethodStartDomain: 1} {
		if n := h.fake.Calls(m); n != want {
			t.Errorf("%s calls = %d, want %d", m, n, want)
		}
	}
	if !h.fake.Active("web") || h.fake.Paused("web") {
		t.Errorf("web is not running")
	}
	if f := intentFiles(t, h); len(f) != 0 {
		t.Errorf("intents left: %v", f)
	}
	if !strings.HasPrefix(d.LastAction, "cold booted at the guest's reboot") {
		t.Errorf("last action = %q", d.LastAction)
	}
	// Nothing left pending: the next reboot is a plain one.
	must(t, h.fake.GuestReboot("web"))
	h.settle()
	if n := h.fake.Calls(virttest.MethodSuspendDomain); n != 1 {
		t.Errorf("a compliant domain's reboot was stopped: %d suspends", n)
	}
}

func TestNextRebootPoweroffStaysOff(t *testing.T) {
	h, _ := pendingHarness(t, nextRebootPolicy, nil)
	must(t, h.fake.GuestPoweroff("web")) // guest poweroff, virsh shutdown
	h.waitState("web", status.StateRewritten)
	h.settle()
	if h.fake.Active("web") {
		t.Error("a domain that powered off was started again")
	}
	if n := h.fake.Calls(virttest.MethodStartDomain) + h.fake.Calls(virttest.MethodSuspendDomain); n != 0 {
		t.Errorf("start/suspend calls = %d, want 0", n)
	}
}

func TestNextRebootOnPoweroffRestart(t *testing.T) {
	// libvirt's fake reboot: a poweroff of an on_poweroff=restart domain
	// resets it (REBOOT); the domain was meant to come back, so it comes
	// back cold booted.
	doc := bytes.Replace(domainXML("web", 4, 0, mac(1)), []byte("  <devices>"), []byte("  <on_poweroff>restart</on_poweroff>\n  <devices>"), 1)
	h, _ := pendingHarness(t, nextRebootPolicy, doc)
	must(t, h.fake.GuestPoweroff("web"))
	h.waitState("web", status.StateCompliant)
	if got := runningQueues(t, h.fake, "web"); got != 4 {
		t.Errorf("running queues = %d, want 4", got)
	}
}

func TestColdBootPolicyKeepsReboot(t *testing.T) {
	h, _ := pendingHarness(t, testPolicy+"  apply_at: cold-boot\n", nil)
	d := h.waitState("web", status.StatePendingColdBoot)
	if !strings.Contains(d.Problem, "a reboot keeps the running count") {
		t.Errorf("problem = %q", d.Problem)
	}
	must(t, h.fake.GuestReboot("web"))
	h.settle()
	if n := h.fake.Calls(virttest.MethodSuspendDomain); n != 0 {
		t.Errorf("suspend calls = %d under apply_at: cold-boot", n)
	}
	h.waitState("web", status.StatePendingColdBoot)
}

func TestNextRebootUnavailableFallsBack(t *testing.T) {
	h := newHarness(t)
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(nextRebootPolicy), 0o644))
	h.fake.SetRebootEvents(false)
	mustDefine(t, h.fake, domainXML("web", 4, 0, mac(1)))
	must(t, h.fake.Start("web"))
	h.start()
	d := h.waitState("web", status.StatePendingColdBoot)
	if !strings.Contains(d.Problem, "falling back to cold-boot") {
		t.Errorf("problem = %q", d.Problem)
	}
	must(t, h.fake.GuestReboot("web"))
	h.settle()
	if n := h.fake.Calls(virttest.MethodSuspendDomain); n != 0 {
		t.Errorf("suspend calls = %d without REBOOT events", n)
	}
}

func TestNextRebootAfterManagedSave(t *testing.T) {
	// A managed save (or libvirt-guests) restores the old queues: still
	// pending, and its next reboot cold boots it.
	h, _ := pendingHarness(t, nextRebootPolicy, nil)
	must(t, h.fake.ManagedSave("web"))
	h.waitState("web", status.StateRewritten)
	must(t, h.fake.Start("web")) // restores the image
	h.waitState("web", status.StatePendingColdBoot)
	if got := runningQueues(t, h.fake, "web"); got != 1 {
		t.Fatalf("restored queues = %d, want the old 1", got)
	}
	must(t, h.fake.GuestReboot("web"))
	h.waitState("web", status.StateCompliant)
	if got := runningQueues(t, h.fake, "web"); got != 4 {
		t.Errorf("running queues = %d, want 4", got)
	}
}

// TestNextRebootAgentKilled: an agent that died between the stop and the
// start left its intent; the next agent finishes it, whether the domain is
// still paused or already shut off. A running domain's intent is dropped.
func TestNextRebootAgentKilled(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup func(t *testing.T, fake *virttest.Conn, d virt.Domain)
		want  int // StartDomain calls
	}{
		{"paused", func(t *testing.T, fake *virttest.Conn, d virt.Domain) {
			must(t, fake.SuspendDomain(t.Context(), d))
		}, 1},
		{"shut off", func(t *testing.T, fake *virttest.Conn, d virt.Domain) {
			must(t, fake.DestroyDomain(t.Context(), d))
		}, 1},
		{"running", func(*testing.T, *virttest.Conn, virt.Domain) {}, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			must(t, os.WriteFile(h.cfg.PolicyPath, []byte(nextRebootPolicy), 0o644))
			d := mustDefine(t, h.fake, domainXML("web", 4, 0, mac(1)))
			must(t, h.fake.Start("web"))
			tt.setup(t, h.fake, d)
			dir := filepath.Join(h.cfg.StateDir, "restart")
			must(t, os.MkdirAll(dir, 0o700))
			b, _ := json.Marshal(restartIntent{Name: "web", UUID: d.UUID, At: time.Now(), Changes: "x"})
			must(t, os.WriteFile(filepath.Join(dir, d.UUID+".json"), b, 0o600))
			h.start()
			h.settle()
			if n := h.fake.Calls(virttest.MethodStartDomain); n != tt.want {
				t.Errorf("start calls = %d, want %d", n, tt.want)
			}
			if !h.fake.Active("web") || h.fake.Paused("web") {
				t.Error("web is not running")
			}
			if f := intentFiles(t, h); len(f) != 0 {
				t.Errorf("intents left: %v", f)
			}
		})
	}
}

// TestNextRebootConnectionLost: libvirtd goes away between the stop and
// the start; after the reconnect the agent starts the domain.
func TestNextRebootConnectionLost(t *testing.T) {
	h, _ := pendingHarness(t, nextRebootPolicy, nil)
	h.fake.FailNext(virttest.MethodStartDomain, 1, virt.ErrDisconnected)
	must(t, h.fake.GuestReboot("web"))
	h.waitFor("web back", func(status.Snapshot) bool { return h.fake.Active("web") && !h.fake.Paused("web") })
	h.waitState("web", status.StateCompliant)
	if got := runningQueues(t, h.fake, "web"); got != 4 {
		t.Errorf("running queues = %d, want 4", got)
	}
	if f := intentFiles(t, h); len(f) != 0 {
		t.Errorf("intents left: %v", f)
	}
}

// TestNextRebootResumesWhenNoLongerAsked: the domain is paused at its
// reboot, and before the agent's recheck it is redefined by hand so that
// the policy no longer asks for a change (1 vCPU: below min_vcpus, left
// alone). The agent resumes the reboot as it was instead of destroying
// it, and forgets the intent.
func TestNextRebootResumesWhenNoLongerAsked(t *testing.T) {
	h, _ := pendingHarness(t, nextRebootPolicy, nil)
	var (
		mu          sync.Mutex
		pausedSeen  bool
		intentsSeen int
		redefineErr error
	)
	h.fake.OnCall(func(method string, _ virt.Domain, err error) {
		if method != virttest.MethodSuspendDomain || err != nil {
			return
		}
		// Between the pause and the recheck: the agent's next call reads
		// the definition afresh.
		_, derr := h.fake.Define(domainXML("web", 1, 0, mac(1)))
		mu.Lock()
		defer mu.Unlock()
		pausedSeen = h.fake.Paused("web")
		intentsSeen = len(intentFiles(t, h))
		redefineErr = derr
	})
	must(t, h.fake.GuestReboot("web"))
	h.waitFor("web resumed", func(status.Snapshot) bool {
		return h.fake.Calls(virttest.MethodResumeDomain) == 1 && !h.fake.Paused("web")
	})
	h.settle()
	h.fake.OnCall(nil)
	mu.Lock()
	if redefineErr != nil {
		t.Fatalf("redefine: %v", redefineErr)
	}
	if !pausedSeen || intentsSeen != 1 {
		t.Errorf("at the pause: paused = %v, intents = %d; want true, 1", pausedSeen, intentsSeen)
	}
	mu.Unlock()
	// The second REBOOT event of the same reset finds nothing to do either.
	for m, want := range map[string]int{virttest.MethodSuspendDomain: 1, virttest.MethodResumeDomain: 1, virttest.MethodDestroyDomain: 0, virttest.MethodStartDomain: 0} {
		if n := h.fake.Calls(m); n != want {
			t.Errorf("%s calls = %d, want %d", m, n, want)
		}
	}
	if !h.fake.Active("web") || h.fake.Paused("web") {
		t.Error("web is not running")
	}
	if got := runningQueues(t, h.fake, "web"); got != 1 {
		t.Errorf("running queues = %d, want the old 1 (same QEMU)", got)
	}
	if f := intentFiles(t, h); len(f) != 0 {
		t.Errorf("intents left: %v", f)
	}
	if d, _ := findDomain(h.agent.Snapshot(), "web"); d.State == status.StatePendingColdBoot {
		t.Errorf("state = %s after the policy stopped asking", d.State)
	}
}

// TestNextRebootResumeFailsKeepsIntent: as above, but libvirt refuses
// every resume: the domain is still paused, so the intent must stay for
// the next connect to finish its cold boot (without it nothing would
// ever bring the domain back).
func TestNextRebootResumeFailsKeepsIntent(t *testing.T) {
	h, _ := pendingHarness(t, nextRebootPolicy, nil)
	h.fake.FailNext(virttest.MethodResumeDomain, powerAttempts, virt.ErrCallTimeout)
	h.fake.OnCall(func(method string, _ virt.Domain, err error) {
		if method == virttest.MethodSuspendDomain && err == nil {
			_, _ = h.fake.Define(domainXML("web", 1, 0, mac(1)))
		}
	})
	must(t, h.fake.GuestReboot("web"))
	h.waitFor("every resume tried", func(status.Snapshot) bool {
		return h.fake.Calls(virttest.MethodResumeDomain) >= powerAttempts
	})
	h.settle()
	h.fake.OnCall(nil)
	if !h.fake.Paused("web") {
		t.Fatal("web is not paused: the refused resumes did not happen")
	}
	if f := intentFiles(t, h); len(f) != 1 {
		t.Errorf("intents = %v, want the one of web (still paused)", f)
	}
}

package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// TestNextRebootIntentUnwritable: the state folder cannot take the restart
// intent (a full or read-only /var/lib/virtmq; here its restart folder is
// a file, which fails for root too). The agent says so in the status from
// its first resync on, and at the reboot it neither pauses nor destroys
// the domain: the reboot goes on with the old queue counts. Once the
// folder is writable again, the next reboot cold boots it.
func TestNextRebootIntentUnwritable(t *testing.T) {
	h := newHarness(t)
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(nextRebootPolicy), 0o644))
	must(t, os.MkdirAll(h.cfg.StateDir, 0o700))
	blocker := filepath.Join(h.cfg.StateDir, "restart")
	must(t, os.WriteFile(blocker, nil, 0o600))
	mustDefine(t, h.fake, domainXML("web", 4, 0, mac(1)))
	must(t, h.fake.Start("web"))
	h.start()
	d := h.waitState("web", status.StatePendingColdBoot)
	if !strings.Contains(d.Problem, "apply_at: next-reboot cannot act: cannot write the restart intent in "+blocker) {
		t.Errorf("problem before the reboot = %q", d.Problem)
	}

	must(t, h.fake.GuestReboot("web"))
	h.settle()
	for _, m := range []string{virttest.MethodSuspendDomain, virttest.MethodDestroyDomain, virttest.MethodStartDomain} {
		if n := h.fake.Calls(m); n != 0 {
			t.Errorf("%s calls = %d without an intent on disk, want 0", m, n)
		}
	}
	if !h.fake.Active("web") || h.fake.Paused("web") {
		t.Error("web is not running")
	}
	d = h.waitState("web", status.StatePendingColdBoot)
	if !strings.Contains(d.Problem, "not a directory") || !strings.Contains(d.Problem, "does not stop the domain at its reboot") {
		t.Errorf("problem after the reboot = %q", d.Problem)
	}

	must(t, os.Remove(blocker))
	must(t, h.fake.GuestReboot("web"))
	h.waitState("web", status.StateCompliant)
	if got := runningQueues(t, h.fake, "web"); got != 4 {
		t.Errorf("running queues = %d, want 4", got)
	}
	if d, _ := findDomain(h.agent.Snapshot(), "web"); strings.Contains(d.Problem, "cannot write") {
		t.Errorf("problem still = %q", d.Problem)
	}
}

// TestNextRebootLibvirtdRestartWhilePaused: libvirtd goes away while the
// agent holds the domain paused at its reboot (a daemon restart keeps
// QEMU, paused). After the reconnect the agent finishes the cold boot from
// its intent: the domain runs with its new queues, never left paused.
func TestNextRebootLibvirtdRestartWhilePaused(t *testing.T) {
	h, _ := pendingHarness(t, nextRebootPolicy, nil)
	var once sync.Once
	h.fake.OnCall(func(method string, _ virt.Domain, err error) {
		if method == virttest.MethodSuspendDomain && err == nil {
			once.Do(func() { go h.fake.Disconnect() })
		}
	})
	reconnects := h.agent.Snapshot().Libvirt.Reconnects
	must(t, h.fake.GuestReboot("web"))
	h.waitFor("reconnected", func(s status.Snapshot) bool { return s.Libvirt.Connected && s.Libvirt.Reconnects > reconnects })
	h.waitState("web", status.StateCompliant)
	h.settle()
	h.fake.OnCall(nil)
	if !h.fake.Active("web") || h.fake.Paused("web") {
		t.Error("web is not running")
	}
	if got := runningQueues(t, h.fake, "web"); got != 4 {
		t.Errorf("running queues = %d, want 4", got)
	}
	if n := h.fake.Calls(virttest.MethodStartDomain); n != 1 {
		t.Errorf("start calls = %d, want 1", n)
	}
	if f := intentFiles(t, h); len(f) != 0 {
		t.Errorf("intents left: %v", f)
	}
}

// TestNextRebootDestroyFailsResumes: libvirt refuses to destroy the
// paused domain (every attempt): the agent resumes it rather than leave it
// paused until a reconnect that may never come.
func TestNextRebootDestroyFailsResumes(t *testing.T) {
	h, _ := pendingHarness(t, nextRebootPolicy, nil)
	h.fake.FailNext(virttest.MethodDestroyDomain, powerAttempts, virt.ErrCallTimeout)
	must(t, h.fake.GuestReboot("web"))
	h.waitFor("web resumed", func(status.Snapshot) bool {
		return h.fake.Calls(virttest.MethodResumeDomain) >= 1 && !h.fake.Paused("web")
	})
	h.settle()
	if !h.fake.Active("web") || h.fake.Paused("web") {
		t.Error("web is not running")
	}
	if n := h.fake.Calls(virttest.MethodDestroyDomain); n < powerAttempts {
		t.Errorf("destroy calls = %d, want at least %d", n, powerAttempts)
	}
	if f := intentFiles(t, h); len(f) != 0 {
		t.Errorf("intents left: %v", f)
	}
}

// TestNextRebootStaleDestroyLands: an agent killed right after it sent
// the destroy of a paused domain; libvirt carries the destroy out while
// the next agent starts, which reads the domain paused and then gets
// "domain is not running" from its own destroy. The domain must be
// started, not taken for one that cannot be stopped and left off.
func TestNextRebootStaleDestroyLands(t *testing.T) {
	h := newHarness(t)
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(nextRebootPolicy), 0o644))
	d := mustDefine(t, h.fake, makeDomainXML("web", 4, 4, true, mac(1))) // rewritten before the reboot
	must(t, h.fake.Start("web"))
	must(t, h.fake.SuspendDomain(t.Context(), d))
	dir := filepath.Join(h.cfg.StateDir, "restart")
	must(t, os.MkdirAll(dir, 0o700))
	b, _ := json.Marshal(restartIntent{Name: "web", UUID: d.UUID, At: time.Now(), Changes: "x"})
	must(t, os.WriteFile(filepath.Join(dir, d.UUID+".json"), b, 0o600))
	var once sync.Once
	h.fake.OnCall(func(method string, _ virt.Domain, err error) {
		if method == virttest.MethodDomainState {
			once.Do(func() { _ = h.fake.Stop("web") }) // the old agent's destroy lands
		}
	})
	h.start()
	h.waitFor("web running", func(status.Snapshot) bool { return h.fake.Active("web") && !h.fake.Paused("web") })
	h.settle()
	h.fake.OnCall(nil)
	if got := runningQueues(t, h.fake, "web"); got != 4 {
		t.Errorf("running queues = %d, want 4", got)
	}
	if f := intentFiles(t, h); len(f) != 0 {
		t.Errorf("intents left: %v", f)
	}
}

// TestNextRebootStaleStartLands: the same with the start: the domain
// runs (the old agent's start landed) when the new agent starts it.
func TestNextRebootStaleStartLands(t *testing.T) {
	h := newHarness(t)
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(nextRebootPolicy), 0o644))
	d := mustDefine(t, h.fake, makeDomainXML("web", 4, 4, true, mac(1))) // rewritten before the reboot
	dir := filepath.Join(h.cfg.StateDir, "restart")
	must(t, os.MkdirAll(dir, 0o700))
	b, _ := json.Marshal(restartIntent{Name: "web", UUID: d.UUID, At: time.Now(), Changes: "x"})
	must(t, os.WriteFile(filepath.Join(dir, d.UUID+".json"), b, 0o600))
	var once sync.Once
	h.fake.OnCall(func(method string, _ virt.Domain, err error) {
		if method == virttest.MethodDomainState {
			once.Do(func() { _ = h.fake.Start("web") })
		}
	})
	h.start()
	h.waitState("web", status.StateCompliant)
	h.settle()
	h.fake.OnCall(nil)
	if d, _ := findDomain(h.agent.Snapshot(), "web"); d.Problem != "" {
		t.Errorf("problem = %q", d.Problem)
	}
	if f := intentFiles(t, h); len(f) != 0 {
		t.Errorf("intents left: %v", f)
	}
}

// jumpClock is a wall clock that can be set off by any amount, as NTP
// or an operator's date(1) does.
type jumpClock struct{ off atomic.Int64 }

func (c *jumpClock) now() time.Time       { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *jumpClock) jump(d time.Duration) { c.off.Add(int64(d)) }

// TestNextRebootClockJump: the wall clock jumps a year back between the
// intents' writing and their reading, and a year forward during the
// reboot; nothing the agent decides depends on it: an intent from "the
// future" is finished as any other, and the reboot cold boots the domain.
func TestNextRebootClockJump(t *testing.T) {
	var clk jumpClock
	h := newHarness(t)
	h.cfg.Now = clk.now
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(nextRebootPolicy), 0o644))
	mustDefine(t, h.fake, domainXML("web", 4, 0, mac(1)))
	other := mustDefine(t, h.fake, domainXML("db", 4, 0, mac(2)))
	must(t, h.fake.Start("web"))
	must(t, h.fake.Start("db"))
	must(t, h.fake.DestroyDomain(t.Context(), other)) // a killed agent's half-done cold boot
	dir := filepath.Join(h.cfg.StateDir, "restart")
	must(t, os.MkdirAll(dir, 0o700))
	b, _ := json.Marshal(restartIntent{Name: "db", UUID: other.UUID, At: clk.now().Add(365 * 24 * time.Hour), Changes: "x"})
	must(t, os.WriteFile(filepath.Join(dir, other.UUID+".json"), b, 0o600))
	clk.jump(-365 * 24 * time.Hour)
	h.start()
	h.waitFor("db started", func(status.Snapshot) bool { return h.fake.Active("db") })
	h.waitState("web", status.StatePendingColdBoot)
	var once sync.Once
	h.fake.OnCall(func(method string, _ virt.Domain, err error) {
		if method == virttest.MethodSuspendDomain {
			once.Do(func() { clk.jump(2 * 365 * 24 * time.Hour) })
		}
	})
	must(t, h.fake.GuestReboot("web"))
	h.waitState("web", status.StateCompliant)
	h.fake.OnCall(nil)
	if got := runningQueues(t, h.fake, "web"); got != 4 {
		t.Errorf("running queues = %d, want 4", got)
	}
	if !h.fake.Active("web") || h.fake.Paused("web") || !h.fake.Active("db") {
		t.Error("a domain is not running")
	}
	if f := intentFiles(t, h); len(f) != 0 {
		t.Errorf("intents left: %v", f)
	}
}

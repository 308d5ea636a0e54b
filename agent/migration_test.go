package agent

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// movingGuest is a guest whose combined channel count travels with it
// from host to host, as a live-migrated guest's kernel state does; both
// hosts' agents configure it through step.
type movingGuest struct {
	mu      sync.Mutex
	current int
	changes int // steps that changed the count
}

func (g *movingGuest) step(_ context.Context, _ guest.Agent, _ string, combined int, _ guest.Options) (guest.Result, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := guest.Result{IfName: "eth0", Before: guest.Channels{Max: 4, Current: g.current}}
	if g.current != combined {
		g.current = combined
		g.changes++
		r.Changed = true
	}
	r.After = guest.Channels{Max: 4, Current: g.current}
	return r, nil
}

func (g *movingGuest) changed() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changes
}

// migrationHarnesses runs an agent on each of two hosts with policy; the
// source has domain doc running (started before its agent).
func migrationHarnesses(t *testing.T, policy string, doc []byte, g *movingGuest) (src, dst *harness) {
	t.Helper()
	src, dst = newHarness(t), newHarness(t)
	for _, h := range []*harness{src, dst} {
		must(t, os.WriteFile(h.cfg.PolicyPath, []byte(policy), 0o644))
		if g != nil {
			h.cfg.GuestStep = g.step
		}
	}
	mustDefine(t, src.fake, doc)
	must(t, src.fake.Start("web"))
	src.start()
	dst.start()
	return src, dst
}

// noActions fails the test if h's agent redefined, paused, stopped or
// started anything.
func noActions(t *testing.T, host string, h *harness) {
	t.Helper()
	for _, m := range []string{virttest.MethodDefineXML, virttest.MethodSuspendDomain, virttest.MethodDestroyDomain,
		virttest.MethodStartDomain, virttest.MethodShutdownDomain} {
		if n := h.fake.Calls(m); n != 0 {
			t.Errorf("%s: %s calls = %d, want 0", host, m, n)
		}
	}
}

func forgotten(t *testing.T, h *harness, name string) {
	t.Helper()
	h.waitFor(name+" forgotten", func(s status.Snapshot) bool { _, ok := findDomain(s, name); return !ok })
}

// A running compliant domain live-migrates with the event sequence
// recorded on libvirt 9.0: the destination's agent finds it compliant
// without a redefine, its guest step changes nothing, and the source's
// agent forgets it.
func TestLiveMigrationKeepsQueues(t *testing.T) {
	g := &movingGuest{current: 1}
	src, dst := migrationHarnesses(t, testPolicy, domainXML("web", 4, 4, mac(1)), g)
	src.waitFor("the guest step on the source", func(s status.Snapshot) bool {
		d, ok := findDomain(s, "web")
		return ok && d.State == status.StateCompliant && len(d.NICs) == 1 && d.NICs[0].GuestStep == guestDone
	})
	if g.changed() != 1 {
		t.Fatalf("guest steps that changed the guest on the source = %d, want 1", g.changed())
	}

	must(t, src.fake.Migrate(dst.fake, "web"))
	dst.waitFor("web compliant on the destination after its guest step", func(s status.Snapshot) bool {
		d, ok := findDomain(s, "web")
		return ok && d.State == status.StateCompliant && d.Persistent && strings.Contains(d.LastAction, "already")
	})
	dst.settle()
	forgotten(t, src, "web")
	noActions(t, "destination", dst)
	if got := runningQueues(t, dst.fake, "web"); got != 4 {
		t.Errorf("running queues on the destination = %d, want 4", got)
	}
	if g.changed() != 1 {
		t.Errorf("guest steps that changed the guest = %d, want 1 (the destination's must change nothing)", g.changed())
	}
	if d, _ := findDomain(dst.agent.Snapshot(), "web"); d.LastAction != "guest step: eth0 combined 4 already" {
		t.Errorf("destination last action = %q", d.LastAction)
	}
}

// A domain pending a cold boot (one queue running, four defined) stays
// pending on the destination, without a redefine, and converges at its
// next guest reboot there under apply_at: next-reboot.
func TestLiveMigrationPendingStaysPending(t *testing.T) {
	src, dst := migrationHarnesses(t, nextRebootPolicy, domainXML("web", 4, 0, mac(1)), nil)
	src.waitState("web", status.StatePendingColdBoot) // the source's agent rewrote its definition

	must(t, src.fake.Migrate(dst.fake, "web"))
	dst.waitFor("web pending on the destination", func(s status.Snapshot) bool {
		d, ok := findDomain(s, "web")
		return ok && d.State == status.StatePendingColdBoot && d.Persistent
	})
	dst.settle()
	d, _ := findDomain(dst.agent.Snapshot(), "web")
	forgotten(t, src, "web")
	noActions(t, "destination", dst)
	if !strings.Contains(d.Problem, "applies at the guest's next reboot") {
		t.Errorf("destination problem = %q", d.Problem)
	}
	if got := runningQueues(t, dst.fake, "web"); got != 1 {
		t.Errorf("running queues on the destination = %d, want 1", got)
	}

	must(t, dst.fake.GuestReboot("web"))
	dst.waitState("web", status.StateCompliant)
	if got := runningQueues(t, dst.fake, "web"); got != 4 {
		t.Errorf("running queues after the reboot on the destination = %d, want 4", got)
	}
	if n := dst.fake.Calls(virttest.MethodDefineXML); n != 0 {
		t.Errorf("destination DefineXML calls = %d, want 0", n)
	}
}

// The recorded sequence is what the replay and e2e/migration.sh rely on:
// the destination starts the domain before it is defined there, and the
// source sends no Undefined.
func TestMigrationEventsRecorded(t *testing.T) {
	evs, err := virttest.MigrationEvents()
	if err != nil {
		t.Fatal(err)
	}
	var src, dst []string
	for _, e := range evs {
		s := e.Kind.String()
		if e.Destination {
			dst = append(dst, s)
		} else {
			src = append(src, s)
		}
	}
	if got := strings.Join(src, " "); got != "other stopped" {
		t.Errorf("source events = %q", got)
	}
	if got := strings.Join(dst, " "); got != "agent-disconnected started agent-disconnected defined other agent-connected" {
		t.Errorf("destination events = %q", got)
	}
}

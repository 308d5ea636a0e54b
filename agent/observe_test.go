package agent

import (
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// TestObserveChangesNothing: in mode observe the agent redefines nothing
// and sends nothing to guest agents or QEMU, and the status says what it
// would do; a reload into mode apply then converges.
func TestObserveChangesNothing(t *testing.T) {
	h, g := realGuestHarness(t)
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(strings.Replace(testPolicy, "mode: apply", "mode: observe", 1)), 0o644))
	mustDefine(t, h.fake, domainXML("web1", 4, 0, mac(1))) // stopped, 1 queue
	mustDefine(t, h.fake, recordedDomain(t, 4))            // runs with 4 queues
	mustDefine(t, h.fake, domainXML("fine", 2, 2, mac(2))) // compliant
	must(t, h.fake.Start("virtmq-e2e-smoke"))
	h.start()
	must(t, h.fake.AgentConnect("virtmq-e2e-smoke"))
	mustDefine(t, h.fake, domainXML("late", 4, 0, mac(3))) // defined after the start: an event

	web1 := h.waitState("web1", status.StateWouldRedefine)
	late := h.waitState("late", status.StateWouldRedefine)
	smoke := h.waitState("virtmq-e2e-smoke", status.StateCompliant)
	h.waitState("fine", status.StateCompliant)
	h.settle()

	for _, m := range []string{virttest.MethodDefineXML, virttest.MethodAgentCommand, virttest.MethodMonitorCommand} {
		if n := h.fake.Calls(m); n != 0 {
			t.Errorf("%s calls = %d, want 0 in mode observe", m, n)
		}
	}
	if s := h.agent.Snapshot(); s.Policy.Mode != "observe" {
		t.Errorf("status policy mode = %q", s.Policy.Mode)
	}
	if want := []string{"redefine: " + mac(1) + " 1→4 queues"}; !reflect.DeepEqual(web1.Would, want) {
		t.Errorf("web1 would = %q, want %q", web1.Would, want)
	}
	if want := []string{"redefine: " + mac(3) + " 1→4 queues"}; !reflect.DeepEqual(late.Would, want) {
		t.Errorf("late would = %q, want %q", late.Would, want)
	}
	if n := web1.NICs[0]; n.Defined != 1 || n.Wanted != 4 || !strings.Contains(web1.Problem, "mode observe") {
		t.Errorf("web1 = %+v", web1)
	}
	if want := []string{"guest step: set combined 4 on " + recordedMAC}; !reflect.DeepEqual(smoke.Would, want) {
		t.Errorf("running domain would = %q, want %q", smoke.Would, want)
	}
	if n := nicOf(t, smoke); n.GuestStep != "" || n.QMPVirtqueues != 0 {
		t.Errorf("running domain NIC = %+v: no guest step, no QMP in mode observe", n)
	}

	// mode apply: the fleet converges.
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(testPolicy), 0o644))
	h.reload <- syscall.SIGHUP
	h.waitState("web1", status.StateRewritten)
	h.waitState("late", status.StateRewritten)
	s := h.waitFor("guest step done", func(s status.Snapshot) bool {
		d, ok := findDomain(s, "virtmq-e2e-smoke")
		return ok && len(d.NICs) == 1 && d.NICs[0].GuestStep == guestDone && d.NICs[0].QMPVirtqueues == 9
	})
	if d, _ := findDomain(s, "virtmq-e2e-smoke"); len(d.Would) != 0 {
		t.Errorf("would in mode apply = %q", d.Would)
	}
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 2 {
		t.Errorf("DefineXML calls = %d, want 2", n)
	}
	if n := g.count("guest-info"); n == 0 {
		t.Errorf("no guest step after the reload into mode apply")
	}
}

package agent

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// novaXML is domainXML with OpenStack Nova's instance metadata.
func novaXML(name string, vcpus, queues int, macs ...string) []byte {
	const nova = "    <nova:instance xmlns:nova='http://openstack.org/xmlns/libvirt/nova/1.1'><nova:name>vm</nova:name></nova:instance>\n"
	doc := domainXML(name, vcpus, queues, macs...)
	if bytes.Contains(doc, []byte("<metadata>")) {
		return bytes.Replace(doc, []byte("  <metadata>\n"), []byte("  <metadata>\n"+nova), 1)
	}
	return bytes.Replace(doc, []byte("  <memory"), []byte("  <metadata>\n"+nova+"  </metadata>\n  <memory"), 1)
}

// TestOrchestratorDomainLeftAlone: a running Nova domain that a plain
// domain beside it would have redefined, cold booted at its reboot and
// sent guest commands is left to Nova: no redefine, no stop or start at
// its reboot, no guest agent or QMP command; the status and the metrics
// say why.
func TestOrchestratorDomainLeftAlone(t *testing.T) {
	h, _ := realGuestHarness(t)
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(nextRebootPolicy), 0o644))
	mustDefine(t, h.fake, novaXML("instance-0000002a", 4, 0, mac(1)))
	must(t, h.fake.Start("instance-0000002a"))
	h.start()
	must(t, h.fake.AgentConnect("instance-0000002a"))
	d := h.waitState("instance-0000002a", status.StateUnmanaged)
	must(t, h.fake.GuestReboot("instance-0000002a"))
	h.settle()

	for _, m := range []string{virttest.MethodDefineXML, virttest.MethodAgentCommand, virttest.MethodMonitorCommand,
		virttest.MethodSuspendDomain, virttest.MethodDestroyDomain, virttest.MethodStartDomain} {
		if n := h.fake.Calls(m); n != 0 {
			t.Errorf("%s calls = %d, want 0 for a domain left to Nova", m, n)
		}
	}
	if d.Orchestrator != "nova" || d.OrchestratorMode != "leave" ||
		!strings.HasPrefix(d.Problem, "left to OpenStack Nova") || !strings.Contains(d.Problem, "hw:vif_multiqueue_enabled") {
		t.Errorf("status = %+v", d)
	}
	if !h.fake.Active("instance-0000002a") || runningQueues(t, h.fake, "instance-0000002a") != 1 {
		t.Errorf("the domain does not run as it did")
	}
	want := `# HELP virtmq_domain_orchestrated 1 for a domain an orchestrator defines (orchestrator: nova, ovirt, opennebula, cloudstack, kubevirt), with what virtmq does to it (mode: leave, observe, apply; see the policy's orchestrators).
# TYPE virtmq_domain_orchestrated gauge
virtmq_domain_orchestrated{domain="instance-0000002a",mode="leave",orchestrator="nova",uuid="` + d.UUID + `"} 1
`
	if err := testutil.GatherAndCompare(h.cfg.Registry, strings.NewReader(want), "virtmq_domain_orchestrated"); err != nil {
		t.Error(err)
	}
}

// TestObserveLetsRebootBe: a domain pending a cold boot under
// apply_at: next-reboot is not stopped at its reboot when the mode does
// not act: mode observe, or an orchestrator opted in to observe only.
func TestObserveLetsRebootBe(t *testing.T) {
	for _, tt := range []struct {
		name, policy string
		doc          func(name string, vcpus, queues int, macs ...string) []byte
		orchestrator string
	}{
		{"mode observe", strings.Replace(nextRebootPolicy, "mode: apply", "mode: observe", 1), domainXML, ""},
		{"nova opted in to observe", nextRebootPolicy + "orchestrators: {nova: observe}\n", novaXML, "observe"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			must(t, os.WriteFile(h.cfg.PolicyPath, []byte(tt.policy), 0o644))
			mustDefine(t, h.fake, tt.doc("web", 4, 0, mac(1)))
			must(t, h.fake.Start("web"))
			// Redefined with 4 queues while it runs with 1: pending.
			mustDefine(t, h.fake, tt.doc("web", 4, 4, mac(1)))
			h.start()
			d := h.waitState("web", status.StatePendingColdBoot)
			if d.OrchestratorMode != tt.orchestrator {
				t.Errorf("orchestrator mode = %q, want %q", d.OrchestratorMode, tt.orchestrator)
			}
			must(t, h.fake.GuestReboot("web"))
			h.settle()
			for _, m := range []string{virttest.MethodSuspendDomain, virttest.MethodDestroyDomain, virttest.MethodStartDomain} {
				if n := h.fake.Calls(m); n != 0 {
					t.Errorf("%s calls = %d, want 0", m, n)
				}
			}
			if runningQueues(t, h.fake, "web") != 1 {
				t.Errorf("the reboot became a cold boot")
			}
		})
	}
}

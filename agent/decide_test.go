package agent

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// nicsXML is a 4-vCPU domain whose devices are the given <interface>s.
func nicsXML(name string, ifaces ...string) []byte {
	return []byte("<domain type='qemu'>\n  <name>" + name + "</name>\n  <memory unit='KiB'>524288</memory>\n" +
		"  <vcpu placement='static'>4</vcpu>\n  <os>\n    <type arch='x86_64'>hvm</type>\n  </os>\n  <devices>\n" +
		strings.Join(ifaces, "\n") + "\n  </devices>\n</domain>\n")
}

const (
	hostdevNetwork = `<network><name>vf-pool</name><forward mode='hostdev' managed='yes'><pf dev='eth-nonexistent'/></forward></network>`
	natNetwork     = `<network><name>default</name><forward mode='nat'/><bridge name='virbr0'/></network>`
)

func networkNIC(m, network string) string {
	return "    <interface type='network'>\n      <mac address='" + m + "'/>\n      <source network='" + network + "'/>\n      <model type='virtio'/>\n    </interface>"
}

// TestHostdevNetworkSkipped: a type network NIC on a hostdev pool is left
// alone with the reason, a NIC on a NAT network of the same domain gets
// its queues, each network is read once per resync, and a network libvirt
// does not know is decided like any network NIC.
func TestHostdevNetworkSkipped(t *testing.T) {
	h := newHarness(t)
	h.fake.DefineNetwork("vf-pool", []byte(hostdevNetwork))
	h.fake.DefineNetwork("default", []byte(natNetwork))
	h.start()
	mustDefine(t, h.fake, nicsXML("vf", networkNIC(mac(1), "vf-pool"), networkNIC(mac(2), "default")))
	d := h.waitState("vf", status.StateRewritten)
	h.settle()
	if n := d.NICs[0]; n.Managed || !strings.Contains(n.Reason, "hostdev pool") {
		t.Errorf("hostdev NIC = %+v", n)
	}
	if n := d.NICs[1]; !n.Managed || n.Defined != 4 {
		t.Errorf("NAT NIC = %+v", n)
	}
	def, _ := h.fake.InactiveXML("vf")
	dom, err := domxml.Parse(def)
	must(t, err)
	if q := dom.Interfaces[0].Queues; q != 0 {
		t.Errorf("hostdev NIC got queues=%d:\n%s", q, def)
	}
	// The redefine's DEFINED reconciled it again: still one read per network.
	if n := h.fake.Calls(virttest.MethodNetworkForward); n != 2 {
		t.Errorf("NetworkForward calls = %d, want 2 (cached until the resync)", n)
	}

	mustDefine(t, h.fake, nicsXML("lost", networkNIC(mac(3), "nowhere")))
	d = h.waitState("lost", status.StateRewritten)
	if !d.NICs[0].Managed {
		t.Errorf("NIC on an unknown network = %+v", d.NICs[0])
	}
}

// TestVhostUserNotQueued: a vhost-user NIC gets no queues by default.
func TestVhostUserNotQueued(t *testing.T) {
	h := newHarness(t).start()
	mustDefine(t, h.fake, nicsXML("vu", "    <interface type='vhostuser'>\n      <mac address='"+mac(1)+"'/>\n"+
		"      <source type='unix' path='/run/virtmq-e2e/nobody.sock' mode='client'/>\n      <model type='virtio'/>\n    </interface>"))
	d := h.waitState("vu", status.StateUnmanaged)
	h.settle()
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 0 {
		t.Errorf("DefineXML calls = %d, want 0", n)
	}
	if n := d.NICs[0]; n.Managed || !strings.HasPrefix(n.Reason, "vhost-user:") {
		t.Errorf("NIC = %+v", n)
	}
}

// TestHandSetKept: a count a person set is kept (not redefined) and status
// says so; hand_set: override takes it over at the reload, and the record
// then says virtmq wrote it.
func TestHandSetKept(t *testing.T) {
	h := newHarness(t).start()
	mustDefine(t, h.fake, handSetXML("fw", 4, 1, mac(1)))
	d := h.waitState("fw", status.StateUnmanaged)
	h.settle()
	if n := h.fake.Calls(virttest.MethodDefineXML); n != 0 {
		t.Errorf("DefineXML calls = %d, want 0", n)
	}
	if n := d.NICs[0]; !n.Kept || n.Managed || n.Defined != 1 || n.Reason != "kept: set by hand (rule defaults says keep)" {
		t.Errorf("NIC = %+v", n)
	}

	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(testPolicy+"  hand_set: override\n"), 0o644))
	h.reload <- nil
	d = h.waitState("fw", status.StateRewritten)
	def, _ := h.fake.InactiveXML("fw")
	dom, err := domxml.Parse(def)
	must(t, err)
	if ifc := dom.Interfaces[0]; ifc.Queues != 4 || ifc.Written != 4 || d.NICs[0].Kept {
		t.Errorf("after override: queues %d, record %d, NIC %+v", ifc.Queues, ifc.Written, d.NICs[0])
	}
}

// TestExcludeLabel: `virtmq exclude` (the metadata API, no DEFINED) stops
// the agent managing a running domain: no redefine of a later definition
// without queues, no guest step; `virtmq include` brings it back.
func TestExcludeLabel(t *testing.T) {
	h := newHarness(t)
	var st steps
	h.cfg.GuestStep = newFakeGuestStep(st.fn).step
	h.start()
	mustDefine(t, h.fake, domainXML("ex", 4, 4, mac(1)))
	must(t, h.fake.Start("ex"))
	h.waitState("ex", status.StateCompliant)
	ctx := context.Background()
	ref, err := h.fake.LookupDomain(ctx, "ex")
	must(t, err)
	must(t, h.fake.SetMetadata(ctx, ref, domxml.ExcludeNamespace, domxml.MetadataPrefix, domxml.ExcludeElement))
	d := h.waitState("ex", status.StateUnmanaged)
	if !strings.Contains(d.Problem, "excluded") {
		t.Errorf("problem = %q", d.Problem)
	}
	// A new definition without queues (the label kept): left alone.
	live, _ := h.fake.InactiveXML("ex")
	defines := h.fake.Calls(virttest.MethodDefineXML)
	noQueues := bytes.Replace(live, []byte("<driver queues='4'/>"), nil, 1)
	mustDefine(t, h.fake, noQueues)
	must(t, h.fake.AgentConnect("ex"))
	h.settle()
	if n := h.fake.Calls(virttest.MethodDefineXML); n != defines {
		t.Errorf("DefineXML calls = %d, want %d: an excluded domain was redefined", n, defines)
	}
	if st.last(mac(1)) != 0 {
		t.Errorf("guest step ran on an excluded domain")
	}

	ref, err = h.fake.LookupDomain(ctx, "ex")
	must(t, err)
	must(t, h.fake.SetMetadata(ctx, ref, domxml.ExcludeNamespace, domxml.MetadataPrefix, ""))
	h.waitFor("included and rewritten", func(s status.Snapshot) bool {
		def, _ := h.fake.InactiveXML("ex")
		return bytes.Contains(def, []byte("queues='4'"))
	})
	// It has run with 4 queues all along: compliant again.
	h.waitState("ex", status.StateCompliant)
}

// TestBudgetWarningsInStatus: a NIC the budget holds below its rule's wish
// shows the plan's warning.
func TestBudgetWarningsInStatus(t *testing.T) {
	h := newHarness(t)
	must(t, os.WriteFile(h.cfg.PolicyPath, []byte(testPolicy+"  budget: 6\n"), 0o644))
	h.start()
	mustDefine(t, h.fake, domainXML("two", 4, 0, mac(1), mac(2)))
	d := h.waitState("two", status.StateRewritten)
	if len(d.Warnings) != 2 || !strings.Contains(d.Warnings[0], "below") {
		t.Errorf("warnings = %q", d.Warnings)
	}
}

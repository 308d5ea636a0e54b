package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/verify/verifytest"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// A type network NIC on a hostdev pool (<forward mode='hostdev'>) is a VF:
// apply, apply --cold-boot and verify resolve its network through libvirt
// and leave it alone, as the agent does; the domain XML alone does not say it.

const (
	hostdevPool = `<network><name>vf-pool</name><forward mode='hostdev' managed='yes'><pf dev='eth-nonexistent'/></forward></network>`
	natNet      = `<network><name>default</name><forward mode='nat'/><bridge name='virbr0'/></network>`
	vfMAC       = "52:54:00:00:0f:01"
	natMAC      = "52:54:00:00:0f:02"
)

// vfDomain is a 4-vCPU domain "vf" with a NIC on each given network, in
// order, with MACs vfMAC, natMAC.
func vfDomain(t *testing.T, fake *virttest.Conn, networks ...string) {
	t.Helper()
	fake.DefineNetwork("vf-pool", []byte(hostdevPool))
	fake.DefineNetwork("default", []byte(natNet))
	var nics []string
	for i, n := range networks {
		m := []string{vfMAC, natMAC}[i]
		nics = append(nics, "    <interface type='network'>\n      <mac address='"+m+"'/>\n      <source network='"+n+"'/>\n      <model type='virtio'/>\n    </interface>")
	}
	doc := "<domain type='qemu'>\n  <name>vf</name>\n  <memory unit='KiB'>524288</memory>\n" +
		"  <vcpu placement='static'>4</vcpu>\n  <os>\n    <type arch='x86_64'>hvm</type>\n  </os>\n  <devices>\n" +
		strings.Join(nics, "\n") + "\n  </devices>\n</domain>\n"
	if _, err := fake.Define([]byte(doc)); err != nil {
		t.Fatal(err)
	}
}

// definedQueues returns the queues of the definition's NICs, by MAC.
func definedQueues(t *testing.T, fake *virttest.Conn, name string) map[string]int {
	t.Helper()
	doc, _ := fake.InactiveXML(name)
	dom, err := domxml.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	return dom.QueuesByMAC()
}

func TestApplyLeavesHostdevPoolAlone(t *testing.T) {
	fake := virttest.New()
	vfDomain(t, fake, "vf-pool", "default")
	r := newTestRun(t, fake, nil)
	if code := Main(context.Background(), r.env, []string{"apply", "--wide", "--policy", testPolicy, "vf"}); code != ExitOK {
		t.Fatalf("apply: exit %d, stderr:\n%s", code, r.stderr)
	}
	wantLines(t, "apply output", r.stdout.String(), vfMAC, "queues 1 (left alone)", "network vf-pool is a hostdev pool",
		natMAC, "queues 1 -> 4", "  redefined.")
	q := definedQueues(t, fake, "vf")
	if q[vfMAC] > 1 || q[natMAC] != 4 {
		t.Errorf("queues after apply = %v, want the VF untouched and the NAT NIC at 4", q)
	}
	if n := fake.Calls(virttest.MethodNetworkForward); n != 2 {
		t.Errorf("NetworkForward calls = %d, want one per network", n)
	}
}

func TestColdBootRefusesHostdevPoolOnly(t *testing.T) {
	fake := virttest.New()
	vfDomain(t, fake, "vf-pool")
	if err := fake.Start("vf"); err != nil {
		t.Fatal(err)
	}
	code, r := runColdBootTest(t, fake, "vf")
	if code != ExitFailure {
		t.Errorf("exit %d, want 1; stdout:\n%s", code, r.stdout)
	}
	wantLines(t, "stdout", r.stdout.String(), "vf: refused: the policy leaves its NICs alone", "hostdev pool")
	if n := fake.Calls(virttest.MethodShutdownDomain) + fake.Calls(virttest.MethodDefineXML); n != 0 {
		t.Errorf("cold boot shut down or redefined a domain whose only NIC is a VF (%d calls)", n)
	}
}

func TestVerifySkipsHostdevPool(t *testing.T) {
	fake := virttest.New()
	vfDomain(t, fake, "vf-pool")
	if err := fake.Start("vf"); err != nil {
		t.Fatal(err)
	}
	h := verifytest.NewHost(t, "vf", false, 0)
	code, r := runVerifyTest(t, fake, h.Host, "vf")
	if code != ExitOK {
		t.Errorf("exit %d; stderr:\n%s\nstdout:\n%s", code, r.stderr, r.stdout)
	}
	wantLines(t, "stdout", r.stdout.String(), "SKIP "+vfMAC+" network/virtio not managed by the policy: network vf-pool is a hostdev pool")
	wantNot(t, "stdout", r.stdout.String(), "running queues")
}

// TestColdBootGuestStepSkipsHostdevPool: a domain with a VF and a NAT NIC
// restarts for the NAT NIC; the guest step run here sets only the NAT
// NIC's channels (the VF has no interface with its MAC in this guest: a
// step for it would wait for it until the boot timeout).
func TestColdBootGuestStepSkipsHostdevPool(t *testing.T) {
	fake := virttest.New()
	vfDomain(t, fake, "vf-pool", "default")
	if err := fake.Start("vf"); err != nil {
		t.Fatal(err)
	}
	g := verifytest.LinuxGuest(natMAC, guest.Channels{Max: 4, Current: 1})
	verifytest.SetGuest(fake, g)
	code, r := runColdBootTest(t, fake, "--shutdown-timeout", "50ms", "--force", "--boot-timeout", "3s", "vf")
	out := r.stdout.String()
	wantLines(t, "stdout", out, "vf: shutting down", natMAC+" runs 1, wants 4", "started; guest step run here; verifying")
	wantNot(t, "stdout", out, vfMAC+" runs")
	if q := definedQueues(t, fake, "vf"); q[vfMAC] > 1 || q[natMAC] != 4 {
		t.Errorf("queues after the cold boot = %v (exit %d)", q, code)
	}
	var set []string
	for _, e := range g.Execs() {
		if strings.Contains(e, "-L") {
			set = append(set, e)
		}
	}
	if len(set) != 1 || !strings.Contains(set[0], "combined 4") {
		t.Errorf("ethtool -L runs = %q, want one, combined 4 on the NAT NIC", set)
	}
}

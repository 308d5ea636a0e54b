package policy

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDecideLeavesAlone covers the decisions that would break a start or
// undo a person's choice if virtmq took them: each case is
// a NIC or domain virtmq must leave as it is, with the reason it says.
func TestDecideLeavesAlone(t *testing.T) {
	mk := func(f func(*Interface)) Interface { n := nic(0); f(&n); return n }
	for _, tt := range []struct {
		name    string
		policy  string
		d       Domain
		managed bool
		wanted  int
		rule    string
		reason  string
		kept    bool
	}{
		{name: "vhost-user skipped by default",
			d:      Domain{MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) { n.Type = "vhostuser" })}},
			wanted: 1, rule: "defaults", reason: vhostUserReason},
		{name: "vhost-user opted in by a rule",
			policy:  "rules:\n  - {name: dpdk, match: {nic_type: vhostuser}, set: {allow_vhostuser: true, max: 2}}\n",
			d:       Domain{MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) { n.Type = "vhostuser" })}},
			managed: true, wanted: 2, rule: "dpdk", reason: "queues=vcpus → 4; max 2 → 2"},
		{name: "vhost-user opted in by the defaults",
			policy:  "defaults: {allow_vhostuser: true}\n",
			d:       Domain{MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) { n.Type = "vhostuser" })}},
			managed: true, wanted: 4, rule: "defaults", reason: "queues=vcpus → 4"},
		{name: "network on a hostdev pool (filled by the agent)",
			d: Domain{MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) {
				n.Type, n.Network, n.NetworkForward = "network", "sriov-pool", "hostdev"
			})}},
			wanted: 1, reason: "network sriov-pool is a hostdev pool (<forward mode='hostdev'>): the NIC is a passed-through device, queues do not apply"},
		{name: "network with NAT forward is managed",
			d: Domain{MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) {
				n.Type, n.Network, n.NetworkForward = "network", "default", "nat"
			})}},
			managed: true, wanted: 4, rule: "defaults", reason: "queues=vcpus → 4"},
		{name: "vdpa: the count is the vDPA device's",
			d:      Domain{MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) { n.Type = "vdpa" })}},
			wanted: 1, reason: vdpaReason},
		{name: "vdpa without a model: virtio all the same, and the count still the device's",
			d:      Domain{MaxVCPUs: 4, Arch: "x86_64", Machine: "pc-q35-7.2", Interfaces: []Interface{mk(func(n *Interface) { n.Type, n.Model = "vdpa", "" })}},
			wanted: 1, reason: vdpaReason + "; no <model>: libvirt makes it virtio but drops a <driver> written without <model type='virtio'/>"},
		{name: "vhost-user without a model on x86_64 is virtio (libvirt's default for the type)",
			policy:  "defaults: {allow_vhostuser: true}\n",
			d:       Domain{MaxVCPUs: 4, Arch: "x86_64", Machine: "pc-q35-7.2", Interfaces: []Interface{mk(func(n *Interface) { n.Type, n.Model = "vhostuser", "" })}},
			managed: true, wanted: 4, rule: "defaults", reason: "queues=vcpus → 4; no <model>: libvirt makes a vhost-user NIC virtio (libvirt 9.0 refuses one without <model>)"},
		{name: "vhost-user without a model, not opted in",
			d:      Domain{MaxVCPUs: 4, Arch: "x86_64", Interfaces: []Interface{mk(func(n *Interface) { n.Type, n.Model = "vhostuser", "" })}},
			wanted: 1, rule: "defaults", reason: vhostUserReason},
		{name: "transient teaming member: the passed-through VF",
			d:      Domain{MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) { n.Teaming = "transient" })}},
			wanted: 1, reason: "<teaming type='transient'>: the passed-through VF of a failover pair; its standby, the persistent virtio NIC, is the one that takes queues"},
		{name: "persistent teaming member is managed",
			d:       Domain{MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) { n.Teaming = "persistent" })}},
			managed: true, wanted: 4, rule: "defaults", reason: "queues=vcpus → 4"},
		{name: "model compared case-insensitively",
			d:       Domain{MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) { n.Model = "ViRtIo" })}},
			managed: true, wanted: 4, rule: "defaults", reason: "queues=vcpus → 4"},
		{name: "no model on aarch64 virt is virtio",
			d:       Domain{MaxVCPUs: 4, Arch: "aarch64", Machine: "virt", Interfaces: []Interface{mk(func(n *Interface) { n.Model = "" })}},
			managed: true, wanted: 4, rule: "defaults", reason: "queues=vcpus → 4; no <model>: libvirt's default here is virtio"},
		{name: "no model on aarch64 virt-9.2 is virtio",
			d:       Domain{MaxVCPUs: 4, Arch: "aarch64", Machine: "virt-9.2", Interfaces: []Interface{mk(func(n *Interface) { n.Model = "" })}},
			managed: true, wanted: 4, rule: "defaults", reason: "queues=vcpus → 4; no <model>: libvirt's default here is virtio"},
		{name: "no model on riscv64 virt is virtio",
			d:       Domain{MaxVCPUs: 4, Arch: "riscv64", Machine: "virt", Interfaces: []Interface{mk(func(n *Interface) { n.Model = "" })}},
			managed: true, wanted: 4, rule: "defaults", reason: "queues=vcpus → 4; no <model>: libvirt's default here is virtio"},
		{name: "no model on loongarch64 virt is virtio",
			d:       Domain{MaxVCPUs: 4, Arch: "loongarch64", Machine: "virt", Interfaces: []Interface{mk(func(n *Interface) { n.Model = "" })}},
			managed: true, wanted: 4, rule: "defaults", reason: "queues=vcpus → 4; no <model>: libvirt's default here is virtio"},
		{name: "no model on s390x is virtio",
			d:       Domain{MaxVCPUs: 4, Arch: "s390x", Machine: "s390-ccw-virtio", Interfaces: []Interface{mk(func(n *Interface) { n.Model = "" })}},
			managed: true, wanted: 4, rule: "defaults", reason: "queues=vcpus → 4; no <model>: libvirt's default here is virtio"},
		{name: "no model on aarch64 vexpress is not virtio",
			d:      Domain{MaxVCPUs: 4, Arch: "aarch64", Machine: "vexpress-a15", Interfaces: []Interface{mk(func(n *Interface) { n.Model = "" })}},
			wanted: 1, reason: "no <model>: libvirt picks a non-virtio default on aarch64 vexpress-a15"},
		{name: "no model on x86_64 q35 is not virtio",
			d:      Domain{MaxVCPUs: 4, Arch: "x86_64", Machine: "pc-q35-7.2", Interfaces: []Interface{mk(func(n *Interface) { n.Model = "" })}},
			wanted: 1, reason: "no <model>: libvirt picks a non-virtio default on x86_64 pc-q35-7.2"},
		{name: "hand-set queues=1 kept (firewall appliance)",
			d:      Domain{MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) { n.Queues = 1 })}},
			wanted: 1, rule: "defaults", reason: "kept: set by hand (rule defaults says keep)", kept: true},
		{name: "hand-set queues=3 kept, also above the wish",
			d:      Domain{MaxVCPUs: 2, Interfaces: []Interface{mk(func(n *Interface) { n.Queues = 3 })}},
			wanted: 3, rule: "defaults", reason: "kept: set by hand (rule defaults says keep)", kept: true},
		{name: "a person changed what virtmq wrote: kept",
			d:      Domain{MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) { n.Queues, n.Written = 1, 4 })}},
			wanted: 1, rule: "defaults", reason: "kept: set by hand (rule defaults says keep)", kept: true},
		{name: "what virtmq wrote is virtmq's to change",
			d:       Domain{MaxVCPUs: 2, Interfaces: []Interface{mk(func(n *Interface) { n.Queues, n.Written = 4, 4 })}},
			managed: true, wanted: 2, rule: "defaults", reason: "queues=vcpus → 2"},
		{name: "hand-set overridden by a rule",
			policy:  "rules:\n  - {name: all, set: {hand_set: override}}\n",
			d:       Domain{MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) { n.Queues = 1 })}},
			managed: true, wanted: 4, rule: "all", reason: "queues=vcpus → 4; hand-set 1 overridden (hand_set: override)"},
		{name: "a rule may keep what the defaults override",
			policy: "defaults: {hand_set: override}\nrules:\n  - {name: fw, match: {domain: \"fw-*\"}, set: {hand_set: keep}}\n",
			d:      Domain{Name: "fw-1", MaxVCPUs: 4, Interfaces: []Interface{mk(func(n *Interface) { n.Queues = 1 })}},
			wanted: 1, rule: "fw", reason: "kept: set by hand (rule fw says keep)", kept: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plan := mustParse(t, tt.policy).Decide(&tt.d)
			if len(plan.NICs) != 1 {
				t.Fatalf("got %d NICs", len(plan.NICs))
			}
			n := plan.NICs[0]
			if n.Managed != tt.managed || n.Wanted != tt.wanted || n.Rule != tt.rule || n.Reason != tt.reason || n.Kept != tt.kept {
				t.Errorf("got managed=%v wanted=%d rule=%q kept=%v reason=%q\nwant managed=%v wanted=%d rule=%q kept=%v reason=%q",
					n.Managed, n.Wanted, n.Rule, n.Kept, n.Reason, tt.managed, tt.wanted, tt.rule, tt.kept, tt.reason)
			}
			if !tt.managed && n.Change() {
				t.Errorf("an unmanaged NIC reports a change")
			}
		})
	}
}

func TestDecideWholeDomainSkips(t *testing.T) {
	p := mustParse(t, "")
	two := []Interface{nic(0), with(nic(1), 2)}
	for _, tt := range []struct {
		name string
		d    Domain
		skip string
	}{
		{"xen", Domain{Name: "x", Type: "xen", MaxVCPUs: 8, Interfaces: two}, "domain type xen is not virtmq's (only qemu and kvm domains are)"},
		{"test driver", Domain{Name: "x", Type: "test", MaxVCPUs: 8, Interfaces: two}, "domain type test is not virtmq's (only qemu and kvm domains are)"},
		{"hvf", Domain{Name: "x", Type: "hvf", MaxVCPUs: 8, Interfaces: two}, "domain type hvf is not virtmq's (only qemu and kvm domains are)"},
		{"exclude label", Domain{Name: "fw1", Type: "kvm", MaxVCPUs: 8, Excluded: true, Interfaces: two}, "excluded by the domain's virtmq label (`virtmq include fw1` removes it)"},
		{"kvm", Domain{Name: "x", Type: "kvm", MaxVCPUs: 8, Interfaces: two}, ""},
		{"qemu", Domain{Name: "x", Type: "qemu", MaxVCPUs: 8, Interfaces: two}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plan := p.Decide(&tt.d)
			if plan.Skip != tt.skip {
				t.Errorf("Skip = %q, want %q", plan.Skip, tt.skip)
			}
			for _, n := range plan.NICs {
				if tt.skip != "" && (n.Managed || n.Change() || n.Reason != tt.skip || n.Wanted != n.Current) {
					t.Errorf("NIC %d of a skipped domain: %+v", n.Index, n)
				}
				if tt.skip == "" && n.Index == 0 && !n.Managed {
					t.Errorf("NIC 0 of a managed domain: %+v", n)
				}
			}
		})
	}
	if plan := p.Decide(&Domain{Name: "e", Type: "xen"}); plan.Skip == "" || plan.NICs != nil {
		t.Errorf("a xen domain without NICs: %+v", plan)
	}
}

func TestDecideBudgetSplit(t *testing.T) {
	for _, tt := range []struct {
		name     string
		budget   int
		wishes   []int
		want     []int
		warnings int
	}{
		{"even", 12, []int{8, 8, 8}, []int{4, 4, 4}, 3},
		{"a small wish frees queues for the others", 12, []int{8, 2, 8}, []int{5, 2, 5}, 2},
		{"remainder in document order", 13, []int{8, 8, 8}, []int{5, 4, 4}, 3},
		{"remainder skips NICs at their wish", 10, []int{3, 8, 8}, []int{3, 4, 3}, 2},
		{"fits", 24, []int{8, 8, 8}, []int{8, 8, 8}, 0},
		{"fewer queues than NICs", 2, []int{4, 4, 4}, []int{1, 1, 1}, 3},
		{"order does not favour the first NIC", 9, []int{1, 8, 8}, []int{1, 4, 4}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var src strings.Builder
			src.WriteString("defaults: {budget: " + itoa(tt.budget) + ", max: 64}\nrules:\n")
			d := Domain{MaxVCPUs: 64}
			for i, w := range tt.wishes {
				src.WriteString("  - {name: n" + itoa(i) + ", match: {bridge: br" + itoa(i) + "}, set: {queues: " + itoa(w) + "}}\n")
				d.Interfaces = append(d.Interfaces, Interface{Index: i, Type: "bridge", Model: "virtio", Bridge: "br" + itoa(i)})
			}
			plan := mustParse(t, src.String()).Decide(&d)
			var got []int
			for _, n := range plan.NICs {
				got = append(got, n.Wanted)
				if n.Combined > n.Wanted {
					t.Errorf("NIC %d: M %d > N %d", n.Index, n.Combined, n.Wanted)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("queues = %v, want %v", got, tt.want)
			}
			if len(plan.Warnings) != tt.warnings {
				t.Errorf("warnings = %q, want %d", plan.Warnings, tt.warnings)
			}
		})
	}
	plan := mustParse(t, "defaults: {budget: 12}\n").Decide(&Domain{MaxVCPUs: 16, Interfaces: []Interface{
		{Index: 0, Type: "bridge", Model: "virtio", MAC: "52:54:00:00:00:01"}, nic(1), nic(2),
	}})
	want := "NIC 52:54:00:00:00:01: 4 queues, below the 8 rule defaults wants: the domain's budget of 12 is shared by 3 NICs"
	if len(plan.Warnings) != 3 || plan.Warnings[0] != want || !strings.HasPrefix(plan.Warnings[1], "NIC #1: ") {
		t.Errorf("warnings = %q", plan.Warnings)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

const vdpaReason = "type vdpa: the queue count belongs to the vDPA device, set on the host when it is created " +
	"(vdpa dev add ... max_vqp N); <driver queues> must fit it, so virtmq leaves it alone"

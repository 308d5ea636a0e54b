package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDecideOrchestrators: a domain an orchestrator owns is left alone
// as a whole by default, the reason naming the orchestrator's own knob;
// the policy's orchestrators entry opts it in, never above the policy's
// mode and never into enforce.
func TestDecideOrchestrators(t *testing.T) {
	nova := Domain{Name: "instance-0000000e", MaxVCPUs: 4, Interfaces: []Interface{nic(0), nic(1)},
		MetadataNamespaces: []string{"http://openstack.org/xmlns/libvirt/nova/1.1"}}
	for _, tt := range []struct {
		name   string
		policy string
		d      Domain
		owner  string
		mode   Mode
		skip   string // a substring of Plan.Skip; "" when decided
	}{
		{name: "nova 1.1 left alone", d: nova, owner: "nova", mode: ModeApply,
			skip: "left to OpenStack Nova, which defines this domain and rebuilds it from its own database: set multiqueue there, " +
				"with the flavor's hw:vif_multiqueue_enabled extra spec or the image's hw_vif_multiqueue_enabled property " +
				"(orchestrators: {nova: apply} in the policy makes virtmq manage it)"},
		{name: "nova 1.0 left alone",
			d: Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)},
				MetadataNamespaces: []string{"http://libosinfo.org/xmlns/libvirt/domain/1.0", "http://openstack.org/xmlns/libvirt/nova/1.0"}},
			owner: "nova", mode: ModeApply, skip: "hw:vif_multiqueue_enabled"},
		{name: "ovirt left alone",
			d:     Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}, MetadataNamespaces: []string{"http://ovirt.org/vm/tune/1.0", "http://ovirt.org/vm/1.0"}},
			owner: "ovirt", mode: ModeApply, skip: "left to oVirt, which defines this domain and rebuilds it from its own database: " +
				"set multiqueue there, with the VM's Multi Queues Enabled setting, multi_queues_enabled in the oVirt API ("},
		{name: "opennebula left alone",
			d:     Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}, MetadataNamespaces: []string{"http://opennebula.org/xmlns/libvirt/1.0"}},
			owner: "opennebula", mode: ModeApply, skip: "VIRTIO_QUEUES"},
		{name: "cloudstack by its SMBIOS product",
			d:     Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}, SMBIOSProduct: "CloudStack KVM Hypervisor"},
			owner: "cloudstack", mode: ModeApply, skip: "nicmultiqueuenumber"},
		{name: "kubevirt",
			d:     Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}, MetadataNamespaces: []string{"http://kubevirt.io"}},
			owner: "kubevirt", mode: ModeApply, skip: "networkInterfaceMultiqueue"},
		{name: "a look-alike namespace is not nova",
			d:    Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}, MetadataNamespaces: []string{"http://openstack.org/xmlns/libvirt/novel/1.0", "http://kubevirt.io/other"}},
			mode: ModeApply},
		{name: "a product that only says OpenStack is not nova",
			d:    Domain{MaxVCPUs: 4, Interfaces: []Interface{nic(0)}, SMBIOSProduct: "OpenStack Compute"},
			mode: ModeApply},
		{name: "opted in to observe in mode apply", policy: "orchestrators: {nova: observe}\n", d: nova, owner: "nova", mode: ModeObserve},
		{name: "opted in to apply", policy: "orchestrators: {nova: apply}\n", d: nova, owner: "nova", mode: ModeApply},
		{name: "apply never enforces", policy: "mode: enforce\norchestrators: {nova: apply}\n", d: nova, owner: "nova", mode: ModeApply},
		{name: "apply stays below observe", policy: "mode: observe\norchestrators: {nova: apply}\n", d: nova, owner: "nova", mode: ModeObserve},
		{name: "opting in another orchestrator leaves nova alone", policy: "orchestrators: {ovirt: apply}\n", d: nova, owner: "nova", mode: ModeApply,
			skip: "left to OpenStack Nova"},
		{name: "leave written out", policy: "orchestrators: {nova: leave}\n", d: nova, owner: "nova", mode: ModeApply, skip: "left to OpenStack Nova"},
		{name: "the exclude label comes first",
			d: func() Domain { d := nova; d.Excluded = true; return d }(), mode: ModeApply, skip: "excluded by the domain's virtmq label"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			plan := mustParse(t, tt.policy).Decide(&tt.d)
			if plan.Orchestrator != tt.owner || plan.Mode != tt.mode {
				t.Errorf("orchestrator %q, mode %s; want %q, %s", plan.Orchestrator, plan.Mode, tt.owner, tt.mode)
			}
			if tt.skip == "" {
				if plan.Skip != "" {
					t.Fatalf("Skip = %q, want the NICs decided", plan.Skip)
				}
				for _, n := range plan.NICs {
					if !n.Managed || n.Wanted != 4 {
						t.Errorf("NIC %d: %+v, want managed with 4 queues", n.Index, n)
					}
				}
				if tt.owner != "" && (len(plan.Warnings) != 1 || !strings.Contains(plan.Warnings[0], "managed by virtmq (orchestrators: nova: ")) {
					t.Errorf("warnings = %q, want the opt-in's", plan.Warnings)
				}
				return
			}
			if !strings.Contains(plan.Skip, tt.skip) {
				t.Errorf("Skip = %q, want it to hold %q", plan.Skip, tt.skip)
			}
			if !plan.Compliant() || len(plan.Warnings) != 0 {
				t.Errorf("plan changes something or warns: %+v", plan)
			}
			for _, n := range plan.NICs {
				if n.Managed || n.GuestStep || n.Reason != plan.Skip || n.Wanted != n.Current {
					t.Errorf("NIC %d: %+v, want left alone with the domain's reason", n.Index, n)
				}
			}
		})
	}
}

func TestParseOrchestrators(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"orchestrators: {openstack: apply}\n", `p.yaml:2:17: orchestrators.openstack: unknown orchestrator (known: nova, ovirt, opennebula, cloudstack, kubevirt)`},
		{"orchestrators: {nova: enforce}\n", `p.yaml:2:23: orchestrators.nova: "enforce" is not one of leave, observe, apply`},
		{"orchestrators: [nova]\n", `p.yaml:2:16: orchestrators: must be a mapping, not a list`},
	} {
		_, err := Parse("p.yaml", []byte("version: 1\n"+tt.src))
		if err == nil || err.Error() != tt.want {
			t.Errorf("%q:\n got %v\nwant %s", tt.src, err, tt.want)
		}
	}
	p := mustParse(t, "orchestrators:\n  nova: apply\n  ovirt: leave\n")
	if got := p.Orchestrators(); got["nova"] != OrchestratorApply || got["ovirt"] != OrchestratorLeave || got["kubevirt"] != OrchestratorLeave || len(got) != 5 {
		t.Errorf("Orchestrators() = %v", got)
	}
	// An opt-in is worth a note; leave is the default and is not.
	var notes []string
	for _, w := range p.Warnings() {
		notes = append(notes, w.Error())
	}
	want := "p.yaml:3:9: orchestrators.nova: note: virtmq manages OpenStack Nova's domains (apply): OpenStack Nova rebuilds a definition without the queues virtmq writes " +
		"at a hard reboot, a rebuild or a migration; its own setting, the flavor's hw:vif_multiqueue_enabled extra spec or the image's hw_vif_multiqueue_enabled property, lasts"
	if len(notes) != 1 || notes[0] != want {
		t.Errorf("warnings:\n%s\nwant\n%s", strings.Join(notes, "\n"), want)
	}
}

// TestOrchestratorsDropIn: a drop-in's entry replaces the main file's for
// that orchestrator only.
func TestOrchestratorsDropIn(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "policy.yaml"), "version: 1\norchestrators: {nova: apply, ovirt: observe}\n")
	write(t, filepath.Join(dir, "policy.d", "50-host.yaml"), "orchestrators: {nova: leave}\n")
	p, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Orchestrators(); got["nova"] != OrchestratorLeave || got["ovirt"] != OrchestratorObserve {
		t.Errorf("Orchestrators() = %v", got)
	}
}

// TestDigest: the digest follows what the policy decides, not how the
// files are written.
func TestDigest(t *testing.T) {
	base := mustParse(t, "defaults: {max: 4}\nrules:\n  - {name: a, match: {domain: 'db-*'}, set: {queues: 2}}\n")
	same := mustParse(t, "# a comment\ndefaults:\n  max: 4\n  min: 1\nrules:\n  - name: a\n    match: {domain: [\"db-*\"]}\n    set: {queues: 2}\n")
	if base.Digest() != same.Digest() {
		t.Errorf("layout, comments and a default written out change the digest: %s vs %s", base.Digest(), same.Digest())
	}
	if len(base.Digest()) != 16 {
		t.Errorf("digest %q is not 16 hex digits", base.Digest())
	}
	// The same merged policy from a main file and a drop-in.
	dir := t.TempDir()
	write(t, filepath.Join(dir, "policy.yaml"), "version: 1\nrules:\n  - {name: a, match: {domain: 'db-*'}, set: {queues: 2}}\n")
	write(t, filepath.Join(dir, "policy.d", "10-max.yaml"), "defaults: {max: 4}\n")
	split, err := Load(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if split.Digest() != base.Digest() {
		t.Errorf("a drop-in holding the defaults changes the digest")
	}
	for _, src := range []string{
		"defaults: {max: 5}\nrules:\n  - {name: a, match: {domain: 'db-*'}, set: {queues: 2}}\n",
		"defaults: {max: 4}\nrules:\n  - {name: a, match: {domain: 'db-*'}, set: {queues: 3}}\n",
		"defaults: {max: 4}\nrules:\n  - {name: a, match: {domain: 'web-*'}, set: {queues: 2}}\n",
		"defaults: {max: 4}\nrules:\n  - {name: b, match: {domain: 'db-*'}, set: {queues: 2}}\n",
		"mode: observe\ndefaults: {max: 4}\nrules:\n  - {name: a, match: {domain: 'db-*'}, set: {queues: 2}}\n",
		"orchestrators: {nova: apply}\ndefaults: {max: 4}\nrules:\n  - {name: a, match: {domain: 'db-*'}, set: {queues: 2}}\n",
	} {
		if d := mustParse(t, src).Digest(); d == base.Digest() {
			t.Errorf("%q has the digest of a different policy", src)
		}
	}
	if a, b := Default(), Default(); a.Digest() != b.Digest() {
		t.Error("the digest is not stable")
	}
}

// TestOrchestratorsDocumented: every orchestrator Decide recognises has
// its row in docs/policy.md, with its knob.
func TestOrchestratorsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range Orchestrators() {
		if !strings.Contains(string(doc), "| `"+o.Name+"` |") {
			t.Errorf("docs/policy.md has no row for orchestrator %s", o.Name)
		}
	}
}

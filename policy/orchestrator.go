package policy

import (
	"slices"
	"strings"
)

// An orchestrator is a management stack that defines libvirt domains
// itself and keeps them as its database says: OpenStack Nova, oVirt,
// OpenNebula, CloudStack and KubeVirt rebuild a domain's whole XML at a
// hard reboot, a rebuild or a migration, and sync its power state from
// libvirt's lifecycle events. A redefine behind such a stack's back is
// lost at its next rebuild, and a stop and start fights its power-state
// sync; each has its own multiqueue setting. So Decide leaves their
// domains alone unless the policy's orchestrators key opts one in.
type Orchestrator struct {
	// Name is the key in the policy's orchestrators mapping.
	Name string
	// Title is how its users call it.
	Title string
	// Knob is the orchestrator's own multiqueue setting, which the reason
	// of a domain left alone names.
	Knob string
	// namespaces are prefixes of the <metadata> namespaces it writes
	// (Domain.MetadataNamespaces).
	namespaces []string
	// products are prefixes of the SMBIOS product it writes
	// (Domain.SMBIOSProduct), for a stack that writes no <metadata>.
	products []string
}

// orchestrators are the stacks Decide recognises, in the order the docs
// list them. Each marker is what the stack itself writes (see
// docs/policy.md, "Domains of an orchestrator", for where in its source).
var orchestrators = []Orchestrator{
	{
		Name:  "nova",
		Title: "OpenStack Nova",
		Knob:  "the flavor's hw:vif_multiqueue_enabled extra spec or the image's hw_vif_multiqueue_enabled property",
		// nova/virt/libvirt/config.py: NOVA_NS, /1.0, and /1.1 since Zed.
		namespaces: []string{"http://openstack.org/xmlns/libvirt/nova/"},
	},
	{
		Name:  "ovirt",
		Title: "oVirt",
		Knob:  "the VM's Multi Queues Enabled setting, multi_queues_enabled in the oVirt API",
		// vdsm lib/vdsm/virt/xmlconstants.py: ovirt-vm and ovirt-tune.
		namespaces: []string{"http://ovirt.org/vm/"},
	},
	{
		Name:  "opennebula",
		Title: "OpenNebula",
		Knob:  "the NIC's VIRTIO_QUEUES attribute in the VM template",
		// src/vmm/LibVirtDriverKVM.cc: <one:vm xmlns:one=...>.
		namespaces: []string{"http://opennebula.org/xmlns/libvirt/"},
	},
	{
		Name:  "cloudstack",
		Title: "Apache CloudStack",
		Knob:  "the nicmultiqueuenumber parameter of deployVirtualMachine",
		// LibvirtVMDef.java GuestDef: "CloudStack " + type + " Hypervisor";
		// its <metadata> holds only optional plugins' elements.
		products: []string{"CloudStack KVM Hypervisor", "CloudStack LXC Hypervisor"},
	},
	{
		Name:  "kubevirt",
		Title: "KubeVirt",
		Knob:  "spec.domain.devices.networkInterfaceMultiqueue of the VirtualMachine",
		// pkg/virt-launcher/virtwrap/api/schema.go: <kubevirt xmlns="http://kubevirt.io">.
		namespaces: []string{"http://kubevirt.io"},
	},
}

// Orchestrators returns the orchestrators Decide recognises.
func Orchestrators() []Orchestrator { return slices.Clone(orchestrators) }

// orchestratorNames are the keys of the orchestrators mapping, for
// "unknown key" messages.
func orchestratorNames() []string {
	names := make([]string, len(orchestrators))
	for i, o := range orchestrators {
		names[i] = o.Name
	}
	return names
}

// orchestrator returns the orchestrator of that name, or nil.
func orchestrator(name string) *Orchestrator {
	for i := range orchestrators {
		if orchestrators[i].Name == name {
			return &orchestrators[i]
		}
	}
	return nil
}

// OwnedBy returns the orchestrator whose marker the domain carries, or nil.
func OwnedBy(d *Domain) *Orchestrator {
	for i := range orchestrators {
		o := &orchestrators[i]
		for _, ns := range d.MetadataNamespaces {
			for _, p := range o.namespaces {
				if ns == p || strings.HasSuffix(p, "/") && strings.HasPrefix(ns, p) {
					return o
				}
			}
		}
		for _, p := range o.products {
			if d.SMBIOSProduct == p {
				return o
			}
		}
	}
	return nil
}

// OrchestratorMode is the value of one entry of `orchestrators`: the
// most virtmq does to the domains of that orchestrator.
type OrchestratorMode string

// What virtmq does to an orchestrator's domains.
const (
	// OrchestratorLeave, the default: nothing; the plan says why and names
	// the orchestrator's own setting.
	OrchestratorLeave OrchestratorMode = "leave"
	// OrchestratorObserve: decide them and report, as mode observe does,
	// whatever the policy's mode.
	OrchestratorObserve OrchestratorMode = "observe"
	// OrchestratorApply: decide them like any other domain, in the
	// policy's mode, but never enforce (a refused start would fail the
	// orchestrator's own operation).
	OrchestratorApply OrchestratorMode = "apply"
)

// Orchestrators returns the policy's orchestrators mapping after the
// merge: each recognised orchestrator's mode, OrchestratorLeave where no
// file sets one.
func (p *Policy) Orchestrators() map[string]OrchestratorMode {
	out := make(map[string]OrchestratorMode, len(orchestrators))
	for _, o := range orchestrators {
		out[o.Name] = p.orchestratorMode(o.Name)
	}
	return out
}

func (p *Policy) orchestratorMode(name string) OrchestratorMode {
	if m, ok := p.orchestrators[name]; ok {
		return m
	}
	return OrchestratorLeave
}

// orchestratorSkip applies the policy's orchestrators setting to a domain
// of o: the reason to leave it alone ("" when opted in) and the mode its
// plan gets.
func (p *Policy) orchestratorSkip(o *Orchestrator) (skip string, mode Mode) {
	switch p.orchestratorMode(o.Name) {
	case OrchestratorObserve:
		return "", ModeObserve
	case OrchestratorApply:
		if p.mode == ModeEnforce {
			return "", ModeApply
		}
		return "", p.mode
	}
	return "left to " + o.Title + ", which defines this domain and rebuilds it from its own database: " +
		"set multiqueue there, with " + o.Knob +
		" (orchestrators: {" + o.Name + ": apply} in the policy makes virtmq manage it)", p.mode
}

// orchestratorWarning is the plan's warning for an opted-in domain.
func orchestratorWarning(o *Orchestrator, m OrchestratorMode) string {
	return "domain of " + o.Title + ", managed by virtmq (orchestrators: " + o.Name + ": " + string(m) + "): " +
		o.Title + " rebuilds its definition (at a hard reboot, a rebuild, a migration) without the queues virtmq writes; " +
		"its own setting is " + o.Knob
}

package policy

// The facts Decide needs, as package domxml reads them from a libvirt domain
// XML (or a test writes them by hand): facts in, decision out.

// Domain holds the facts of one domain definition.
type Domain struct {
	Name string
	UUID string
	// Type is the <domain type='...'> attribute: kvm, qemu, ... Decide
	// leaves every other type (xen, test, hvf, ...) alone; empty (facts
	// built by hand) counts as qemu.
	Type string
	// Arch and Machine are <os><type arch='...' machine='...'>, e.g.
	// "aarch64" and "virt-9.2"; empty when absent. They decide the NIC
	// model libvirt picks when an <interface> has no <model>.
	Arch, Machine string
	// Excluded reports the per-domain opt-out: a
	// <metadata><virtmq:exclude xmlns:virtmq="https://virtmq.dev/xmlns/exclude/1"/>
	// element, set by `virtmq exclude DOMAIN` through libvirt's metadata
	// API. Decide then leaves every NIC alone.
	Excluded bool
	// MaxVCPUs is the text of <vcpu>: the most vCPUs the domain can have.
	// It is 1 when <vcpu> is absent, as libvirt assumes.
	MaxVCPUs int
	// CurrentVCPUs is <vcpu current='...'>, the vCPUs online at boot; it
	// equals MaxVCPUs when the attribute is absent.
	CurrentVCPUs int
	// OSID is the libosinfo OS id from <metadata><libosinfo:libosinfo><libosinfo:os id='...'/>,
	// e.g. "http://microsoft.com/win/2k19"; empty when absent.
	OSID string
	// Labels are the virtmq labels from
	// <metadata><virtmq:labels xmlns:virtmq="https://virtmq.dev/xmlns/labels/1"><virtmq:label name="K">V</virtmq:label>...
	Labels map[string]string
	// MetadataNamespaces are the XML namespaces of the elements directly
	// in <metadata>, in document order, each once: which applications keep
	// data in the domain, e.g. "http://openstack.org/xmlns/libvirt/nova/1.1"
	// for OpenStack Nova or "http://ovirt.org/vm/1.0" for oVirt. An
	// element in no namespace is left out.
	MetadataNamespaces []string
	// SMBIOSProduct is the product the domain's firmware reports,
	// <sysinfo type='smbios'><system><entry name='product'>, e.g.
	// "OpenStack Nova" or "CloudStack KVM Hypervisor"; empty when absent.
	SMBIOSProduct string
	// Interfaces are the <devices><interface> elements in document order.
	Interfaces []Interface
}

// Interface holds the facts of one <interface> element.
type Interface struct {
	// Index is the position among the domain's <interface> elements (0-based);
	// Rewrite uses it to address the NIC.
	Index int
	// Type is <interface type='...'>: network, bridge, direct, ethernet, vhostuser, user, ...
	Type string
	// Model is <model type='...'>, lower-cased (libvirt accepts any case);
	// empty when absent.
	Model string
	// MAC is <mac address='...'> lower-cased; empty when absent (libvirt generates one at define).
	MAC string
	// Network is <source network='...'> (type network).
	Network string
	// Bridge is <source bridge='...'> (type bridge), or the bridge libvirt
	// reports for a running type network NIC.
	Bridge string
	// SourceDev is <source dev='...'> (type direct).
	SourceDev string
	// HasDriver reports whether a <driver> element exists.
	HasDriver bool
	// DriverName is <driver name='...'>: vhost, qemu or empty.
	DriverName string
	// Queues is <driver queues='...'>; 0 when absent (which means one pair).
	Queues int
	// TargetDev is <target dev='...'>, the tap name on a running domain.
	TargetDev string
	// TargetManaged is <target managed='...'>: "no" for a pre-created tap.
	TargetManaged string
	// Alias is <alias name='...'>, e.g. net0, present in live XML.
	Alias string
	// Teaming is <teaming type='...'>: "persistent" or "transient". In a
	// failover pair the transient member is the passed-through VF (unplugged
	// for migration) and the persistent one is its standby, a virtio NIC.
	Teaming string
	// Written is the queue count virtmq last wrote into this NIC's
	// definition, from the domain's record
	// (<metadata><virtmq:written xmlns:virtmq='https://virtmq.dev/xmlns/written/1'><virtmq:nic mac='...' nth='1' queues='N'/>),
	// matched by MAC and, among NICs that share a MAC, by rank (nth); 0
	// when virtmq never wrote one. A Queues that is set and differs from
	// Written was set by hand.
	Written int
	// NetworkForward is the <forward mode='...'> of the libvirt network a
	// type network NIC uses ("hostdev" for a pool of VFs, "bridge", "nat",
	// ...). The domain XML does not say it: virtmq-agent fills it by
	// reading the network's definition; the hook and `virtmq plan` cannot
	// call libvirt and leave it empty (such NICs are then decided like any
	// type network NIC).
	NetworkForward string
}

// QueuesByMAC maps each interface's MAC to the queue pairs it has (runs
// with, for live XML): Queues, or 1 when absent. Interfaces without a MAC
// are left out.
func (d *Domain) QueuesByMAC() map[string]int {
	m := make(map[string]int, len(d.Interfaces))
	for _, ifc := range d.Interfaces {
		if ifc.MAC != "" {
			m[ifc.MAC] = max(ifc.Queues, 1)
		}
	}
	return m
}

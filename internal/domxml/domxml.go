// Package domxml reads the facts virtmq needs from libvirt domain XML and
// rewrites the queues attribute of <interface>/<driver> elements while keeping
// every other byte of the document as it was.
//
// A struct round-trip through encoding/xml or libvirtxml would reorder
// attributes, drop comments and change quoting; the rewrite instead works on
// token byte offsets, so a domain that needs no change comes out
// byte-identical and a second rewrite is a no-op.
package domxml

import "errors"

// MaxSize is the largest document Parse and Rewrite accept. libvirt's own
// limit for a domain XML is 10 MiB; anything larger is not a domain.
const MaxSize = 16 << 20

// ErrNotDomain is returned when the document's root element is not <domain>.
var ErrNotDomain = errors.New("root element is not <domain>")

// Domain holds the facts of one domain definition.
type Domain struct {
	Name string
	UUID string
	// Type is the <domain type='...'> attribute: kvm, qemu, ...
	Type string
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
	// Interfaces are the <devices><interface> elements in document order.
	Interfaces []Interface
}

// LabelsNamespace is the XML namespace of virtmq's domain labels in <metadata>.
const LabelsNamespace = "https://virtmq.dev/xmlns/labels/1"

// LibosinfoNamespace is the XML namespace virt-install and virt-manager use
// to record the guest OS in <metadata>.
const LibosinfoNamespace = "http://libosinfo.org/xmlns/libvirt/domain/1.0"

// Interface holds the facts of one <interface> element.
type Interface struct {
	// Index is the position among the domain's <interface> elements (0-based);
	// Rewrite uses it to address the NIC.
	Index int
	// Type is <interface type='...'>: network, bridge, direct, ethernet, vhostuser, user, ...
	Type string
	// Model is <model type='...'>; empty when absent.
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
}

// Parse reads the facts of a domain XML document. Errors name the line
// and never include document content beyond element names, since domain
// XML can hold passwords; the one exception is a bad number, which is
// quoted with the attribute it sits in.
//
// Only what libvirt itself would accept is read: the root must be <domain>
// in no namespace (else the error wraps ErrNotDomain), the document must be
// well-formed UTF-8 with only the predefined entities, no DTD, no repeated
// attributes and nothing but comments and whitespace after the root. Label values are
// trimmed of surrounding whitespace; a later label of the same name wins.
func Parse(doc []byte) (*Domain, error) {
	s, err := scan(doc)
	if err != nil {
		return nil, err
	}
	return &s.dom, nil
}

// Rewrite returns doc with the queues attribute of the <driver> of each
// interface set: queues maps an Interface.Index to the wanted count. An
// existing queues attribute has its value replaced (its quote character
// kept); a <driver> without one gets ` queues='N'` appended to its start tag;
// an <interface> without a <driver> gets a `<driver queues='N'/>` child,
// indented like its siblings, after its last child. Every other byte is kept.
// New attributes take the quote character of the <driver>'s other
// attributes, else of the <interface>'s, else '.
// A count of 0 or 1 for an interface without queues leaves it unchanged.
// When nothing changes, the returned slice has the same bytes as doc.
//
// It fails, changing nothing, when doc does not Parse, when a key is not
// the index of an interface, or when a count is outside 0..65535. Since it
// only writes counts the document then reports, rewriting the result with
// the same map returns it unchanged.
func Rewrite(doc []byte, queues map[int]int) ([]byte, error) {
	return rewrite(doc, queues)
}

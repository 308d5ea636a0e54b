// Package domxml reads the facts virtmq needs from libvirt domain XML and
// rewrites the queues attribute of <interface>/<driver> elements while keeping
// every other byte of the document as it was.
//
// A struct round-trip through encoding/xml or libvirtxml would reorder
// attributes, drop comments and change quoting; the rewrite instead works on
// token byte offsets, so a domain that needs no change comes out
// byte-identical and a second rewrite is a no-op.
package domxml

import (
	"errors"

	"github.com/virtmq/virtmq/policy"
)

// MaxSize is the largest document Parse and Apply accept. libvirt's own
// limit for a domain XML is 10 MiB; anything larger is not a domain.
const MaxSize = 16 << 20

// ErrNotDomain is returned when the document's root element is not <domain>.
var ErrNotDomain = errors.New("root element is not <domain>")

// LabelsNamespace is the XML namespace of virtmq's domain labels in <metadata>.
const LabelsNamespace = "https://virtmq.dev/xmlns/labels/1"

// ExcludeNamespace is the XML namespace of the per-domain opt-out: a
// <virtmq:exclude/> element in <metadata> (see ExcludeElement) makes virtmq
// leave the domain alone. `virtmq exclude` sets it with libvirt's metadata
// API, so no full redefine is needed.
const ExcludeNamespace = "https://virtmq.dev/xmlns/exclude/1"

// WrittenNamespace is the XML namespace of virtmq's record of the queue
// counts it wrote, a <metadata> element like
//
//	<virtmq:written xmlns:virtmq='https://virtmq.dev/xmlns/written/1'>
//	  <virtmq:nic mac='52:54:00:12:34:56' nth='1' queues='4'/>
//	  <virtmq:nic mac='52:54:00:12:34:56' nth='2' queues='2'/>
//	</virtmq:written>
//
// An entry names one <interface> by its MAC and, since a domain can hold
// several NICs with one MAC, by its rank among them (nth, counted from 1
// in document order). Both survive libvirt's redefine, which keeps the
// device order, and a hot-plug or unplug of any NIC with another MAC. An
// entry without nth is the form older releases wrote; it stands for every
// NIC with that MAC that has no entry of its own. A <driver queues> that
// differs from the record was set by a person.
const WrittenNamespace = "https://virtmq.dev/xmlns/written/1"

// MetadataPrefix is the namespace prefix virtmq's <metadata> elements use
// (the key argument of virDomainSetMetadata).
const MetadataPrefix = "virtmq"

// ExcludeElement is the exclude label as virDomainSetMetadata takes it
// (libvirt binds the prefix to ExcludeNamespace itself).
const ExcludeElement = "<exclude/>"

// LibosinfoNamespace is the XML namespace virt-install and virt-manager use
// to record the guest OS in <metadata>.
const LibosinfoNamespace = "http://libosinfo.org/xmlns/libvirt/domain/1.0"

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
func Parse(doc []byte) (*policy.Domain, error) {
	s, err := scan(doc)
	if err != nil {
		return nil, err
	}
	return &s.dom, nil
}

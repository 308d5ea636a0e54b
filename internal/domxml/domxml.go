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

// MaxSize is the largest document Parse and Rewrite accept. libvirt's own
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
//	  <virtmq:nic mac='52:54:00:12:34:56' queues='4'/>
//	</virtmq:written>
//
// A <driver queues> that differs from the record was set by a person.
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

package virttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/virtmq/virtmq/internal/virt"
)

// MethodSetMetadata names SetMetadata for FailNext and Calls.
const MethodSetMetadata = "SetMetadata"

// SetMetadata implements virt.Conn the way virDomainSetMetadata does for
// VIR_DOMAIN_METADATA_ELEMENT: the element of namespace ns in <metadata>
// is replaced (or removed, for an empty element), the root element gets
// the prefix key bound to ns, the persistent definition changes for a
// persistent domain and the live XML for a running one, and every
// connection gets EventMetadataChanged (not EventDefined). Like libvirt it
// drops a <metadata> left empty. Unlike libvirt it only prefixes the root
// element, and does not reformat the rest of the XML.
func (c *Conn) SetMetadata(ctx context.Context, v virt.Domain, ns, key, element string) error {
	if err := c.begin(ctx, MethodSetMetadata); err != nil {
		c.end(MethodSetMetadata, v, err)
		return err
	}
	err := c.setMetadata(v, ns, key, element)
	c.end(MethodSetMetadata, v, err)
	return err
}

func (c *Conn) setMetadata(v virt.Domain, ns, key, element string) error {
	if ns == "" || (element != "" && key == "") {
		return fmt.Errorf("virDomainSetMetadata: %w: a namespace and a key are required", virt.ErrInvalidDefinition)
	}
	c.d.mu.Lock()
	x := c.d.findDomain(v)
	if x == nil {
		c.d.mu.Unlock()
		return notFound(v.Name)
	}
	var err error
	if x.persistent {
		if x.inactive, err = withMetadata(x.inactive, ns, key, element); err != nil {
			c.d.mu.Unlock()
			return err
		}
	}
	if x.active {
		if x.live, err = withMetadata(x.live, ns, key, element); err != nil {
			c.d.mu.Unlock()
			return err
		}
	}
	ev := virt.Event{Kind: virt.EventMetadataChanged, Domain: virt.Domain{Name: x.name, UUID: x.uuid}, Detail: 2, Namespace: ns}
	c.d.mu.Unlock()
	c.d.emit(ev)
	return nil
}

var (
	rootName      = regexp.MustCompile(`^\s*<([A-Za-z_][\w.-]*)`)
	emptyMetadata = regexp.MustCompile(`\s*<metadata>\s*</metadata>`)
	metadataEnd   = regexp.MustCompile(`\n?[ \t]*</metadata>`)
	afterIdent    = regexp.MustCompile(`</uuid>|</name>`)
)

// withMetadata returns doc with the metadata element of ns set to element.
func withMetadata(doc []byte, ns, key, element string) ([]byte, error) {
	q := regexp.QuoteMeta(ns)
	old := regexp.MustCompile(`(?s)\s*<([A-Za-z_][\w.-]*):([A-Za-z_][\w.-]*)\s+xmlns:[\w.-]+=["']` + q + `["'][^>]*?(/>|>.*?</([A-Za-z_][\w.-]*):([A-Za-z_][\w.-]*)>)`)
	out := old.ReplaceAll(doc, nil)
	if element == "" {
		return emptyMetadata.ReplaceAll(out, nil), nil
	}
	m := rootName.FindStringSubmatch(element)
	if m == nil {
		return nil, fmt.Errorf("virDomainSetMetadata: %w: not an element", virt.ErrInvalidDefinition)
	}
	name := m[1]
	el := rootName.ReplaceAllString(element, "<"+key+":"+name+` xmlns:`+key+`="`+ns+`"`)
	if end := "</" + name + ">"; bytes.HasSuffix(bytes.TrimSpace([]byte(el)), []byte(end)) {
		t := bytes.TrimSpace([]byte(el))
		el = string(t[:len(t)-len(end)]) + "</" + key + ":" + name + ">"
	}
	if loc := metadataEnd.FindIndex(out); loc != nil {
		ins := "\n    " + el
		return append(out[:loc[0]:loc[0]], append([]byte(ins), out[loc[0]:]...)...), nil
	}
	loc := afterIdent.FindIndex(out)
	if loc == nil {
		return nil, errors.New("virttest: domain XML without <name>")
	}
	ins := "\n  <metadata>\n    " + el + "\n  </metadata>"
	return append(out[:loc[1]:loc[1]], append([]byte(ins), out[loc[1]:]...)...), nil
}

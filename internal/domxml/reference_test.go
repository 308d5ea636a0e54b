package domxml

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/virtmq/virtmq/policy"
)

// refScanner is the state of one pass of scanReference.
type refScanner struct {
	doc   []byte
	res   scanned
	stack []ctx
	text  []byte // character data of the current <name>, <uuid>, <vcpu> or <label>

	seenName, seenUUID, seenVCPU bool
	vcpuLine                     int
	labelName                    string
	rootDone                     bool
	// The first occurrence of each <interface> child is the one libvirt
	// reads (its XPath lookups take the first match).
	seenModel, seenMAC, seenSource, seenTarget, seenAlias bool
}

// scanReference is the scanner Parse and Rewrite used before scan: it
// reads doc once with encoding/xml's tokenizer (strict mode: only the
// predefined entities, matching end tags, quoted attributes) and collects
// the facts and offsets. It is kept, for tests only, as the definition of
// what scan must do: the differential tests and FuzzParseDifferential
// check that both return the same facts, offsets and errors.
func scanReference(doc []byte) (*scanned, error) {
	if len(doc) > MaxSize {
		return nil, fmt.Errorf("document is %d bytes, more than the %d-byte limit", len(doc), MaxSize)
	}
	s := &refScanner{doc: doc, stack: make([]ctx, 0, 16)}
	s.res.dom.MaxVCPUs = 1
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		start := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, s.syntaxError(err, start)
		}
		end := int(d.InputOffset())
		if err := s.token(tok, start, end); err != nil {
			return nil, err
		}
	}
	if !s.rootDone {
		// Token reports a truncated document as a syntax error, so the only
		// way here is a document with no element at all.
		return nil, fmt.Errorf("line %d: no root element", s.line(len(doc)))
	}
	if s.res.dom.CurrentVCPUs == 0 {
		s.res.dom.CurrentVCPUs = s.res.dom.MaxVCPUs
	} else if s.res.dom.CurrentVCPUs > s.res.dom.MaxVCPUs {
		return nil, fmt.Errorf("line %d: <vcpu current=\"%d\">: more than the maximum of %d", s.vcpuLine, s.res.dom.CurrentVCPUs, s.res.dom.MaxVCPUs)
	}
	return &s.res, nil
}

func (s *refScanner) token(tok xml.Token, start, end int) error {
	switch t := tok.(type) {
	case xml.StartElement:
		if err := s.checkAttrs(t, start); err != nil {
			return err
		}
		if len(s.stack) == 0 {
			if s.rootDone {
				return fmt.Errorf("line %d: element <%s> after the root element", s.line(start), t.Name.Local)
			}
			if t.Name.Local != "domain" || t.Name.Space != "" {
				if t.Name.Space != "" {
					return fmt.Errorf("line %d: %w: found <%s> in namespace %q", s.line(start), ErrNotDomain, t.Name.Local, t.Name.Space)
				}
				return fmt.Errorf("line %d: %w: found <%s>", s.line(start), ErrNotDomain, t.Name.Local)
			}
			s.res.dom.Type = refAttr(t, "type")
			s.stack = append(s.stack, ctxDomain)
			return nil
		}
		c, err := s.startElement(t, start, end)
		if err != nil {
			return err
		}
		s.stack = append(s.stack, c)
	case xml.EndElement:
		c := s.stack[len(s.stack)-1]
		s.stack = s.stack[:len(s.stack)-1]
		if len(s.stack) == 0 {
			s.rootDone = true
		}
		return s.endElement(c, start, end)
	case xml.CharData:
		if len(s.stack) == 0 {
			if !isBlank(t) && !(start == 0 && isBlank(bytes.TrimPrefix(t, []byte("\uFEFF")))) {
				if s.rootDone {
					return fmt.Errorf("line %d: text after the root element", s.line(start))
				}
				return fmt.Errorf("line %d: text before the root element", s.line(start))
			}
			return nil
		}
		switch s.stack[len(s.stack)-1] {
		case ctxName, ctxUUID, ctxVCPU, ctxLabel:
			s.text = append(s.text, t...)
		case ctxInterface:
			if !isBlank(t) {
				s.res.spans[len(s.res.spans)-1].lastChild = start
			}
		}
	case xml.Comment, xml.ProcInst:
		if len(s.stack) > 0 && s.stack[len(s.stack)-1] == ctxInterface {
			s.res.spans[len(s.res.spans)-1].lastChild = start
		}
	case xml.Directive:
		// A DTD could declare entities or attribute defaults that libvirt's
		// parser (libxml2) would apply and encoding/xml ignores: the facts
		// read here would then differ from libvirt's. Domain XML never
		// carries one.
		return fmt.Errorf("line %d: <!DOCTYPE> and other <!...> declarations are not allowed in domain XML", s.line(start))
	}
	return nil
}

// startElement handles a start tag below the root and returns the context
// of the new element.
func (s *refScanner) startElement(t xml.StartElement, start, end int) (ctx, error) {
	parent := s.stack[len(s.stack)-1]
	core := t.Name.Space == "" // libvirt's own elements have no namespace
	dom := &s.res.dom
	switch parent {
	case ctxDomain:
		if !core {
			return ctxOther, nil
		}
		switch t.Name.Local {
		case "name":
			if !s.seenName {
				s.seenName = true
				s.text = s.text[:0]
				return ctxName, nil
			}
		case "uuid":
			if !s.seenUUID {
				s.seenUUID = true
				s.text = s.text[:0]
				return ctxUUID, nil
			}
		case "vcpu":
			if !s.seenVCPU {
				s.seenVCPU = true
				s.vcpuLine = s.line(start)
				s.text = s.text[:0]
				if v, ok := refAttrOK(t, "current"); ok {
					n, err := positive(v)
					if err != nil {
						return 0, fmt.Errorf("line %d: <vcpu current=%s>: %v", s.line(start), quoteValue(v), err)
					}
					dom.CurrentVCPUs = n
				}
				return ctxVCPU, nil
			}
		case "metadata":
			return ctxMetadata, nil
		case "devices":
			return ctxDevices, nil
		}
	case ctxMetadata:
		switch {
		case t.Name.Space == LibosinfoNamespace && t.Name.Local == "libosinfo":
			return ctxLibosinfo, nil
		case t.Name.Space == LabelsNamespace && t.Name.Local == "labels":
			return ctxLabels, nil
		}
	case ctxLibosinfo:
		if t.Name.Space == LibosinfoNamespace && t.Name.Local == "os" {
			dom.OSID = refAttr(t, "id")
		}
	case ctxLabels:
		if t.Name.Space == LabelsNamespace && t.Name.Local == "label" {
			name := refAttr(t, "name")
			if name == "" {
				// A label the policy cannot see would silently change
				// which rule matches: say so instead.
				return 0, fmt.Errorf("line %d: <label> without a name attribute", s.line(start))
			}
			s.labelName = name
			s.text = s.text[:0]
			return ctxLabel, nil
		}
	case ctxDevices:
		if core && t.Name.Local == "interface" {
			idx := len(dom.Interfaces)
			dom.Interfaces = append(dom.Interfaces, policy.Interface{Index: idx, Type: refAttr(t, "type")})
			s.res.spans = append(s.res.spans, ifaceSpan{tagStart: start, tagEnd: end, lastChild: -1, driverStart: -1})
			s.seenModel, s.seenMAC, s.seenSource, s.seenTarget, s.seenAlias = false, false, false, false, false
			return ctxInterface, nil
		}
	case ctxInterface:
		sp := &s.res.spans[len(s.res.spans)-1]
		sp.lastChild = start
		if core {
			return ctxOther, s.interfaceChild(t, start, end)
		}
	}
	return ctxOther, nil
}

// interfaceChild reads the facts of one direct child of an <interface>.
func (s *refScanner) interfaceChild(t xml.StartElement, start, end int) error {
	ifc := &s.res.dom.Interfaces[len(s.res.dom.Interfaces)-1]
	sp := &s.res.spans[len(s.res.spans)-1]
	switch t.Name.Local {
	case "model":
		if !s.seenModel {
			s.seenModel = true
			ifc.Model = refAttr(t, "type")
		}
	case "mac":
		if !s.seenMAC {
			s.seenMAC = true
			ifc.MAC = strings.ToLower(refAttr(t, "address"))
		}
	case "source":
		if !s.seenSource {
			s.seenSource = true
			ifc.Network = refAttr(t, "network")
			ifc.Bridge = refAttr(t, "bridge")
			ifc.SourceDev = refAttr(t, "dev")
		}
	case "driver":
		if !ifc.HasDriver {
			ifc.HasDriver = true
			ifc.DriverName = refAttr(t, "name")
			sp.driverStart, sp.driverEnd = start, end
			if v, ok := refAttrOK(t, "queues"); ok {
				n, err := count(v)
				if err != nil {
					return fmt.Errorf("line %d: <interface> #%d <driver queues=%s>: %v", s.line(start), ifc.Index, quoteValue(v), err)
				}
				ifc.Queues = n
				sp.hasQueues = true
			}
		}
	case "target":
		if !s.seenTarget {
			s.seenTarget = true
			ifc.TargetDev = refAttr(t, "dev")
			ifc.TargetManaged = refAttr(t, "managed")
		}
	case "alias":
		if !s.seenAlias {
			s.seenAlias = true
			ifc.Alias = refAttr(t, "name")
		}
	}
	return nil
}

func (s *refScanner) endElement(c ctx, start, end int) error {
	dom := &s.res.dom
	switch c {
	case ctxName:
		dom.Name = string(s.text)
	case ctxUUID:
		dom.UUID = string(bytes.TrimSpace(s.text))
	case ctxVCPU:
		v := string(s.text)
		n, err := positive(v)
		if err != nil {
			return fmt.Errorf("line %d: <vcpu> %s: %v", s.line(start), quoteValue(v), err)
		}
		dom.MaxVCPUs = n
	case ctxLabel:
		if dom.Labels == nil {
			dom.Labels = make(map[string]string)
		}
		dom.Labels[s.labelName] = string(bytes.TrimSpace(s.text))
	case ctxInterface:
		sp := &s.res.spans[len(s.res.spans)-1]
		sp.endTag = start
		// Token synthesizes the end of <x/> without reading input.
		sp.selfClosing = start == end
	}
	return nil
}

// checkAttrs rejects what encoding/xml accepts but libxml2 (libvirt's
// parser) does not, where accepting it would let Parse and libvirt see
// different values: a repeated attribute (which one counts?) and a prefix
// bound to the empty namespace (it would make p:queues read as queues).
func (s *refScanner) checkAttrs(t xml.StartElement, start int) error {
	for i, a := range t.Attr {
		if a.Name.Space == "xmlns" && a.Value == "" {
			return fmt.Errorf("line %d: <%s>: namespace prefix %s bound to an empty name", s.line(start), t.Name.Local, a.Name.Local)
		}
		if len(t.Attr) <= 16 {
			for _, b := range t.Attr[:i] {
				if a.Name == b.Name {
					return s.duplicate(t, a, start)
				}
			}
		}
	}
	if len(t.Attr) > 16 {
		seen := make(map[xml.Name]bool, len(t.Attr))
		for _, a := range t.Attr {
			if seen[a.Name] {
				return s.duplicate(t, a, start)
			}
			seen[a.Name] = true
		}
	}
	return nil
}

func (s *refScanner) duplicate(t xml.StartElement, a xml.Attr, start int) error {
	return fmt.Errorf("line %d: <%s>: attribute %s appears twice", s.line(start), t.Name.Local, a.Name.Local)
}

// syntaxError turns a tokenizer error into one that names the line and
// nothing of the document but markup: encoding/xml quotes an unknown entity
// reference, and that can sit inside a password attribute.
func (s *refScanner) syntaxError(err error, offset int) error {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		msg := se.Msg
		if strings.HasPrefix(msg, "invalid character entity") {
			msg = "invalid character entity (only &amp; &lt; &gt; &quot; &apos; and character references are allowed)"
		}
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return fmt.Errorf("line %d: malformed XML: %s", se.Line, msg)
	}
	// The other errors encoding/xml returns are about the <?xml?>
	// declaration (version, encoding) and quote only its values.
	return fmt.Errorf("line %d: %v", s.line(offset), err)
}

// line returns the 1-based line of a byte offset, counted the way
// encoding/xml counts them.
func (s *refScanner) line(offset int) int {
	return 1 + bytes.Count(s.doc[:offset], []byte{'\n'})
}

// attr returns the value of the unprefixed attribute name, or "".
func refAttr(t xml.StartElement, name string) string {
	v, _ := refAttrOK(t, name)
	return v
}

func refAttrOK(t xml.StartElement, name string) (string, bool) {
	for _, a := range t.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

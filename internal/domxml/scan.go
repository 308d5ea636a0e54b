package domxml

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/virtmq/virtmq/policy"
)

// ctx is what the scanner knows about the element it is inside. Only the
// few places virtmq reads from get their own value; everything else is
// ctxOther, so the scanner never needs to remember element names.
type ctx uint8

const (
	ctxOther ctx = iota
	ctxDomain
	ctxName
	ctxUUID
	ctxVCPU
	ctxMetadata
	ctxLibosinfo
	ctxLabels
	ctxLabel
	ctxDevices
	ctxInterface
	ctxOS
	ctxIdent // <genid>, <title>, <description>: where <metadata> may follow
	ctxWritten
	ctxSysinfo       // <sysinfo type='smbios'>
	ctxSysinfoSystem // its <system>
	ctxProduct       // its <entry name='product'>
	ctxOSType        // <os><type>
)

// maxMetadataNamespaces bounds Domain.MetadataNamespaces: a domain's
// <metadata> holds a handful of applications' elements, and a hostile
// document must not grow the facts without limit.
const maxMetadataNamespaces = 32

// ifaceSpan records where one <interface> and its <driver> sit in the
// document, as byte offsets, so that Rewrite can splice without a second
// pass.
type ifaceSpan struct {
	tagStart, tagEnd int  // the <interface ...> start tag: doc[tagStart:tagEnd]
	selfClosing      bool // <interface .../>: there is no end tag
	endTag           int  // offset of the </interface> end tag
	lastChild        int  // offset of the last child node that is not blank text; -1 if none

	driverStart, driverEnd int  // the first <driver ...> start tag; driverStart is -1 if none
	hasQueues              bool // the driver has a queues attribute (its value may be 0)
	queuesAttr             int  // its index in the driver's attributes

	nth int // rank among the interfaces with this MAC, from 1; 0 without a MAC
}

// metaSpan records where virtmq's record can go: the first <metadata>,
// the record inside it, and where a new <metadata> would be inserted.
type metaSpan struct {
	rootEnd int // end of the <domain ...> start tag

	// identStart, identEnd: the last of <name>, <uuid>, <genid>, <title>,
	// <description> (libvirt writes <metadata> after them); identEnd is 0
	// when there is none.
	identStart, identEnd int

	metaStart, metaEnd int // the first <metadata ...> start tag; metaStart is -1 if none
	metaEndTag         int // offset of </metadata> (metaEnd for <metadata/>)
	metaLastChild      int // start of the last child element; -1 if none

	writtenStart, writtenEnd int // the first <virtmq:written> element, end tag included; writtenStart is -1 if none
}

// scanned is the result of one pass over a document.
type scanned struct {
	dom   policy.Domain
	spans []ifaceSpan // parallel to dom.Interfaces
	meta  metaSpan
	// written is virtmq's record (see WrittenNamespace): the count of the
	// nth NIC with a MAC; nth 0 is the older form, for every such NIC.
	written map[nicKey]int
}

// nicKey names a NIC in virtmq's record.
type nicKey struct {
	mac string
	nth int
}

// scanner is the state of one pass of scan.
type scanner struct {
	doc   []byte
	res   *scanned // allocated apart, so that the result does not keep doc alive
	stack []ctx
	text  []byte // character data of the current <name>, <uuid>, <vcpu> or <label>

	// libvirt reads the first of each element (its XPath lookups take the
	// first match): seen has bit 1<<c for each context c entered once,
	// ifaceSeen the names of the current <interface>'s children so far.
	seen      uint64
	ifaceSeen map[string]bool

	identStart int
	vcpuLine   int
	labelName  string
	rootDone   bool
}

// first reports whether the element of context c is the first of its
// kind, and marks it seen.
func (s *scanner) first(c ctx) bool {
	was := s.seen&(1<<c) != 0
	s.seen |= 1 << c
	return !was
}

// scan reads doc once with encoding/xml's tokenizer and collects the facts
// and the byte offsets Rewrite splices at (Decoder.InputOffset before and
// after each token). The tokenizer runs in strict mode: only the predefined
// entities and character references, matching end tags, quoted attributes,
// valid UTF-8 and XML names. What it accepts beyond what libvirt's parser
// (libxml2) does, where that would let the two read different values, is
// refused here: a DTD, a repeated attribute, a prefix bound to the empty
// namespace.
//
// encoding/xml allocates every name, attribute and text node; a 12 KB
// domain takes well under a millisecond, against the ~20 ms libvirtd spends
// per VM start in the hook's three calls (mostly fork and exec), so the
// standard library's tokenizer is the one to trust. Its errors are
// Parse's.
func scan(doc []byte) (*scanned, error) {
	if len(doc) > MaxSize {
		return nil, fmt.Errorf("document is %d bytes, more than the %d-byte limit", len(doc), MaxSize)
	}
	s := &scanner{doc: doc, res: new(scanned), stack: make([]ctx, 0, 16), ifaceSeen: map[string]bool{}}
	s.res.dom.MaxVCPUs = 1
	s.res.meta = metaSpan{metaStart: -1, metaLastChild: -1, writtenStart: -1}
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
	// The record names a NIC by MAC and rank: its own entry counts, else
	// one of the older form for its MAC.
	rank := map[string]int{}
	for i := range s.res.dom.Interfaces {
		if ifc := &s.res.dom.Interfaces[i]; ifc.MAC != "" {
			rank[ifc.MAC]++
			s.res.spans[i].nth = rank[ifc.MAC]
			ifc.Written = cmp.Or(s.res.written[nicKey{ifc.MAC, rank[ifc.MAC]}], s.res.written[nicKey{ifc.MAC, 0}])
		}
	}
	return s.res, nil
}

func (s *scanner) token(tok xml.Token, start, end int) error {
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
			s.res.dom.Type = attr(t, "type")
			s.res.meta.rootEnd = end
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
				where := "before"
				if s.rootDone {
					where = "after"
				}
				return fmt.Errorf("line %d: text %s the root element", s.line(start), where)
			}
			return nil
		}
		switch s.stack[len(s.stack)-1] {
		case ctxName, ctxUUID, ctxVCPU, ctxLabel, ctxProduct:
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
func (s *scanner) startElement(t xml.StartElement, start, end int) (ctx, error) {
	parent := s.stack[len(s.stack)-1]
	core := t.Name.Space == "" // libvirt's own elements have no namespace
	dom := &s.res.dom
	switch parent {
	case ctxDomain:
		if !core {
			return ctxOther, nil
		}
		switch name := t.Name.Local; name {
		case "name", "uuid", "genid", "title", "description":
			// libvirt writes <metadata> after the last of these.
			s.identStart = start
			switch {
			case name == "name" && s.first(ctxName):
				s.text = s.text[:0]
				return ctxName, nil
			case name == "uuid" && s.first(ctxUUID):
				s.text = s.text[:0]
				return ctxUUID, nil
			}
			return ctxIdent, nil
		case "os":
			if s.first(ctxOS) {
				return ctxOS, nil
			}
		case "vcpu":
			if s.first(ctxVCPU) {
				s.vcpuLine = s.line(start)
				s.text = s.text[:0]
				if v, ok := attrOK(t, "current"); ok {
					n, err := positive(v)
					if err != nil {
						return 0, fmt.Errorf("line %d: <vcpu current=%s>: %v", s.line(start), quoteValue(v), err)
					}
					dom.CurrentVCPUs = n
				}
				return ctxVCPU, nil
			}
		case "metadata":
			if s.first(ctxMetadata) {
				s.res.meta.metaStart, s.res.meta.metaEnd = start, end
				return ctxMetadata, nil
			}
		case "devices":
			return ctxDevices, nil
		case "sysinfo":
			// libvirt reads the first <sysinfo> of each type; only smbios
			// has a <system> product.
			if attr(t, "type") == "smbios" && s.first(ctxSysinfo) {
				return ctxSysinfo, nil
			}
		}
	case ctxSysinfo:
		if core && t.Name.Local == "system" {
			return ctxSysinfoSystem, nil
		}
	case ctxSysinfoSystem:
		if core && t.Name.Local == "entry" && attr(t, "name") == "product" && s.first(ctxProduct) {
			s.text = s.text[:0]
			return ctxProduct, nil
		}
	case ctxOS:
		if core && t.Name.Local == "type" && s.first(ctxOSType) {
			dom.Arch, dom.Machine = attr(t, "arch"), attr(t, "machine")
		}
	case ctxMetadata:
		s.res.meta.metaLastChild = start
		// encoding/xml reports an undeclared prefix as the namespace
		// itself; a namespace name is a URI, which has a colon.
		if ns := t.Name.Space; strings.Contains(ns, ":") && !slices.Contains(dom.MetadataNamespaces, ns) && len(dom.MetadataNamespaces) < maxMetadataNamespaces {
			dom.MetadataNamespaces = append(dom.MetadataNamespaces, ns)
		}
		switch {
		case t.Name.Space == LibosinfoNamespace && t.Name.Local == "libosinfo":
			return ctxLibosinfo, nil
		case t.Name.Space == LabelsNamespace && t.Name.Local == "labels":
			return ctxLabels, nil
		case t.Name.Space == ExcludeNamespace && t.Name.Local == "exclude":
			dom.Excluded = true
		case t.Name.Space == WrittenNamespace && t.Name.Local == "written" && s.first(ctxWritten):
			s.res.meta.writtenStart = start
			return ctxWritten, nil
		}
	case ctxWritten:
		if t.Name.Space == WrittenNamespace && t.Name.Local == "nic" {
			// The record is virtmq's own: an entry it cannot read is
			// ignored (that NIC's queues then count as set by hand)
			// rather than failing the hook on every start.
			mac := strings.ToLower(attr(t, "mac"))
			nth, err := 0, error(nil)
			if v, ok := attrOK(t, "nth"); ok {
				nth, err = positive(v)
			}
			if n, qerr := count(attr(t, "queues")); err == nil && qerr == nil && mac != "" && n > 0 {
				if s.res.written == nil {
					s.res.written = map[nicKey]int{}
				}
				s.res.written[nicKey{mac, nth}] = n // the last entry wins
			}
		}
	case ctxLibosinfo:
		if t.Name.Space == LibosinfoNamespace && t.Name.Local == "os" {
			dom.OSID = attr(t, "id")
		}
	case ctxLabels:
		if t.Name.Space == LabelsNamespace && t.Name.Local == "label" {
			name := attr(t, "name")
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
			dom.Interfaces = append(dom.Interfaces, policy.Interface{Index: idx, Type: attr(t, "type")})
			s.res.spans = append(s.res.spans, ifaceSpan{tagStart: start, tagEnd: end, lastChild: -1, driverStart: -1})
			clear(s.ifaceSeen)
			return ctxInterface, nil
		}
	case ctxInterface:
		s.res.spans[len(s.res.spans)-1].lastChild = start
		if core && !s.ifaceSeen[t.Name.Local] {
			s.ifaceSeen[t.Name.Local] = true
			return ctxOther, s.interfaceChild(t, start, end)
		}
	}
	return ctxOther, nil
}

// interfaceChild reads the facts of the first direct child of an
// <interface> with its name.
func (s *scanner) interfaceChild(t xml.StartElement, start, end int) error {
	ifc := &s.res.dom.Interfaces[len(s.res.dom.Interfaces)-1]
	sp := &s.res.spans[len(s.res.spans)-1]
	switch t.Name.Local {
	case "model":
		// libvirt reads model names case-insensitively (ViRtIo is virtio).
		ifc.Model = strings.ToLower(attr(t, "type"))
	case "teaming":
		ifc.Teaming = attr(t, "type")
	case "mac":
		ifc.MAC = strings.ToLower(attr(t, "address"))
	case "source":
		ifc.Network, ifc.Bridge, ifc.SourceDev = attr(t, "network"), attr(t, "bridge"), attr(t, "dev")
	case "driver":
		ifc.HasDriver = true
		ifc.DriverName = attr(t, "name")
		sp.driverStart, sp.driverEnd = start, end
		if k := slices.IndexFunc(t.Attr, func(a xml.Attr) bool { return a.Name == xml.Name{Local: "queues"} }); k >= 0 {
			n, err := count(t.Attr[k].Value)
			if err != nil {
				return fmt.Errorf("line %d: <interface> #%d <driver queues=%s>: %v", s.line(start), ifc.Index, quoteValue(t.Attr[k].Value), err)
			}
			ifc.Queues = n
			sp.hasQueues, sp.queuesAttr = true, k
		}
	case "target":
		ifc.TargetDev, ifc.TargetManaged = attr(t, "dev"), attr(t, "managed")
	case "alias":
		ifc.Alias = attr(t, "name")
	}
	return nil
}

func (s *scanner) endElement(c ctx, start, end int) error {
	dom := &s.res.dom
	switch c {
	case ctxName, ctxUUID, ctxIdent:
		s.res.meta.identStart, s.res.meta.identEnd = s.identStart, end
		if c == ctxName {
			dom.Name = string(s.text)
		} else if c == ctxUUID {
			dom.UUID = string(bytes.TrimSpace(s.text))
		}
	case ctxMetadata:
		s.res.meta.metaEndTag = start
	case ctxWritten:
		s.res.meta.writtenEnd = end
	case ctxVCPU:
		v := string(s.text)
		n, err := positive(v)
		if err != nil {
			return fmt.Errorf("line %d: <vcpu> %s: %v", s.line(start), quoteValue(v), err)
		}
		dom.MaxVCPUs = n
	case ctxProduct:
		dom.SMBIOSProduct = string(bytes.TrimSpace(s.text))
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
func (s *scanner) checkAttrs(t xml.StartElement, start int) error {
	// A map only for elements with many attributes, where comparing each
	// with all before it would let a hostile document stall the hook.
	var seen map[xml.Name]bool
	if len(t.Attr) > 16 {
		seen = make(map[xml.Name]bool, len(t.Attr))
	}
	for i, a := range t.Attr {
		if a.Name.Space == "xmlns" && a.Value == "" {
			return fmt.Errorf("line %d: <%s>: namespace prefix %s bound to an empty name", s.line(start), t.Name.Local, a.Name.Local)
		}
		dup := seen[a.Name]
		if seen != nil {
			seen[a.Name] = true
		} else {
			dup = slices.ContainsFunc(t.Attr[:i], func(b xml.Attr) bool { return b.Name == a.Name })
		}
		if dup {
			return fmt.Errorf("line %d: <%s>: attribute %s appears twice", s.line(start), t.Name.Local, a.Name.Local)
		}
	}
	return nil
}

// syntaxError turns a tokenizer error into one that names the line and
// nothing of the document but markup: encoding/xml quotes an unknown entity
// reference, and that can sit inside a password attribute.
func (s *scanner) syntaxError(err error, offset int) error {
	var se *xml.SyntaxError
	// encoding/xml's messages quote the document's bytes (an invalid name,
	// the <?xml?> declaration's values): keep them valid UTF-8 and short, as
	// they end up in a terminal or a log.
	if errors.As(err, &se) {
		msg := se.Msg
		if strings.HasPrefix(msg, "invalid character entity") {
			msg = "invalid character entity (only &amp; &lt; &gt; &quot; &apos; and character references are allowed)"
		}
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		return fmt.Errorf("line %d: malformed XML: %s", se.Line, strings.ToValidUTF8(msg, "\uFFFD"))
	}
	return fmt.Errorf("line %d: %s", s.line(offset), strings.ToValidUTF8(err.Error(), "\uFFFD"))
}

// line returns the 1-based line of a byte offset, counted the way
// encoding/xml counts them.
func (s *scanner) line(offset int) int {
	return 1 + bytes.Count(s.doc[:offset], []byte{'\n'})
}

// attr returns the value of the unprefixed attribute name, or "".
func attr(t xml.StartElement, name string) string {
	v, _ := attrOK(t, name)
	return v
}

func attrOK(t xml.StartElement, name string) (string, bool) {
	for _, a := range t.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

// count parses a non-negative count as libvirt does (an unsigned int).
func count(v string) (int, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, errors.New("out of range")
		}
		return 0, errors.New("not a number")
	}
	return int(n), nil
}

// positive parses a vCPU count, which libvirt requires to be at least 1.
func positive(v string) (int, error) {
	n, err := count(v)
	if err == nil && n == 0 {
		err = errors.New("must be at least 1")
	}
	return n, err
}

// quoteValue quotes a bad value for an error message, shortened so that a
// stray megabyte of text does not end up in a log line.
func quoteValue(v string) string {
	const max = 32
	if len(v) > max {
		return strconv.Quote(v[:max]) + "..."
	}
	return strconv.Quote(v)
}

func isBlank(b []byte) bool {
	return len(bytes.TrimLeft(b, " \t\r\n")) == 0
}

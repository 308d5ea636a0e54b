package domxml

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

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
)

// ifaceSpan records where one <interface> and its <driver> sit in the
// document, as byte offsets, so that Rewrite can splice without a second
// tokenizer.
type ifaceSpan struct {
	tagStart, tagEnd int  // the <interface ...> start tag: doc[tagStart:tagEnd]
	selfClosing      bool // <interface .../>: there is no end tag
	endTag           int  // offset of the </interface> end tag
	lastChild        int  // offset of the last child node that is not blank text; -1 if none

	driverStart, driverEnd int  // the first <driver ...> start tag; driverStart is -1 if none
	hasQueues              bool // the driver has a queues attribute (its value may be 0)
}

// scanned is the result of one pass over a document.
type scanned struct {
	dom   policy.Domain
	spans []ifaceSpan // parallel to dom.Interfaces
}

// scan reads doc once and collects the facts and offsets.
//
// It is a purpose-built tokenizer rather than encoding/xml because the hook
// runs it on every VM start: encoding/xml reads a byte at a time through an
// interface and allocates every name, attribute and text node, which made
// it most of the hook's run time. scan walks the byte slice, allocates only
// the facts it returns, and skips what it does not read (decoding an
// attribute value only when it is one of ours).
//
// What it accepts and what it reports are defined by the encoding/xml
// scanner it replaced (scanReference, kept in the tests): the same
// documents are well-formed (strict mode: only the predefined entities and
// character references, matching end tags, quoted attributes, valid UTF-8
// and XML characters, XML 1.0 names, no "]]>" in text, "--" only to end a
// comment), namespace prefixes resolve the same way (an undeclared prefix
// stands for itself), and errors carry the same text and line. The
// differential tests and FuzzParseDifferential hold it to that; the
// comments below name the encoding/xml behaviour each step reproduces.
//
// It never returns document content in errors except element and attribute
// names and the offending value of the attribute at fault.
func scan(doc []byte) (*scanned, error) {
	if len(doc) > MaxSize {
		return nil, fmt.Errorf("document is %d bytes, more than the %d-byte limit", len(doc), MaxSize)
	}
	s := &scanner{doc: doc, res: new(scanned)}
	s.stack = s.stackBuf[:0]
	s.attrs = s.attrBuf[:0]
	s.res.dom.MaxVCPUs = 1
	for i := 0; i < len(doc); {
		var err error
		switch {
		case doc[i] != '<':
			i, err = s.charData(i)
		case i+1 == len(doc):
			err = s.eof()
		case doc[i+1] == '/':
			i, err = s.endTag(i)
		case doc[i+1] == '?':
			i, err = s.procInst(i)
		case doc[i+1] == '!':
			i, err = s.bang(i)
		default:
			i, err = s.startTag(i)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(s.stack) > 0 {
		return nil, s.eof()
	}
	if !s.rootDone {
		// A truncated document is an unexpected EOF, so the only way here
		// is a document with no element at all.
		return nil, fmt.Errorf("line %d: no root element", s.line(len(doc)))
	}
	if s.res.dom.CurrentVCPUs == 0 {
		s.res.dom.CurrentVCPUs = s.res.dom.MaxVCPUs
	} else if s.res.dom.CurrentVCPUs > s.res.dom.MaxVCPUs {
		return nil, fmt.Errorf("line %d: <vcpu current=\"%d\">: more than the maximum of %d", s.vcpuLine, s.res.dom.CurrentVCPUs, s.res.dom.MaxVCPUs)
	}
	return s.res, nil
}

// elem is one open element.
type elem struct {
	name, nameEnd int // doc[name:nameEnd] is its name as written, prefix included
	colon         int // offset of the ':' after its prefix, or -1 (see qname)
	c             ctx
	nsLen         int // len(scanner.ns) before the element's own declarations
}

// nsDecl is one namespace declaration in scope: xmlns:prefix="url", or
// xmlns="url" with an empty prefix.
type nsDecl struct {
	prefix, url []byte
}

// attrTok is one attribute of the start tag being read.
type attrTok struct {
	name, nameEnd, colon int // as in elem
	local                int // start of the local name
	key                  int // length, first and last byte of the local name: see checkAttrs
	val, valEnd          int // doc[val:valEnd] is the value as written; doc[valEnd] is its quote
	plain                bool
}

// scanner holds the state of one pass. It is a struct rather than locals so
// the per-token handling can live in small methods.
type scanner struct {
	doc   []byte
	res   *scanned // allocated apart, so that the result does not keep doc alive
	stack []elem
	ns    []nsDecl  // declarations in scope, innermost last
	attrs []attrTok // of the start tag being read
	text  []byte    // character data of the current <name>, <uuid>, <vcpu> or <label>
	tmp   []byte    // scratch for decoding

	seenName, seenUUID, seenVCPU bool
	vcpuLine                     int
	labelName                    string
	rootDone                     bool
	// The first occurrence of each <interface> child is the one libvirt
	// reads (its XPath lookups take the first match).
	seenModel, seenMAC, seenSource, seenTarget, seenAlias bool

	// Most documents fit these, so the stacks cost no allocation.
	stackBuf [16]elem
	attrBuf  [8]attrTok
}

// Character classes for text and attribute values.
// The order matters: the fast paths take text bytes up to tQ and
// attribute value bytes up to tG as they are.
const (
	tP = iota // any other ASCII character
	tS        // ' ', '\t', '\n'
	tQ        // ' or ", which may end an attribute value
	tG        // '>' is an error after "]]" in text
	tR        // '\r', which encoding/xml turns into '\n' (and "\r\n" too)
	tA        // '&' starts a reference
	tL        // '<' ends text; it is an error in an attribute value
	tC        // a control character XML does not allow
	tH        // the first byte of a multi-byte UTF-8 sequence, or an invalid byte
)

// textClass is the class of each byte. It is written out, not computed,
// so that it costs the hook nothing at start-up; TestTables checks it.
var textClass = [256]uint8{
	tC, tC, tC, tC, tC, tC, tC, tC, tC, tS, tS, tC, tC, tR, tC, tC, // 00
	tC, tC, tC, tC, tC, tC, tC, tC, tC, tC, tC, tC, tC, tC, tC, tC, // 10
	tS, tP, tQ, tP, tP, tP, tA, tQ, tP, tP, tP, tP, tP, tP, tP, tP, // 20
	tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tL, tP, tG, tP, // 30
	tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, // 40
	tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, // 50
	tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, // 60
	tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, tP, // 70
	tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, // 80
	tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, // 90
	tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, // A0
	tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, // B0
	tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, // C0
	tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, // D0
	tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, // E0
	tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, tH, // F0
}

// Name byte classes: encoding/xml takes ASCII letters, digits, '_', ':',
// '.' and '-' as part of a name, and every byte of a multi-byte character
// (isXMLName checks those afterwards). A name ends at the first other
// byte.
const (
	nE = iota // ends a name
	nN        // an ASCII name byte other than ':'
	nC        // ':', which may separate a prefix
	nH        // a byte of a multi-byte character
)

// nameClass is the class of each byte. Like textClass, it is written out;
// TestTables checks it.
var nameClass = [256]uint8{
	nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, // 00
	nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, // 10
	nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nE, nN, nN, nE, // 20
	nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nC, nE, nE, nE, nE, nE, // 30
	nE, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, // 40
	nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nE, nE, nE, nE, nN, // 50
	nE, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, // 60
	nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nN, nE, nE, nE, nE, nE, // 70
	nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, // 80
	nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, // 90
	nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, // A0
	nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, // B0
	nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, // C0
	nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, // D0
	nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, // E0
	nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, nH, // F0
}

func nameByte(c byte) bool {
	return nameClass[c] != nE
}

// run describes a stretch of character data that chars has read.
type run struct {
	end   int  // offset of the '<' or closing quote that ends it, or len(doc)
	plain bool // no reference and no '\r': the decoded data are the bytes as written
	blank bool // the decoded data are only ' ', '\t', '\r' and '\n'
	// The first character encoding/xml refuses (invalid UTF-8 or outside
	// XML's Char production). encoding/xml checks the data only once it has
	// read all of them, so the error is reported at the end, after any
	// reference or "]]>" error further on.
	bad     bool
	badUTF8 bool
	badRune rune
}

func (r *run) setBad(utf8Err bool, c rune) {
	if !r.bad {
		r.bad, r.badUTF8, r.badRune = true, utf8Err, c
	}
}

func (r *run) badMsg() string {
	if r.badUTF8 {
		return "invalid UTF-8"
	}
	return fmt.Sprintf("illegal character code %U", r.badRune)
}

// chars reads character data at doc[i:] the way encoding/xml's
// Decoder.text does: up to the next '<' when quote is 0, else up to the
// closing quote. When decode is set, it appends the decoded data
// (references replaced, "\r\n" and '\r' turned into '\n') to dst and
// returns it.
func (s *scanner) chars(i int, quote byte, decode bool, dst []byte) (run, []byte, error) {
	doc := s.doc
	r := run{plain: true, blank: true}
	from := i // start of the bytes not yet copied to dst
	j := i
	for j < len(doc) {
		c := doc[j]
		switch textClass[c] {
		case tP:
			r.blank = false
			j++
		case tS:
			j++
		case tQ:
			if c == quote {
				r.end = j
				if decode {
					dst = append(dst, doc[from:j]...)
				}
				return r, dst, nil
			}
			r.blank = false
			j++
		case tL:
			if quote != 0 {
				return r, dst, s.syntax(j+1, "unescaped < inside quoted string")
			}
			r.end = j
			if decode {
				dst = append(dst, doc[from:j]...)
			}
			return r, dst, nil
		case tG:
			// "]]>" may only end a CDATA section; in an attribute value it
			// is allowed.
			if quote == 0 && j-2 >= i && doc[j-1] == ']' && doc[j-2] == ']' {
				return r, dst, s.syntax(j+1, "unescaped ]]> not in CDATA section")
			}
			r.blank = false
			j++
		case tR:
			r.plain = false
			if decode {
				dst = append(dst, doc[from:j]...)
				dst = append(dst, '\n')
			}
			j++
			if j < len(doc) && doc[j] == '\n' {
				j++
			}
			from = j
		case tA:
			r.plain = false
			ch, next, err := s.reference(j)
			if err != nil {
				return r, dst, err
			}
			switch ch {
			case ' ', '\t', '\r', '\n':
			default:
				r.blank = false
				if !isInCharacterRange(ch) {
					r.setBad(false, ch)
				}
			}
			if decode {
				dst = append(dst, doc[from:j]...)
				dst = utf8.AppendRune(dst, ch)
			}
			j, from = next, next
		case tC:
			r.blank = false
			r.setBad(false, rune(c))
			j++
		case tH:
			r.blank = false
			ch, n := utf8.DecodeRune(doc[j:])
			if ch == utf8.RuneError && n == 1 {
				r.setBad(true, 0)
			} else if !isInCharacterRange(ch) {
				r.setBad(false, ch)
			}
			j += n
		}
	}
	r.end = len(doc)
	if decode {
		dst = append(dst, doc[from:]...)
	}
	return r, dst, nil
}

// reference decodes the entity or character reference at doc[j] == '&'
// and returns the character and the offset after the ';'. Like
// encoding/xml, it knows only the five predefined entities, and turns a
// character reference to a surrogate into U+FFFD.
func (s *scanner) reference(j int) (rune, int, error) {
	doc := s.doc
	bad := func(consumed int) (rune, int, error) {
		// encoding/xml quotes the reference; it can sit inside a password.
		return 0, 0, s.syntax(consumed, "invalid character entity (only &amp; &lt; &gt; &quot; &apos; and character references are allowed)")
	}
	k := j + 1
	if k >= len(doc) {
		return 0, 0, s.eof()
	}
	if doc[k] == '#' {
		k++
		if k >= len(doc) {
			return 0, 0, s.eof()
		}
		hex := doc[k] == 'x'
		if hex {
			k++
		}
		var n uint32
		digits, tooBig := 0, false
		for ; k < len(doc); k++ {
			var d byte
			switch c := doc[k]; {
			case '0' <= c && c <= '9':
				d = c - '0'
			case hex && 'a' <= c && c <= 'f':
				d = c - 'a' + 10
			case hex && 'A' <= c && c <= 'F':
				d = c - 'A' + 10
			default:
				d = 0xff
			}
			if d == 0xff {
				break
			}
			digits++
			if !tooBig {
				if hex {
					n = n<<4 | uint32(d)
				} else {
					n = n*10 + uint32(d)
				}
				tooBig = n > utf8.MaxRune
			}
		}
		if k >= len(doc) {
			return 0, 0, s.eof()
		}
		if doc[k] != ';' {
			return bad(k)
		}
		if digits == 0 || tooBig {
			return bad(k + 1)
		}
		r := rune(n)
		if 0xD800 <= r && r < 0xE000 {
			r = utf8.RuneError // string(rune(n)), as encoding/xml writes it
		}
		return r, k + 1, nil
	}
	m := k
	for m < len(doc) && nameByte(doc[m]) {
		m++
	}
	if m >= len(doc) {
		return 0, 0, s.eof()
	}
	if doc[m] != ';' {
		return bad(m)
	}
	var r rune
	switch string(doc[k:m]) {
	case "lt":
		r = '<'
	case "gt":
		r = '>'
	case "amp":
		r = '&'
	case "apos":
		r = '\''
	case "quot":
		r = '"'
	default:
		return bad(m + 1)
	}
	return r, m + 1, nil
}

// isInCharacterRange is XML's Char production, as encoding/xml checks it.
func isInCharacterRange(r rune) bool {
	return r == 0x09 ||
		r == 0x0A ||
		r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// charData reads the text at doc[i] (not '<') up to the next '<'.
func (s *scanner) charData(i int) (int, error) {
	doc := s.doc
	c := ctxOther
	if len(s.stack) > 0 {
		c = s.stack[len(s.stack)-1].c
	}
	// Fast path: text in domain XML is indentation or a plain value. Bytes
	// that need decoding or checking (and '>', which may end "]]>") take
	// the full reading below.
	j := i
	for j < len(doc) && textClass[doc[j]] == tS {
		j++
	}
	blank := true
	if j < len(doc) && doc[j] != '<' {
		blank = false
		for j < len(doc) && textClass[doc[j]] <= tQ {
			j++
		}
	}
	if j == len(doc) || doc[j] == '<' {
		data := doc[i:j]
		if c == ctxName || c == ctxUUID || c == ctxVCPU || c == ctxLabel {
			s.text = append(s.text, data...)
		}
		return j, s.charDataToken(i, c, blank, data)
	}

	var dst []byte
	decode := true
	switch {
	case len(s.stack) == 0:
		dst = s.tmp[:0]
	case c == ctxName || c == ctxUUID || c == ctxVCPU || c == ctxLabel:
		dst = s.text
	default:
		decode = false
	}
	r, dst, err := s.chars(i, 0, decode, dst)
	if err != nil {
		return 0, err
	}
	if r.bad {
		return 0, s.syntax(r.end, r.badMsg())
	}
	switch {
	case len(s.stack) == 0:
		s.tmp = dst
	case decode:
		s.text = dst
	}
	return r.end, s.charDataToken(i, c, r.blank, dst)
}

// charDataToken handles one piece of character data starting at start:
// text, or a CDATA section. data is its decoded content when it is at the
// top level (outside the root element), else it may be nil. The caller
// has already added the text of a <name>, <uuid>, <vcpu> or <label>.
func (s *scanner) charDataToken(start int, c ctx, blank bool, data []byte) error {
	switch {
	case len(s.stack) == 0:
		if !blank && !(start == 0 && isBlank(bytes.TrimPrefix(data, []byte("\uFEFF")))) {
			if s.rootDone {
				return fmt.Errorf("line %d: text after the root element", s.line(start))
			}
			return fmt.Errorf("line %d: text before the root element", s.line(start))
		}
	case c == ctxInterface:
		if !blank {
			s.res.spans[len(s.res.spans)-1].lastChild = start
		}
	}
	return nil
}

// qname reads the name at doc[at:] as encoding/xml's nsname does and
// returns its end and the offset of the ':' that separates a prefix, or -1
// when there is no prefix (no ':', or one at either end of the name, which
// then is all local name). missing is the error for no name at all.
func (s *scanner) qname(at int, missing string) (end, colon int, err error) {
	doc := s.doc
	m := at
	for m < len(doc) && nameClass[doc[m]] == nN {
		m++
	}
	// Fast path: an ASCII name without a prefix, which starts with a
	// letter or '_' (digits, '-' and '.' only continue a name).
	if m > at && m < len(doc) && nameClass[doc[m]] == nE {
		if c := doc[at]; 'a' <= c|0x20 && c|0x20 <= 'z' || c == '_' {
			return m, -1, nil
		}
	}
	return s.qnameSlow(at, m, missing)
}

// qnameSlow is qname for the names with a prefix or a non-ASCII character,
// and for the errors; doc[at:m] are the ASCII name bytes before the first
// ':' or non-ASCII byte.
func (s *scanner) qnameSlow(at, m int, missing string) (end, colon int, err error) {
	doc := s.doc
	colons, ascii := 0, true
	colon = -1
	if m < len(doc) && nameClass[doc[m]] != nE {
		// A prefix or a non-ASCII character: the rare, slower loop.
		for ; m < len(doc); m++ {
			switch nameClass[doc[m]] {
			case nC:
				if colons == 0 {
					colon = m
				}
				colons++
				continue
			case nH:
				ascii = false
				continue
			case nN:
				continue
			}
			break
		}
	}
	if m == at {
		if at >= len(doc) {
			return 0, 0, s.eof()
		}
		return 0, 0, s.syntax(at, missing)
	}
	if m >= len(doc) {
		return 0, 0, s.eof()
	}
	name := doc[at:m]
	var valid bool
	if ascii {
		// Digits, '-' and '.' continue a name but cannot start one.
		c := name[0] | 0x20
		valid = 'a' <= c && c <= 'z' || name[0] == '_' || name[0] == ':'
	} else {
		valid = isXMLName(name)
	}
	if !valid {
		return 0, 0, s.syntax(m, "invalid XML name: "+string(name))
	}
	if colons > 1 {
		return 0, 0, s.syntax(m, missing)
	}
	if colon == at || colon == m-1 {
		colon = -1
	}
	return m, colon, nil
}

// local returns the local part of a name read by qname.
func (s *scanner) local(name, nameEnd, colon int) []byte {
	if colon >= 0 {
		return s.doc[colon+1 : nameEnd]
	}
	return s.doc[name:nameEnd]
}

// prefix returns the prefix of a name read by qname, or nil.
func (s *scanner) prefix(name, colon int) []byte {
	if colon >= 0 {
		return s.doc[name:colon]
	}
	return nil
}

const (
	xmlURL      = "http://www.w3.org/XML/1998/namespace"
	xmlnsPrefix = "xmlns"
	xmlPrefix   = "xml"
)

// lookup returns the namespace bound to prefix (empty for the default).
func (s *scanner) lookup(prefix []byte) ([]byte, bool) {
	for k := len(s.ns) - 1; k >= 0; k-- {
		if string(s.ns[k].prefix) == string(prefix) {
			return s.ns[k].url, true
		}
	}
	return nil, false
}

// elemSpace returns the namespace of an element name, as encoding/xml's
// Decoder.translate: xmlns and undeclared prefixes stand for themselves,
// xml for its fixed namespace, and an unprefixed element named xmlns is in
// no namespace whatever the default.
func (s *scanner) elemSpace(name, nameEnd, colon int) []byte {
	p := s.prefix(name, colon)
	switch {
	case string(p) == xmlnsPrefix:
		return p
	case string(p) == xmlPrefix:
		return []byte(xmlURL)
	case colon < 0 && string(s.doc[name:nameEnd]) == xmlnsPrefix:
		return nil
	}
	if len(s.ns) > 0 {
		if url, ok := s.lookup(p); ok {
			return url
		}
	}
	return p
}

// attrSpace is elemSpace for an attribute name: the default namespace does
// not apply to attributes.
func (s *scanner) attrSpace(a *attrTok) []byte {
	p := s.prefix(a.name, a.colon)
	switch {
	case len(p) == 0 || string(p) == xmlnsPrefix:
		return p
	case string(p) == xmlPrefix:
		return []byte(xmlURL)
	}
	if url, ok := s.lookup(p); ok {
		return url
	}
	return p
}

// startTag reads the start tag at doc[i] and handles it.
func (s *scanner) startTag(i int) (int, error) {
	doc := s.doc
	n0 := i + 1
	n1, colon, err := s.qname(n0, "expected element name after <")
	if err != nil {
		return 0, err
	}
	s.attrs = s.attrs[:0]
	p := n1
	// decls: an attribute may declare a namespace; prefixed: one has a
	// prefix. Without either, and with one attribute, there is nothing
	// for checkAttrs to find or for startElement to declare.
	selfClosing, decls, prefixed := false, false, false
	for {
		p = skipSpace(doc, p, len(doc))
		if p >= len(doc) {
			return 0, s.eof()
		}
		if doc[p] == '/' {
			if p+1 >= len(doc) {
				return 0, s.eof()
			}
			if doc[p+1] != '>' {
				return 0, s.syntax(p+2, "expected /> in element")
			}
			selfClosing = true
			p += 2
			break
		}
		if doc[p] == '>' {
			p++
			break
		}
		a := attrTok{name: p}
		if a.nameEnd, a.colon, err = s.qname(p, "expected attribute name in element"); err != nil {
			return 0, err
		}
		q := skipSpace(doc, a.nameEnd, len(doc))
		if q >= len(doc) {
			return 0, s.eof()
		}
		if doc[q] != '=' {
			return 0, s.syntax(q+1, "attribute name without = in element")
		}
		v := skipSpace(doc, q+1, len(doc))
		if v >= len(doc) {
			return 0, s.eof()
		}
		if doc[v] != '"' && doc[v] != '\'' {
			return 0, s.syntax(v+1, "unquoted or missing attribute value in element")
		}
		a.val, a.local = v+1, a.name
		if a.colon >= 0 {
			a.local, prefixed = a.colon+1, true
		}
		a.key = (a.nameEnd-a.local)<<16 | int(doc[a.local])<<8 | int(doc[a.nameEnd-1])
		if a.valEnd, a.plain, err = s.attrValue(a.val, doc[v]); err != nil {
			return 0, err
		}
		if a.nameEnd-a.name >= len(xmlnsPrefix) && string(doc[a.name:a.name+len(xmlnsPrefix)]) == xmlnsPrefix {
			decls = true
		}
		s.attrs = append(s.attrs, a)
		p = a.valEnd + 1
	}
	// As encoding/xml's Token does, the element's own namespace
	// declarations apply to its name and attributes.
	nsLen := len(s.ns)
	if decls {
		s.declare()
	}
	if len(s.attrs) > 1 || prefixed {
		if err := s.checkAttrs(i, n0, n1, colon); err != nil {
			return 0, err
		}
	}
	if err := s.startElement(i, p, n0, n1, colon, nsLen); err != nil {
		return 0, err
	}
	if selfClosing {
		// encoding/xml reports <x/> as a start and an end element, the
		// end at the offset after the tag.
		if err := s.endElement(p, true); err != nil {
			return 0, err
		}
	}
	return p, nil
}

// attrValue reads the attribute value that starts at doc[v] and ends with
// quote, and returns the offset of the closing quote and whether the value
// is as written (needs no decoding).
func (s *scanner) attrValue(v int, quote byte) (int, bool, error) {
	doc := s.doc
	// Fast path: a value with nothing to decode or check.
	for j := v; j < len(doc); j++ {
		c := doc[j]
		if cl := textClass[c]; cl > tS {
			if c == quote {
				return j, true, nil
			}
			if cl > tG {
				break
			}
		}
	}
	r, _, err := s.chars(v, quote, false, nil)
	if err != nil {
		return 0, false, err
	}
	if r.end >= len(doc) {
		// encoding/xml checks the characters read so far before it
		// notices the value never ends.
		if r.bad {
			return 0, false, s.syntax(len(doc), r.badMsg())
		}
		return 0, false, s.eof()
	}
	if r.bad {
		return 0, false, s.syntax(r.end+1, r.badMsg())
	}
	return r.end, r.plain, nil
}

// value returns the decoded value of an attribute of the current tag.
func (s *scanner) value(a *attrTok) string {
	if a.plain {
		return string(s.doc[a.val:a.valEnd])
	}
	// The value was read once already: it cannot fail now.
	_, s.tmp, _ = s.chars(a.val, s.doc[a.valEnd], true, s.tmp[:0])
	return string(s.tmp)
}

// valueBytes is value without the copy when the value is as written.
func (s *scanner) valueBytes(a *attrTok) []byte {
	if a.plain {
		return s.doc[a.val:a.valEnd]
	}
	_, b, _ := s.chars(a.val, s.doc[a.valEnd], true, nil)
	return b
}

// attr returns the value of the unprefixed attribute name of the current
// tag, and whether it is there.
func (s *scanner) attr(name string) (string, bool) {
	for k := range s.attrs {
		a := &s.attrs[k]
		if string(s.doc[a.name:a.nameEnd]) == name {
			return s.value(a), true
		}
	}
	return "", false
}

// declare adds the namespace declarations among the attributes of the
// current tag to s.ns.
func (s *scanner) declare() {
	doc := s.doc
	for k := range s.attrs {
		a := &s.attrs[k]
		if a.colon >= 0 && string(doc[a.name:a.colon]) == xmlnsPrefix {
			s.ns = append(s.ns, nsDecl{doc[a.local:a.nameEnd], s.valueBytes(a)})
		} else if a.colon < 0 && string(doc[a.name:a.nameEnd]) == xmlnsPrefix {
			s.ns = append(s.ns, nsDecl{nil, s.valueBytes(a)})
		}
	}
}

// startElement handles the start tag doc[start:end] whose name is
// doc[n0:n1] and whose attributes are in s.attrs, once checkAttrs has
// accepted them; nsLen is len(s.ns) before its declarations.
func (s *scanner) startElement(start, end, n0, n1, colon, nsLen int) error {
	local := s.local(n0, n1, colon)
	if len(s.stack) == 0 {
		if s.rootDone {
			return fmt.Errorf("line %d: element <%s> after the root element", s.line(start), local)
		}
		if space := s.elemSpace(n0, n1, colon); string(local) != "domain" || len(space) != 0 {
			if len(space) != 0 {
				return fmt.Errorf("line %d: %w: found <%s> in namespace %q", s.line(start), ErrNotDomain, local, space)
			}
			return fmt.Errorf("line %d: %w: found <%s>", s.line(start), ErrNotDomain, local)
		}
		s.res.dom.Type, _ = s.attr("type")
		s.stack = append(s.stack, elem{n0, n1, colon, ctxDomain, nsLen})
		return nil
	}
	c := ctxOther
	switch s.stack[len(s.stack)-1].c {
	case ctxDomain, ctxMetadata, ctxLibosinfo, ctxLabels, ctxDevices, ctxInterface:
		// Only below these does the element's name matter.
		var err error
		if c, err = s.child(start, end, local, s.elemSpace(n0, n1, colon)); err != nil {
			return err
		}
	}
	s.stack = append(s.stack, elem{n0, n1, colon, c, nsLen})
	return nil
}

// child handles an element below the root whose parent is one virtmq
// reads from and returns the context of the new element.
func (s *scanner) child(start, end int, local, space []byte) (ctx, error) {
	parent := s.stack[len(s.stack)-1].c
	core := len(space) == 0 // libvirt's own elements have no namespace
	dom := &s.res.dom
	switch parent {
	case ctxDomain:
		if !core {
			return ctxOther, nil
		}
		switch string(local) {
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
				if v, ok := s.attr("current"); ok {
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
		case string(space) == LibosinfoNamespace && string(local) == "libosinfo":
			return ctxLibosinfo, nil
		case string(space) == LabelsNamespace && string(local) == "labels":
			return ctxLabels, nil
		}
	case ctxLibosinfo:
		if string(space) == LibosinfoNamespace && string(local) == "os" {
			dom.OSID, _ = s.attr("id")
		}
	case ctxLabels:
		if string(space) == LabelsNamespace && string(local) == "label" {
			name, _ := s.attr("name")
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
		if core && string(local) == "interface" {
			idx := len(dom.Interfaces)
			typ, _ := s.attr("type")
			dom.Interfaces = append(dom.Interfaces, policy.Interface{Index: idx, Type: typ})
			s.res.spans = append(s.res.spans, ifaceSpan{tagStart: start, tagEnd: end, lastChild: -1, driverStart: -1})
			s.seenModel, s.seenMAC, s.seenSource, s.seenTarget, s.seenAlias = false, false, false, false, false
			return ctxInterface, nil
		}
	case ctxInterface:
		s.res.spans[len(s.res.spans)-1].lastChild = start
		if core {
			return ctxOther, s.interfaceChild(local, start, end)
		}
	}
	return ctxOther, nil
}

// interfaceChild reads the facts of one direct child of an <interface>.
func (s *scanner) interfaceChild(local []byte, start, end int) error {
	ifc := &s.res.dom.Interfaces[len(s.res.dom.Interfaces)-1]
	sp := &s.res.spans[len(s.res.spans)-1]
	switch string(local) {
	case "model":
		if !s.seenModel {
			s.seenModel = true
			ifc.Model, _ = s.attr("type")
		}
	case "mac":
		if !s.seenMAC {
			s.seenMAC = true
			mac, _ := s.attr("address")
			ifc.MAC = strings.ToLower(mac)
		}
	case "source":
		if !s.seenSource {
			s.seenSource = true
			ifc.Network, _ = s.attr("network")
			ifc.Bridge, _ = s.attr("bridge")
			ifc.SourceDev, _ = s.attr("dev")
		}
	case "driver":
		if !ifc.HasDriver {
			ifc.HasDriver = true
			ifc.DriverName, _ = s.attr("name")
			sp.driverStart, sp.driverEnd = start, end
			if v, ok := s.attr("queues"); ok {
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
			ifc.TargetDev, _ = s.attr("dev")
			ifc.TargetManaged, _ = s.attr("managed")
		}
	case "alias":
		if !s.seenAlias {
			s.seenAlias = true
			ifc.Alias, _ = s.attr("name")
		}
	}
	return nil
}

// checkAttrs rejects what encoding/xml accepts but libxml2 (libvirt's
// parser) does not, where accepting it would let Parse and libvirt see
// different values: a repeated attribute (which one counts?) and a prefix
// bound to the empty namespace (it would make p:queues read as queues).
// Attribute names compare by namespace and local name, so a:x and b:x
// repeat each other when a and b are bound to the same namespace.
func (s *scanner) checkAttrs(start, n0, n1, colon int) error {
	doc := s.doc
	attrs := s.attrs
	for i := range attrs {
		a := &attrs[i]
		if a.colon >= 0 && a.val == a.valEnd && string(s.attrSpace(a)) == xmlnsPrefix {
			return fmt.Errorf("line %d: <%s>: namespace prefix %s bound to an empty name", s.line(start), s.local(n0, n1, colon), doc[a.local:a.nameEnd])
		}
		if len(attrs) <= 16 {
			for j := range attrs[:i] {
				if b := &attrs[j]; a.key == b.key && string(doc[a.local:a.nameEnd]) == string(doc[b.local:b.nameEnd]) &&
					(a.colon < 0 && b.colon < 0 || bytes.Equal(s.attrSpace(a), s.attrSpace(b))) {
					return s.duplicate(start, n0, n1, colon, a)
				}
			}
		}
	}
	if len(attrs) > 16 {
		// Quadratic comparison would let one huge tag take seconds.
		type key struct{ space, local string }
		seen := make(map[key]bool, len(attrs))
		for i := range attrs {
			a := &attrs[i]
			k := key{string(s.attrSpace(a)), string(doc[a.local:a.nameEnd])}
			if seen[k] {
				return s.duplicate(start, n0, n1, colon, a)
			}
			seen[k] = true
		}
	}
	return nil
}

func (s *scanner) duplicate(start, n0, n1, colon int, a *attrTok) error {
	return fmt.Errorf("line %d: <%s>: attribute %s appears twice", s.line(start), s.local(n0, n1, colon), s.doc[a.local:a.nameEnd])
}

// endTag reads the end tag at doc[i] and handles it.
func (s *scanner) endTag(i int) (int, error) {
	doc := s.doc
	n0 := i + 2
	var n1, colon int
	if len(s.stack) > 0 {
		// Fast path: the end tag repeats the open element's name, which
		// qname has read and checked already.
		top := &s.stack[len(s.stack)-1]
		if n := n0 + top.nameEnd - top.name; n < len(doc) && !nameByte(doc[n]) &&
			string(doc[n0:n]) == string(doc[top.name:top.nameEnd]) {
			n1, colon = n, -1
			if top.colon >= 0 {
				colon = n0 + top.colon - top.name
			}
		}
	}
	if n1 == 0 {
		var err error
		if n1, colon, err = s.qname(n0, "expected element name after </"); err != nil {
			return 0, err
		}
	}
	p := skipSpace(doc, n1, len(doc))
	if p >= len(doc) {
		return 0, s.eof()
	}
	local := s.local(n0, n1, colon)
	if doc[p] != '>' {
		return 0, s.syntax(p+1, "invalid characters between </"+string(local)+" and >")
	}
	p++
	if len(s.stack) == 0 {
		return 0, s.syntax(p, "unexpected end element </"+string(local)+">")
	}
	// Start and end tags must match as written (encoding/xml compares
	// them before it resolves prefixes).
	if top := s.stack[len(s.stack)-1]; !bytes.Equal(doc[top.name:top.nameEnd], doc[n0:n1]) {
		topLocal := s.local(top.name, top.nameEnd, top.colon)
		if !bytes.Equal(topLocal, local) {
			return 0, s.syntax(p, "element <"+string(topLocal)+"> closed by </"+string(local)+">")
		}
		space := string(s.prefix(n0, colon))
		if space == "" {
			space = `""`
		}
		return 0, s.syntax(p, "element <"+string(topLocal)+"> in space "+string(s.prefix(top.name, top.colon))+
			" closed by </"+string(local)+"> in space "+space)
	}
	return p, s.endElement(i, false)
}

// endElement closes the innermost element; start is the offset of its end
// tag, or for a <x/> tag (selfClosing) the offset after it.
func (s *scanner) endElement(start int, selfClosing bool) error {
	top := s.stack[len(s.stack)-1]
	s.stack = s.stack[:len(s.stack)-1]
	s.ns = s.ns[:top.nsLen]
	if len(s.stack) == 0 {
		s.rootDone = true
	}
	dom := &s.res.dom
	switch top.c {
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
		sp.selfClosing = selfClosing
	}
	return nil
}

// procInst reads the processing instruction at doc[i] ("<?").
func (s *scanner) procInst(i int) (int, error) {
	doc := s.doc
	n0 := i + 2
	if n0 >= len(doc) {
		return 0, s.eof()
	}
	n1 := n0
	for n1 < len(doc) && nameByte(doc[n1]) {
		n1++
	}
	if n1 == n0 {
		return 0, s.syntax(n0, "expected target name after <?")
	}
	if n1 >= len(doc) {
		return 0, s.eof()
	}
	if !isXMLName(doc[n0:n1]) {
		return 0, s.syntax(n1, "invalid XML name: "+string(doc[n0:n1]))
	}
	p := skipSpace(doc, n1, len(doc))
	e := bytes.Index(doc[p:], []byte("?>"))
	if e < 0 {
		return 0, s.eof()
	}
	e += p
	if string(doc[n0:n1]) == "xml" {
		// encoding/xml checks every <?xml?>, wherever it is.
		content := string(doc[p:e])
		if ver := procInst("version", content); ver != "" && ver != "1.0" {
			return 0, fmt.Errorf("line %d: xml: unsupported version %q; only version 1.0 is supported", s.line(i), ver)
		}
		if enc := procInst("encoding", content); enc != "" && !strings.EqualFold(enc, "utf-8") {
			return 0, fmt.Errorf("line %d: xml: encoding %q declared but Decoder.CharsetReader is nil", s.line(i), enc)
		}
	}
	s.markupChild(i)
	return e + 2, nil
}

// procInst returns the value of param="..." or param='...' in the
// content of an <?xml?> declaration, or "", exactly as encoding/xml finds
// it (which is loosely: "xversion='2'" counts as a version).
func procInst(param, s string) string {
	param += "="
	lenp := len(param)
	i := 0
	var sep byte
	for i < len(s) {
		sub := s[i:]
		k := strings.Index(sub, param)
		if k < 0 || lenp+k >= len(sub) {
			return ""
		}
		i += lenp + k + 1
		if c := sub[lenp+k]; c == '\'' || c == '"' {
			sep = c
			break
		}
	}
	if sep == 0 {
		return ""
	}
	j := strings.IndexByte(s[i:], sep)
	if j < 0 {
		return ""
	}
	return s[i : i+j]
}

// markupChild records a comment or processing instruction at doc[start]
// as the last child of the <interface> it is directly in, if any.
func (s *scanner) markupChild(start int) {
	if len(s.stack) > 0 && s.stack[len(s.stack)-1].c == ctxInterface {
		s.res.spans[len(s.res.spans)-1].lastChild = start
	}
}

// bang reads what starts with "<!" at doc[i]: a comment, a CDATA section
// or a declaration.
func (s *scanner) bang(i int) (int, error) {
	doc := s.doc
	k := i + 2
	if k >= len(doc) {
		return 0, s.eof()
	}
	switch doc[k] {
	case '-':
		if k+1 >= len(doc) {
			return 0, s.eof()
		}
		if doc[k+1] != '-' {
			return 0, s.syntax(k+2, "invalid sequence <!- not part of <!--")
		}
		// The first "--" must end the comment.
		b := k + 2
		j := bytes.Index(doc[b:], []byte("--"))
		if j < 0 {
			return 0, s.eof()
		}
		j += b
		if j+2 >= len(doc) {
			return 0, s.eof()
		}
		if doc[j+2] != '>' {
			return 0, s.syntax(j+3, `invalid sequence "--" not allowed in comments`)
		}
		s.markupChild(i)
		return j + 3, nil
	case '[':
		for x := 0; x < len("CDATA["); x++ {
			p := k + 1 + x
			if p >= len(doc) {
				return 0, s.eof()
			}
			if doc[p] != "CDATA["[x] {
				return 0, s.syntax(p+1, "invalid <![ sequence")
			}
		}
		return s.cdata(i, k+len("[CDATA["))
	}
	if err := s.directive(k); err != nil {
		return 0, err
	}
	// A DTD could declare entities or attribute defaults that libvirt's
	// parser (libxml2) would apply and encoding/xml ignores: the facts
	// read here would then differ from libvirt's. Domain XML never
	// carries one.
	return 0, fmt.Errorf("line %d: <!DOCTYPE> and other <!...> declarations are not allowed in domain XML", s.line(i))
}

// cdata reads the CDATA section at doc[i] whose content starts at c0.
func (s *scanner) cdata(i, c0 int) (int, error) {
	doc := s.doc
	e := bytes.Index(doc[c0:], []byte("]]>"))
	if e < 0 {
		return 0, s.syntax(len(doc), "unexpected EOF in CDATA section")
	}
	e += c0
	content := doc[c0:e]
	r := run{plain: true, blank: true}
	for j := 0; j < len(content); {
		c := content[j]
		switch textClass[c] {
		case tS:
			j++
		case tR:
			r.plain = false
			j++
		case tC:
			r.blank = false
			r.setBad(false, rune(c))
			j++
		case tH:
			r.blank = false
			ch, n := utf8.DecodeRune(content[j:])
			if ch == utf8.RuneError && n == 1 {
				r.setBad(true, 0)
			} else if !isInCharacterRange(ch) {
				r.setBad(false, ch)
			}
			j += n
		default:
			r.blank = false
			j++
		}
	}
	if r.bad {
		return 0, s.syntax(e+3, r.badMsg())
	}
	c := ctxOther
	if len(s.stack) > 0 {
		c = s.stack[len(s.stack)-1].c
	}
	var data []byte
	switch {
	case len(s.stack) == 0:
		data = appendCDATA(s.tmp[:0], content, r.plain)
		s.tmp = data
	case c == ctxName || c == ctxUUID || c == ctxVCPU || c == ctxLabel:
		s.text = appendCDATA(s.text, content, r.plain)
	}
	return e + 3, s.charDataToken(i, c, r.blank, data)
}

// appendCDATA appends the content of a CDATA section with "\r\n" and '\r'
// turned into '\n', as encoding/xml reports it; plain says there is no
// '\r'.
func appendCDATA(dst, content []byte, plain bool) []byte {
	if plain {
		return append(dst, content...)
	}
	for j, c := range content {
		switch {
		case c != '\r':
			dst = append(dst, c)
		case j+1 < len(content) && content[j+1] == '\n':
			// "\r\n" becomes the '\n' that follows.
		default:
			dst = append(dst, '\n')
		}
	}
	return dst
}

// directive reads the declaration whose first byte after "<!" is doc[k],
// the way encoding/xml does: up to the first '>' outside quotes and
// nested <...>, skipping <!-- comments -->. Only its syntax matters: Parse
// refuses any declaration, but encoding/xml reports a malformed one as
// malformed first.
func (s *scanner) directive(k int) error {
	doc := s.doc
	var inquote byte
	depth := 0
	// encoding/xml takes the first byte as is: it can neither end the
	// declaration nor open a quote.
	p := k + 1
	for {
		if p >= len(doc) {
			return s.eof()
		}
		b := doc[p]
		p++
		if inquote == 0 && b == '>' && depth == 0 {
			return nil
		}
	handle:
		switch {
		case b == inquote:
			inquote = 0
		case inquote != 0:
		case b == '\'' || b == '"':
			inquote = b
		case b == '>':
			depth--
		case b == '<':
			for x := 0; x < len("!--"); x++ {
				if p >= len(doc) {
					return s.eof()
				}
				b = doc[p]
				p++
				if b != "!--"[x] {
					// Not a comment: the byte is handled as any other.
					depth++
					goto handle
				}
			}
			e := bytes.Index(doc[p:], []byte("-->"))
			if e < 0 {
				return s.eof()
			}
			p += e + 3
		}
	}
}

// eof is the error for a document that ends inside markup or an element.
func (s *scanner) eof() error {
	return s.syntax(len(s.doc), "unexpected EOF")
}

// syntax returns a well-formedness error, on the line encoding/xml would
// report: that of the last byte it had read when it noticed (consumed is
// the offset after it).
func (s *scanner) syntax(consumed int, msg string) error {
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return fmt.Errorf("line %d: malformed XML: %s", s.line(consumed), msg)
}

// line returns the 1-based line of a byte offset, counted the way
// encoding/xml counts them (by '\n' only).
func (s *scanner) line(offset int) int {
	return 1 + bytes.Count(s.doc[:offset], []byte{'\n'})
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
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return false
		}
	}
	return true
}

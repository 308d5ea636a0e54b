package domxml

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/virtmq/virtmq/policy"
)

// maxQueues is the largest count rewrite writes. libvirt stores queues as
// an unsigned int and the kernel caps a tap at 256 queues; 65535 only
// guards against nonsense (a negative number wrapped, a typo), the policy
// applies the real limits.
const maxQueues = 65535

// edit replaces doc[from:to] with text. Insertions have from == to.
type edit struct {
	from, to int
	text     string
}

// rewrite gives each interface of doc, scanned into sc, the count queues
// maps its Index to and, with record, updates virtmq's record to match
// (Apply's write path; the tests of the queue splice alone pass record
// false). It fails, changing nothing, when a key is not the index of an
// interface or a count is outside 0..maxQueues. A count of 0 or 1 for an
// interface without queues leaves it unchanged. When nothing changes, the
// result has the same bytes as doc, record included.
func rewrite(doc []byte, sc *scanned, queues map[int]int, record bool) ([]byte, error) {
	ifaces := sc.dom.Interfaces
	// Check the whole request before touching anything, in index order so
	// the error is the same on every run.
	for _, i := range slices.Sorted(maps.Keys(queues)) {
		if i < 0 || i >= len(ifaces) {
			return nil, fmt.Errorf("no <interface> #%d: the domain has %d", i, len(ifaces))
		}
		if n := queues[i]; n < 0 || n > maxQueues {
			return nil, fmt.Errorf("<interface> #%d: queues %d is outside 0..%d", i, n, maxQueues)
		}
	}

	var edits []edit
	want := make([]int, len(ifaces))    // the Queues Parse must report afterwards
	written := make([]int, len(ifaces)) // and, with record, the Written
	for i, ifc := range ifaces {
		want[i] = ifc.Queues
		if n, ok := queues[i]; ok {
			e, ok, err := editInterface(doc, ifc, sc.spans[i], n)
			if err != nil {
				return nil, fmt.Errorf("<interface> #%d: %w", i, err)
			}
			if ok {
				edits = append(edits, e)
				want[i] = max(n, 1)
			}
		}
		// The record keeps what it said of the NICs left as they are.
		if record && recordable(ifc.MAC) {
			written[i] = ifc.Written
			if want[i] != ifc.Queues {
				written[i] = want[i]
			}
		}
	}
	if len(edits) == 0 {
		return bytes.Clone(doc), nil
	}
	if record {
		if e, ok := recordEdit(doc, sc, written); ok {
			edits = append(edits, e)
		}
	}

	// Each edit stays inside its own <interface> or the <metadata> (or
	// adds one between elements), so in document order they never overlap.
	slices.SortFunc(edits, func(a, b edit) int { return a.from - b.from })
	out := make([]byte, 0, len(doc)+512) // room for a few edits and a record
	prev := 0
	for _, e := range edits {
		out = append(out, doc[prev:e.from]...)
		out = append(out, e.text...)
		prev = e.to
	}
	out = append(out, doc[prev:]...)

	// A bad splice would hand libvirt a broken or different definition.
	// Reading the result back costs one more pass and makes that an error
	// here instead.
	check, err := scan(out)
	if err != nil {
		return nil, fmt.Errorf("internal error: rewritten document does not parse: %w", err)
	}
	if len(check.dom.Interfaces) != len(ifaces) {
		return nil, fmt.Errorf("internal error: rewritten document has %d interfaces, want %d", len(check.dom.Interfaces), len(ifaces))
	}
	for i, ifc := range check.dom.Interfaces {
		if ifc.Queues != want[i] {
			return nil, fmt.Errorf("internal error: rewritten <interface> #%d has queues %d, want %d", i, ifc.Queues, want[i])
		}
		if record && ifc.Written != written[i] {
			return nil, fmt.Errorf("internal error: the record says <interface> #%d has queues %d, want %d", i, ifc.Written, written[i])
		}
	}
	return out, nil
}

// editInterface returns the edit that gives one interface n queues, and
// whether one is needed.
func editInterface(doc []byte, ifc policy.Interface, sp ifaceSpan, n int) (edit, bool, error) {
	if sp.hasQueues {
		// 0 means one pair, as an absent attribute does; a present one is
		// written as 1 so it stays a count libvirt and humans agree on.
		n = max(n, 1)
		if ifc.Queues == n {
			return edit{}, false, nil
		}
		from, to, ok := attrValue(doc, sp.driverStart, sp.driverEnd, sp.queuesAttr)
		if !ok {
			return edit{}, false, fmt.Errorf("internal error: <driver> has a queues attribute the tag scanner cannot find")
		}
		return edit{from, to, strconv.Itoa(n)}, true, nil
	}
	if n <= 1 {
		return edit{}, false, nil
	}
	_, q := attrsEnd(doc, sp.tagStart, sp.tagEnd)
	if ifc.HasDriver {
		at, dq := attrsEnd(doc, sp.driverStart, sp.driverEnd)
		q = cmp.Or(dq, q, '\'')
		return edit{at, at, " queues=" + string(q) + strconv.Itoa(n) + string(q)}, true, nil
	}
	q = cmp.Or(q, '\'')
	driver := "<driver queues=" + string(q) + strconv.Itoa(n) + string(q) + "/>"
	if sp.selfClosing {
		// <interface .../> has no content to add to: open it up.
		return edit{sp.tagEnd - 2, sp.tagEnd, ">" + driver + "</interface>"}, true, nil
	}
	at, lead := appendPoint(doc, sp.tagEnd, sp.endTag, sp.lastChild)
	return edit{at, at, lead + driver}, true, nil
}

// appendPoint returns where a new last child goes in the element whose
// start tag ends at open and whose end tag starts at endTag: after its
// last child (starting at lastChild, -1 if none), before the blank text
// that indents the end tag; and the blank text before that last child, to
// indent the new one the same way ("" when there is none).
func appendPoint(doc []byte, open, endTag, lastChild int) (at int, lead string) {
	at = endTag
	for at > open && isSpace(doc[at-1]) {
		at--
	}
	if lastChild >= 0 {
		i := lastChild
		for i > open && isSpace(doc[i-1]) {
			i--
		}
		lead = string(doc[i:lastChild])
	}
	return at, lead
}

// attrValue returns the offsets of the value of the k-th attribute (from
// 0, in document order, as the tokenizer lists them) of the start tag
// doc[start:end]. Names hold no quotes, and every value is quoted and ends
// at its own quote character whatever it holds ('>' included), so that is
// the k-th quoted string of the tag.
func attrValue(doc []byte, start, end, k int) (from, to int, ok bool) {
	for i := start; k >= 0; k-- {
		q := bytes.IndexAny(doc[i:end], `'"`)
		if q < 0 {
			return 0, 0, false
		}
		from = i + q + 1
		n := bytes.IndexByte(doc[from:end], doc[i+q])
		if n < 0 {
			return 0, 0, false
		}
		to, i = from+n, from+n+1
	}
	return from, to, true
}

// attrsEnd returns the offset just after the last attribute of the start
// tag doc[start:end] (after its name when it has none), where a new
// attribute goes, and the quote character of that last attribute (0 when
// there is none: an element name holds no quotes).
func attrsEnd(doc []byte, start, end int) (at int, quote byte) {
	at = end - 1 // '>'
	if doc[at-1] == '/' {
		at--
	}
	for at > start && isSpace(doc[at-1]) {
		at--
	}
	if c := doc[at-1]; c == '\'' || c == '"' {
		quote = c
	}
	return at, quote
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

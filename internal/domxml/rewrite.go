package domxml

import (
	"bytes"
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

// rewrite gives each interface the count queues maps its Index to and,
// with record, updates virtmq's record to match (Apply's write path; the
// tests of the queue splice alone pass record false). It fails, changing
// nothing, when doc does not Parse, when a key is not the index of an
// interface, or when a count is outside 0..maxQueues. A count of 0 or 1
// for an interface without queues leaves it unchanged. When nothing
// changes, the result has the same bytes as doc, record included.
func rewrite(doc []byte, queues map[int]int, record bool) ([]byte, error) {
	sc, err := scan(doc)
	if err != nil {
		return nil, err
	}
	return rewriteScanned(doc, sc, queues, record)
}

// rewriteScanned is rewrite on a doc already scanned into sc.
func rewriteScanned(doc []byte, sc *scanned, queues map[int]int, record bool) ([]byte, error) {
	ifaces := sc.dom.Interfaces
	// Check the whole request before touching anything, in index order so
	// the error is the same on every run.
	idxs := slices.Sorted(maps.Keys(queues))
	for _, i := range idxs {
		if i < 0 || i >= len(ifaces) {
			return nil, fmt.Errorf("no <interface> #%d: the domain has %d", i, len(ifaces))
		}
		if n := queues[i]; n < 0 || n > maxQueues {
			return nil, fmt.Errorf("<interface> #%d: queues %d is outside 0..%d", i, n, maxQueues)
		}
	}

	var edits []edit
	want := make([]int, len(ifaces)) // the Queues Parse must report afterwards
	changed := make([]bool, len(ifaces))
	for i, ifc := range ifaces {
		want[i] = ifc.Queues
		n, ok := queues[i]
		if !ok {
			continue
		}
		e, ok, err := editInterface(doc, ifc, sc.spans[i], n)
		if err != nil {
			return nil, fmt.Errorf("<interface> #%d: %w", i, err)
		}
		if ok {
			edits = append(edits, e)
			want[i], changed[i] = max(n, 1), true
		}
	}
	if len(edits) == 0 {
		return bytes.Clone(doc), nil
	}
	var written []int // the Written Parse must report afterwards, with record
	if record {
		var e edit
		var err error
		if e, written, err = recordEdit(doc, sc, want, changed); err != nil {
			return nil, err
		}
		if e.from >= 0 {
			edits = append(edits, e)
		}
	}

	// Each edit stays inside its own <interface> or the <metadata> (or
	// adds one between elements), so in document order they never overlap.
	slices.SortFunc(edits, func(a, b edit) int { return a.from - b.from })
	size := len(doc)
	for _, e := range edits {
		size += len(e.text) - (e.to - e.from)
	}
	out := make([]byte, 0, size)
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
		tag, err := parseRawTag(doc, sp.driverStart, sp.driverEnd)
		if err != nil {
			return edit{}, false, err
		}
		a, ok := tag.find("queues")
		if !ok {
			return edit{}, false, fmt.Errorf("internal error: <driver> has a queues attribute the tag scanner cannot find")
		}
		return edit{a.valueStart, a.valueEnd, strconv.Itoa(n)}, true, nil
	}
	if n <= 1 {
		return edit{}, false, nil
	}

	itag, err := parseRawTag(doc, sp.tagStart, sp.tagEnd)
	if err != nil {
		return edit{}, false, err
	}
	q := itag.quote()
	if q == 0 {
		q = '\''
	}

	if ifc.HasDriver {
		tag, err := parseRawTag(doc, sp.driverStart, sp.driverEnd)
		if err != nil {
			return edit{}, false, err
		}
		at := tag.nameEnd
		if len(tag.attrs) > 0 {
			at = tag.attrs[len(tag.attrs)-1].valueEnd + 1
			q = tag.quote()
		}
		return edit{at, at, " queues=" + string(q) + strconv.Itoa(n) + string(q)}, true, nil
	}

	driver := "<driver queues=" + string(q) + strconv.Itoa(n) + string(q) + "/>"
	if sp.selfClosing {
		// <interface .../> has no content to add to: open it up.
		return edit{itag.close, sp.tagEnd, ">" + driver + "</" + itag.name + ">"}, true, nil
	}
	// After the last child, before the blank text that indents the end tag,
	// with the indentation of the last child.
	at := sp.endTag
	for at > sp.tagEnd && isSpace(doc[at-1]) {
		at--
	}
	indent := ""
	if sp.lastChild >= 0 {
		i := sp.lastChild
		for i > sp.tagEnd && isSpace(doc[i-1]) {
			i--
		}
		indent = string(doc[i:sp.lastChild])
	}
	return edit{at, at, indent + driver}, true, nil
}

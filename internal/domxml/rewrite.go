package domxml

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"

	"github.com/virtmq/virtmq/policy"
)

// maxQueues is the largest count Rewrite writes. libvirt stores queues as
// an unsigned int and the kernel caps a tap at 256 queues; 65535 only
// guards against nonsense (a negative number wrapped, a typo), the policy
// applies the real limits.
const maxQueues = 65535

// edit replaces doc[from:to] with text. Insertions have from == to.
type edit struct {
	from, to int
	text     string
}

func rewrite(doc []byte, queues map[int]int) ([]byte, error) {
	sc, err := scan(doc)
	if err != nil {
		return nil, err
	}
	ifaces := sc.dom.Interfaces

	// Check the whole request before touching anything, in index order so
	// the error is the same on every run.
	idxs := make([]int, 0, len(queues))
	for i := range queues {
		idxs = append(idxs, i)
	}
	slices.Sort(idxs)
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
	for i, ifc := range ifaces {
		want[i] = ifc.Queues
		n, ok := queues[i]
		if !ok {
			continue
		}
		e, changed, err := editInterface(doc, ifc, sc.spans[i], n)
		if err != nil {
			return nil, fmt.Errorf("<interface> #%d: %w", i, err)
		}
		if changed {
			edits = append(edits, e)
			want[i] = max(n, 1)
		}
	}
	if len(edits) == 0 {
		return bytes.Clone(doc), nil
	}

	// Edits come in document order and each stays inside its own
	// <interface>, so they never overlap.
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

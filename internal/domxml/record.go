package domxml

import (
	"strconv"
	"strings"
)

// recordEdit returns the edit that makes virtmq's record (see
// WrittenNamespace) say, for each NIC with a MAC, the count rewrite writes
// into it (want, where changed) or else the count the record already gave
// it; entries of NICs the domain no longer has are dropped. written is
// what Parse must then report as each NIC's Written. The edit has from -1
// when there is nothing to do: a record with no entries is removed rather
// than written empty.
func recordEdit(doc []byte, sc *scanned, want []int, changed []bool) (e edit, written []int, err error) {
	var entries []writtenNIC
	written = make([]int, len(want))
	for i, ifc := range sc.dom.Interfaces {
		n := ifc.Written
		if changed[i] {
			n = want[i]
		}
		if n == 0 || !recordable(ifc.MAC) {
			continue
		}
		written[i] = n
		entries = append(entries, writtenNIC{nicKey{ifc.MAC, sc.spans[i].nth}, n})
	}
	m := &sc.meta
	switch {
	case len(entries) == 0 && m.writtenStart < 0:
		return edit{from: -1}, written, nil
	case len(entries) == 0:
		from := m.writtenStart
		for from > m.metaEnd && isSpace(doc[from-1]) {
			from--
		}
		return edit{from, m.writtenEnd, ""}, written, nil
	case m.writtenStart >= 0:
		return edit{m.writtenStart, m.writtenEnd, recordElement(entries, lineIndent(doc, m.writtenStart))}, written, nil
	case m.metaStart >= 0 && m.metaSelfClosing:
		// <metadata/>: open it up.
		indent := lineIndent(doc, m.metaStart)
		text := ">\n" + indent + "  " + recordElement(entries, indent+"  ") + "\n" + indent + "</metadata>"
		return edit{m.metaEnd - 2, m.metaEnd, text}, written, nil
	case m.metaStart >= 0:
		// After the last child, indented like it; in an empty
		// <metadata>, one step in from it, with the end tag on a line of
		// its own.
		at, lead := appendPoint(doc, m.metaEnd, m.metaEndTag, m.metaLastChild)
		indent := lineIndent(doc, m.metaStart) + "  "
		if m.metaLastChild >= 0 {
			indent = lineIndent(doc, m.metaLastChild)
		} else {
			lead = "\n" + indent
		}
		text := lead + recordElement(entries, indent)
		if at == m.metaEnd {
			text += "\n" + lineIndent(doc, m.metaStart)
		}
		return edit{at, at, text}, written, nil
	}
	at, indent := m.identEnd, ""
	if at == 0 {
		at = m.rootEnd
	} else {
		indent = lineIndent(doc, m.identStart)
	}
	text := "\n" + indent + "<metadata>\n" + indent + "  " + recordElement(entries, indent+"  ") + "\n" + indent + "</metadata>"
	return edit{at, at, text}, written, nil
}

// writtenNIC is one <virtmq:nic> of the record.
type writtenNIC struct {
	nicKey
	queues int
}

// recordable reports whether a MAC can name a NIC in the record: libvirt
// accepts only hex digits and colons, and those need no XML escaping.
func recordable(mac string) bool {
	return mac != "" && strings.Trim(mac, "0123456789abcdef:") == ""
}

// recordElement formats the record, its first line at the caller's
// position and the others indented by indent.
func recordElement(entries []writtenNIC, indent string) string {
	var b strings.Builder
	b.WriteString("<" + MetadataPrefix + ":written xmlns:" + MetadataPrefix + "='" + WrittenNamespace + "'>")
	for _, e := range entries {
		b.WriteString("\n" + indent + "  <" + MetadataPrefix + ":nic mac='" + e.mac + "' nth='" + strconv.Itoa(e.nth) +
			"' queues='" + strconv.Itoa(e.queues) + "'/>")
	}
	b.WriteString("\n" + indent + "</" + MetadataPrefix + ":written>")
	return b.String()
}

// lineIndent returns the blanks between the start of the line and offset
// i, or "" when something else precedes i on its line.
func lineIndent(doc []byte, i int) string {
	j := i
	for j > 0 && (doc[j-1] == ' ' || doc[j-1] == '\t') {
		j--
	}
	if j > 0 && doc[j-1] != '\n' {
		return ""
	}
	return string(doc[j:i])
}

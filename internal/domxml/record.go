package domxml

import (
	"strconv"
	"strings"
)

// recordEdit returns the edit that makes virtmq's record (see
// WrittenNamespace) say that each NIC has the count written gives it (by
// Index; 0: no entry), and whether an edit is needed: a record with no
// entries is removed rather than written empty, or not added.
func recordEdit(doc []byte, sc *scanned, written []int) (edit, bool) {
	var entries []writtenNIC
	for i, n := range written {
		if n > 0 {
			entries = append(entries, writtenNIC{nicKey{sc.dom.Interfaces[i].MAC, sc.spans[i].nth}, n})
		}
	}
	m := &sc.meta
	switch {
	case len(entries) == 0 && m.writtenStart < 0:
		return edit{}, false
	case len(entries) == 0:
		from := m.writtenStart
		for from > m.metaEnd && isSpace(doc[from-1]) {
			from--
		}
		return edit{from, m.writtenEnd, ""}, true
	case m.writtenStart >= 0:
		return edit{m.writtenStart, m.writtenEnd, recordElement(entries, lineIndent(doc, m.writtenStart))}, true
	case m.metaStart >= 0 && doc[m.metaEnd-2] == '/':
		// <metadata/>: open it up.
		indent := lineIndent(doc, m.metaStart)
		text := ">\n" + indent + "  " + recordElement(entries, indent+"  ") + "\n" + indent + "</metadata>"
		return edit{m.metaEnd - 2, m.metaEnd, text}, true
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
		return edit{at, at, text}, true
	}
	at, indent := m.identEnd, ""
	if at == 0 {
		at = m.rootEnd
	} else {
		indent = lineIndent(doc, m.identStart)
	}
	text := "\n" + indent + "<metadata>\n" + indent + "  " + recordElement(entries, indent+"  ") + "\n" + indent + "</metadata>"
	return edit{at, at, text}, true
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

package domxml

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// RewriteRecorded is Rewrite that also records what it wrote: for each
// interface whose queue count it changed (and that has a MAC), it sets
// that NIC's entry in virtmq's record in <metadata> (see WrittenNamespace),
// so that a later different value is recognisably a person's. Entries of
// NICs it did not touch are kept as they were; entries of MACs the domain no
// longer has are dropped.
//
// The record element is replaced where it is, or added as the last child of
// the first <metadata>; a domain without <metadata> gets one after the last
// of <name>, <uuid>, <genid>, <title> and <description>, where libvirt
// writes it. Every other byte is kept; when nothing changes, the result
// has the same bytes as doc, record included.
func RewriteRecorded(doc []byte, queues map[int]int) ([]byte, error) {
	out, err := rewrite(doc, queues)
	if err != nil || bytes.Equal(out, doc) {
		return out, err
	}
	before, err := scan(doc)
	if err != nil {
		return nil, err
	}
	after, err := scan(out)
	if err != nil {
		return nil, fmt.Errorf("internal error: rewritten document does not parse: %w", err)
	}
	// The record in interface order: what is written now, else what the
	// old record said.
	var entries []writtenNIC
	seen := map[string]bool{}
	for i, ifc := range after.dom.Interfaces {
		if ifc.MAC == "" || seen[ifc.MAC] {
			continue
		}
		seen[ifc.MAC] = true
		switch old := before.dom.Interfaces[i]; {
		case ifc.Queues != old.Queues:
			entries = append(entries, writtenNIC{ifc.MAC, ifc.Queues})
		case old.Written > 0:
			entries = append(entries, writtenNIC{ifc.MAC, old.Written})
		}
	}
	rec, err := spliceRecord(out, &after.meta, entries)
	if err != nil {
		return nil, err
	}
	check, err := scan(rec)
	if err != nil {
		return nil, fmt.Errorf("internal error: recorded document does not parse: %w", err)
	}
	for i, ifc := range check.dom.Interfaces {
		want := after.dom.Interfaces[i]
		if ifc.MAC != "" && !seen[ifc.MAC] {
			continue
		}
		if ifc.Queues != want.Queues {
			return nil, fmt.Errorf("internal error: recorded <interface> #%d has queues %d, want %d", i, ifc.Queues, want.Queues)
		}
	}
	for _, e := range entries {
		found := false
		for _, w := range check.written {
			found = found || w == e
		}
		if !found {
			return nil, fmt.Errorf("internal error: the record lacks NIC %s", e.mac)
		}
	}
	return rec, nil
}

// recordElement formats the record, its first line at the caller's
// position and the others indented by indent.
func recordElement(entries []writtenNIC, indent string) string {
	var b strings.Builder
	b.WriteString("<" + MetadataPrefix + ":written xmlns:" + MetadataPrefix + "='" + WrittenNamespace + "'")
	if len(entries) == 0 {
		b.WriteString("/>")
		return b.String()
	}
	b.WriteString(">")
	for _, e := range entries {
		b.WriteString("\n" + indent + "  <" + MetadataPrefix + ":nic mac='" + e.mac + "' queues='" + strconv.Itoa(e.queues) + "'/>")
	}
	b.WriteString("\n" + indent + "</" + MetadataPrefix + ":written>")
	return b.String()
}

// spliceRecord puts the record into doc, whose metadata positions are m.
func spliceRecord(doc []byte, m *metaSpan, entries []writtenNIC) ([]byte, error) {
	var from, to int
	var text string
	switch {
	case m.writtenStart >= 0:
		indent := lineIndent(doc, m.writtenStart)
		from, to, text = m.writtenStart, m.writtenEnd, recordElement(entries, indent)
	case m.metaStart >= 0 && m.metaSelfClosing:
		indent := lineIndent(doc, m.metaStart)
		tag, err := parseRawTag(doc, m.metaStart, m.metaEnd)
		if err != nil {
			return nil, err
		}
		from, to = tag.close, m.metaEnd
		text = ">\n" + indent + "  " + recordElement(entries, indent+"  ") + "\n" + indent + "</" + tag.name + ">"
	case m.metaStart >= 0:
		// After the last child, indented like it; in an empty
		// <metadata>, one step in from it.
		at := m.metaEndTag
		for at > m.metaEnd && isSpace(doc[at-1]) {
			at--
		}
		indent := lineIndent(doc, m.metaStart) + "  "
		if m.metaLastChild >= 0 {
			indent = lineIndent(doc, m.metaLastChild)
		}
		from, to = at, at
		text = "\n" + indent + recordElement(entries, indent)
		if at == m.metaEnd {
			// <metadata></metadata>: put the end tag on its own line too.
			text += "\n" + lineIndent(doc, m.metaStart)
		}
	default:
		at, indent := m.identEnd, ""
		if at == 0 {
			at = m.rootEnd
		} else {
			indent = lineIndent(doc, m.identStart)
		}
		from, to = at, at
		text = "\n" + indent + "<metadata>\n" + indent + "  " + recordElement(entries, indent+"  ") + "\n" + indent + "</metadata>"
	}
	out := make([]byte, 0, len(doc)+len(text))
	out = append(out, doc[:from]...)
	out = append(out, text...)
	return append(out, doc[to:]...), nil
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

package domxml

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/virtmq/virtmq/policy"
)

// lineDiff returns a unified-style diff of two texts, "-" for want and
// "+" for got, with line numbers. Lines show their line ending when it is
// not a plain "\n", so CRLF and missing-newline differences are visible.
func lineDiff(want, got string) string {
	a := strings.SplitAfter(want, "\n")
	b := strings.SplitAfter(got, "\n")
	if len(a)*len(b) > 4_000_000 {
		return firstDifference([]byte(want), []byte(got))
	}
	// lcs[i][j] is the length of the longest common subsequence of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	show := func(s string) string {
		if strings.HasSuffix(s, "\n") && !strings.HasSuffix(s, "\r\n") {
			return strings.TrimSuffix(s, "\n")
		}
		return fmt.Sprintf("%q", s)
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			fmt.Fprintf(&out, "  %4d  %s\n", i+1, show(a[i]))
			i++
			j++
		case j < len(b) && (i == len(a) || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&out, "+ %4d  %s\n", j+1, show(b[j]))
			j++
		default:
			fmt.Fprintf(&out, "- %4d  %s\n", i+1, show(a[i]))
			i++
		}
	}
	return out.String()
}

// firstDifference shows where two large byte slices first differ.
func firstDifference(want, got []byte) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	from := max(0, i-80)
	return fmt.Sprintf("first difference at byte %d (line %d):\nwant …%q\ngot  …%q",
		i, 1+bytes.Count(want[:i], []byte{'\n'}),
		want[from:min(len(want), i+80)], got[from:min(len(got), i+80)])
}

// domainDiff compares two Domains field by field, one line per fact, so a
// failure names the field instead of dumping two structs.
func domainDiff(want, got *policy.Domain) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	return lineDiff(describe(want), describe(got))
}

func describe(d *policy.Domain) string {
	if d == nil {
		return "<nil>\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Name=%q UUID=%q Type=%q\n", d.Name, d.UUID, d.Type)
	fmt.Fprintf(&b, "Arch=%q Machine=%q Excluded=%v\n", d.Arch, d.Machine, d.Excluded)
	fmt.Fprintf(&b, "MaxVCPUs=%d CurrentVCPUs=%d\n", d.MaxVCPUs, d.CurrentVCPUs)
	fmt.Fprintf(&b, "OSID=%q\n", d.OSID)
	fmt.Fprintf(&b, "Labels=%#v\n", d.Labels)
	fmt.Fprintf(&b, "MetadataNamespaces=%q SMBIOSProduct=%q\n", d.MetadataNamespaces, d.SMBIOSProduct)
	for _, i := range d.Interfaces {
		fmt.Fprintf(&b, "Interface %+v\n", i)
	}
	return b.String()
}

// stripDrivers is the test's own view of "what Rewrite may change": it
// removes from doc every <driver> element of an <interface> that has no
// attribute but queues (together with the blank text before it, which is
// where Rewrite puts the indentation of an inserted one), and replaces the
// start tag of every other such <driver> with a canonical one without
// queues. Two documents that differ only in what Rewrite may do have the
// same stripDrivers. It shares no code with Rewrite on purpose.
func stripDrivers(doc []byte) ([]byte, error) {
	// Each open element is remembered by its name, or "" when it is in a
	// namespace (libvirt's own elements have none).
	type cut struct {
		from, to int
		text     string
	}
	var (
		stack []string
		cuts  []cut
		d     = xml.NewDecoder(bytes.NewReader(doc))
	)
	for {
		start := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		end := int(d.InputOffset())
		switch t := tok.(type) {
		case xml.StartElement:
			name := ""
			if t.Name.Space == "" {
				name = t.Name.Local
			}
			stack = append(stack, name)
			if len(stack) != 4 || stack[0] != "domain" || stack[1] != "devices" || stack[2] != "interface" || name != "driver" {
				continue
			}
			selfClosing := bytes.HasSuffix(doc[start:end], []byte("/>"))
			var kept []xml.Attr
			for _, a := range t.Attr {
				if a.Name.Space != "" || a.Name.Local != "queues" {
					kept = append(kept, a)
				}
			}
			if len(kept) == 0 && selfClosing {
				from := start
				for from > 0 && strings.IndexByte(" \t\r\n", doc[from-1]) >= 0 {
					from--
				}
				cuts = append(cuts, cut{from, end, ""})
				continue
			}
			var b strings.Builder
			b.WriteString("<driver")
			for _, a := range kept {
				fmt.Fprintf(&b, " {%s}%s=%q", a.Name.Space, a.Name.Local, a.Value)
			}
			if selfClosing {
				b.WriteString("/>")
			} else {
				b.WriteString(">")
			}
			cuts = append(cuts, cut{start, end, b.String()})
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	var out []byte
	prev := 0
	for _, c := range cuts {
		out = append(out, doc[prev:c.from]...)
		out = append(out, c.text...)
		prev = c.to
	}
	return append(out, doc[prev:]...), nil
}

// validator runs virt-xml-validate when it is installed; the corpus test
// uses it to prove a rewrite never turns a schema-valid domain invalid.
var validatorPath = sync.OnceValue(func() string {
	p, err := exec.LookPath("virt-xml-validate")
	if err != nil {
		return ""
	}
	return p
})

// validate writes doc to dir/name and reports whether libvirt's schema
// accepts it, with the tool's output for the failure message.
func validate(t *testing.T, dir, name string, doc []byte) (bool, string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(validatorPath(), p, "domain").CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("running virt-xml-validate: %v", err)
		}
		return false, string(out)
	}
	return true, string(out)
}

// splitDocuments splits a file that holds several XML documents one after
// the other (virt-install's test outputs hold the install-time and the
// final domain) into one slice per root element; their concatenation is
// data. ok is false when the file has text outside its elements, i.e. is
// not a sequence of XML documents at all. A file the tokenizer rejects is
// returned whole, for Parse to report.
func splitDocuments(data []byte) (docs [][]byte, ok bool) {
	d := xml.NewDecoder(bytes.NewReader(data))
	depth, prev := 0, 0
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return [][]byte{data}, true
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
			if depth == 0 {
				end := int(d.InputOffset())
				docs = append(docs, data[prev:end])
				prev = end
			}
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return nil, false
			}
		}
	}
	if len(docs) == 0 {
		return [][]byte{data}, true
	}
	// Whatever follows the last root (a newline, comments) goes with it.
	last := len(docs) - 1
	docs[last] = data[prev-len(docs[last]):]
	return docs, true
}

// misindentedDrivers returns the lines of the <driver> elements of
// <interface>s that have no attribute but queues (what Rewrite inserts)
// and are not indented like the element before them. stripDrivers cannot
// see indentation, since it removes the blank text before such drivers.
func misindentedDrivers(doc []byte) ([]int, error) {
	var (
		lines []int
		stack []string
		prev  = -1 // start of the previous child element of the current <interface>
		d     = xml.NewDecoder(bytes.NewReader(doc))
	)
	blankBefore := func(i int) string {
		j := i
		for j > 0 && strings.IndexByte(" \t\r\n", doc[j-1]) >= 0 {
			j--
		}
		return string(doc[j:i])
	}
	for {
		start := int(d.InputOffset())
		tok, err := d.Token()
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := ""
			if t.Name.Space == "" {
				name = t.Name.Local
			}
			stack = append(stack, name)
			if len(stack) == 3 && name == "interface" {
				prev = -1
			}
			if len(stack) != 4 || stack[2] != "interface" {
				continue
			}
			if name == "driver" && len(t.Attr) == 1 && t.Attr[0].Name == (xml.Name{Local: "queues"}) &&
				prev >= 0 && blankBefore(start) != blankBefore(prev) {
				lines = append(lines, 1+bytes.Count(doc[:start], []byte{'\n'}))
			}
			prev = start
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
}

// splice and recorded are the two ways the tests call rewrite: the queue
// splice alone, and Apply's write path, which also records the counts.
func splice(doc []byte, q map[int]int) ([]byte, error)   { return scanRewrite(doc, q, false) }
func recorded(doc []byte, q map[int]int) ([]byte, error) { return scanRewrite(doc, q, true) }

func scanRewrite(doc []byte, q map[int]int, record bool) ([]byte, error) {
	sc, err := scan(doc)
	if err != nil {
		return nil, err
	}
	return rewrite(doc, sc, q, record)
}

package cli

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// diffLine is one changed line: Op is '-' (only in the old text, Line is
// its old line number) or '+' (only in the new text, Line is its new line
// number). Line numbers are 1-based.
type diffLine struct {
	Op   byte
	Line int
	Text string
}

// maxDiffCells bounds the LCS table of lineDiff. A policy rewrite changes a
// few <driver> lines, so the differing middle of two domain XMLs is small;
// beyond the bound the whole middle is shown as removed then added.
const maxDiffCells = 1 << 22

// lineDiff returns the lines that differ between a and b, in order, with
// removals before additions where both happen at one place. Common lines
// are left out. It is a longest-common-subsequence diff on the part between
// the common prefix and suffix, which is all a rewrite needs.
func lineDiff(a, b []byte) []diffLine {
	al, bl := splitLines(a), splitLines(b)
	pre := 0
	for pre < len(al) && pre < len(bl) && al[pre] == bl[pre] {
		pre++
	}
	suf := 0
	for suf < len(al)-pre && suf < len(bl)-pre && al[len(al)-1-suf] == bl[len(bl)-1-suf] {
		suf++
	}
	am, bm := al[pre:len(al)-suf], bl[pre:len(bl)-suf]
	var out []diffLine
	del := func(i int) { out = append(out, diffLine{'-', pre + i + 1, am[i]}) }
	add := func(j int) { out = append(out, diffLine{'+', pre + j + 1, bm[j]}) }
	n, m := len(am), len(bm)
	if n == 0 || m == 0 || (n+1)*(m+1) > maxDiffCells {
		for i := range n {
			del(i)
		}
		for j := range m {
			add(j)
		}
		return out
	}
	// lcs[i][j] is the LCS length of am[i:] and bm[j:].
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if am[i] == bm[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case am[i] == bm[j]:
			i++
			j++
		case lcs[i+1][j] >= lcs[i][j+1]:
			del(i)
			i++
		default:
			add(j)
			j++
		}
	}
	for ; i < n; i++ {
		del(i)
	}
	for ; j < m; j++ {
		add(j)
	}
	return out
}

// splitLines splits on "\n"; a final newline does not start another line.
func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	s := strings.Split(string(bytes.TrimSuffix(b, []byte("\n"))), "\n")
	return s
}

// printDiff writes the changed lines as "  -  42  text" / "  +  42  text",
// numbers aligned, control characters shown as '?'.
func printDiff(w io.Writer, indent string, lines []diffLine) {
	width := 1
	for _, l := range lines {
		width = max(width, len(strconv.Itoa(l.Line)))
	}
	for _, l := range lines {
		fmt.Fprintf(w, "%s%c %*d  %s\n", indent, l.Op, width, l.Line, printable(l.Text))
	}
}

// printable replaces control characters (except tab) so that a domain XML
// cannot drive the terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if (r < 0x20 && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, strings.TrimSuffix(s, "\r"))
}

// secretMask is what a secret's value prints as.
const secretMask = "***"

var (
	// passwdAttr is an attribute named passwd, the one secret libvirt
	// keeps out of domain XML read without VIR_DOMAIN_XML_SECURE: the VNC
	// and SPICE password of <graphics> (virDomainGraphicsAuthDefFormatAttr
	// in libvirt's src/conf/domain_conf.c). Any element's passwd is masked.
	passwdAttr = regexp.MustCompile(`(\bpasswd\s*=\s*)(?:'([^']*)'|"([^"]*)")`)
	// cookieElem is an HTTP cookie of a network disk source
	// (<cookies><cookie name='...'>VALUE</cookie>): a session credential,
	// masked as well.
	cookieElem = regexp.MustCompile(`(<cookie\b[^>]*>)([^<]*)(</cookie>)`)
)

// maskSecrets returns doc with the value of every secret replaced by
// secretMask: passwd='***'. A masked value keeps the newlines it held, so
// line numbers do not move. Everything virtmq prints from a domain XML
// read with virt.XMLSecure goes through it.
func maskSecrets(doc []byte) []byte {
	doc = passwdAttr.ReplaceAllFunc(doc, func(m []byte) []byte {
		sub := passwdAttr.FindSubmatch(m)
		q, v := byte('\''), sub[2]
		if sub[2] == nil {
			q, v = '"', sub[3]
		}
		return slices.Concat(sub[1], []byte{q}, masked(v), []byte{q})
	})
	return cookieElem.ReplaceAllFunc(doc, func(m []byte) []byte {
		sub := cookieElem.FindSubmatch(m)
		return slices.Concat(sub[1], masked(sub[2]), sub[3])
	})
}

// masked is secretMask followed by the newlines of v.
func masked(v []byte) []byte {
	return append([]byte(secretMask), bytes.Repeat([]byte("\n"), bytes.Count(v, []byte("\n")))...)
}

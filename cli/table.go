package cli

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxTableWidth is the width tables fit by default: an 80- to
// 100-column terminal, a review comment, a ticket. -o wide prints every
// column in full.
const maxTableWidth = 100

// table is a text table printed with two spaces between columns.
type table struct {
	header []string
	rows   [][]string
	// shrink says which columns give way, in order, when the table is
	// wider than maxTableWidth: column index and the width it keeps at
	// least. A clipped cell ends in "…".
	shrink []shrinkCol
	// clipped is set by write when a cell was clipped.
	clipped bool
}

type shrinkCol struct {
	col, min int
	// left cuts the start of the cell instead of its end (file paths,
	// whose end tells them apart).
	left bool
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// dropColumns removes columns (indexes into the header as built) from the
// header, the rows and shrink.
func (t *table) dropColumns(cols ...int) {
	if len(cols) == 0 {
		return
	}
	keep := func(i int) bool { return !slices.Contains(cols, i) }
	newIndex := make([]int, len(t.header))
	j := 0
	for i := range t.header {
		newIndex[i] = j
		if keep(i) {
			j++
		}
	}
	filter := func(r []string) []string {
		var out []string
		for i, c := range r {
			if keep(i) {
				out = append(out, c)
			}
		}
		return out
	}
	t.header = filter(t.header)
	for i, r := range t.rows {
		t.rows[i] = filter(r)
	}
	var shrink []shrinkCol
	for _, s := range t.shrink {
		if keep(s.col) {
			s.col = newIndex[s.col]
			shrink = append(shrink, s)
		}
	}
	t.shrink = shrink
}

// write prints the table; wide prints every cell in full.
func (t *table) write(w io.Writer, wide bool) error {
	n := len(t.header)
	widths := make([]int, n)
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	total := 2 * (n - 1)
	for _, wd := range widths {
		total += wd
	}
	if !wide {
		for _, s := range t.shrink {
			if total <= maxTableWidth {
				break
			}
			cut := min(total-maxTableWidth, widths[s.col]-s.min)
			if cut > 0 {
				widths[s.col] -= cut
				total -= cut
			}
		}
	}
	var b strings.Builder
	for _, r := range append([][]string{t.header}, t.rows...) {
		b.Reset()
		for i, c := range r {
			if utf8.RuneCountInString(c) > widths[i] {
				if t.clipsLeft(i) {
					c = clipLeft(c, widths[i])
				} else {
					c = clip(c, widths[i])
				}
				t.clipped = true
			}
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		if _, err := fmt.Fprintln(w, strings.TrimRight(b.String(), " ")); err != nil {
			return err
		}
	}
	return nil
}

func (t *table) clipsLeft(col int) bool {
	for _, s := range t.shrink {
		if s.col == col {
			return s.left
		}
	}
	return false
}

// clipLeft is clip cutting the start: "…ata/web1.xml".
func clipLeft(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return "…" + string(r[len(r)-n+1:])
	}
	return s
}

// clippedNote is the legend line of a table with a clipped cell.
const clippedNote = "(… = cut to fit 100 columns; -o wide prints every column in full)"

// addOutputFlags adds -o FORMAT and --wide to a command with a table.
func addOutputFlags(fs *flag.FlagSet) (format *string, wide *bool) {
	format = fs.String("o", "", "output `format`: wide (every column, nothing cut), or json (as --json)")
	wide = fs.Bool("wide", false, "same as -o wide")
	return format, wide
}

// outputFormat checks -o: it returns wide and json, or an error for an
// unknown format.
func outputFormat(format string, wide, asJSON bool) (bool, bool, error) {
	switch format {
	case "":
	case "wide":
		wide = true
	case "json":
		asJSON = true
	default:
		return false, false, fmt.Errorf("-o %q: the formats are wide and json", format)
	}
	return wide, asJSON, nil
}

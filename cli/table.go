package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/virtmq/virtmq/internal/cmdline"
)

// table is a text table printed with two spaces between columns.
type table struct {
	header []string
	rows   [][]string
	// width is the width the table fits (Env.tableWidth); 0 is
	// defaultTableWidth. -o wide prints every column in full.
	width int
	// shrink says which columns give way, in order, when the table is
	// wider than width: column index and the width it keeps at least. A
	// clipped cell ends in "…".
	shrink []shrinkCol
	// color, when set, colours a body cell (column, text as printed)
	// after the layout, so that colour codes take no columns.
	color func(col int, cell string) string
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
	width := t.width
	if width <= 0 {
		width = defaultTableWidth
	}
	if !wide {
		for _, s := range t.shrink {
			if total <= width {
				break
			}
			cut := min(total-width, widths[s.col]-s.min)
			if cut > 0 {
				widths[s.col] -= cut
				total -= cut
			}
		}
	}
	var b strings.Builder
	for row, r := range append([][]string{t.header}, t.rows...) {
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
			pad := widths[i] - utf8.RuneCountInString(c) + 2
			if row > 0 && t.color != nil {
				c = t.color(i, c)
			}
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", pad))
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
func clippedNote(width int) string {
	return fmt.Sprintf("(… = cut to fit %d columns; -o wide prints every column in full)", width)
}

// addOutputFlags adds -o FORMAT and --wide to a command with a table;
// formats are those -o takes (wide, and json for the commands that print
// JSON). The flag set refuses any other format with the list.
func addOutputFlags(fs *flagSet, formats ...string) (format *cmdline.Enum, wide *bool) {
	format = cmdline.NewEnum("", formats...)
	what := "wide (every column, nothing cut)"
	if slices.Contains(formats, "json") {
		what += " or json (as --json)"
	}
	fs.Var(format, "o", "output `FORMAT`: "+what)
	wide = fs.Bool("wide", false, "same as -o wide")
	return format, wide
}

// outputConflict is the usage error of a table and JSON asked at once
// (--json -o wide, -o json --wide).
func outputConflict(format *cmdline.Enum, wide, asJSON bool) error {
	wide = wide || format.Value == "wide"
	asJSON = asJSON || format.Value == "json"
	if wide && asJSON {
		return fmt.Errorf("give --json (-o json) or -o wide (--wide), not both")
	}
	return nil
}

// outputFormat reads -o: it returns wide and json.
func outputFormat(format *cmdline.Enum, wide, asJSON bool) (bool, bool) {
	switch format.Value {
	case "wide":
		wide = true
	case "json":
		asJSON = true
	}
	return wide, asJSON
}

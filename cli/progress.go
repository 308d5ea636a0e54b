package cli

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// minProgressItems is the number of domains from which apply draws a
// progress line: below it the run is over before one would help.
const minProgressItems = 20

// progress is the one line "apply: 120/500 domains (...)" that apply keeps
// at the bottom of a terminal on long runs: drawn on stderr, rewritten in
// place with \r, cleared before anything else is printed. It draws only
// when Env.Terminal says stdout and stderr are a terminal, so logs and
// pipes never get it.
type progress struct {
	env   *Env
	total int
	every int // redraw every this many items
	shown bool
}

func newProgress(env *Env, total int) *progress {
	if !env.Terminal || total < minProgressItems {
		return &progress{}
	}
	return &progress{env: env, total: total, every: max(1, total/100)}
}

// update redraws the line after item n of total.
func (p *progress) update(n int, text string) {
	if p.env == nil || (n%p.every != 0 && n != p.total) {
		return
	}
	fmt.Fprintf(p.env.Stderr, "\r\033[Kapply: %d/%d domains (%s)", n, p.total, text)
	p.shown = true
}

// clear removes the line, so that the next output starts at column 1.
func (p *progress) clear() {
	if p.shown {
		fmt.Fprint(p.env.Stderr, "\r\033[K")
		p.shown = false
	}
}

// done clears the line at the end of the run: the summary says the same.
func (p *progress) done() { p.clear() }

// IsTerminal reports whether f is a terminal (a character device), without
// a dependency: what cmd/virtmq sets Env.Terminal from.
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// TerminalColumns returns the width of the terminal f is, from the
// TIOCGWINSZ ioctl; 0 when f is not a terminal or does not say.
func TerminalColumns(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}

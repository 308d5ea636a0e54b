package cli

import (
	"strconv"
	"strings"
)

// ANSI colours (SGR) of states and check results.
const (
	sgrRed    = "\033[31m"
	sgrGreen  = "\033[32m"
	sgrYellow = "\033[33m"
	sgrBold   = "\033[1m"
	sgrReset  = "\033[0m"
)

// colorOn decides --color: always and never say it; auto colours when
// stdout is a terminal, unless $NO_COLOR is set to anything
// (https://no-color.org) or $TERM is dumb.
func colorOn(env *Env, when string) bool {
	switch when {
	case "always":
		return true
	case "never":
		return false
	}
	getenv := env.getenv()
	if getenv("NO_COLOR") != "" || getenv("TERM") == "dumb" {
		return false
	}
	return env.StdoutTerminal
}

// paint wraps s in the colour sgr when the run colours its output.
func (env *Env) paint(sgr, s string) string {
	if !env.color || s == "" || sgr == "" {
		return s
	}
	return sgr + s + sgrReset
}

// wordColor is the colour of a result or state word: green for what is
// as it should be, yellow for what waits or was left alone, red for what
// failed.
func wordColor(word string) string {
	switch strings.ToLower(strings.TrimSpace(word)) {
	case "ok", "compliant", "complies", "redefined", "back and compliant":
		return sgrGreen
	case "fail", "failed", "left off", "error", "refused", "not connected":
		return sgrRed
	case "skip", "skipped", "pending-cold-boot", "pending-reboot", "would restart", "would-redefine",
		"transient", "excluded", "unmanaged", "observe", "rewritten", "retrying":
		return sgrYellow
	}
	return ""
}

// paintWord colours a result or state word by wordColor.
func (env *Env) paintWord(word string) string { return env.paint(wordColor(word), word) }

// getenv is env.Getenv, or no variables when it is nil.
func (env *Env) getenv() func(string) string {
	if env.Getenv == nil {
		return func(string) string { return "" }
	}
	return env.Getenv
}

// defaultTableWidth is the width tables fit when stdout is not a terminal
// and $COLUMNS is not set: an 80- to 100-column terminal, a review
// comment, a ticket.
const defaultTableWidth = 100

// minTableWidth is the narrowest width a table is fitted to.
const minTableWidth = 40

// tableWidth is the width tables fit: $COLUMNS, else the terminal's
// width, else 100; at least minTableWidth.
func (env *Env) tableWidth() int {
	if n, err := strconv.Atoi(strings.TrimSpace(env.getenv()("COLUMNS"))); err == nil && n > 0 {
		return max(n, minTableWidth)
	}
	if env.Columns > 0 {
		return max(env.Columns, minTableWidth)
	}
	return defaultTableWidth
}

// failColor is red when n things failed, no colour for none.
func failColor(n int) string {
	if n > 0 {
		return sgrRed
	}
	return ""
}

// paintLead colours the state word a status cell starts with
// ("pending-cold-boot: ...", "error; ..."), the rest as it is.
func (env *Env) paintLead(cell string) string {
	end := strings.IndexAny(cell, ":;(")
	if end < 0 {
		end = len(cell)
	}
	lead := strings.TrimRight(cell[:end], " ")
	if wordColor(lead) == "" {
		return cell
	}
	return env.paint(wordColor(lead), lead) + cell[len(lead):]
}

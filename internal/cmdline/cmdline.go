// Package cmdline gives virtmq's programs the command-line habits people
// bring from virsh, kubectl and GNU tools on top of the standard flag
// package: help that spells options --name (and -c, --connect for a short
// alias), flag errors in the same spelling, and options whose value is one
// of a fixed list that say the list when given something else.
package cmdline

import (
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// HelpWidth is the width the option descriptions are wrapped to.
const HelpWidth = 80

// descColumn is where descriptions start; a longer option line puts its
// description on the next line.
const descColumn = 28

// Options says how PrintOptions prints a flag set.
type Options struct {
	// Short maps a long option to its one-letter alias ("connect" → "c"):
	// both print on one line, "-c, --connect URI", and the alias alone is
	// left out.
	Short map[string]string
	// Hidden options are left out of the help.
	Hidden map[string]bool
}

// Name is how an option is written: -o for a one-letter one, else --name.
func Name(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// PrintOptions prints the options of fs in GNU style, sorted by name:
//
//	-c, --connect URI       libvirt connection URI, as virsh -c ...
//	    --timeout DURATION  give up after DURATION (default 2m)
//
// The value's placeholder is the back-quoted word of the usage (as
// flag.UnquoteUsage finds it) in capitals; a default other than the zero
// value is printed after the description.
func PrintOptions(w io.Writer, fs *flag.FlagSet, o Options) {
	alias := map[string]bool{}
	for _, s := range o.Short {
		alias[s] = true
	}
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		if o.Hidden[f.Name] || alias[f.Name] {
			return
		}
		placeholder, usage := flag.UnquoteUsage(f)
		spec := "      " + Name(f.Name)
		if s, ok := o.Short[f.Name]; ok {
			spec = "  -" + s + ", " + Name(f.Name)
		} else if len(f.Name) == 1 {
			spec = "  " + Name(f.Name)
		}
		if placeholder != "" {
			spec += " " + strings.ToUpper(placeholder)
		}
		if d := defaultText(f); d != "" {
			usage += " (default " + d + ")"
		}
		b.WriteString(spec)
		if len(spec) < descColumn-1 {
			b.WriteString(strings.Repeat(" ", descColumn-len(spec)))
		} else {
			b.WriteString("\n" + strings.Repeat(" ", descColumn))
		}
		b.WriteString(wrap(usage, descColumn, HelpWidth))
		b.WriteString("\n")
	})
	io.WriteString(w, b.String())
}

// defaultText is the default of f as help prints it, "" when it is the
// zero value (or false) or the usage says it already.
func defaultText(f *flag.Flag) string {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return ""
	}
	switch f.DefValue {
	case "", "0", "0s", "false", "[]":
		return ""
	}
	if strings.Contains(f.Usage, "(default") {
		return ""
	}
	if d, err := time.ParseDuration(f.DefValue); err == nil && strings.HasSuffix(f.DefValue, "s") {
		return Duration(d)
	}
	return f.DefValue
}

// Duration prints d without the zero units Go adds: 2m, 1h30m, 1.5s.
func Duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// wrap breaks text into lines of at most width columns, every line after
// the first indented by indent spaces (the first starts at indent).
func wrap(text string, indent, width int) string {
	var b strings.Builder
	col := indent
	for i, word := range strings.Fields(text) {
		if i > 0 {
			if col+1+len([]rune(word)) > width {
				b.WriteString("\n" + strings.Repeat(" ", indent))
				col = indent
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(word)
		col += len([]rune(word))
	}
	return b.String()
}

// HelpAsked reports whether args ask for help (-h, -help or --help)
// before a "--" ends the options: then the help a flag set prints goes
// to stdout, not stderr.
func HelpAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// singleDash is an option the flag package names with one dash in its
// errors: "flag provided but not defined: -policy".
var singleDash = regexp.MustCompile(`(^|[ :])-([A-Za-z0-9][-A-Za-z0-9]+)\b`)

// FlagError rewords an error of flag.FlagSet.Parse in the spelling the
// help uses: "unknown option --policy", "invalid value "x" for --parallel:
// ...", "option --policy needs a value".
func FlagError(err error) string {
	msg := err.Error()
	for _, r := range []struct{ from, to string }{
		{"flag provided but not defined: ", "unknown option "},
		{"flag needs an argument: ", "missing value of option "},
		{" for flag ", " for "},
		{"bad flag syntax: ", "bad option syntax: "},
	} {
		msg = strings.Replace(msg, r.from, r.to, 1)
	}
	return singleDash.ReplaceAllString(msg, "$1--$2")
}

// Enum is a flag value that is one of a fixed list; Set refuses anything
// else with the list ("want debug, info, warn or error").
type Enum struct {
	Value   string
	Allowed []string
}

// NewEnum returns an Enum holding def, one of allowed.
func NewEnum(def string, allowed ...string) *Enum { return &Enum{Value: def, Allowed: allowed} }

func (e *Enum) String() string {
	if e == nil {
		return ""
	}
	return e.Value
}

// Set implements flag.Value.
func (e *Enum) Set(s string) error {
	for _, a := range e.Allowed {
		if s == a {
			e.Value = s
			return nil
		}
	}
	return fmt.Errorf("want %s", OneOf(e.Allowed))
}

// OneOf lists words as "a, b or c".
func OneOf(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

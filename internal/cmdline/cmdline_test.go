package cmdline

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPrintOptions(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var uri string
	fs.StringVar(&uri, "c", "", "short for --connect `URI`")
	fs.StringVar(&uri, "connect", "", "libvirt connection `URI`")
	fs.Bool("json", false, "print JSON")
	fs.Bool("mode", true, "a hidden mode flag")
	fs.Duration("timeout", 2*time.Minute, "give up after `DURATION`")
	fs.String("policy", "", "policy `file`")
	fs.String("o", "", "output `format`")
	fs.Int("parallel", 1, "up to `K` at once")
	var b strings.Builder
	PrintOptions(&b, fs, Options{Short: map[string]string{"connect": "c"}, Hidden: map[string]bool{"mode": true}})
	want := `  -c, --connect URI         libvirt connection URI
      --json                print JSON
  -o FORMAT                 output format
      --parallel K          up to K at once (default 1)
      --policy FILE         policy file
      --timeout DURATION    give up after DURATION (default 2m)
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWrap(t *testing.T) {
	got := wrap(strings.Repeat("word ", 30), 28, 80)
	for i, l := range strings.Split(got, "\n") {
		if n := len(l) + map[bool]int{true: 28}[i == 0]; n > 80 {
			t.Errorf("line %d is %d wide: %q", i, n, l)
		}
	}
}

func TestFlagError(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Int("parallel", 1, "")
	fs.String("policy", "", "")
	fs.Var(NewEnum("info", "debug", "info"), "log-level", "")
	fs.String("o", "", "")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--frob"}, "unknown option --frob"},
		{[]string{"-x"}, "unknown option -x"},
		{[]string{"--policy"}, "missing value of option --policy"},
		{[]string{"-o"}, "missing value of option -o"},
		{[]string{"--parallel", "two"}, `invalid value "two" for --parallel: parse error`},
		{[]string{"--log-level", "loud"}, `invalid value "loud" for --log-level: want debug or info`},
	} {
		err := fs.Parse(tt.args)
		if err == nil || FlagError(err) != tt.want {
			t.Errorf("%q: %v → %q, want %q", tt.args, err, FlagError(errors.Unwrap(err)), tt.want)
		}
	}
}

func TestDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{2 * time.Minute: "2m", time.Hour: "1h", 90 * time.Minute: "1h30m", 1500 * time.Millisecond: "1.5s", 10 * time.Second: "10s"} {
		if got := Duration(d); got != want {
			t.Errorf("Duration(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestHelpAsked(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"--json", "dom.xml"}, false},
		{[]string{"dom.xml", "-h"}, true},
		{[]string{"-help"}, true},
		{[]string{"--json", "--help"}, true},
		{[]string{"--", "--help"}, false},
		{[]string{"--helpful"}, false},
	} {
		if got := HelpAsked(tt.args); got != tt.want {
			t.Errorf("HelpAsked(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}

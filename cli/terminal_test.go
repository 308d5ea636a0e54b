package cli

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

var ansi = regexp.MustCompile("\033\\[[0-9;]*m")

// TestTableWidthFromTerminal: tables fit $COLUMNS, else the terminal's
// width, else 100 columns; the legend says the width.
func TestTableWidthFromTerminal(t *testing.T) {
	files := realisticPlanFiles(t)
	for _, tt := range []struct {
		name    string
		columns string // $COLUMNS
		tty     int    // Env.Columns
		want    int
	}{
		{"not a terminal", "", 0, 100},
		{"COLUMNS=80", "80", 0, 80},
		{"COLUMNS wins over the tty", "72", 200, 72},
		{"a 90-column tty", "", 90, 90},
		{"a wide tty", "", 160, 160},
		{"COLUMNS=junk", "wide", 0, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRun(t, nil, map[string]string{"COLUMNS": tt.columns})
			r.env.Columns = tt.tty
			if code := Main(context.Background(), r.env, append([]string{"plan", "--policy", testPolicy}, files...)); code != ExitOK {
				t.Fatalf("exit %d: %s", code, r.stderr)
			}
			widest := 0
			for _, l := range strings.Split(r.stdout.String(), "\n") {
				if !strings.HasPrefix(l, "(") { // the legend lines are prose
					widest = max(widest, utf8.RuneCountInString(l))
				}
			}
			if widest > tt.want {
				t.Errorf("a line of %d columns, want at most %d:\n%s", widest, tt.want, r.stdout)
			}
			if tt.want < 120 {
				wantLines(t, "plan", r.stdout.String(), clippedNote(tt.want))
			} else if widest <= 100 {
				t.Errorf("a %d-column terminal gets a table of %d: it should use the room", tt.want, widest)
			}
		})
	}
}

// TestColorOnlyOnATerminal: states and OK/FAIL/SKIP are coloured only on
// a terminal, never with $NO_COLOR or --color=never, always with
// --color=always; colour never moves a column.
func TestColorOnlyOnATerminal(t *testing.T) {
	sock := serveStatus(t, testSnapshot())
	plain := ""
	for _, tt := range []struct {
		name  string
		tty   bool
		vars  map[string]string
		flag  string
		color bool
	}{
		{"pipe", false, nil, "", false},
		{"terminal", true, nil, "", true},
		{"terminal, NO_COLOR", true, map[string]string{"NO_COLOR": "1"}, "", false},
		{"terminal, NO_COLOR empty", true, map[string]string{"NO_COLOR": ""}, "", true},
		{"terminal, TERM=dumb", true, map[string]string{"TERM": "dumb"}, "", false},
		{"terminal, --color=never", true, nil, "--color=never", false},
		{"pipe, --color=always", false, nil, "--color=always", true},
		{"NO_COLOR, --color=always", false, map[string]string{"NO_COLOR": "1"}, "--color=always", true},
	} {
		r := newTestRun(t, nil, tt.vars)
		r.env.StdoutTerminal = tt.tty
		args := []string{"status", "--status-socket", sock}
		if tt.flag != "" {
			args = append(args, tt.flag)
		}
		Main(context.Background(), r.env, args)
		out := r.stdout.String()
		if got := ansi.MatchString(out); got != tt.color {
			t.Errorf("%s: coloured %v, want %v:\n%q", tt.name, got, tt.color, out)
		}
		if !tt.color {
			plain = out
		} else if plain != "" && ansi.ReplaceAllString(out, "") != plain {
			t.Errorf("%s: without its colours the table differs:\n%s\nwant:\n%s", tt.name, ansi.ReplaceAllString(out, ""), plain)
		}
	}

	var b bytes.Buffer
	env := &Env{Stdout: &b, color: true}
	printVerify(env, verifyReport{Domain: "web1", Checks: []check{{Status: checkOK, Message: "a"}, {Status: checkFail, Message: "b"}, {Status: checkSkip, Message: "c"}}})
	wantLines(t, "verify", b.String(), "\033[32mOK\033[0m   a\n", "\033[31mFAIL\033[0m b\n", "\033[33mSKIP\033[0m c\n", "\033[31mdoes NOT comply")
}

// Package docs_test keeps the documentation true: the commands README.md,
// docs/*.md and the man pages show are run, and what they print is compared
// with what the page says.
//
// In Markdown, a ```console block is a transcript: each "$ virtmq ..." line
// is run (in process, through cli.Main, from the repository root, with no
// policy installed and no libvirt) and the lines after it, up to the next
// "$ " line, are its expected output, stdout and stderr interleaved as
// printed, then "[exit N]" when it exits N ≠ 0. A ```console libvirt block
// needs a libvirt host: the e2e suite runs its commands (e2e scenario
// doc_commands), as it runs the man pages' EXAMPLES. A ```yaml file=PATH
// block must be byte for byte the file PATH (the commands use it).
//
// After a deliberate change of output, `go test ./docs -update` rewrites the
// transcripts and the example files from what the commands print; review
// the diff.
package docs_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/virtmq/virtmq/cli"
	"github.com/virtmq/virtmq/internal/logging"
	"github.com/virtmq/virtmq/internal/virt"
)

var update = flag.Bool("update", false, "rewrite the transcripts and example files from what the commands print")

// pages are the Markdown pages whose blocks are checked, from the root.
func pages(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{"README.md"}, docs...)
}

// block is one fenced block of a Markdown page.
type block struct {
	info   string   // the fence's info string: "console", "yaml file=x"
	indent string   // the fence's indentation (a block inside a list item)
	start  int      // index of the first content line
	lines  []string // the content, the indentation taken off
}

// fencedBlocks returns the fenced blocks of a page split in lines.
func fencedBlocks(lines []string) []block {
	var out []block
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimLeft(lines[i], " ")
		if !strings.HasPrefix(trimmed, "```") {
			continue
		}
		b := block{info: strings.TrimSpace(trimmed[3:]), indent: lines[i][:len(lines[i])-len(trimmed)], start: i + 1}
		for i++; i < len(lines) && strings.TrimLeft(lines[i], " ") != "```"; i++ {
			b.lines = append(b.lines, strings.TrimPrefix(lines[i], b.indent))
		}
		out = append(out, b)
	}
	return out
}

// step is one command of a transcript and what it should print.
type step struct {
	command string
	want    []string
}

func steps(b block) []step {
	var out []step
	for _, l := range b.lines {
		if cmd, ok := strings.CutPrefix(l, "$ "); ok {
			out = append(out, step{command: cmd})
		} else if len(out) > 0 {
			out[len(out)-1].want = append(out[len(out)-1].want, l)
		}
	}
	return out
}

func (s step) text() []string {
	return append([]string{"$ " + s.command}, s.want...)
}

// inRoot makes the test run from the repository root, where the pages'
// paths (hooks/testdata/web1.xml) start.
func inRoot(t *testing.T) {
	t.Helper()
	t.Chdir("..")
}

func TestTranscripts(t *testing.T) {
	inRoot(t)
	ran := 0
	for _, page := range pages(t) {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		changed := false
		blocks := fencedBlocks(lines)
		// Rewrite from the last block up, so earlier line numbers hold.
		for bi := len(blocks) - 1; bi >= 0; bi-- {
			b := blocks[bi]
			if b.info != "console" {
				continue
			}
			var got []string
			for _, s := range steps(b) {
				ran++
				out, code := run(t, s.command)
				have := step{command: s.command, want: out}
				if code != 0 {
					have.want = append(have.want, fmt.Sprintf("[exit %d]", code))
				}
				if !slicesEqual(have.want, s.want) && !*update {
					t.Errorf("%s:%d: $ %s\n--- the page says:\n%s\n--- the command prints:\n%s",
						page, b.start+1, s.command, strings.Join(s.want, "\n"), strings.Join(have.want, "\n"))
				}
				got = append(got, have.text()...)
			}
			if *update && !slicesEqual(got, b.lines) {
				for i := range got {
					if got[i] != "" {
						got[i] = b.indent + got[i]
					}
				}
				lines = append(lines[:b.start], append(got, lines[b.start+len(b.lines):]...)...)
				changed = true
			}
		}
		if changed {
			if err := os.WriteFile(page, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: transcripts rewritten", page)
		}
	}
	if ran < 8 {
		t.Fatalf("only %d transcript commands found: is the console block syntax still the one this test reads?", ran)
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// run runs one transcript command line in process and returns what it
// printed, in lines, and its exit code.
func run(t *testing.T, line string) ([]string, int) {
	t.Helper()
	args, stdin, err := parseCommand(line)
	if err != nil {
		t.Fatalf("$ %s: %v", line, err)
	}
	// No policy is installed: the built-in default is used, and said so
	// with the path a host would have.
	fakeDefault := filepath.Join(t.TempDir(), "etc", "virtmq", "policy.yaml")
	var out bytes.Buffer
	env := &cli.Env{
		Stdin:             strings.NewReader(""),
		Stdout:            &out,
		Stderr:            &out,
		Getenv:            func(string) string { return "" },
		Logger:            logging.New(logging.Stderr, &out, slog.LevelInfo, "virtmq"),
		DefaultPolicyPath: fakeDefault,
		Dial: func(context.Context, virt.URI) (virt.Conn, error) {
			return nil, fmt.Errorf("no libvirt in a transcript: put this command in a console libvirt block")
		},
	}
	if stdin != "" {
		data, err := os.ReadFile(stdin)
		if err != nil {
			t.Fatalf("$ %s: %v", line, err)
		}
		env.Stdin = bytes.NewReader(data)
	}
	code := cli.Main(context.Background(), env, args)
	text := strings.ReplaceAll(out.String(), fakeDefault, "/etc/virtmq/policy.yaml")
	return strings.Split(strings.TrimSuffix(text, "\n"), "\n"), code
}

// parseCommand splits a transcript line the way a shell would for the few
// forms the pages use: words, 'single' and "double" quotes (no expansion),
// "< FILE", and "cat FILE | virtmq ...". It returns the arguments after
// virtmq (or bin/virtmq) and the file for stdin.
func parseCommand(line string) (args []string, stdin string, err error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				return nil, "", fmt.Errorf("unterminated quote")
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			i = len(line)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) >= 4 && words[0] == "cat" && words[2] == "|" {
		stdin, words = words[1], words[3:]
	}
	if n := len(words); n >= 2 && words[n-2] == "<" {
		stdin, words = words[n-1], words[:n-2]
	}
	if len(words) == 0 || words[0] != "virtmq" && words[0] != "bin/virtmq" {
		return nil, "", fmt.Errorf("a transcript runs virtmq only (got %q)", line)
	}
	for _, w := range words[1:] {
		if w == "|" || w == ">" || w == "<" || w == ";" || w == "&&" {
			return nil, "", fmt.Errorf("%q: only \"cat FILE |\" and \"< FILE\" are understood", w)
		}
	}
	return words[1:], stdin, nil
}

// TestExampleFiles checks that each ```yaml file=PATH block is the file
// PATH, so the file a transcript lints is the one the page shows.
func TestExampleFiles(t *testing.T) {
	inRoot(t)
	n := 0
	for _, page := range pages(t) {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range fencedBlocks(strings.Split(string(data), "\n")) {
			_, rest, ok := strings.Cut(b.info, "file=")
			if !ok {
				continue
			}
			n++
			path := strings.Fields(rest)[0]
			want := strings.Join(b.lines, "\n") + "\n"
			got, err := os.ReadFile(path)
			if *update && string(got) != want {
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s:%d: %v", page, b.start, err)
			} else if string(got) != want {
				t.Errorf("%s:%d: the block differs from %s (go test ./docs -update rewrites the file)", page, b.start, path)
			}
		}
	}
	if n == 0 {
		t.Fatal("no file= blocks found")
	}
}

// cliCommand finds an invocation of a virtmq command in a line of a block.
func cliCommand() *regexp.Regexp {
	names := []string{"help"}
	for _, c := range cli.Commands() {
		names = append(names, c.Name)
	}
	return regexp.MustCompile(`(^|[\s|;(])(sudo )?(bin/)?virtmq (` + strings.Join(names, "|") + `)\b`)
}

// TestEveryCommandRuns fails on a virtmq command shown in a plain block:
// it must be a transcript (run here) or in a console libvirt block (run by
// e2e), or it can drift.
func TestEveryCommandRuns(t *testing.T) {
	inRoot(t)
	command := cliCommand()
	for _, page := range pages(t) {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range fencedBlocks(strings.Split(string(data), "\n")) {
			if strings.HasPrefix(b.info, "console") || b.info == "yaml" || strings.HasPrefix(b.info, "yaml ") || b.info == "xml" || b.info == "json" {
				continue
			}
			for i, l := range b.lines {
				if command.MatchString(l) {
					t.Errorf("%s:%d: %q is in a plain block: make it a ```console transcript (or ```console libvirt when it needs libvirt)", page, b.start+i+1, l)
				}
			}
		}
	}
}

// LibvirtCommands is what e2e runs: the "$ " lines of every console
// libvirt block. TestLibvirtCommandsParse keeps them well formed.
func libvirtCommands(t *testing.T) []string {
	var out []string
	for _, page := range pages(t) {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range fencedBlocks(strings.Split(string(data), "\n")) {
			if b.info == "console libvirt" {
				for _, s := range steps(b) {
					out = append(out, s.command)
				}
			}
		}
	}
	return out
}

func TestLibvirtCommandsParse(t *testing.T) {
	inRoot(t)
	cmds := libvirtCommands(t)
	if len(cmds) == 0 {
		t.Fatal("no console libvirt blocks found")
	}
	for _, c := range cmds {
		if _, _, err := parseCommand(strings.TrimPrefix(c, "sudo ")); err != nil {
			t.Errorf("$ %s: %v", c, err)
		}
	}
}

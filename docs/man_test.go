package docs_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/virtmq/virtmq/cli"
	"github.com/virtmq/virtmq/policy"
)

// The flags a man page or a help text names exist, and every flag a
// command has is in its man page section: both directions, per command.

// roffText turns roff source into plain text: escapes and fonts off.
func roffText(s string) string {
	r := strings.NewReplacer(`\-`, "-", `\fB`, "", `\fR`, "", `\fI`, "", `\fP`, "", `\(aq`, "'", `\(dq`, `"`, `\(em`, "—", `\&`, "")
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, `.\"`) || strings.HasPrefix(l, `'\"`) {
			continue
		}
		// .B, .BR, .RB, .TP, ...: keep the words, drop the macro.
		if strings.HasPrefix(l, ".") {
			if i := strings.IndexByte(l, ' '); i > 0 {
				l = l[i+1:]
			} else {
				l = ""
			}
			l = strings.ReplaceAll(l, `"`, "")
		}
		out = append(out, r.Replace(l))
	}
	return strings.Join(out, "\n")
}

// foreign are other programs' flags the pages mention.
var foreign = []string{"dumpxml --inactive", "ethtool -L", "ethtool -l", "virsh -c", "ethtool -L IF", "ssh -o", "ip -d"}

// flagRef finds a flag: --name (dots inside, as in --web.config.file) or -x.
var flagRef = regexp.MustCompile(`(?:^|[\s\[(|,/"])(--[a-zA-Z][a-zA-Z0-9.-]*[a-zA-Z0-9]|-[a-zA-Z])(?:[^a-zA-Z0-9-]|$)`)

// flagsIn returns the flags text names, without dashes.
func flagsIn(text string) map[string]bool {
	for _, f := range foreign {
		text = strings.ReplaceAll(text, f, "")
	}
	out := map[string]bool{}
	for _, m := range flagRef.FindAllStringSubmatch(text, -1) {
		out[strings.TrimLeft(m[1], "-")] = true
	}
	delete(out, "help")
	delete(out, "h")
	return out
}

// manSections splits a man page's COMMANDS section into one text per
// command, keyed by the command as its .TP line names it ("apply",
// "apply --cold-boot").
func manSections(t *testing.T, page, heading string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	src := string(data)
	i := strings.Index(src, "\n.SH "+heading+"\n")
	if i < 0 {
		t.Fatalf("%s: no .SH %s", page, heading)
	}
	src = src[i+len(heading)+5:]
	if j := strings.Index(src, "\n.SH "); j >= 0 {
		src = src[:j]
	}
	out := map[string]string{}
	var name string
	lines := strings.Split(src, "\n")
	for k := 0; k < len(lines); k++ {
		if lines[k] == ".TP" && k+1 < len(lines) && strings.HasPrefix(lines[k+1], `\fB`) {
			head := roffText(lines[k+1])
			name = strings.Fields(head)[0]
			if f := strings.Fields(head); len(f) > 1 && strings.HasPrefix(f[1], "--cold-boot") {
				name += " --cold-boot"
			}
		}
		if name != "" {
			out[name] += lines[k] + "\n"
		}
	}
	return out
}

// helpFlags parses a --help text's option list: each line that starts with
// a flag gives one group of names (a flag and its aliases: the names on the
// line, and the one a "short for --x ARG" or "same as -x ARG" description
// names).
func helpFlags(help string) [][]string {
	var groups [][]string
	lines := strings.Split(help, "\n")
	inOptions := false
	for i, l := range lines {
		if strings.HasPrefix(l, "Options") {
			inOptions = true
			continue
		}
		trimmed := strings.TrimLeft(l, " ")
		if !inOptions || !strings.HasPrefix(trimmed, "-") || len(l)-len(trimmed) > 6 {
			continue
		}
		head, _, _ := strings.Cut(trimmed, "  ")
		head, _, _ = strings.Cut(head, "\t")
		var g []string
		for _, w := range strings.FieldsFunc(head, func(r rune) bool { return r == ' ' || r == ',' || r == '=' }) {
			if name := strings.TrimLeft(w, "-"); strings.HasPrefix(w, "-") && name != "" {
				g = append(g, name)
			}
		}
		desc := strings.TrimSpace(strings.TrimPrefix(trimmed, head))
		if desc == "" && i+1 < len(lines) {
			desc = strings.TrimSpace(lines[i+1])
		}
		for _, p := range []string{"short for ", "same as "} {
			if rest, ok := strings.CutPrefix(desc, p); ok && len(strings.Fields(rest)) <= 2 {
				g = append(g, strings.TrimLeft(strings.Fields(rest)[0], "-"))
			}
		}
		if len(g) > 0 {
			groups = append(groups, g)
		}
	}
	// An alias line ("-c URI  short for --connect URI") joins the group of
	// the flag it names.
	for i := 0; i < len(groups); i++ {
		for j := 0; j < len(groups); j++ {
			if i != j && len(groups[i]) > 0 && len(groups[j]) > 0 && slices.Contains(groups[i], groups[j][0]) {
				groups[i] = append(groups[i], groups[j]...)
				slices.Sort(groups[i])
				groups[i] = slices.Compact(groups[i])
				groups[j] = nil
			}
		}
	}
	return slices.DeleteFunc(groups, func(g []string) bool { return len(g) == 0 })
}

// cliHelp runs virtmq ARGS... --help in process.
func cliHelp(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	if code := cli.Main(context.Background(), env, append(args, "--help")); code != 0 {
		t.Fatalf("virtmq %s --help: exit %d\n%s", strings.Join(args, " "), code, out.String())
	}
	return out.String()
}

// checkFlags compares one command's flag groups with the text that
// documents it, both ways.
func checkFlags(t *testing.T, what string, groups [][]string, doc string) {
	t.Helper()
	named := flagsIn(roffText(doc))
	have := map[string]bool{}
	for _, g := range groups {
		for _, f := range g {
			have[f] = true
		}
		if slices.Contains(g, "help") {
			continue // every program has it; the pages say so once
		}
		if !slices.ContainsFunc(g, func(f string) bool { return named[f] }) {
			t.Errorf("%s: the command has --%s, its man page section does not name it", what, strings.Join(g, "/"))
		}
	}
	for f := range named {
		if !have[f] {
			t.Errorf("%s: the man page names %s, the command has no such flag", what, dashes(f))
		}
	}
}

func dashes(f string) string {
	if len(f) == 1 {
		return "-" + f
	}
	return "--" + f
}

func TestManFlagsVirtmq(t *testing.T) {
	inRoot(t)
	sections := manSections(t, "packaging/man/virtmq.8", "COMMANDS")
	for _, c := range cli.Commands() {
		doc, ok := sections[c.Name]
		if !ok {
			t.Errorf("virtmq(8) has no COMMANDS entry for %s", c.Name)
			continue
		}
		checkFlags(t, "virtmq "+c.Name, helpFlags(cliHelp(t, c.Name)), doc)
	}
	checkFlags(t, "virtmq apply --cold-boot", helpFlags(cliHelp(t, "apply", "--cold-boot")), sections["apply --cold-boot"])
	if len(sections) != len(cli.Commands())+1 {
		t.Errorf("virtmq(8) COMMANDS has %d entries, virtmq has %d commands (+ apply --cold-boot)", len(sections), len(cli.Commands()))
	}
}

// TestManFlagsSynopsis checks each command's usage line (its --help and
// the README's command table) names only flags it has.
func TestManFlagsSynopsis(t *testing.T) {
	inRoot(t)
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `virtmq ([a-z]+)( --cold-boot)?([^`]*)`")
	rows := map[string]string{}
	for _, l := range strings.Split(string(readme), "\n") {
		if m := row.FindStringSubmatch(l); m != nil {
			rows[m[1]+m[2]] += m[3] + " "
		}
	}
	check := func(name string, args ...string) {
		help := cliHelp(t, args...)
		have := map[string]bool{}
		for _, g := range helpFlags(help) {
			for _, f := range g {
				have[f] = true
			}
		}
		usage, _, _ := strings.Cut(help, "\n")
		// The help's prose, without its option list and without what it
		// says of other commands ("see virtmq apply --cold-boot --help").
		prose, _, _ := strings.Cut(help, "\nOptions")
		prose = regexp.MustCompile(`"?virtmq [a-z-]+( --[a-z-]+)* --help"?`).ReplaceAllString(prose, "")
		for what, text := range map[string]string{"--help usage line": usage, "--help text": prose, "README.md's command table": rows[name],
			"virtmq(8)'s EXAMPLES": rows[name+"\x00example"]} {
			for f := range flagsIn(strings.ReplaceAll(text, `\|`, "|")) {
				if !have[f] {
					t.Errorf("virtmq %s: %s names %s, the command has no such flag", name, what, dashes(f))
				}
			}
		}
	}
	// virtmq(8)'s EXAMPLES: each virtmq line's flags, as the README rows.
	man, err := os.ReadFile("packaging/man/virtmq.8")
	if err != nil {
		t.Fatal(err)
	}
	_, ex, _ := strings.Cut(string(man), "\n.SH EXAMPLES\n")
	ex, _, _ = strings.Cut(ex, "\n.SH ")
	examples := 0
	for _, l := range strings.Split(roffText(ex), "\n") {
		_, cmdline, ok := strings.Cut(l, "virtmq ")
		if !ok {
			continue
		}
		cmdline, _, _ = strings.Cut(cmdline, ";")
		f := strings.Fields(cmdline)
		name := f[0]
		if name == "help" {
			continue
		}
		if slices.Contains(f, "--cold-boot") {
			name = "apply --cold-boot"
		}
		examples++
		rows[name+"\x00example"] = cmdline
	}
	if examples < 5 {
		t.Fatalf("virtmq(8) EXAMPLES: only %d virtmq lines found", examples)
	}
	for _, c := range cli.Commands() {
		check(c.Name, c.Name)
	}
	check("apply --cold-boot", "apply", "--cold-boot")
	if len(rows) < 8 {
		t.Fatalf("README.md's command table: only %d rows found", len(rows))
	}
}

// TestManFlagsAgent checks virtmq-agent(8): SYNOPSIS and OPTIONS against
// the daemon's flags.
func TestManFlagsAgent(t *testing.T) {
	inRoot(t)
	bin := filepath.Join(t.TempDir(), "virtmq-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/virtmq-agent").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	help, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("virtmq-agent --help: %v\n%s", err, help)
	}
	groups := helpFlags(string(help))
	data, err := os.ReadFile("packaging/man/virtmq-agent.8")
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	section := func(h string) string {
		i := strings.Index(page, "\n.SH "+h+"\n")
		if i < 0 {
			t.Fatalf("virtmq-agent(8): no %s", h)
		}
		s := page[i+1:]
		if j := strings.Index(s[4:], "\n.SH "); j >= 0 {
			s = s[:j+4]
		}
		return s
	}
	have := map[string]bool{}
	for _, g := range groups {
		for _, f := range g {
			have[f] = true
		}
	}
	prose, _, _ := strings.Cut(string(help), "\nOptions")
	for f := range flagsIn(prose) {
		if !have[f] {
			t.Errorf("virtmq-agent --help names %s, the daemon has no such flag", dashes(f))
		}
	}
	checkFlags(t, "virtmq-agent(8) SYNOPSIS", groups, section("SYNOPSIS"))
	checkFlags(t, "virtmq-agent(8) OPTIONS", groups, section("OPTIONS"))
}

// TestManPolicyExample loads virtmq-policy(5)'s EXAMPLE policy.
func TestManPolicyExample(t *testing.T) {
	inRoot(t)
	data, err := os.ReadFile("packaging/man/virtmq-policy.5")
	if err != nil {
		t.Fatal(err)
	}
	_, ex, ok := strings.Cut(string(data), "\n.SH EXAMPLE\n")
	if !ok {
		t.Fatal("virtmq-policy(5) has no EXAMPLE")
	}
	_, ex, _ = strings.Cut(ex, ".nf\n")
	ex, _, _ = strings.Cut(ex, ".fi\n")
	text := strings.NewReplacer(`\-`, "-", `\(aq`, "'", `\(dq`, `"`, `\e`, `\`).Replace(ex)
	p, err := policy.Parse("virtmq-policy.5 EXAMPLE", []byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if len(p.Rules()) == 0 {
		t.Errorf("the example has no rule:\n%s", text)
	}
}

// TestManFlagsHook checks virtmq-hook(8): SYNOPSIS and OPTIONS against the
// hook's options.
func TestManFlagsHook(t *testing.T) {
	inRoot(t)
	bin := filepath.Join(t.TempDir(), "virtmq-hook")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/virtmq-hook").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	help, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("virtmq-hook --help: %v\n%s", err, help)
	}
	groups := helpFlags(string(help))
	if len(groups) < 2 {
		t.Fatalf("virtmq-hook --help: only %d options found:\n%s", len(groups), help)
	}
	data, err := os.ReadFile("packaging/man/virtmq-hook.8")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"SYNOPSIS", "OPTIONS"} {
		_, sec, ok := strings.Cut(string(data), "\n.SH "+h+"\n")
		if !ok {
			t.Fatalf("virtmq-hook(8): no %s", h)
		}
		sec, _, _ = strings.Cut(sec, "\n.SH ")
		checkFlags(t, "virtmq-hook(8) "+h, groups, sec)
	}
}

// TestManExamplesRun runs virtmq(8)'s EXAMPLES that need no libvirt in
// process (e2e's doc_commands runs them all): each exits 0. The drop-in
// they name is docs/policy.md's example, docs/examples/lab/.
func TestManExamplesRun(t *testing.T) {
	inRoot(t)
	data, err := os.ReadFile("packaging/man/virtmq.8")
	if err != nil {
		t.Fatal(err)
	}
	_, ex, _ := strings.Cut(string(data), "\n.SH EXAMPLES\n")
	ex, _, _ = strings.Cut(ex, "\n.SH ")
	offline := map[string]bool{"lint": true, "help": true, "mode": true, "rewrite": true, "completion": true}
	n := 0
	for _, l := range strings.Split(roffText(ex), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "virtmq" || !offline[f[1]] || strings.ContainsAny(l, "|;") {
			continue
		}
		n++
		line := strings.ReplaceAll(l, "/etc/virtmq/", "docs/examples/lab/")
		if out, code := run(t, line); code != 0 {
			t.Errorf("virtmq(8) EXAMPLES: $ %s: exit %d\n%s", l, code, strings.Join(out, "\n"))
		}
	}
	if n < 3 {
		t.Fatalf("virtmq(8) EXAMPLES: only %d commands without libvirt found", n)
	}
}

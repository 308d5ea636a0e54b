package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// TestJSONFormatVersionAndEmptyLists: every JSON document starts with
// format_version 1, prints empty lists as [] (never null) and says which
// input failed.
func TestJSONFormatVersionAndEmptyLists(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.xml")
	os.WriteFile(bad, []byte("<domain><name>x</name"), 0o644)
	pol := filepath.Join(dir, "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nmode: strict\n"), 0o644)
	empty := serveStatus(t, status.Snapshot{Libvirt: status.Libvirt{Connected: true}})

	for _, tt := range []struct {
		args     []string
		wantCode int
		want     []string
	}{
		{[]string{"plan", "--json", bad, filepath.Join(dir, "missing.xml")}, ExitFailure,
			[]string{`"domains": []`, `"file": "` + bad + `"`, `"file": "` + filepath.Join(dir, "missing.xml") + `"`}},
		{[]string{"plan", "-o", "json", web1}, ExitOK, []string{`"errors": []`, `"domain": "web1"`}},
		{[]string{"lint", "--json"}, ExitOK, []string{`"ok": true`, `"errors": []`, `"severity": "note"`, `"file": "(embedded default)"`}},
		{[]string{"lint", "--json", pol}, ExitFailure, []string{`"ok": false`, `"line": 2`, `"column": 7`, `"path": "mode"`, `"sources": []`}},
		{[]string{"status", "--json", "--status-socket", empty}, ExitOK, []string{`"domains": []`, `"sources": []`}},
		// libvirt failed, the policy loaded: its files are named.
		{[]string{"verify", "--json", "nope"}, ExitFailure, []string{`"error": "cannot connect to libvirt`, `"checks": []`, `"policy": [
    "(embedded default)"
  ]`}},
		{[]string{"verify", "--json", "--policy", pol, "nope"}, ExitFailure, []string{`"error": "load policy: `, `"checks": []`, `"policy": []`}},
	} {
		r := newTestRun(t, nil, nil)
		code := Main(context.Background(), r.env, tt.args)
		out := r.stdout.String()
		if code != tt.wantCode {
			t.Errorf("%v: exit %d, want %d; stderr %s", tt.args, code, tt.wantCode, r.stderr)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Errorf("%v: not one JSON document: %v\n%s", tt.args, err, out)
			continue
		}
		if doc["format_version"] != 1.0 {
			t.Errorf("%v: format_version = %v, want 1", tt.args, doc["format_version"])
		}
		if strings.Contains(out, "null") {
			t.Errorf("%v: prints null:\n%s", tt.args, out)
		}
		wantLines(t, fmt.Sprint(tt.args), out, tt.want...)
	}
}

// realisticPlanFiles writes domain XMLs with long names, paths and
// reasons: what plan prints for a real fleet.
func realisticPlanFiles(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "var", "lib", "virtmq-exports", "hypervisor-rack12-node07")
	os.MkdirAll(dir, 0o755)
	web := string(readFixture(t, "web.xml"))
	var files []string
	for _, name := range []string{"production-database-primary-eu-west-1", "web"} {
		f := filepath.Join(dir, name+".xml")
		os.WriteFile(f, []byte(strings.Replace(web, "<name>web</name>", "<name>"+name+"</name>", 1)), 0o644)
		files = append(files, f)
	}
	return files
}

// TestTablesFit100Columns: plan, status and apply fit 100 columns by
// default, and -o wide prints every cell in full.
func TestTablesFit100Columns(t *testing.T) {
	files := realisticPlanFiles(t)
	check := func(what, out string) {
		t.Helper()
		for _, l := range strings.Split(out, "\n") {
			if n := utf8.RuneCountInString(l); n > defaultTableWidth {
				t.Errorf("%s: a line of %d columns:\n%s\nin:\n%s", what, n, l, out)
			}
		}
	}
	r := newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, append([]string{"plan", "--policy", testPolicy}, files...)); code != ExitOK {
		t.Fatalf("plan: exit %d: %s", code, r.stderr)
	}
	out := r.stdout.String()
	check("plan", out)
	wantLines(t, "plan", out, "FILE ", "…", clippedNote(defaultTableWidth), "(* = the definition changes")
	wantNot(t, "plan", out, "TYPE", "MODEL")

	r = newTestRun(t, nil, nil)
	Main(context.Background(), r.env, append([]string{"plan", "-o", "wide", "--policy", testPolicy}, files...))
	wantLines(t, "plan -o wide", r.stdout.String(), files[0], "production-database-primary-eu-west-1", "TYPE", "MODEL", "model e1000 is not virtio")
	wantNot(t, "plan -o wide", r.stdout.String(), "…")

	sock := serveStatus(t, testSnapshot())
	r = newTestRun(t, nil, nil)
	Main(context.Background(), r.env, []string{"status", "--status-socket", sock})
	check("status", r.stdout.String())
	r = newTestRun(t, nil, nil)
	Main(context.Background(), r.env, []string{"status", "--wide", "--status-socket", sock})
	wantLines(t, "status --wide", r.stdout.String(), "QMP VQS", "would-redefine: mode observe: the agent would redefine it; would: redefine")

	fake := virttest.New()
	for _, f := range files {
		b, _ := os.ReadFile(f)
		b = []byte(strings.Replace(string(b), "0b6c2f6e-3d41-4d6a-9c0e-6f1b7a2e9d01", fmt.Sprintf("0b6c2f6e-3d41-4d6a-9c0e-6f1b7a2e9d%02d", len(f)%100), 1))
		if _, err := fake.Define(b); err != nil {
			t.Fatal(err)
		}
	}
	r = newTestRun(t, fake, nil)
	Main(context.Background(), r.env, []string{"apply", "--dry-run", "--all", "--policy", testPolicy})
	for _, l := range strings.Split(r.stdout.String(), "\n") {
		if strings.HasPrefix(l, "  52:54") && utf8.RuneCountInString(l) > defaultTableWidth {
			t.Errorf("apply: a plan line of %d columns: %s", utf8.RuneCountInString(l), l)
		}
	}
}

// TestPlanLegendOnlyWhenNeeded: the "*" legend only with a row that
// changes; one file, no FILE column.
func TestPlanLegendOnlyWhenNeeded(t *testing.T) {
	env, out, _ := testEnv(t, "")
	Main(context.Background(), env, []string{"plan", "../hooks/testdata/web1-compliant.xml"})
	wantNot(t, "plan of a compliant domain", out.String(), "(* =", "…", "FILE")
	env, out, _ = testEnv(t, "")
	Main(context.Background(), env, []string{"plan", web1})
	wantLines(t, "plan of a changing domain", out.String(), "4 *", "(* = the definition changes")
}

func TestHelpCommand(t *testing.T) {
	for _, c := range Commands() {
		env, out, _ := testEnv(t, "")
		if code := Main(context.Background(), env, []string{"help", c.Name}); code != ExitOK {
			t.Errorf("help %s: exit %d", c.Name, code)
		}
		env2, out2, _ := testEnv(t, "")
		Main(context.Background(), env2, []string{c.Name, "--help"})
		if out.String() != out2.String() || !strings.HasPrefix(out.String(), "Usage: virtmq "+c.Name) {
			t.Errorf("help %s printed %q, %s --help %q", c.Name, out, c.Name, out2)
		}
	}
	env, _, errOut := testEnv(t, "")
	if code := Main(context.Background(), env, []string{"help", "explain"}); code != ExitUsage || !strings.Contains(errOut.String(), `unknown command "explain"`) {
		t.Errorf("help of an unknown command: exit %d, %q", code, errOut)
	}
}

// TestLintFiles: virtmq lint FILE... checks each file like yamllint; a
// file in policy.d/ is checked as a drop-in, by itself.
func TestLintFiles(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "policy.yaml")
	os.WriteFile(main, []byte("version: 1\nmode: observe\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "policy.d"), 0o755)
	drop := filepath.Join(dir, "policy.d", "50-x.yaml")
	os.WriteFile(drop, []byte("rules:\n  - name: x\n    match: {domain: [x]}\n    exclude: true\n"), 0o644)
	yml := filepath.Join(dir, "policy.d", "60-y.yml")
	os.WriteFile(yml, []byte("mode: enforce\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("version: 1\nrules:\n  - name: web\n    match:\n      domain: *web\n"), 0o644)

	env, out, _ := testEnv(t, "")
	if code := Main(context.Background(), env, []string{"lint", main, drop}); code != ExitOK {
		t.Errorf("lint main drop-in: exit %d\n%s", code, out)
	}
	wantLines(t, "lint", out.String(),
		yml+": warning: ignored: drop-ins must end in .yaml, not .yml (rename it to 60-y.yaml)",
		main+", "+drop+": ok (mode observe, on_error allow, rules: 1, warnings: 1)",
		drop+": ok (a drop-in checked by itself: rules: 1)")

	env, out, _ = testEnv(t, "")
	if code := Main(context.Background(), env, []string{"lint", main, bad}); code != ExitFailure {
		t.Errorf("lint with a bad file: exit %d", code)
	}
	wantLines(t, "lint", out.String(), bad+`:5:15: invalid YAML: unknown anchor "web"`, main+", "+drop+": ok")

	env, _, errOut := testEnv(t, "")
	if code := Main(context.Background(), env, []string{"lint", "--policy", main, bad}); code != ExitUsage {
		t.Errorf("lint --policy and FILE: exit %d, %q", code, errOut)
	}

	// --drop-in: a drop-in's temporary copy outside policy.d/ (what
	// Ansible's validate checks) is checked as a drop-in.
	tmp := filepath.Join(dir, "source")
	os.WriteFile(tmp, []byte("mode: observe\n"), 0o644)
	env, out, _ = testEnv(t, "")
	if code := Main(context.Background(), env, []string{"lint", "--strict", tmp}); code != ExitFailure {
		t.Errorf("lint of a drop-in's copy as a main file: exit %d\n%s", code, out)
	}
	env, out, _ = testEnv(t, "")
	if code := Main(context.Background(), env, []string{"lint", "--strict", "--drop-in", tmp}); code != ExitOK {
		t.Errorf("lint --drop-in of a drop-in's copy: exit %d\n%s", code, out)
	}
	wantLines(t, "lint --drop-in", out.String(), tmp+": ok (a drop-in checked by itself: rules: 0)")
	os.WriteFile(tmp, []byte("mode: observe\nrules:\n  - name: x\n    match: {domain: [x]}\n    sett: {queues: 2}\n"), 0o644)
	env, out, _ = testEnv(t, "")
	if code := Main(context.Background(), env, []string{"lint", "--strict", "--drop-in", tmp}); code != ExitFailure {
		t.Errorf("lint --drop-in of a broken drop-in: exit %d\n%s", code, out)
	}
	wantLines(t, "lint --drop-in of a broken drop-in", out.String(), tmp+":5:5: rules[0].sett: unknown key")
	env, _, errOut = testEnv(t, "")
	if code := Main(context.Background(), env, []string{"lint", "--drop-in"}); code != ExitUsage {
		t.Errorf("lint --drop-in without FILE: exit %d, %q", code, errOut)
	}
}

// TestApplyProgress: apply --all on many domains draws one progress line
// on a terminal, rewritten in place and cleared at the end; never when
// the output is not a terminal.
func TestApplyProgress(t *testing.T) {
	fake := virttest.New()
	web := string(readFixture(t, "web.xml"))
	const n = 25
	for i := range n {
		doc := strings.Replace(web, "<name>web</name>", fmt.Sprintf("<name>web%02d</name>", i), 1)
		doc = strings.Replace(doc, "9d01", fmt.Sprintf("9e%02d", i), 1)
		if _, err := fake.Define([]byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	for _, term := range []bool{true, false} {
		r := newTestRun(t, fake, nil)
		r.env.Terminal = term
		if code := Main(context.Background(), r.env, []string{"apply", "--dry-run", "--all", "--policy", testPolicy}); code != ExitOK {
			t.Fatalf("exit %d: %s", code, r.stderr)
		}
		errOut := r.stderr.String()
		if !term {
			wantNot(t, "stderr off a terminal", errOut, "\r", "apply: ")
			continue
		}
		wantLines(t, "stderr on a terminal", errOut,
			"\r\033[Kapply: 1/25 domains (1 to redefine, 0 compliant, 0 transient, 0 failed)",
			"\r\033[Kapply: 25/25 domains (25 to redefine, 0 compliant, 0 transient, 0 failed)")
		if !strings.HasSuffix(errOut, "\r\033[K") {
			t.Errorf("the progress line is not cleared at the end: %q", errOut[max(0, len(errOut)-80):])
		}
		wantNot(t, "stdout", r.stdout.String(), "\r")
	}
}

// TestCompletionFilesCurrent: the completion scripts the packages ship are
// what virtmq completion prints; regenerate them with
// go run ./cmd/virtmq completion bash >packaging/completion/virtmq.bash
// go run ./cmd/virtmq completion zsh >packaging/completion/_virtmq
func TestCompletionFilesCurrent(t *testing.T) {
	for shell, file := range map[string]string{"bash": "virtmq.bash", "zsh": "_virtmq"} {
		env, out, _ := testEnv(t, "")
		if code := Main(context.Background(), env, []string{"completion", shell}); code != ExitOK {
			t.Fatalf("completion %s: exit %d", shell, code)
		}
		shipped, err := os.ReadFile(filepath.Join("..", "packaging", "completion", file))
		if err != nil {
			t.Fatal(err)
		}
		if string(shipped) != out.String() {
			t.Errorf("packaging/completion/%s is not what virtmq completion %s prints; regenerate it", file, shell)
		}
		for _, c := range Commands() {
			if !strings.Contains(out.String(), c.Name+")") {
				t.Errorf("completion %s lacks command %s", shell, c.Name)
			}
		}
		wantLines(t, "completion "+shell, out.String(), "--policy", "--cold-boot", "--parallel", "--status-socket", "--json", "wide")
	}
	env, _, _ := testEnv(t, "")
	if code := Main(context.Background(), env, []string{"completion", "fish"}); code != ExitUsage {
		t.Errorf("completion fish: exit %d", code)
	}
}

// TestJSONDocumented: docs/json.md names every field of every JSON
// document the commands print, so a new field cannot go undocumented.
func TestJSONDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[reflect.Type]bool{}
	var walk func(what string, typ reflect.Type)
	walk = func(what string, typ reflect.Type) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() == "time" {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			if !strings.Contains(string(doc), "`"+name+"`") && !strings.Contains(string(doc), "."+name+"`") &&
				!strings.Contains(string(doc), "."+name+"[]`") && !strings.Contains(string(doc), "`"+name+"[]`") {
				t.Errorf("docs/json.md does not describe %s field %q", what, name)
			}
			walk(what, f.Type)
		}
	}
	for what, v := range map[string]any{"plan": planReport{}, "lint": lintReport{}, "verify": verifyReport{}, "status": status.Snapshot{}} {
		walk(what, reflect.TypeOf(v))
	}
}

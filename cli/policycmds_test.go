package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testEnv returns an Env with no policy on disk (so the built-in default
// applies unless --policy is given) and captured output.
func testEnv(t *testing.T, stdin string) (*Env, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	var out, errOut bytes.Buffer
	return &Env{
		Stdin:             strings.NewReader(stdin),
		Stdout:            &out,
		Stderr:            &errOut,
		Getenv:            func(string) string { return "" },
		DefaultPolicyPath: filepath.Join(t.TempDir(), "absent.yaml"),
	}, &out, &errOut
}

const web1 = "../hooks/testdata/web1.xml"

func TestLint(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("version: 1\nmode: enforce\n"), 0o644)
	os.WriteFile(bad, []byte("version: 1\nmode: strict\ndefaults:\n  maxx: 4\n"), 0o644)
	tests := []struct {
		args     []string
		wantCode int
		wantOut  []string
	}{
		{[]string{"--policy", good}, ExitOK, []string{"good.yaml: ok (mode enforce"}},
		{[]string{"--policy", bad}, ExitFailure, []string{"bad.yaml:2:7: mode:", "bad.yaml:4:3: defaults.maxx:"}},
		{[]string{"--policy", filepath.Join(dir, "missing.yaml")}, ExitFailure, []string{"missing.yaml"}},
		{nil, ExitOK, []string{"(embedded default)"}},
	}
	for _, tt := range tests {
		env, out, _ := testEnv(t, "")
		if code := Main(context.Background(), env, append([]string{"lint"}, tt.args...)); code != tt.wantCode {
			t.Errorf("lint %v: exit %d, want %d; out %q", tt.args, code, tt.wantCode, out)
		}
		for _, w := range tt.wantOut {
			if !strings.Contains(out.String(), w) {
				t.Errorf("lint %v: output %q lacks %q", tt.args, out, w)
			}
		}
	}
	// One line per problem, so editors and CI can jump to each.
	env, out, _ := testEnv(t, "")
	Main(context.Background(), env, []string{"lint", "--policy", bad})
	if n := strings.Count(strings.TrimSpace(out.String()), "\n") + 1; n != 2 {
		t.Errorf("lint printed %d lines, want 2: %q", n, out)
	}
}

func TestPlan(t *testing.T) {
	env, out, errOut := testEnv(t, "")
	if code := Main(context.Background(), env, []string{"plan", web1, "--json"}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut.String(), "built-in default policy") {
		t.Errorf("stderr %q does not say the built-in default is used", errOut)
	}
	var rep planReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("plan --json output is not JSON: %v\n%s", err, out)
	}
	got := rep.Domains
	if rep.FormatVersion != 1 || len(rep.Errors) != 0 || len(got) != 1 || len(got[0].NICs) != 1 {
		t.Fatalf("got %+v, want format_version 1 and one domain with one NIC", rep)
	}
	n := got[0].NICs[0]
	if got[0].Domain != "web1" || n.MAC != "52:54:00:12:34:56" || n.Current != 1 || n.Wanted != 4 || !n.Change || n.Combined != 4 || n.Rule != "defaults" {
		t.Errorf("plan = %+v", n)
	}

	env, out, _ = testEnv(t, "")
	Main(context.Background(), env, []string{"plan", web1})
	for _, w := range []string{"DOMAIN", "web1", "52:54:00:12:34:56", "4 *", "queues=vcpus"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("plan table %q lacks %q", out, w)
		}
	}

	env, _, errOut = testEnv(t, "<domain><name>x</name")
	if code := Main(context.Background(), env, []string{"plan", "-"}); code != ExitFailure || !strings.Contains(errOut.String(), "-:") {
		t.Errorf("plan of malformed stdin: exit %d, stderr %q", code, errOut)
	}
}

func TestRewrite(t *testing.T) {
	orig, err := os.ReadFile(web1)
	if err != nil {
		t.Fatal(err)
	}
	env, out, errOut := testEnv(t, string(orig))
	if code := Main(context.Background(), env, []string{"rewrite"}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := strings.Replace(string(orig), "<model type='virtio'/>\n", "<model type='virtio'/>\n      <driver queues='4'/>\n", 1)
	want = strings.Replace(want, "</uuid>\n", "</uuid>\n  <metadata>\n"+
		"    <virtmq:written xmlns:virtmq='https://virtmq.dev/xmlns/written/1'>\n"+
		"      <virtmq:nic mac='52:54:00:12:34:56' nth='1' queues='4'/>\n"+
		"    </virtmq:written>\n  </metadata>\n", 1)
	if out.String() != want {
		t.Errorf("rewrite:\n got %q\nwant %q", out, want)
	}
	// Rewriting the output again changes nothing.
	env, out2, _ := testEnv(t, out.String())
	Main(context.Background(), env, []string{"rewrite", "-"})
	if out2.String() != out.String() {
		t.Errorf("second rewrite changed the document")
	}
	env, out, errOut = testEnv(t, "")
	if code := Main(context.Background(), env, []string{"rewrite", "nope.xml"}); code != ExitFailure || out.Len() != 0 || !strings.Contains(errOut.String(), "nope.xml") {
		t.Errorf("missing file: exit %d, out %q, err %q", code, out, errOut)
	}
}

func TestHelp(t *testing.T) {
	for _, c := range Commands() {
		env, out, _ := testEnv(t, "")
		if code := Main(context.Background(), env, []string{c.Name, "--help"}); code != ExitOK {
			t.Errorf("%s --help: exit %d", c.Name, code)
		}
		if !strings.Contains(out.String(), "Usage: virtmq "+c.Name) {
			t.Errorf("%s --help printed %q", c.Name, out)
		}
	}
	env, out, _ := testEnv(t, "")
	if Main(context.Background(), env, []string{"--version"}) != ExitOK || !strings.HasPrefix(out.String(), "virtmq ") {
		t.Errorf("--version printed %q", out)
	}
	env, _, errOut := testEnv(t, "")
	if Main(context.Background(), env, []string{"frobnicate"}) != ExitUsage || !strings.Contains(errOut.String(), "unknown command") {
		t.Errorf("unknown command: %q", errOut)
	}
}

// TestLintDeprecatedMode: a deprecated mode is a warning with its place; lint
// still exits 0.
func TestLintDeprecatedMode(t *testing.T) {
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nmode: audit\n"), 0o644)
	env, out, _ := testEnv(t, "")
	if code := Main(context.Background(), env, []string{"lint", "--policy", pol}); code != ExitOK {
		t.Errorf("exit %d, want 0: %q", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], pol+`:2:7: mode: warning: "audit" is read as "apply"`) ||
		!strings.HasSuffix(lines[1], "ok (mode apply, on_error allow, rules: 0, warnings: 1)") {
		t.Errorf("lint output:\n%s", out)
	}
}

func TestMode(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	for _, tt := range []struct {
		args     []string
		wantCode int
		want     string
	}{
		{[]string{"--policy", write("o.yaml", "version: 1\nmode: observe\n")}, ExitOK,
			"virtmq: mode observe (from " + dir + "/o.yaml): virtmq-agent and the hook only report"},
		{[]string{"--policy", write("a.yaml", "version: 1\n")}, ExitOK,
			"virtmq: mode apply (from " + dir + "/a.yaml): virtmq-agent redefines persistent domains"},
		{[]string{"--policy", write("e.yaml", "version: 1\nmode: enforce\n")}, ExitOK, "the hook refuses to start a non-compliant VM"},
		// When a running VM gets its queues follows the policy's apply_at.
		{[]string{"--policy", write("nr.yaml", "version: 1\n")}, ExitOK, "(a running VM gets them at its next reboot, which virtmq-agent makes a cold boot)"},
		{[]string{"--policy", write("cb.yaml", "version: 1\ndefaults: {apply_at: cold-boot}\n")}, ExitOK, "(a running VM gets them at its next shut down + start)"},
		{[]string{"--policy", write("old.yaml", "version: 1\nmode: audit\n")}, ExitOK, "mode apply (from " + dir + "/old.yaml) (virtmq lint: 1 warning(s))"},
		{[]string{"--policy", write("bad.yaml", "version: 1\nmode: strict\nbogus: 1\n")}, ExitFailure,
			`virtmq: the policy does not load, virtmq-agent will not start (virtmq lint lists every problem): ` + dir + `/bad.yaml:2:7: mode: "strict" is not one of observe, apply, enforce` + "\n"},
		{nil, ExitOK, "virtmq: mode apply (from the built-in default, no "},
		// The shipped policy has a note (a rule on libosinfo ids) but no
		// warning: the install scripts' line does not count it.
		{[]string{"--policy", "../policy/default.yaml"}, ExitOK, "virtmq: mode apply (from ../policy/default.yaml): virtmq-agent redefines"},
	} {
		env, out, _ := testEnv(t, "")
		if code := Main(context.Background(), env, append([]string{"mode"}, tt.args...)); code != tt.wantCode {
			t.Errorf("mode %v: exit %d, want %d; out %q", tt.args, code, tt.wantCode, out)
		}
		if !strings.Contains(out.String(), tt.want) || strings.Count(out.String(), "\n") != 1 {
			t.Errorf("mode %v: output %q, want one line with %q", tt.args, out, tt.want)
		}
	}
}

// TestLintTooLarge: a policy file over the limit is named once, with the limit.
func TestLintTooLarge(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte("#"+strings.Repeat("x", 1<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	env, out, _ := testEnv(t, "")
	if code := Main(context.Background(), env, []string{"lint", big}); code != ExitFailure {
		t.Fatalf("exit %d", code)
	}
	want := big + ": load policy: failed to read policy: file is larger than 1048576 bytes (1 MiB), the limit of a policy file\n"
	if out.String() != want {
		t.Errorf("lint: %q, want %q", out, want)
	}
}

// TestPlanAllInputsFail: no table, not even its header, when no input parsed.
func TestPlanAllInputsFail(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.xml")
	if err := os.WriteFile(bad, []byte("<domain><name>x"), 0o644); err != nil {
		t.Fatal(err)
	}
	env, out, errOut := testEnv(t, "")
	if code := Main(context.Background(), env, []string{"plan", bad, bad + ".absent"}); code != ExitFailure {
		t.Fatalf("exit %d", code)
	}
	if out.Len() != 0 {
		t.Errorf("stdout %q, want nothing", out)
	}
	if !strings.Contains(errOut.String(), "bad.xml: line 1: malformed XML") || !strings.Contains(errOut.String(), "bad.xml.absent") {
		t.Errorf("stderr %q does not say why each input failed", errOut)
	}
}

// Package virtmq_test keeps the tree's layout: imports flow one way,
//
//	cmd/ → hooks/, agent/, cli/ → internal/ libraries → policy
//
// (and, below everything, internal/bounded: the bounded reads of untrusted
// input that the policy loader shares with the hook and the CLI)
//
// so that a shared library never depends on the daemon or the CLI that use
// it, and the policy stays pure (facts in, decision out).
package virtmq_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/virtmq/virtmq"

// pkg is what `go list -json` says of one package.
type pkg struct {
	ImportPath string
	Imports    []string
}

// projectImports lists, for every package of the module, the packages of
// the module it imports (tests excluded: a test may reach across).
func projectImports(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	got := map[string][]string{}
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("go list -json: %v", err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		got[rel] = nil
		for _, imp := range p.Imports {
			if r, ok := strings.CutPrefix(imp, module+"/"); ok {
				got[rel] = append(got[rel], r)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	return got
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool { return path == dir || strings.HasPrefix(path, dir+"/") }

func TestImportDirection(t *testing.T) {
	imports := projectImports(t)
	for _, want := range []string{"policy", "agent", "hooks", "cli", "internal/domxml", "internal/virt"} {
		if _, ok := imports[want]; !ok {
			t.Fatalf("go list found no package %s: the layout this test guards has changed", want)
		}
	}
	for from, tos := range imports {
		for _, to := range tos {
			var why string
			switch {
			case from == "internal/bounded":
				why = "bounded is a leaf the policy reads files with: it imports nothing of the project"
			case from == "policy" && to != "internal/bounded":
				why = "policy is pure: it imports nothing of the project (its facts types are its own) but the leaf that bounds its reads"
			case under(from, "internal") && (under(to, "agent") || under(to, "hooks") || under(to, "cli")):
				why = "a shared library under internal/ must not depend on the daemon, the hook or the CLI"
			case under(to, "cmd"):
				why = "nothing imports a main package"
			case under(from, "agent") && (under(to, "hooks") || under(to, "cli")):
				why = "the agent does not depend on the hook or the CLI"
			case under(from, "hooks") && (under(to, "agent") || under(to, "cli")):
				why = "the hook does not depend on the agent or the CLI"
			case under(from, "cli") && (under(to, "agent") || under(to, "hooks")):
				why = "the CLI talks to the agent through internal/status, not its package"
			case from == "internal/domxml" && to != "policy":
				why = "domxml reads XML into the policy's facts and needs nothing else"
			}
			if why != "" {
				t.Errorf("%s imports %s: %s", from, to, why)
			}
		}
	}
}

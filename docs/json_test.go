package docs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtmq/virtmq/cli"
	"github.com/virtmq/virtmq/internal/guest"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/verify/verifytest"
	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// docField is one field docs/json.md describes.
type docField struct {
	name     string // "nics[].mac", "policy", "severity"
	optional bool   // "*optional*": left out when empty
}

// jsonDocFields reads docs/json.md's field tables, per command.
func jsonDocFields(t *testing.T) map[string][]docField {
	t.Helper()
	data, err := os.ReadFile("docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	heading := regexp.MustCompile("^## `virtmq ([a-z]+)")
	names := regexp.MustCompile("`([^`]+)`")
	out := map[string][]docField{}
	cmd := ""
	for _, l := range strings.Split(string(data), "\n") {
		if m := heading.FindStringSubmatch(l); m != nil {
			cmd = m[1]
			continue
		}
		if strings.HasPrefix(l, "## ") {
			cmd = ""
		}
		if cmd == "" || !strings.HasPrefix(l, "| `") {
			continue
		}
		cells := strings.Split(l, "|")
		optional := strings.Contains(cells[2], "*optional*")
		prefix := ""
		for i, m := range names.FindAllStringSubmatch(cells[1], -1) {
			n := m[1]
			if i == 0 {
				if j := strings.LastIndexByte(n, '.'); j >= 0 {
					prefix = n[:j+1]
				}
			} else if !strings.Contains(n, ".") {
				n = prefix + n
			}
			out[cmd] = append(out[cmd], docField{n, optional})
		}
	}
	return out
}

// jsonPaths lists every field of a JSON document with its path
// ("domains[].nics[].mac") and value.
func jsonPaths(prefix string, v any, visit func(path string, v any)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			p := prefix + k
			if _, isList := e.([]any); isList {
				p += "[]"
			}
			visit(p, e)
			jsonPaths(p+".", e, visit)
		}
	case []any:
		for _, e := range v {
			jsonPaths(prefix, e, visit)
		}
	}
}

// documents returns the field the path is, or false.
// The longest name that ends the path wins: policies[].ok is not ok. A
// list of strings may be described without its [].
func documents(fields []docField, path string) (docField, bool) {
	var best docField
	found := false
	for _, f := range fields {
		for _, p := range []string{path, strings.TrimSuffix(path, "[]")} {
			if (p == f.name || strings.HasSuffix(p, "."+f.name)) && (!found || len(f.name) > len(best.name)) {
				best, found = f, true
			}
		}
	}
	return best, found
}

// runJSON runs virtmq in process with dial as its libvirt and returns
// stdout.
func runJSON(t *testing.T, dial func(context.Context, virt.URI) (virt.Conn, error), args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &cli.Env{
		Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut,
		Getenv:            func(string) string { return "" },
		DefaultPolicyPath: filepath.Join(t.TempDir(), "policy.yaml"),
		Dial:              dial,
	}
	cli.Main(context.Background(), env, args)
	return out.String()
}

func noLibvirt(context.Context, virt.URI) (virt.Conn, error) {
	return nil, fmt.Errorf("connection refused")
}

// serveSnapshot serves snap on a status socket, as virtmq-agent does.
func serveSnapshot(t *testing.T, snap status.Snapshot) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmq") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s.sock")
	ln, err := status.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- status.Serve(ctx, ln, func() status.Snapshot { return snap }) }()
	t.Cleanup(func() { cancel(); <-done })
	return sock
}

// TestJSONDocs runs each command with --json, in its ordinary, error and
// not-connected cases, and checks docs/json.md against what it prints:
// every field printed is described, every field described is printed by
// some case, an *optional* field is left out rather than printed empty,
// and no list is null.
func TestJSONDocs(t *testing.T) {
	inRoot(t)
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	web1, err := os.ReadFile("hooks/testdata/web1.xml")
	if err != nil {
		t.Fatal(err)
	}
	excluded := write("excluded.xml", strings.Replace(string(web1), "<name>web1</name>",
		"<name>web2</name><metadata><virtmq:exclude xmlns:virtmq='https://virtmq.dev/xmlns/exclude/1'/></metadata>", 1))
	handSet := write("hand.xml", strings.Replace(string(web1), "<model type='virtio'/>", "<model type='virtio'/><driver queues='2'/>", 1))
	budget := write("budget.yaml", "version: 1\ndefaults: {budget: 2, queues: 4}\n")
	twoNICs := write("two.xml", strings.Replace(string(web1), "</devices>",
		"<interface type='network'><mac address='52:54:00:00:00:02'/><source network='default'/><model type='virtio'/></interface></devices>", 1))
	dropIn := write("etc/policy.d/50-lab.yaml", "mode: observe\n")
	badPolicy := write("bad.yaml", "version: 1\nmode: strict\n")

	// verify through a fake libvirt at a remote URI (the host-local checks
	// are skipped), with QEMU and the guest answering.
	fake := virttest.New()
	db, err := os.ReadFile("cli/testdata/db.xml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fake.Define(db); err != nil {
		t.Fatal(err)
	}
	if err := fake.Start("db"); err != nil {
		t.Fatal(err)
	}
	verifytest.SetMonitor(fake, map[string]int{"net0": 9}, true)
	verifytest.SetGuest(fake, verifytest.LinuxGuest("52:54:00:ab:cd:01", guest.Channels{Max: 4, Current: 4}))
	dialFake := func(ctx context.Context, _ virt.URI) (virt.Conn, error) {
		c, _, err := fake.Dial(ctx, nil)
		return c, err
	}
	remote := "qemu+tcp://host2/system"

	at := time.Date(2026, 11, 25, 21, 4, 5, 0, time.UTC)
	connected := status.Snapshot{
		Generated: at, Version: "virtmq-agent 1.0",
		Libvirt: status.Libvirt{Connected: true, Socket: "/run/libvirt/virtqemud-sock", Since: at, Reconnects: 1, LastError: "EOF"},
		Policy: status.Policy{Sources: []string{"/etc/virtmq/policy.yaml"}, Mode: "apply", LoadedAt: at, LastReloadError: "bad.yaml:2:7: mode: ...",
			Digest: "0123456789abcdef"},
		Domains: []status.Domain{
			{Name: "web1", UUID: "8c1f7d43-6f2a-4b8e-9a51-0d3c2b7e1a01", Persistent: true, Active: true,
				State: status.StatePendingColdBoot, StateSince: at, Orchestrator: "nova", OrchestratorMode: "apply", LastAction: "redefined", LastAt: at, Problem: "p",
				Attempts: 1, RetryAt: at, Would: []string{"redefine"}, Warnings: []string{"w"},
				NICs: []status.NIC{{MAC: "52:54:00:12:34:56", Managed: true, Kept: true, Reason: "r", Wanted: 4, Defined: 4, Running: 1,
					QMPVirtqueues: 3, MQ: true, Rule: "defaults", GuestIfName: "eth0", GuestWanted: 4, GuestCurrent: 1, GuestMax: 4,
					GuestStep: "done", GuestAt: at, Problem: "p", TargetDevice: "vnet0"}}},
		},
	}
	// An agent that never reached libvirt and has no domain yet.
	notConnected := status.Snapshot{Generated: at, Version: "virtmq-agent 1.0",
		Libvirt: status.Libvirt{LastError: "dial unix /run/libvirt/virtqemud-sock: connect: no such file or directory"},
		Policy:  status.Policy{Sources: []string{"/etc/virtmq/policy.yaml"}, Mode: "apply", LoadedAt: at}}

	cases := map[string][][]string{
		"plan": {
			{"plan", "--json", "hooks/testdata/web1.xml", excluded, handSet, "hooks/testdata/nova-instance.xml", filepath.Join(dir, "missing.xml")},
			{"plan", "--json", "--policy", budget, twoNICs},
		},
		"lint": {
			{"lint", "--json", "policy/default.yaml"},
			{"lint", "--json", "docs/examples/indent.yaml", badPolicy},
			{"lint", "--json", dropIn},
		},
		"verify": {
			{"verify", "--json", "-c", remote, "db"},
			{"verify", "--json", "-c", remote, "nosuch"},
			{"verify", "--json", "web1"}, // libvirt unreachable
			{"verify", "--json", "--policy", badPolicy, "web1"},
		},
		"status": {
			{"status", "--json", "--status-socket", serveSnapshot(t, connected)},
			{"status", "--json", "--status-socket", serveSnapshot(t, notConnected)},
		},
	}
	doc := jsonDocFields(t)
	for _, cmd := range []string{"plan", "lint", "verify", "status"} {
		fields := doc[cmd]
		if len(fields) < 5 {
			t.Fatalf("docs/json.md: only %d fields found for %s", len(fields), cmd)
		}
		printed := map[string]bool{}
		said := map[string]bool{} // each problem once
		errorf := func(format string, args ...any) {
			if msg := fmt.Sprintf(format, args...); !said[msg] {
				said[msg] = true
				t.Error(msg)
			}
		}
		for _, args := range cases[cmd] {
			dial := noLibvirt
			if slices.Contains(args, remote) {
				dial = dialFake
			}
			out := runJSON(t, dial, args...)
			var v map[string]any
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Errorf("virtmq %s: not one JSON document: %v\n%s", strings.Join(args, " "), err, out)
				continue
			}
			jsonPaths("", v, func(path string, val any) {
				if path == "format_version" {
					return
				}
				f, ok := documents(fields, path)
				if !ok {
					errorf("virtmq %s prints %s, docs/json.md does not describe it", cmd, path)
					return
				}
				printed[f.name] = true
				if val == nil {
					errorf("virtmq %s prints %s: null (docs/json.md: lists are [], never null)", cmd, path)
				}
				if s, isString := val.(string); f.optional && isString && (s == "" || s == (time.Time{}).Format(time.RFC3339)) {
					errorf("virtmq %s prints %s: %q, docs/json.md says it is left out when empty", strings.Join(args, " "), path, s)
				}
			})
			if cmd == "verify" && v["error"] != nil && !strings.Contains(fmt.Sprint(v["error"]), "load policy") {
				if p, _ := v["policy"].([]any); len(p) == 0 {
					t.Errorf("virtmq %s: the policy loaded but \"policy\" is %v (docs/json.md: [] only when it did not load)", strings.Join(args, " "), v["policy"])
				}
			}
		}
		for _, f := range fields {
			if !printed[f.name] {
				t.Errorf("docs/json.md describes %s of virtmq %s, no case prints it", f.name, cmd)
			}
		}
	}
}

// TestJSONDocExamples checks the hand-written ```json examples of
// docs/json.md (the commands that need libvirt) name only described fields.
func TestJSONDocExamples(t *testing.T) {
	inRoot(t)
	data, err := os.ReadFile("docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := jsonDocFields(t)
	heading := regexp.MustCompile("^## `virtmq ([a-z]+)")
	cmd, n := "", 0
	lines := strings.Split(string(data), "\n")
	for _, b := range fencedBlocks(lines) {
		for i := b.start - 1; i >= 0; i-- {
			if m := heading.FindStringSubmatch(lines[i]); m != nil {
				cmd = m[1]
				break
			}
		}
		if b.info != "json" {
			continue
		}
		n++
		var v map[string]any
		if err := json.Unmarshal([]byte(strings.Join(b.lines, "\n")), &v); err != nil {
			t.Errorf("docs/json.md:%d: the %s example is not JSON: %v", b.start, cmd, err)
			continue
		}
		jsonPaths("", v, func(path string, _ any) {
			if _, ok := documents(doc[cmd], path); !ok && path != "format_version" {
				t.Errorf("docs/json.md:%d: the %s example has %s, which the table does not describe", b.start, cmd, path)
			}
		})
	}
	if n == 0 {
		t.Fatal("docs/json.md: no json example found")
	}
}

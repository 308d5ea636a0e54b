package hooks

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writePolicy writes a policy file with the given mode and on_error.
func writePolicy(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func policyWith(mode, onErr string) string {
	return "version: 1\nmode: " + mode + "\non_error: " + onErr + "\ndefaults:\n  queues: vcpus\n  max: 8\n"
}

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type result struct {
	code   int
	stderr string
	log    string
}

func run(t *testing.T, policyPath string, stdin []byte, args ...string) result {
	t.Helper()
	var stderr, log bytes.Buffer
	cfg := Config{
		PolicyPath:        policyPath,
		DefaultPolicyPath: filepath.Join(t.TempDir(), "absent.yaml"),
		Getenv:            func(string) string { return "" },
		Stdin:             bytes.NewReader(stdin),
		Stderr:            &stderr,
		Logger:            slog.New(slog.NewTextHandler(&log, nil)),
	}
	code := Run(cfg, args)
	return result{code, stderr.String(), log.String()}
}

func TestPrepare(t *testing.T) {
	web1 := fixture(t, "web1.xml")
	compliant := fixture(t, "web1-compliant.xml")
	nova := fixture(t, "nova-instance.xml")
	tests := []struct {
		name       string
		policy     string
		xml        []byte
		wantCode   int
		wantStderr []string // substrings; none means stderr must be empty
		wantLog    []string
	}{
		{name: "enforce refuses non-compliant", policy: policyWith("enforce", "allow"), xml: web1, wantCode: ExitDeny,
			wantStderr: []string{`domain "web1"`, "52:54:00:12:34:56", "queues=1", "policy wants 4", `rule "defaults"`, "virtmq apply web1", "<driver queues='4'/>"}},
		{name: "enforce leaves a Nova domain to Nova", policy: policyWith("enforce", "deny"), xml: nova, wantCode: ExitAllow,
			wantLog: []string{"level=INFO", `msg="domain left to its orchestrator"`, "orchestrator=nova", "hw:vif_multiqueue_enabled"}},
		{name: "a Nova domain opted in is decided, never refused", policy: policyWith("enforce", "deny") + "orchestrators: {nova: apply}\n", xml: nova,
			wantCode: ExitAllow, wantLog: []string{"level=WARN", "mac=fa:16:3e:4b:2c:1d", "wanted=4", "mode=apply"}},
		{name: "enforce allows compliant", policy: policyWith("enforce", "deny"), xml: compliant, wantCode: ExitAllow},
		{name: "apply logs and allows", policy: policyWith("apply", "deny"), xml: web1, wantCode: ExitAllow,
			wantLog: []string{"level=WARN", "domain=web1", "mac=52:54:00:12:34:56", "current=1", "wanted=4", "mode=apply"}},
		{name: "observe logs and allows", policy: policyWith("observe", "deny"), xml: web1, wantCode: ExitAllow,
			wantLog: []string{"level=WARN", "domain=web1", "mac=52:54:00:12:34:56", "current=1", "wanted=4", "mode=observe"}},
		{name: "audit is apply", policy: policyWith("audit", "deny"), xml: web1, wantCode: ExitAllow,
			wantLog: []string{"level=WARN", "domain=web1", "wanted=4", "mode=apply"}},
		{name: "observe allows malformed XML even on_error deny", policy: policyWith("observe", "deny"), xml: []byte("not xml at all"), wantCode: ExitAllow,
			wantLog: []string{"level=ERROR", "allowing the start"}},
		{name: "malformed XML allowed by default", policy: policyWith("enforce", "allow"), xml: []byte("<domain><name>x</nam"), wantCode: ExitAllow,
			wantLog: []string{"level=ERROR", "allowing the start"}},
		{name: "malformed XML denied on_error deny", policy: policyWith("enforce", "deny"), xml: []byte("<domain><name>x</nam"), wantCode: ExitDeny,
			wantStderr: []string{`domain "web1"`, "parse domain XML", "on_error: deny"}},
		{name: "huge XML is an error, not a hang", policy: policyWith("enforce", "deny"), xml: bytes.Repeat([]byte("<a>"), 6<<20), wantCode: ExitDeny,
			wantStderr: []string{"input is larger than 16777216 bytes (16 MiB), the limit of a domain XML"}},
		{name: "broken policy allows", policy: "version: 1\nmode: audit\nbogus: 1\n", xml: web1, wantCode: ExitAllow,
			wantLog: []string{"level=ERROR", "bogus"}},
		{name: "broken enforce/deny policy denies", policy: "version: 1\nmode: enforce\non_error: deny\nbogus: 1\n", xml: web1, wantCode: ExitDeny,
			wantStderr: []string{"bogus", "on_error: deny"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, writePolicy(t, tt.policy), tt.xml, "web1", "prepare", "begin", "-")
			if got.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q, log %q)", got.code, tt.wantCode, got.stderr, got.log)
			}
			if len(tt.wantStderr) == 0 && got.stderr != "" {
				t.Errorf("stderr = %q, want empty", got.stderr)
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(got.stderr, s) {
					t.Errorf("stderr %q lacks %q", got.stderr, s)
				}
			}
			for _, s := range tt.wantLog {
				if !strings.Contains(got.log, s) {
					t.Errorf("log %q lacks %q", got.log, s)
				}
			}
			if strings.Contains(got.stderr+got.log, "s3cret-vnc") {
				t.Errorf("the domain XML's password leaked into the output")
			}
		})
	}
}

// TestOtherOps: every operation but prepare exits 0 at once, whatever the
// policy or input; a broken policy must not kill a running QEMU at reconnect.
func TestOtherOps(t *testing.T) {
	broken := writePolicy(t, "version: 1\nmode: enforce\non_error: deny\nbogus: [\n")
	for _, args := range [][]string{
		{"web1", "migrate", "begin", "-"},
		{"web1", "restore", "begin", "-"},
		{"web1", "reconnect", "begin", "-"},
		{"web1", "start", "begin", "-"},
		{"web1", "started", "begin", "-"},
		{"web1", "stopped", "end", "-"},
		{"web1", "release", "end", "shutdown"},
		{"web1", "attach", "begin", "-"},
		{"web1", "prepare", "end", "-"},
		{"web1", "some-future-op", "begin", "-"},
		{"web1"},
		{},
	} {
		got := run(t, broken, fixture(t, "web1.xml"), args...)
		if got.code != ExitAllow || got.stderr != "" {
			t.Errorf("%v: code %d stderr %q, want 0 and nothing", args, got.code, got.stderr)
		}
	}
}

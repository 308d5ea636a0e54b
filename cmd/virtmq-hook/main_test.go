package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestDeps keeps the hook tiny: it runs on every VM start and must never
// talk to libvirt (deadlock) or the network.
func TestDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	// net and crypto add their packages' start-up to every VM start for
	// nothing the hook does (journald is reached with syscall).
	forbidden := []string{"net", "crypto/", "github.com/digitalocean/go-libvirt", "github.com/digitalocean/go-qemu", "github.com/prometheus/", "libvirt.org/go/libvirtxml"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f)) {
				t.Errorf("virtmq-hook imports %s (forbidden: %s)", dep, f)
			}
		}
	}
}

// TestBinary runs the built hook the way libvirt does: arguments, XML on
// stdin, a bare environment. It must print nothing on stdout for any op —
// for migrate and restore, output would replace the domain XML.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "virtmq-hook")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	xml, err := os.ReadFile("../../hooks/testdata/web1.xml")
	if err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte("version: 1\nmode: enforce\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Each run its own marker directory: a marker left at migrate or
	// restore would excuse the next prepare, which here must refuse.
	incoming := func() string { return "VIRTMQ_INCOMING_DIR=" + filepath.Join(t.TempDir(), "incoming") }
	tests := []struct {
		op       string
		wantCode int
	}{
		{"prepare", 1}, {"migrate", 0}, {"restore", 0}, {"reconnect", 0}, {"start", 0},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			cmd := exec.Command(bin, "web1", tt.op, "begin", "-")
			cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin", "HOME=/", "VIRTMQ_POLICY=" + pol, incoming()}
			cmd.Stdin = bytes.NewReader(xml)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.wantCode, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
	// The destination of a live migration: migrate then prepare, one
	// marker directory. Not refused, and still nothing on stdout.
	env := []string{"LC_ALL=C", "PATH=/usr/bin:/bin", "HOME=/", "VIRTMQ_POLICY=" + pol, incoming()}
	for _, op := range []string{"migrate", "prepare"} {
		cmd := exec.Command(bin, "web1", op, "begin", "-")
		cmd.Env = env
		cmd.Stdin = bytes.NewReader(xml)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if code := exitCode(t, cmd.Run()); code != 0 || stdout.Len() != 0 {
			t.Errorf("incoming %s: exit %d, stdout %q, stderr %q; want 0 and nothing", op, code, stdout.String(), stderr.String())
		}
		if op == "prepare" && !strings.Contains(stderr.String(), "incoming=migrate") {
			t.Errorf("incoming prepare: stderr %q does not log the incoming migration", stderr.String())
		}
	}
	for _, flag := range []string{"--help", "--version"} {
		out, err := exec.Command(bin, flag).Output()
		if err != nil || !strings.Contains(string(out), "virtmq-hook") {
			t.Errorf("%s: %v %q", flag, err, out)
		}
	}

	// A domain named like an option is data: libvirt runs `HOOK --help
	// prepare begin -`. At prepare an enforce policy still refuses it; at
	// migrate and restore stdout, which libvirt would take as the new
	// domain XML, stays empty. Options before the four arguments (the e2e
	// wrapper's --policy FILE) keep working.
	for _, name := range []string{"--help", "-h", "--version", "--policy=x", "--"} {
		for _, tt := range []struct {
			op       string
			wantCode int
		}{{"prepare", 1}, {"migrate", 0}, {"restore", 0}} {
			for _, opts := range [][]string{nil, {"--policy", pol}, {"--policy=" + pol, "--"}} {
				argv := append(append(append([]string(nil), opts...), name), tt.op, "begin", "-")
				cmd := exec.Command(bin, argv...)
				cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin", "HOME=/", incoming()}
				if opts == nil {
					cmd.Env = append(cmd.Env, "VIRTMQ_POLICY="+pol)
				}
				cmd.Stdin = bytes.NewReader(xml)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				code := exitCode(t, cmd.Run())
				if code != tt.wantCode {
					t.Errorf("%q: exit %d, want %d; stderr %q", argv, code, tt.wantCode, stderr.String())
				}
				if tt.wantCode == 1 && !strings.Contains(stderr.String(), `domain "`+name+`"`) {
					t.Errorf("%q: stderr %q does not refuse domain %q", argv, stderr.String(), name)
				}
				if stdout.Len() != 0 {
					t.Errorf("%q: stdout = %q, want nothing", argv, stdout.String())
				}
			}
		}
	}

	// --help or --version passed on by a wrapper with libvirt's arguments:
	// said on stderr, and the hook still runs.
	for _, op := range []string{"prepare", "migrate"} {
		cmd := exec.Command(bin, "--policy", pol, "--help", "--version", "web1", op, "begin", "-")
		cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin", "HOME=/", incoming()}
		cmd.Stdin = bytes.NewReader(xml)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		code := exitCode(t, cmd.Run())
		if want := map[string]int{"prepare": 1, "migrate": 0}[op]; code != want || stdout.Len() != 0 || !strings.Contains(stderr.String(), "Usage:") {
			t.Errorf("%s with --help: exit %d (want %d), stdout %q, stderr %q", op, code, want, stdout.String(), stderr.String())
		}
	}
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		argv []string
		want invocation
	}{
		{[]string{"web1", "prepare", "begin", "-"}, invocation{args: []string{"web1", "prepare", "begin", "-"}}},
		{[]string{"--help", "migrate", "begin", "-"}, invocation{args: []string{"--help", "migrate", "begin", "-"}}},
		{[]string{"-h", "restore", "begin", "-"}, invocation{args: []string{"-h", "restore", "begin", "-"}}},
		{[]string{"--policy", "/p", "--version", "prepare", "begin", "-"}, invocation{policyPath: "/p", args: []string{"--version", "prepare", "begin", "-"}}},
		{[]string{"--policy=/p", "--policy=x", "prepare", "begin", "-"}, invocation{policyPath: "/p", args: []string{"--policy=x", "prepare", "begin", "-"}}},
		{[]string{"--policy", "/p", "--", "--", "prepare", "begin", "-"}, invocation{policyPath: "/p", args: []string{"--", "prepare", "begin", "-"}}},
		{[]string{"--bogus", "web1", "release", "end", "shutdown"}, invocation{unknown: []string{"--bogus"}, args: []string{"web1", "release", "end", "shutdown"}}},
		// Not an option position: a non-option stops the options.
		{[]string{"web1", "--help", "prepare", "begin", "-"}, invocation{args: []string{"web1", "--help", "prepare", "begin", "-"}}},
		{[]string{"--help"}, invocation{help: true, args: []string{}}},
		{[]string{"--policy", "/p", "--version"}, invocation{policyPath: "/p", version: true, args: []string{}}},
		{[]string{"-h", "--", "x"}, invocation{help: true, args: []string{"x"}}},
		{nil, invocation{args: nil}},
	}
	for _, tt := range tests {
		got := parseArgs(tt.argv)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseArgs(%q) = %+v, want %+v", tt.argv, got, tt.want)
		}
	}
}

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
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
	forbidden := []string{"net/http", "github.com/digitalocean/go-libvirt", "github.com/digitalocean/go-qemu", "github.com/prometheus/", "libvirt.org/go/libvirtxml"}
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
	tests := []struct {
		op       string
		wantCode int
	}{
		{"prepare", 1}, {"migrate", 0}, {"restore", 0}, {"reconnect", 0}, {"start", 0},
	}
	for _, tt := range tests {
		t.Run(tt.op, func(t *testing.T) {
			cmd := exec.Command(bin, "web1", tt.op, "begin", "-")
			cmd.Env = []string{"LC_ALL=C", "PATH=/usr/bin:/bin", "HOME=/", "VIRTMQ_POLICY=" + pol}
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
	for _, flag := range []string{"--help", "--version"} {
		out, err := exec.Command(bin, flag).Output()
		if err != nil || !strings.Contains(string(out), "virtmq-hook") {
			t.Errorf("%s: %v %q", flag, err, out)
		}
	}
}

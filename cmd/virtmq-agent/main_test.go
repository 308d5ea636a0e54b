package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("--help: exit %d, stderr %s", code, errb.String())
	}
	for _, want := range []string{
		"Usage: virtmq-agent", "pending-cold-boot", "SIGHUP", "READY=1", "ethtool -L",
		"-policy", "-socket", "/run/libvirt/virtqemud-sock,/run/libvirt/libvirt-sock",
		"-status-socket", "/run/virtmq/status.sock", "-metrics-listen", "-web.config.file", "-concurrency", "(default 4)",
		"-guest-timeout", "-log-level", "-version",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "virtmq-agent ") {
		t.Errorf("--version: exit %d, %q", code, out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--bogus"}, {"--log-level", "loud"}, {"extra"}, {"--concurrency", "x"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestInvalidPolicyExits1(t *testing.T) {
	var out, errb bytes.Buffer
	dir := t.TempDir()
	code := run([]string{"--policy", filepath.Join(dir, "missing.yaml"), "--status-socket", filepath.Join(dir, "s.sock"), "--socket", filepath.Join(dir, "none")}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "policy") {
		t.Errorf("exit %d, stderr %s", code, errb.String())
	}
}

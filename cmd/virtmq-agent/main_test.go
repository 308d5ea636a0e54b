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
		"      --policy FILE ", "      --socket SOCKETS ", "/run/libvirt/virtqemud-sock,/run/libvirt/libvirt-sock",
		"      --status-socket SOCKET\n", "/run/virtmq/status.sock", "      --metrics-listen ADDRESS", "      --web.config.file FILE", "      --concurrency INT ", "(default 3)",
		"      --guest-timeout DURATION", "      --log-level LEVEL ", "      --state-dir FOLDER ", "      --version ",
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
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "virtmq-agent: unknown option --bogus\n"},
		{[]string{"--log-level", "loud"}, `virtmq-agent: invalid value "loud" for --log-level: want debug, info, warn or error` + "\n"},
		{[]string{"extra"}, `virtmq-agent: unexpected argument "extra": virtmq-agent takes options only` + "\n"},
		{[]string{"--concurrency", "x"}, `virtmq-agent: invalid value "x" for --concurrency: parse error` + "\n"},
	} {
		var out, errb bytes.Buffer
		if code := run(tt.args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, want 2", tt.args, code)
		}
		if !strings.HasPrefix(errb.String(), tt.want) || strings.Contains(errb.String(), "Options:") {
			t.Errorf("%q: stderr %q, want %q and no help", tt.args, errb.String(), tt.want)
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

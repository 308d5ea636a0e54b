package verify

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// readFile reads a fixture.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recordedDir holds replies recorded on the real stack by e2e/smoke.sh --record
// (see its README).
const recordedDir = "../testdata/recorded"

func TestParseTapQueues(t *testing.T) {
	tests := []struct {
		name               string
		out                string
		active, disabled   int
		wantErr, wantNoTap bool
	}{
		{name: "fixture, 4 of 4", out: string(readFile(t, filepath.Join("testdata", "ip-link-vnet0-mq4.txt"))), active: 4},
		// Seen on the real stack (DESIGN §7): 2/2, 1/3, 4/0.
		{name: "2 of 4", out: "tun type tap pi off vnet_hdr on multi_queue numqueues 2 numdisabled 2 persist off", active: 2, disabled: 2},
		{name: "1 of 4", out: "    tun type tap pi off vnet_hdr on multi_queue numqueues 1 numdisabled 3 persist off\n", active: 1, disabled: 3},
		{name: "4 of 4", out: "multi_queue numqueues 4 numdisabled 0", active: 4},
		{name: "single queue tap", out: "tun type tap pi off vnet_hdr on numqueues 1 numdisabled 0 persist off", active: 1},
		{name: "no numdisabled", out: "tun type tap multi_queue numqueues 3", active: 3},
		{name: "numtxqueues is not numqueues", out: "numtxqueues 256 numrxqueues 256", wantNoTap: true},
		{name: "macvtap", out: "macvtap mode bridge bcqueuelen 1000 usedbcqueuelen 1000 addrgenmode eui64", wantNoTap: true},
		{name: "empty", out: "", wantNoTap: true},
		{name: "numqueues at the end", out: "multi_queue numqueues", wantNoTap: true},
		{name: "bad number", out: "numqueues four numdisabled 0", wantErr: true},
		{name: "negative", out: "numqueues 4 numdisabled -1", wantErr: true},
		{name: "hostile", out: "numqueues \x1b[2J", wantErr: true},
		// Found by FuzzParseTapQueues: the total overflowed to a negative count.
		{name: "huge", out: "numqueues 9223372036854775807 numdisabled 1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseTapQueues([]byte(tt.out))
			switch {
			case tt.wantNoTap:
				if !errors.Is(err, errNoTapQueues) {
					t.Errorf("err = %v, want errNoTapQueues", err)
				}
			case tt.wantErr:
				if err == nil || errors.Is(err, errNoTapQueues) {
					t.Errorf("err = %v, want a parse error", err)
				} else if strings.Contains(err.Error(), "\x1b") {
					t.Errorf("error carries a control character: %q", err)
				}
			case err != nil:
				t.Errorf("err = %v", err)
			case c.Active != tt.active || c.Disabled != tt.disabled:
				t.Errorf("got %+v, want active %d disabled %d", c, tt.active, tt.disabled)
			}
		})
	}
}

// TestParseTapQueuesRecorded parses `ip -d link show` output recorded on
// the real stack (internal/testdata/recorded, written by e2e/smoke.sh --record):
// a 4-queue NIC after "ethtool -L eth0 combined 2".
func TestParseTapQueuesRecorded(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(recordedDir, "ip-d-link-show-tap.txt"))
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("no recorded ip -d link output")
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseTapQueues(b)
	if err != nil || c.Active != 2 || c.Total() != 4 {
		t.Errorf("got %+v (total %d), %v; want 2 active of 4", c, c.Total(), err)
	}
}

func TestValidIfName(t *testing.T) {
	// ';' is legal in a Linux interface name; the name goes in an argv, never a shell.
	for _, ok := range []string{"vnet0", "tap-web", "macvtap12", "a", "eth0.100", "br_0@x", "123456789012345", "vnet0;x"} {
		if !validIfName(ok) {
			t.Errorf("validIfName(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", ".", "..", "-vnet0", "vnet 0", "a/b", "a:b", "1234567890123456", "vnet\n", "vnet\x00", "vnét"} {
		if validIfName(bad) {
			t.Errorf("validIfName(%q) = true", bad)
		}
	}
}

// writeExecutable writes a script and makes it executable.
func writeExecutable(t *testing.T, path, script string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestTapQueuesRunsIP(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := t.TempDir()
	ip := filepath.Join(dir, "sbin", "ip")
	// The fake ip prints its argv, then the recorded output.
	writeExecutable(t, ip, "#!/bin/sh\necho \"argv: $*\"\necho 'tun type tap multi_queue numqueues 4 numdisabled 2'\n")
	h := DefaultHost()
	h.IPPaths = []string{filepath.Join(dir, "usr", "sbin", "ip"), "relative/ip", ip}

	var gotArgs []string
	run := h.RunIP
	h.RunIP = func(ctx context.Context, path string, args ...string) ([]byte, error) {
		gotArgs = append([]string{path}, args...)
		return run(ctx, path, args...)
	}
	c, err := h.tapQueues(context.Background(), "vnet7")
	if err != nil || c != (tapQueueCounts{Active: 4, Disabled: 2}) {
		t.Fatalf("tapQueues = %+v, %v", c, err)
	}
	if want := ip + " -d link show dev vnet7"; strings.Join(gotArgs, " ") != want {
		t.Errorf("ran %q, want %q", gotArgs, want)
	}

	// A failing ip: its stderr is in the error.
	writeExecutable(t, ip, "#!/bin/sh\necho 'Device \"vnet9\" does not exist.' >&2\nexit 1\n")
	if _, err := h.tapQueues(context.Background(), "vnet9"); err == nil || !strings.Contains(err.Error(), `Device "vnet9" does not exist.`) {
		t.Errorf("err = %v", err)
	}

	// An invalid name never reaches ip.
	gotArgs = nil
	if _, err := h.tapQueues(context.Background(), "-n evil"); err == nil || gotArgs != nil {
		t.Errorf("invalid name: err %v, ran %q", err, gotArgs)
	}

	// No ip at all.
	h.IPPaths = []string{filepath.Join(dir, "nope")}
	if _, err := h.tapQueues(context.Background(), "vnet7"); !errors.Is(err, errNoIP) {
		t.Errorf("no ip: err = %v", err)
	}
}

func TestRunCommandCapsOutput(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	script := filepath.Join(t.TempDir(), "big")
	writeExecutable(t, script, "#!/bin/sh\nhead -c 200000 /dev/zero\n")
	out, err := runCommand(context.Background(), script)
	if err != nil || len(out) != maxCommandOutput {
		t.Errorf("got %d bytes, err %v; want %d", len(out), err, maxCommandOutput)
	}
}

// procTree builds a fake /proc with a QEMU process pid whose tasks are
// named as given, plus the kernel threads named as given.
func procTree(t *testing.T, root string, pid int, tasks, kthreads []string) {
	t.Helper()
	write := func(p, s string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ps := strconv.Itoa(pid)
	write(filepath.Join(root, ps, "comm"), "qemu-system-x86")
	for i, name := range tasks {
		write(filepath.Join(root, ps, "task", strconv.Itoa(pid+i), "comm"), name)
	}
	for i, name := range kthreads {
		write(filepath.Join(root, strconv.Itoa(100+i), "comm"), name)
	}
}

func TestVhostWorkers(t *testing.T) {
	tests := []struct {
		name     string
		tasks    []string
		kthreads []string
		want     int
	}{
		{"threads of QEMU (Linux >= 6.4)", []string{"qemu-system-x86", "vhost-4242", "vhost-4242", "CPU 0/KVM", "vhost-4242"}, []string{"vhost-4242"}, 3},
		{"kernel threads (older Linux)", []string{"qemu-system-x86", "CPU 0/KVM"}, []string{"vhost-4242", "kworker/0:1", "vhost-4242", "vhost-999"}, 2},
		{"none", []string{"qemu-system-x86"}, []string{"vhost-999", "vhost-42420"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := t.TempDir()
			procTree(t, proc, 4242, tt.tasks, tt.kthreads)
			h := Host{ProcRoot: proc}
			got, err := h.vhostWorkers(4242)
			if err != nil || got != tt.want {
				t.Errorf("vhostWorkers = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	h := Host{ProcRoot: t.TempDir()}
	if _, err := h.vhostWorkers(1); err == nil {
		t.Error("no error for a missing QEMU process")
	}
}

func TestQEMUPID(t *testing.T) {
	run := t.TempDir()
	dir := filepath.Join(run, "libvirt", "qemu")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "db.pid"), []byte("4242"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.pid"), []byte("x\n"), 0o644)
	h := Host{RunRoot: run}
	if pid, err := h.qemuPID("db"); err != nil || pid != 4242 {
		t.Errorf("qemuPID(db) = %d, %v", pid, err)
	}
	for _, name := range []string{"bad", "missing", "../etc/x", "..", ""} {
		if _, err := h.qemuPID(name); err == nil {
			t.Errorf("qemuPID(%q): no error", name)
		}
	}
}

package verify

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// writeAccounts writes ETC/passwd and ETC/group with libvirt-qemu (Debian's
// QEMU user, primary group kvm) and the current user as "owner" and
// "devs", so a test can make /dev/kvm's owner or group match or not.
func writeAccounts(t *testing.T, etc string, qemuConf string) {
	t.Helper()
	uid, gid := os.Getuid(), os.Getgid()
	files := map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/bash\n" +
			"owner:x:" + itoa(uid) + ":" + itoa(gid) + "::/:/bin/sh\n" +
			"libvirt-qemu:x:64055:108:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin\n",
		"group": "root:x:0:\nkvm:x:108:\n" + "devs:x:" + itoa(gid) + ":\n",
	}
	if qemuConf != "" {
		files["libvirt/qemu.conf"] = qemuConf
	}
	for name, text := range files {
		p := filepath.Join(etc, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// mknodChar makes a character device (1:3, like /dev/null) with mode.
func mknodChar(path string, mode os.FileMode) error {
	if err := syscall.Mknod(path, syscall.S_IFCHR|uint32(mode), 1<<8|3); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

// TestKVMProblem checks the /dev/kvm access rule against a fixture tree.
// A character device cannot be made without root, so the test finds a real
// one (/dev/null, owned by root, mode 0666) and points DEV/kvm at it with a
// symlink; os.Stat follows it, as libvirt's open would.
func TestKVMProblem(t *testing.T) {
	fi, err := os.Stat("/dev/null")
	if err != nil || fi.Mode().Perm() != 0o666 {
		t.Skip("no /dev/null with mode 0666")
	}
	for _, tc := range []struct {
		name, qemuConf, want string
	}{
		{name: "world-accessible device", want: ""},
		{name: "qemu runs as root", qemuConf: "user = \"root\"\n", want: ""},
		{name: "unknown qemu user", qemuConf: "# user = \"x\"\nuser = \"nobody-here\"\n", want: "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			h := Host{DevRoot: filepath.Join(root, "dev"), EtcRoot: filepath.Join(root, "etc")}
			writeAccounts(t, h.EtcRoot, tc.qemuConf)
			if err := os.MkdirAll(h.DevRoot, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/dev/null", filepath.Join(h.DevRoot, "kvm")); err != nil {
				t.Fatal(err)
			}
			why, err := h.kvmProblem()
			switch {
			case tc.want == "error" && err == nil:
				t.Fatalf("kvmProblem() = %q, nil; want an error", why)
			case tc.want != "error" && err != nil:
				t.Fatalf("kvmProblem(): %v", err)
			case tc.want != "error" && why != tc.want:
				t.Fatalf("kvmProblem() = %q, want %q", why, tc.want)
			}
		})
	}
}

// TestKVMPermissionRule checks the owner/group/other rule libvirt's QEMU
// user is subject to, on the modes a fresh and a udev-managed host have.
func TestKVMPermissionRule(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to make a character device")
	}
	for _, tc := range []struct {
		name  string
		mode  os.FileMode
		gid   int
		wantP bool
	}{
		{"fresh host: 0600 root:root", 0o600, 0, true},
		{"udev: 0660 root:kvm", 0o660, 108, false},
		{"0660 root:root", 0o660, 0, true},
		{"0666 root:root", 0o666, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			h := Host{DevRoot: filepath.Join(root, "dev"), EtcRoot: filepath.Join(root, "etc")}
			writeAccounts(t, h.EtcRoot, "")
			if err := os.MkdirAll(h.DevRoot, 0o755); err != nil {
				t.Fatal(err)
			}
			kvm := filepath.Join(h.DevRoot, "kvm")
			if err := mknodChar(kvm, tc.mode); err != nil {
				t.Skipf("mknod: %v", err)
			}
			if err := os.Chown(kvm, 0, tc.gid); err != nil {
				t.Fatal(err)
			}
			why, err := h.kvmProblem()
			if err != nil {
				t.Fatal(err)
			}
			if got := why != ""; got != tc.wantP {
				t.Fatalf("kvmProblem() = %q; want a problem: %v", why, tc.wantP)
			}
			if want := "kvm is c" + tc.mode.String()[1:] + " root:"; tc.wantP && !strings.Contains(why, want) {
				t.Errorf("kvmProblem() = %q: does not show the mode as ls does (%q)", why, want)
			}
			if tc.wantP && !strings.Contains(why, "libvirt-qemu cannot open it") {
				t.Errorf("kvmProblem() = %q: does not name the QEMU user", why)
			}
		})
	}
}

// TestHostHealthSlowLibvirt: a libvirt whose capabilities call takes
// seconds (it re-probes QEMU each time) fails the host-libvirt check; a
// fast one passes; a failing one fails naming the call.
func TestHostHealthSlowLibvirt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		each   time.Duration
		fail   bool
		status Status
		msg    string
	}{
		{name: "healthy", each: 20 * time.Millisecond, status: OK, msg: "answers a capabilities call in 20ms"},
		{name: "re-probing", each: 4 * time.Second, status: Fail, msg: "took 4s for a capabilities call right after another"},
		{name: "failing", fail: true, status: Fail, msg: "libvirt capabilities: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := virttest.New()
			clock := time.Unix(1e9, 0)
			fake.OnCall(func(method string, _ virt.Domain, _ error) {
				if method == virttest.MethodCapabilities {
					clock = clock.Add(tc.each)
				}
			})
			if tc.fail {
				fake.FailNext(virttest.MethodCapabilities, 1, virt.ErrDisconnected)
			}
			conn, _, err := fake.Dial(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			v := verifier{conn: conn, host: Host{DevRoot: t.TempDir(), Now: func() time.Time { return clock }}}
			v.hostHealth(context.Background())
			if len(v.checks) != 1 {
				t.Fatalf("checks: %+v, want one", v.checks)
			}
			c := v.checks[0]
			if c.Status != tc.status || c.Name != "host-libvirt" || !strings.Contains(c.Message(nil), tc.msg) {
				t.Errorf("check = %s %s %q; want %s host-libvirt containing %q", c.Status, c.Name, c.Message(nil), tc.status, tc.msg)
			}
		})
	}
}

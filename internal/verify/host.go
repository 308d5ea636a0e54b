package verify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Host is the host side the checks read: every path is a parameter so
// tests can point it at a fixture tree (see package verifytest).
type Host struct {
	// ProcRoot is /proc.
	ProcRoot string
	// RunRoot is /run; libvirt keeps QEMU's pid in RUN/libvirt/qemu/DOMAIN.pid.
	RunRoot string
	// DevRoot is /dev; vhost workers are looked for only when DEV/vhost-net exists.
	DevRoot string
	// IPPaths are the absolute paths tried, in order, for the ip command.
	IPPaths []string
	// RunIP runs the ip binary at path with args and returns its stdout.
	RunIP func(ctx context.Context, path string, args ...string) ([]byte, error)
	// EtcRoot is /etc: passwd, group and libvirt/qemu.conf name the user
	// libvirt runs QEMU as.
	EtcRoot string
	// Now is the clock that times libvirt's answers (time.Now when nil).
	Now func() time.Time
}

// DefaultHost is the real host.
func DefaultHost() Host {
	return Host{
		ProcRoot: "/proc",
		RunRoot:  "/run",
		DevRoot:  "/dev",
		IPPaths:  []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"},
		RunIP:    runCommand,
		EtcRoot:  "/etc",
		Now:      time.Now,
	}
}

// maxCommandOutput caps what is kept of a host command's output.
const maxCommandOutput = 64 << 10

// errNoIP is returned when no ip binary exists at the expected paths.
var errNoIP = errors.New("no ip command")

// errNoTapQueues is returned when ip -d link shows no numqueues (not a tun/tap device).
var errNoTapQueues = errors.New("no numqueues in ip -d link output (not a tun/tap device)")

// runCommand runs path with args (no shell) and returns its stdout, capped.
// A failure carries the first line of stderr as the command printed it:
// the check that prints it marks it Raw.
func runCommand(ctx context.Context, path string, args ...string) ([]byte, error) {
	var stdout, stderr cappedBuffer
	stdout.max, stderr.max = maxCommandOutput, 4<<10
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = []string{"LC_ALL=C"}
	if err := cmd.Run(); err != nil {
		msg, _, _ := strings.Cut(strings.TrimSpace(stderr.buf.String()), "\n")
		if msg != "" {
			return nil, fmt.Errorf("%s: %w: %s", path, err, msg)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return stdout.buf.Bytes(), nil
}

// cappedBuffer keeps the first max bytes written to it and drops the rest.
// (It must not embed bytes.Buffer: io.Copy would use the promoted ReadFrom
// and bypass the cap.)
type cappedBuffer struct {
	buf bytes.Buffer
	max int
}

// Write keeps what fits and reports every byte as written.
func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// findExecutable returns the first of paths that is an executable regular file.
func findExecutable(paths []string) (string, bool) {
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			continue
		}
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// validIfName reports whether name is a usable Linux interface name:
// 1–15 bytes, printable ASCII, no '/', ':' or whitespace, not "." or "..",
// and not starting with '-' (it ends up in an argv).
func validIfName(name string) bool {
	if name == "" || len(name) > 15 || name == "." || name == ".." || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == ':' {
			return false
		}
	}
	return true
}

// tapQueueCounts are a tap's queues as `ip -d link` shows them. The kernel
// (drivers/net/tun.c) counts the queues attached to the device in
// numqueues and the detached ones in numdisabled: QEMU detaches the queues
// the guest turned off, so Active is what the guest uses and Active +
// Disabled is what the tap was created with (N). Recorded on the real stack
// after "ethtool -L eth0 combined 2" on a 4-queue NIC: numqueues 2 numdisabled 2.
type tapQueueCounts struct {
	Active   int // numqueues
	Disabled int // numdisabled
}

// Total is the queues the tap has, attached or not.
func (c tapQueueCounts) Total() int { return c.Active + c.Disabled }

// tapQueues runs `ip -d link show dev TAP` and parses its queue counts.
func (h Host) tapQueues(ctx context.Context, tap string) (tapQueueCounts, error) {
	if !validIfName(tap) {
		return tapQueueCounts{}, fmt.Errorf("invalid tap name %q", tap)
	}
	ip, ok := findExecutable(h.IPPaths)
	if !ok {
		return tapQueueCounts{}, fmt.Errorf("%w (looked for %s)", errNoIP, strings.Join(h.IPPaths, ", "))
	}
	out, err := h.RunIP(ctx, ip, "-d", "link", "show", "dev", tap)
	if err != nil {
		return tapQueueCounts{}, fmt.Errorf("ip -d link show dev %s: %w", tap, err)
	}
	return parseTapQueues(out)
}

// maxTapCount bounds the counts parseTapQueues accepts: far above the
// kernel's limit of queues per tap (256), low enough that their sum cannot
// overflow.
const maxTapCount = 1 << 16

// parseTapQueues reads "numqueues K numdisabled D" from `ip -d link show`
// output for a tun/tap device (see tapQueueCounts). A missing numdisabled
// counts as 0; a missing numqueues is errNoTapQueues.
func parseTapQueues(out []byte) (tapQueueCounts, error) {
	f := strings.Fields(string(out))
	c := tapQueueCounts{Active: -1}
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "numqueues", "numdisabled":
			n, err := strconv.Atoi(f[i+1])
			if err != nil || n < 0 || n > maxTapCount {
				return tapQueueCounts{}, fmt.Errorf("ip -d link: bad %s value %q", f[i], f[i+1])
			}
			if f[i] == "numqueues" {
				c.Active = n
			} else {
				c.Disabled = n
			}
			i++
		}
	}
	if c.Active < 0 {
		return tapQueueCounts{}, errNoTapQueues
	}
	return c, nil
}

// hasVhostNet reports whether DEV/vhost-net exists.
func (h Host) hasVhostNet() bool {
	_, err := os.Stat(filepath.Join(h.DevRoot, "vhost-net"))
	return err == nil
}

// qemuPID reads the pid libvirt recorded for a running domain's QEMU.
func (h Host) qemuPID(domain string) (int, error) {
	if domain == "" || domain == "." || domain == ".." || strings.ContainsAny(domain, "/\x00") {
		return 0, fmt.Errorf("invalid domain name %q", domain)
	}
	p := filepath.Join(h.RunRoot, "libvirt", "qemu", domain+".pid")
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read QEMU pid: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("read QEMU pid: %s: not a pid", p)
	}
	return pid, nil
}

// vhostWorkers counts the threads named vhost-PID: since Linux 6.4 they are
// tasks of QEMU itself (PROC/PID/task/*/comm); before, kernel threads of
// their own (PROC/*/comm), looked for only when QEMU has none.
func (h Host) vhostWorkers(pid int) (int, error) {
	want := "vhost-" + strconv.Itoa(pid)
	countIn := func(pattern string) (int, error) {
		comms, err := filepath.Glob(pattern)
		if err != nil {
			return 0, err
		}
		n := 0
		for _, c := range comms {
			b, err := os.ReadFile(c)
			if err != nil {
				continue // the thread exited
			}
			if strings.TrimSpace(string(b)) == want {
				n++
			}
		}
		return n, nil
	}
	if _, err := os.Stat(filepath.Join(h.ProcRoot, strconv.Itoa(pid))); err != nil {
		return 0, fmt.Errorf("QEMU process %d: %w", pid, err)
	}
	n, err := countIn(filepath.Join(h.ProcRoot, strconv.Itoa(pid), "task", "*", "comm"))
	if err != nil || n > 0 {
		return n, err
	}
	return countIn(filepath.Join(h.ProcRoot, "[0-9]*", "comm"))
}

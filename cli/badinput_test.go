package cli

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/virt"
)

// TestBadInputRefusedFast: what a hostile or careless user feeds plan and
// rewrite gets what the hook and the policy loader give it: a refusal
// within a bounded time and memory, with one line saying why.
func TestBadInputRefusedFast(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := func(t *testing.T) *os.File {
		f, err := os.Open("/dev/zero")
		if err != nil {
			t.Skip(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	for _, tt := range []struct {
		name  string
		args  []string
		stdin func(t *testing.T) *os.File
		want  string
	}{
		{"plan /dev/zero", []string{"plan", "/dev/zero"}, nil, "virtmq plan: read /dev/zero: not a regular file (a character device)\n"},
		{"rewrite /dev/zero", []string{"rewrite", "/dev/zero"}, nil, "virtmq rewrite: read /dev/zero: not a regular file (a character device)\n"},
		{"plan a FIFO", []string{"plan", fifo}, nil, "virtmq plan: read " + fifo + ": not a regular file (a FIFO)\n"},
		{"rewrite a FIFO", []string{"rewrite", fifo}, nil, "not a regular file (a FIFO)\n"},
		{"plan a directory", []string{"plan", "."}, nil, "virtmq plan: read .: not a regular file (a directory)\n"},
		{"plan - </dev/zero", []string{"plan", "-"}, zero, "virtmq plan: <stdin>: input is larger than 16777216 bytes (16 MiB), the limit of a domain XML\n"},
		{"rewrite - </dev/zero", []string{"rewrite", "-"}, zero, "virtmq rewrite: <stdin>: input is larger than 16777216 bytes (16 MiB), the limit of a domain XML\n"},
		{"rewrite </dev/zero", []string{"rewrite"}, zero, "virtmq rewrite: <stdin>: input is larger than 16777216 bytes (16 MiB), the limit of a domain XML\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRun(t, nil, nil)
			if tt.stdin != nil {
				r.env.Stdin = tt.stdin(t)
			}
			start := time.Now()
			code := Main(context.Background(), r.env, append(tt.args, "--policy", testPolicy))
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
			if code != ExitFailure {
				t.Errorf("exit %d, want %d", code, ExitFailure)
			}
			wantLines(t, "stderr", r.stderr.String(), tt.want)
			if r.stdout.Len() > 0 {
				t.Errorf("stdout: %q, want nothing (no empty table)", r.stdout)
			}
		})
	}
}

// TestStdinReadInterrupted: plan - reading a pipe nobody writes to (a
// terminal nobody types in) gives up when the signal context ends.
func TestStdinReadInterrupted(t *testing.T) {
	for _, cmd := range []string{"plan", "rewrite"} {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		r := newTestRun(t, nil, nil)
		r.env.Stdin = pr
		ctx, cancel := context.WithCancelCause(context.Background())
		time.AfterFunc(100*time.Millisecond, func() { cancel(context.Canceled) })
		start := time.Now()
		code := Main(ctx, r.env, []string{cmd, "--policy", testPolicy, "-"})
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: returned %s after the interrupt", cmd, d)
		}
		if code != ExitFailure {
			t.Errorf("%s: exit %d, want %d", cmd, code, ExitFailure)
		}
		wantLines(t, cmd, r.stderr.String(), "virtmq "+cmd+": <stdin>: read interrupted: context canceled\n")
		pw.Close()
		pr.Close()
	}
}

// TestEmptyConnectIsUsageError: -c "$UNSET" must not fall through to
// $LIBVIRT_DEFAULT_URI or the local host: nothing is dialled.
func TestEmptyConnectIsUsageError(t *testing.T) {
	for _, args := range [][]string{
		{"apply", "-c", "", "--all"},
		{"apply", "--connect=", "--all"},
		{"apply", "--connect-socket", "", "--all"},
		{"apply", "--cold-boot", "-c", "", "--all"},
		{"verify", "-c", "", "web1"},
		{"exclude", "-c", "", "web1"},
		{"include", "--connect", "", "web1"},
		{"-c", "", "apply", "--all"},
	} {
		r := newTestRun(t, nil, map[string]string{URIEnvVar: "qemu+unix:///system?socket=/elsewhere"})
		code := Main(context.Background(), r.env, args)
		if code != ExitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, ExitUsage)
		}
		if len(r.uris) > 0 {
			t.Errorf("%q: dialled %v", args, r.uris)
		}
		wantLines(t, strings.Join(args, " "), r.stderr.String(), "is empty (an unset variable?)", "Usage: virtmq ")
	}
}

// TestConnectTimeoutSameForAll: a libvirt that accepts the connection but
// never answers is given up on after the one connect timeout by every
// command, verify (whose --timeout is 2 minutes) included.
func TestConnectTimeoutSameForAll(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // accept, never answer
		}
	}()
	uri := "qemu+tcp://" + ln.Addr().String() + "/system"
	const limit = 500 * time.Millisecond
	for _, args := range [][]string{
		{"verify", "-c", uri, "--policy", testPolicy, "web1"},
		{"apply", "-c", uri, "--policy", testPolicy, "--all"},
		{"apply", "--cold-boot", "-c", uri, "--policy", testPolicy, "--all"},
		{"exclude", "-c", uri, "web1"},
		{"include", "-c", uri, "web1"},
	} {
		r := newTestRun(t, nil, nil)
		r.env.Dial = func(ctx context.Context, u virt.URI) (virt.Conn, error) {
			c, _, err := virt.DialURI(ctx, u, virt.DialOptions{Getenv: func(string) string { return "" }})
			return c, err
		}
		r.env.ConnectTimeout = limit
		start := time.Now()
		code := Main(context.Background(), r.env, args)
		d := time.Since(start)
		if code != ExitFailure {
			t.Errorf("%q: exit %d, want %d", args, code, ExitFailure)
		}
		if d < limit || d > limit+3*time.Second {
			t.Errorf("%q: gave up after %s, want about %s", args, d, limit)
		}
		wantLines(t, strings.Join(args, " "), r.stderr.String(), "cannot connect to libvirt at "+uri+" (from -c): no answer within 500ms")
	}
	if DefaultConnectTimeout != 10*time.Second {
		t.Errorf("DefaultConnectTimeout = %s, the documented 10s", DefaultConnectTimeout)
	}
}

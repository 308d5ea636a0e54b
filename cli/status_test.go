package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/status"
)

// testSnapshot is what the fake agent serves.
func testSnapshot() status.Snapshot {
	at := time.Date(2025, 11, 25, 21, 4, 5, 0, time.UTC)
	return status.Snapshot{
		Generated: at.Add(time.Minute),
		Version:   "virtmq-agent 1.2.3",
		Libvirt:   status.Libvirt{Connected: true, Socket: "/run/libvirt/virtqemud-sock", Since: at, Reconnects: 2},
		Policy:    status.Policy{Sources: []string{"/etc/virtmq/policy.yaml"}, Mode: "observe", LoadedAt: at, Digest: "0123456789abcdef"},
		Domains: []status.Domain{
			{
				Name: "web", UUID: "0b6c2f6e-3d41-4d6a-9c0e-6f1b7a2e9d01", Persistent: true, Active: true,
				State: status.StatePendingColdBoot, LastAction: "redefined", LastAt: at,
				NICs: []status.NIC{
					{MAC: "52:54:00:12:34:56", Managed: true, Wanted: 4, Defined: 4, Running: 1, QMPVirtqueues: 3,
						GuestIfName: "eth0", GuestWanted: 1, GuestCurrent: 1, GuestMax: 1, GuestStep: "done"},
					{MAC: "52:54:00:12:34:58", Managed: false, Wanted: 1, Defined: 1, Running: 1},
				},
			},
			{
				Name: "db", Persistent: true, Active: true, State: status.StateCompliant,
				NICs: []status.NIC{
					{MAC: "52:54:00:ab:cd:01", Managed: true, Wanted: 4, Defined: 4, Running: 4, QMPVirtqueues: 9, MQ: true,
						GuestIfName: "ens3", GuestWanted: 4, GuestCurrent: 2, GuestMax: 4,
						GuestStep: "guest-exec is disabled by the guest's qemu-ga policy"},
				},
			},
			{Name: "off", Persistent: true, State: status.StateRewritten, Problem: "bad\x1b[2Jname",
				NICs: []status.NIC{{MAC: "52:54:00:00:00:09", Managed: true, Wanted: 2, Defined: 2}}},
			{Name: "tmp", State: status.StateTransient, Active: true},
			{Name: "new", Persistent: true, State: status.StateWouldRedefine, Problem: "mode observe: the agent would redefine it",
				Would: []string{"redefine: 52:54:00:00:00:0a 1→4 queues"},
				NICs:  []status.NIC{{MAC: "52:54:00:00:00:0a", Managed: true, Wanted: 4, Defined: 1}}},
		},
	}
}

// serveStatus runs a fake agent status server on a temporary socket.
func serveStatus(t *testing.T, snap status.Snapshot) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmq") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "status.sock")
	ln, err := status.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- status.Serve(ctx, ln, func() status.Snapshot { return snap }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("status server: %v", err)
		}
	})
	return sock
}

func TestStatusTable(t *testing.T) {
	snap := testSnapshot()
	sock := serveStatus(t, snap)
	r := newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, []string{"status", "-o", "wide", "--status-socket", sock}); code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, r.stderr)
	}
	out := r.stdout.String()
	at := fmtTime(snap.Domains[0].LastAt)
	wantLines(t, "status", out,
		"agent:   virtmq-agent 1.2.3",
		"libvirt: connected via /run/libvirt/virtqemud-sock since "+fmtTime(snap.Libvirt.Since)+" (2 reconnects)",
		"policy:  /etc/virtmq/policy.yaml (mode observe, loaded ",
		", digest 0123456789abcdef)",
		`mode observe: the agent changes nothing; "would:" is what it does in mode apply`,
		"DOMAIN  MAC                WANTED  DEFINED  RUNNING  QMP VQS  GUEST IF  GUEST CUR/MAX",
		"LAST ACTION  AT", "STATE / PROBLEM",
		"redefined    "+at,
		"pending-cold-boot; guest: done",
		"not managed",
		"9 mq",
		"2/4 (want 4)",
		"compliant; guest: guest-exec is disabled by the guest's qemu-ga policy",
		"off", "rewritten: bad?[2Jname",
		"tmp", "transient",
		"would-redefine: mode observe: the agent would redefine it; would: redefine: 52:54:00:00:00:0a 1→4 queues",
	)
	// One row per NIC; the domain's action is on its first row only.
	lines := strings.Split(out, "\n")
	var web []string
	for _, l := range lines {
		if strings.HasPrefix(l, "web ") {
			web = append(web, l)
		}
	}
	if len(web) != 2 || !strings.Contains(web[0], "redefined") || strings.Contains(web[1], "redefined") {
		t.Errorf("web rows:\n%s", strings.Join(web, "\n"))
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "off ") && !strings.Contains(l, " off ") {
			t.Errorf("shut-off domain's running column is not \"off\": %q", l)
		}
	}
}

func TestStatusJSON(t *testing.T) {
	snap := testSnapshot()
	sock := serveStatus(t, snap)
	r := newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, []string{"status", "--json", "--status-socket", sock}); code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, r.stderr)
	}
	var got status.Snapshot
	if err := json.Unmarshal(r.stdout.Bytes(), &got); err != nil {
		t.Fatalf("output is not a snapshot: %v\n%s", err, r.stdout)
	}
	snap.FormatVersion = 1 // filled in for an agent that does not send it
	snap.Domains[3].NICs = []status.NIC{}
	if !reflect.DeepEqual(got, snap) {
		t.Errorf("snapshot changed on the way:\ngot  %+v\nwant %+v", got, snap)
	}
}

func TestStatusNoDomains(t *testing.T) {
	sock := serveStatus(t, status.Snapshot{Libvirt: status.Libvirt{LastError: "dial unix: no such file"}})
	r := newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, []string{"status", "--status-socket", sock}); code != ExitFailure {
		t.Fatalf("exit %d, want 1 (libvirt not connected), stderr:\n%s", code, r.stderr)
	}
	wantLines(t, "status", r.stdout.String(), "libvirt: NOT connected: dial unix: no such file", "no domains")
	wantLines(t, "stderr", r.stderr.String(), "virtmq status: virtmq-agent is not connected to libvirt")
}

// TestStatusUnhealthyExit: the status is printed, and the exit code says
// whether the agent is healthy.
func TestStatusUnhealthyExit(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(*status.Snapshot)
		want   int
		stderr string
	}{
		{"healthy", func(*status.Snapshot) {}, ExitOK, ""},
		{"libvirt not connected", func(s *status.Snapshot) { s.Libvirt.Connected = false }, ExitFailure, "not connected to libvirt"},
		{"reload failed", func(s *status.Snapshot) { s.Policy.LastReloadError = "policy.yaml:1:1: bad" }, ExitFailure, "last policy reload failed"},
	} {
		for _, asJSON := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/json=%v", tt.name, asJSON), func(t *testing.T) {
				snap := testSnapshot()
				tt.change(&snap)
				args := []string{"status", "--status-socket", serveStatus(t, snap)}
				if asJSON {
					args = append(args, "--json")
				}
				r := newTestRun(t, nil, nil)
				if code := Main(context.Background(), r.env, args); code != tt.want {
					t.Errorf("exit %d, want %d", code, tt.want)
				}
				if r.stdout.Len() == 0 {
					t.Error("nothing printed")
				}
				if tt.stderr != "" {
					wantLines(t, "stderr", r.stderr.String(), tt.stderr)
				} else if r.stderr.Len() != 0 {
					t.Errorf("stderr: %s", r.stderr)
				}
			})
		}
	}
}

func TestStatusAgentNotRunning(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	// A socket file nobody listens on, as a crashed agent leaves.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: stale}); err != nil {
		syscall.Close(fd)
		t.Skipf("cannot bind a unix socket here: %v", err)
	}
	syscall.Close(fd)

	for _, sock := range []string{filepath.Join(dir, "missing.sock"), stale} {
		t.Run(filepath.Base(sock), func(t *testing.T) {
			r := newTestRun(t, nil, nil)
			if code := Main(context.Background(), r.env, []string{"status", "--status-socket", sock}); code != ExitFailure {
				t.Errorf("exit %d, want %d", code, ExitFailure)
			}
			wantLines(t, "stderr", r.stderr.String(), "virtmq status: virtmq-agent is not running: cannot connect to its status socket "+sock)
			if r.stdout.Len() != 0 {
				t.Errorf("stdout: %q", r.stdout)
			}
		})
	}
}

func TestFetchProblem(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("connect: %w", syscall.ENOENT), "virtmq-agent is not running: cannot connect to its status socket /s (no such file or directory)"},
		{fmt.Errorf("connect: %w", syscall.ECONNREFUSED), "virtmq-agent is not running"},
		{fmt.Errorf("connect: %w", syscall.EACCES), "cannot connect to virtmq-agent's status socket /s (permission denied): it is readable by root only"},
		{fmt.Errorf("failed to decode agent status: %w", &json.SyntaxError{}), "cannot read virtmq-agent's status from /s: failed to decode"},
	}
	for _, tt := range tests {
		if got := fetchProblem("/s", tt.err); !strings.Contains(got, tt.want) {
			t.Errorf("fetchProblem(%v) = %q, want it to contain %q", tt.err, got, tt.want)
		}
	}
}

func TestStatusUsage(t *testing.T) {
	r := newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, []string{"status", "extra"}); code != ExitUsage {
		t.Errorf("exit %d, want %d", code, ExitUsage)
	}
	r = newTestRun(t, nil, nil)
	if code := Main(context.Background(), r.env, []string{"status", "--help"}); code != ExitOK {
		t.Errorf("--help: exit %d", code)
	}
	wantLines(t, "help", r.stdout.String(), "Usage: virtmq status", "--json", "--status-socket", status.DefaultSocket, "Exits 1 when the agent cannot be reached")
}

// TestStatusDecisions: a kept NIC says why, a NIC left alone gives its
// reason unless the domain's problem already does, and warnings follow
// the domain's state.
func TestStatusDecisions(t *testing.T) {
	s := status.Snapshot{Domains: []status.Domain{
		{Name: "fw", Persistent: true, State: status.StateUnmanaged, NICs: []status.NIC{
			{MAC: "52:54:00:00:00:01", Defined: 1, Kept: true, Reason: "kept: set by hand (rule defaults says keep)"},
			{MAC: "52:54:00:00:00:02", Reason: "vhost-user: QEMU refuses to start ..."},
		}},
		{Name: "ex", Persistent: true, State: status.StateUnmanaged, Problem: "excluded by the domain's virtmq label", NICs: []status.NIC{
			{MAC: "52:54:00:00:00:03", Reason: "excluded by the domain's virtmq label"},
		}},
		{Name: "big", Persistent: true, State: status.StateCompliant, Warnings: []string{"NIC #1: 3 queues, below the 4 ..."}, NICs: []status.NIC{
			{MAC: "52:54:00:00:00:04", Managed: true, Wanted: 3, Defined: 3},
		}},
	}}
	var b strings.Builder
	if err := printStatus(&Env{Stdout: &b}, s, true); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"unmanaged; kept: set by hand (rule defaults says keep)\n",
		"not managed: vhost-user: QEMU refuses to start ...\n",
		"unmanaged: excluded by the domain's virtmq label; not managed\n",
		"compliant; warning: NIC #1: 3 queues, below the 4 ...\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

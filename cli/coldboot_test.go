package cli

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/virtmq/virtmq/internal/verify"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

func runColdBootTest(t *testing.T, fake *virttest.Conn, args ...string) (int, *testRun) {
	t.Helper()
	r := newTestRun(t, fake, nil)
	args = append([]string{"--cold-boot", "--policy", testPolicy, "--status-socket", t.TempDir() + "/none.sock"}, args...)
	return coldBootMain(context.Background(), r.env, args, verify.Host{}, 5*time.Millisecond), r
}

// web.xml runs single-queue with 4 vCPUs: pending once started.
func pendingWeb(t *testing.T, fake *virttest.Conn) {
	t.Helper()
	define(t, fake, "web.xml")
	if err := fake.Start("web"); err != nil {
		t.Fatal(err)
	}
}

func TestColdBootDryRun(t *testing.T) {
	fake := virttest.New()
	pendingWeb(t, fake)
	before, _ := fake.InactiveXML("web")
	code, r := runColdBootTest(t, fake, "--dry-run", "--all")
	if code != ExitOK {
		t.Errorf("exit %d; stderr:\n%s", code, r.stderr)
	}
	wantLines(t, "stdout", r.stdout.String(), "web: would restart: 52:54:00:", "runs 1, wants 4",
		"DOMAIN  RESULT", "apply --cold-boot: 1 would restart")
	after, _ := fake.InactiveXML("web")
	if !bytes.Equal(before, after) || fake.Calls(virttest.MethodShutdownDomain) != 0 {
		t.Error("a dry run changed something")
	}
}

func TestColdBootRefusesTransient(t *testing.T) {
	fake := virttest.New()
	if _, err := fake.Create(readFixture(t, "web.xml")); err != nil {
		t.Fatal(err)
	}
	code, r := runColdBootTest(t, fake, "we*")
	if code != ExitFailure {
		t.Errorf("exit %d, want 1", code)
	}
	wantLines(t, "stdout", r.stdout.String(), "web: refused: transient domain")
}

// A guest ignoring ACPI stays running without --force: never left off.
func TestColdBootDeafGuestLeftRunning(t *testing.T) {
	fake := virttest.New()
	pendingWeb(t, fake)
	fake.SetIgnoreACPI("web", true)
	code, r := runColdBootTest(t, fake, "--shutdown-timeout", "50ms", "web")
	if code != ExitFailure {
		t.Errorf("exit %d, want 1", code)
	}
	wantLines(t, "stdout", r.stdout.String(), "did not power off within 50ms; left running", "FAILED")
	if d, _ := fake.LookupDomain(context.Background(), "web"); !d.Active {
		t.Error("the domain was left off")
	}
	// With --force it is destroyed and started again; verification of the
	// fake guest then fails, but the domain runs.
	code, r = runColdBootTest(t, fake, "--shutdown-timeout", "50ms", "--force", "--boot-timeout", "200ms", "web")
	wantLines(t, "stdout", r.stdout.String(), "forcing it off", "starting")
	if d, _ := fake.LookupDomain(context.Background(), "web"); !d.Active {
		t.Errorf("the domain was left off (exit %d)", code)
	}
	if fake.Calls(virttest.MethodDestroyDomain) != 1 || fake.Calls(virttest.MethodStartDomain) != 1 {
		t.Errorf("destroy %d, start %d; want 1, 1", fake.Calls(virttest.MethodDestroyDomain), fake.Calls(virttest.MethodStartDomain))
	}
}

// A paused domain cannot be shut down (libvirt refuses it): without
// --force it is left paused at once, not after the timeout; with --force
// it is destroyed and started without waiting.
func TestColdBootPausedDomain(t *testing.T) {
	fake := virttest.New()
	pendingWeb(t, fake)
	d, err := fake.LookupDomain(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.SuspendDomain(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, r := runColdBootTest(t, fake, "--shutdown-timeout", "5s", "web")
	if code != ExitFailure {
		t.Errorf("exit %d, want 1", code)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s: waited for a shutdown that cannot come", took)
	}
	wantLines(t, "stdout", r.stdout.String(), "paused (or not running): libvirt cannot shut it down; left as it is", "FAILED")
	if !fake.Paused("web") || fake.Calls(virttest.MethodDestroyDomain) != 0 {
		t.Error("the paused domain was not left paused")
	}
	start = time.Now()
	code, r = runColdBootTest(t, fake, "--shutdown-timeout", "5s", "--force", "--boot-timeout", "200ms", "web")
	wantLines(t, "stdout", r.stdout.String(), "forcing it off (--force)", "starting")
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s with --force", took)
	}
	if !fake.Active("web") || fake.Paused("web") {
		t.Errorf("web does not run (exit %d)", code)
	}
	if fake.Calls(virttest.MethodDestroyDomain) != 1 || fake.Calls(virttest.MethodStartDomain) != 1 {
		t.Errorf("destroy %d, start %d; want 1, 1", fake.Calls(virttest.MethodDestroyDomain), fake.Calls(virttest.MethodStartDomain))
	}
}

// On a remote URI the local agent's status socket is not the remote
// host's: the guest step runs here, and the host checks are skipped.
func TestColdBootRemote(t *testing.T) {
	fake := virttest.New()
	pendingWeb(t, fake)
	r := newTestRun(t, fake, nil)
	args := []string{"--cold-boot", "--policy", testPolicy, "-c", "qemu+ssh://root@host2/system",
		"--shutdown-timeout", "50ms", "--force", "--boot-timeout", "1s", "web"}
	coldBootMain(context.Background(), r.env, args, verify.Host{}, 5*time.Millisecond)
	// The fake guest has no agent: the guest step tried here says so.
	wantLines(t, "stdout", r.stdout.String(), "starting", "guest step did not finish", "last: guest-info: guest agent is not connected")
	wantNot(t, "stdout", r.stdout.String(), "virtmq-agent")
	if got := r.uris; len(got) != 1 || got[0] != "qemu+ssh://root@host2/system" {
		t.Errorf("dialed %q", got)
	}
}

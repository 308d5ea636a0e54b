package hooks

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const web1UUID = "8c1f7d43-6f2a-4b8e-9a51-0d3c2b7e1a01" // testdata/web1.xml

// runIn is run with the incoming markers kept in dir.
func runIn(t *testing.T, dir, policyPath string, stdin []byte, args ...string) result {
	t.Helper()
	var stderr, log bytes.Buffer
	cfg := Config{
		PolicyPath:        policyPath,
		DefaultPolicyPath: filepath.Join(t.TempDir(), "absent.yaml"),
		Getenv:            func(string) string { return "" },
		Stdin:             bytes.NewReader(stdin),
		Stderr:            &stderr,
		Logger:            slog.New(slog.NewTextHandler(&log, nil)),
		TimeLimit:         5 * time.Second,
		IncomingDir:       dir,
	}
	code := Run(cfg, args)
	return result{code, stderr.String(), log.String()}
}

// TestIncoming: under enforce, the prepare right after a migrate or restore
// of the same domain is not refused (its queues travel unchanged); any
// other prepare still is.
func TestIncoming(t *testing.T) {
	web1 := fixture(t, "web1.xml")
	enforce := writePolicy(t, policyWith("enforce", "deny"))
	prepare := []string{"web1", "prepare", "begin", "-"}
	refused := func(t *testing.T, got result) {
		t.Helper()
		if got.code != ExitDeny || !strings.Contains(got.stderr, "queues=1, policy wants 4") {
			t.Errorf("prepare: code %d stderr %q, want the refusal", got.code, got.stderr)
		}
	}

	for _, op := range []string{"migrate", "restore"} {
		t.Run(op+" then prepare is allowed", func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "incoming")
			got := runIn(t, dir, enforce, web1, "web1", op, "begin", "-")
			if got.code != ExitAllow || got.stderr != "" || got.log != "" {
				t.Fatalf("%s: code %d stderr %q log %q, want 0 and nothing", op, got.code, got.stderr, got.log)
			}
			fi, err := os.Stat(filepath.Join(dir, web1UUID))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("marker: %v %v, want a 0600 file", fi, err)
			}
			if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
				t.Fatalf("marker dir: %v %v, want 0700", di, err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, web1UUID)); bytes.Contains(b, []byte("s3cret")) || len(b) > 16 {
				t.Errorf("marker holds %q, want only the operation", b)
			}
			got = runIn(t, dir, enforce, web1, prepare...)
			if got.code != ExitAllow || got.stderr != "" {
				t.Errorf("prepare after %s: code %d stderr %q, want 0 and nothing", op, got.code, got.stderr)
			}
			for _, s := range []string{"level=WARN", "incoming=" + op, "not refused", "mac=52:54:00:12:34:56", "wanted=4"} {
				if !strings.Contains(got.log, s) {
					t.Errorf("log %q lacks %q", got.log, s)
				}
			}
			// taken: the next start is a boot, refused
			refused(t, runIn(t, dir, enforce, web1, prepare...))
		})
	}

	t.Run("a plain prepare is refused", func(t *testing.T) {
		refused(t, runIn(t, filepath.Join(t.TempDir(), "incoming"), enforce, web1, prepare...))
	})

	t.Run("a stale marker is refused", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "incoming")
		runIn(t, dir, enforce, web1, "web1", "migrate", "begin", "-")
		old := time.Now().Add(-IncomingFresh - time.Minute)
		if err := os.Chtimes(filepath.Join(dir, web1UUID), old, old); err != nil {
			t.Fatal(err)
		}
		refused(t, runIn(t, dir, enforce, web1, prepare...))
	})

	t.Run("a marker for another domain is refused", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "incoming")
		other := bytes.Replace(web1, []byte(web1UUID), []byte("0d3c2b7e-1a01-4b8e-9a51-8c1f7d436f2a"), 1)
		runIn(t, dir, enforce, other, "web1", "migrate", "begin", "-")
		refused(t, runIn(t, dir, enforce, web1, prepare...))
	})

	t.Run("cleared when the start fails", func(t *testing.T) {
		for _, after := range [][]string{{"stopped", "end", "-"}, {"release", "end", "failed"}, {"started", "begin", "-"}} {
			dir := filepath.Join(t.TempDir(), "incoming")
			runIn(t, dir, enforce, web1, "web1", "migrate", "begin", "-")
			runIn(t, dir, enforce, web1, append([]string{"web1"}, after...)...)
			if _, err := os.Stat(filepath.Join(dir, web1UUID)); !os.IsNotExist(err) {
				t.Errorf("after %s: marker %v, want it gone", after[0], err)
			}
		}
	})

	t.Run("an unwritable marker dir is logged, migrate goes on", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "not-a-dir")
		if err := os.WriteFile(file, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(file, "incoming") // under a file: as unwritable for root as for anyone
		got := runIn(t, dir, enforce, web1, "web1", "migrate", "begin", "-")
		if got.code != ExitAllow || got.stderr != "" {
			t.Errorf("migrate: code %d stderr %q, want 0 and nothing", got.code, got.stderr)
		}
		for _, s := range []string{"level=ERROR", "cannot mark the incoming migrate", "refuses it"} {
			if !strings.Contains(got.log, s) {
				t.Errorf("log %q lacks %q", got.log, s)
			}
		}
		refused(t, runIn(t, dir, enforce, web1, prepare...))
	})

	t.Run("malformed XML at migrate is logged, migrate goes on", func(t *testing.T) {
		got := runIn(t, filepath.Join(t.TempDir(), "incoming"), enforce, []byte("<domain><name>x</nam"), "web1", "migrate", "begin", "-")
		if got.code != ExitAllow || got.stderr != "" || !strings.Contains(got.log, "cannot mark the incoming migrate") {
			t.Errorf("migrate: code %d stderr %q log %q", got.code, got.stderr, got.log)
		}
	})
}

func TestValidUUID(t *testing.T) {
	for s, want := range map[string]bool{
		web1UUID:                               true,
		strings.ToUpper(web1UUID):              true,
		"":                                     false,
		"../../../../etc/libvirt/hooks/qemu.d": false,
		"8c1f7d43-6f2a-4b8e-9a51-0d3c2b7e1a0/": false,
		"8c1f7d436f2a4b8e9a510d3c2b7e1a01":     false,
	} {
		if validUUID(s) != want {
			t.Errorf("validUUID(%q) = %v, want %v", s, !want, want)
		}
	}
}

// A FIFO where the marker would be is not read (nobody writes to it, so a
// read would wait until the hook's time limit) and counts as no marker.
func TestTakeIncomingFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, web1UUID), 0o600); err != nil {
		t.Fatal(err)
	}
	type taken struct {
		op  string
		err error
	}
	done := make(chan taken, 1)
	go func() {
		op, err := takeIncoming(dir, web1UUID, time.Now())
		done <- taken{op, err}
	}()
	select {
	case got := <-done:
		if got.op != "" || got.err != nil {
			t.Errorf("takeIncoming = %q, %v; want no marker", got.op, got.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("takeIncoming blocked on a FIFO")
	}
	if _, err := os.Lstat(filepath.Join(dir, web1UUID)); !os.IsNotExist(err) {
		t.Errorf("the FIFO is still there: %v", err)
	}
}

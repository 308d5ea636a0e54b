package hooks

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a prepare that outlives Run.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// blockingReader is a stdin that never delivers: a libvirt that does not
// close the pipe, a stuck writer.
type blockingReader struct{ release chan struct{} }

func (r blockingReader) Read([]byte) (int, error) {
	<-r.release
	return 0, os.ErrClosed
}

// TestTimeLimit: at the time limit the hook answers by the policy's
// on_error, as for any of its own failures; it used to allow always.
func TestTimeLimit(t *testing.T) {
	tests := []struct {
		mode, onErr string
		wantCode    int
	}{
		{"enforce", "deny", ExitDeny},
		{"enforce", "allow", ExitAllow},
		{"apply", "deny", ExitAllow},
		{"observe", "deny", ExitAllow},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+tt.onErr, func(t *testing.T) {
			stdin := blockingReader{make(chan struct{})}
			t.Cleanup(func() { close(stdin.release) })
			var stderr, log syncBuffer
			cfg := Config{
				PolicyPath:        writePolicy(t, policyWith(tt.mode, tt.onErr)),
				DefaultPolicyPath: filepath.Join(t.TempDir(), "absent.yaml"),
				Getenv:            func(string) string { return "" },
				Stdin:             stdin,
				Stderr:            &stderr,
				Logger:            slog.New(slog.NewTextHandler(&log, nil)),
				TimeLimit:         100 * time.Millisecond,
			}
			start := time.Now()
			code := Run(cfg, []string{"web1", "prepare", "begin", "-"})
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Run took %v with a 100ms limit", took)
			}
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q, log %q)", code, tt.wantCode, stderr.String(), log.String())
			}
			if !strings.Contains(log.String(), "did not finish within 100ms") {
				t.Errorf("log %q does not say the limit was hit", log.String())
			}
			if tt.wantCode == ExitDeny && !strings.Contains(stderr.String(), "on_error: deny") {
				t.Errorf("stderr %q does not say why", stderr.String())
			}
		})
	}
}

// TestPolicyFileKinds: whatever sits at the policy path or in policy.d,
// the hook answers at once; where the policy's on_error can be read it is
// honoured, else (an unreadable main file) the start is allowed.
func TestPolicyFileKinds(t *testing.T) {
	web1 := fixture(t, "web1.xml")
	tests := []struct {
		name     string
		onErr    string
		setup    func(t *testing.T, main string) // main is dir/policy.yaml
		wantCode int
		wantErr  string // in stderr+log; empty: no error
	}{
		{name: "symlink to a regular file", onErr: "deny", setup: func(t *testing.T, main string) {
			target := writePolicy(t, policyWith("enforce", "deny"))
			mustOK(t, os.Symlink(target, main))
		}, wantCode: ExitDeny}, // refused as non-compliant, not as an error
		{name: "huge main file", onErr: "deny", setup: func(t *testing.T, main string) {
			mustOK(t, os.WriteFile(main, []byte(policyWith("enforce", "deny")), 0o644))
			mustOK(t, os.Truncate(main, 300<<20))
		}, wantCode: ExitAllow, wantErr: "larger than"},
		{name: "main is /dev/zero", onErr: "deny", setup: func(t *testing.T, main string) {
			mustOK(t, os.Symlink("/dev/zero", main))
		}, wantCode: ExitAllow, wantErr: "not a regular file (a character device)"},
		{name: "main is a FIFO", onErr: "deny", setup: func(t *testing.T, main string) {
			mustOK(t, syscall.Mkfifo(main, 0o644))
		}, wantCode: ExitAllow, wantErr: "not a regular file (a FIFO)"},
		{name: "main is a directory", onErr: "deny", setup: func(t *testing.T, main string) {
			mustOK(t, os.Mkdir(main, 0o755))
		}, wantCode: ExitAllow, wantErr: "not a regular file (a directory)"},
	}
	// A huge drop-in beside a readable main file: on_error decides.
	for _, onErr := range []string{"allow", "deny"} {
		want := ExitAllow
		if onErr == "deny" {
			want = ExitDeny
		}
		tests = append(tests, struct {
			name     string
			onErr    string
			setup    func(t *testing.T, main string)
			wantCode int
			wantErr  string
		}{name: "huge drop-in, on_error " + onErr, onErr: onErr, setup: func(t *testing.T, main string) {
			mustOK(t, os.WriteFile(main, []byte(policyWith("enforce", onErr)), 0o644))
			d := filepath.Join(filepath.Dir(main), "policy.d")
			mustOK(t, os.Mkdir(d, 0o755))
			huge := filepath.Join(d, "50-huge.yaml")
			mustOK(t, os.WriteFile(huge, []byte("rules: []\n"), 0o644))
			mustOK(t, os.Truncate(huge, 300<<20))
		}, wantCode: want, wantErr: "50-huge.yaml: file is larger than"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			main := filepath.Join(t.TempDir(), "policy.yaml")
			tt.setup(t, main)
			start := time.Now()
			got := run(t, main, web1, "web1", "prepare", "begin", "-")
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("the hook took %v", took)
			}
			if got.code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q, log %q)", got.code, tt.wantCode, got.stderr, got.log)
			}
			if tt.wantErr == "" {
				if strings.Contains(got.log, "level=ERROR") {
					t.Errorf("unexpected error: %s", got.log)
				}
			} else if !strings.Contains(got.stderr+got.log, tt.wantErr) || !strings.Contains(got.stderr+got.log, main[:len(main)-len("policy.yaml")]) {
				t.Errorf("stderr %q, log %q: want %q naming the file", got.stderr, got.log, tt.wantErr)
			}
		})
	}
}

// TestMissingPolicy: a configured policy that is gone refuses the start;
// it does not fall back to the built-in default (apply), which would turn
// an enforce host into one that only logs. A host with nothing configured uses
// the built-in default.
func TestMissingPolicy(t *testing.T) {
	web1 := fixture(t, "web1.xml")
	run1 := func(t *testing.T, explicit, def string) result {
		var stderr, log bytes.Buffer
		code := Run(Config{
			PolicyPath:        explicit,
			DefaultPolicyPath: def,
			Getenv:            func(string) string { return "" },
			Stdin:             bytes.NewReader(web1),
			Stderr:            &stderr,
			Logger:            slog.New(slog.NewTextHandler(&log, nil)),
		}, []string{"web1", "prepare", "begin", "-"})
		return result{code, stderr.String(), log.String()}
	}
	t.Run("explicit path missing", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "policy.yaml")
		got := run1(t, missing, filepath.Join(t.TempDir(), "absent.yaml"))
		if got.code != ExitDeny || !strings.Contains(got.stderr, missing) || !strings.Contains(got.stderr, "missing") {
			t.Errorf("code %d stderr %q, want a refusal naming %s", got.code, got.stderr, missing)
		}
	})
	t.Run("default path gone, drop-ins left", func(t *testing.T) {
		dir := t.TempDir()
		mustOK(t, os.Mkdir(filepath.Join(dir, "policy.d"), 0o755))
		mustOK(t, os.WriteFile(filepath.Join(dir, "policy.d", "50-x.yaml"), []byte("rules:\n  - name: x\n    match: {domain: [x]}\n    exclude: true\n"), 0o644))
		got := run1(t, "", filepath.Join(dir, "policy.yaml"))
		if got.code != ExitDeny || !strings.Contains(got.stderr, "holds drop-ins") {
			t.Errorf("code %d stderr %q, want a refusal", got.code, got.stderr)
		}
	})
	t.Run("nothing configured", func(t *testing.T) {
		got := run1(t, "", filepath.Join(t.TempDir(), "policy.yaml"))
		if got.code != ExitAllow || got.stderr != "" {
			t.Errorf("code %d stderr %q, want the built-in default (apply): allowed", got.code, got.stderr)
		}
	})
}

// TestArgsAreData: a domain named like an option is just a name.
func TestArgsAreData(t *testing.T) {
	pol := writePolicy(t, policyWith("enforce", "allow"))
	web1 := fixture(t, "web1.xml")
	for _, name := range []string{"--help", "-h", "--version", "--policy=x", "--"} {
		got := run(t, pol, web1, name, "prepare", "begin", "-")
		if got.code != ExitDeny || !strings.Contains(got.stderr, "domain \""+name+"\"") {
			t.Errorf("domain %q: code %d stderr %q, want refused", name, got.code, got.stderr)
		}
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestBrokenPolicyModeFromDropIn: when the policy does not load, the hook
// still honours "mode: enforce, on_error: deny" set in a drop-in (drop-ins
// override the main file's mode), not only in the main file.
func TestBrokenPolicyModeFromDropIn(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "policy.yaml")
	mustOK(t, os.WriteFile(main, []byte("version: 1\nmode: apply\ndefaults: {maxx: 4}\n"), 0o644)) // broken: unknown key
	mustOK(t, os.Mkdir(filepath.Join(dir, "policy.d"), 0o755))
	mustOK(t, os.WriteFile(filepath.Join(dir, "policy.d", "10-strict.yaml"), []byte("mode: enforce\non_error: deny\n"), 0o644))
	var stderr, log bytes.Buffer
	code := Run(Config{
		DefaultPolicyPath: main,
		Getenv:            func(string) string { return "" },
		Stdin:             bytes.NewReader(fixture(t, "web1.xml")),
		Stderr:            &stderr,
		Logger:            slog.New(slog.NewTextHandler(&log, nil)),
	}, []string{"web1", "prepare", "begin", "-"})
	if code != ExitDeny || !strings.Contains(stderr.String(), "on_error: deny") {
		t.Errorf("code %d stderr %q: want the drop-in's enforce/deny to refuse the start", code, stderr.String())
	}
}

// TestTimeLimitMigrate: at migrate the marker's work is bounded too, and
// the limit never fails the migration.
func TestTimeLimitMigrate(t *testing.T) {
	stdin := blockingReader{make(chan struct{})}
	t.Cleanup(func() { close(stdin.release) })
	var stderr, log syncBuffer
	cfg := Config{
		PolicyPath:        writePolicy(t, policyWith("enforce", "deny")),
		DefaultPolicyPath: filepath.Join(t.TempDir(), "absent.yaml"),
		Getenv:            func(string) string { return "" },
		Stdin:             stdin,
		Stderr:            &stderr,
		Logger:            slog.New(slog.NewTextHandler(&log, nil)),
		TimeLimit:         100 * time.Millisecond,
		IncomingDir:       t.TempDir(),
	}
	done := make(chan int, 1)
	go func() { done <- Run(cfg, []string{"web1", "migrate", "begin", "-"}) }()
	select {
	case code := <-done:
		if code != ExitAllow || stderr.String() != "" {
			t.Errorf("exit code = %d, stderr %q; want %d and nothing", code, stderr.String(), ExitAllow)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("migrate did not return within 5s with a 100ms limit")
	}
	if !strings.Contains(log.String(), "did not finish within the time limit") {
		t.Errorf("log %q does not say the limit was hit", log.String())
	}
}

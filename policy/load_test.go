package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadFileKinds: whatever sits at the policy path, Load answers at once,
// with little memory, and names the file. Before the checks, a 300 MB file
// took 8 s and 1.85 GB, /dev/zero ran out of memory and a FIFO blocked
// until a writer came.
func TestReadFileKinds(t *testing.T) {
	const valid = "version: 1\n"
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string) // makes path
		wantErr error                           // nil: Load succeeds
		wantMsg string
	}{
		{name: "regular", setup: func(t *testing.T, p string) { write(t, p, valid) }},
		{name: "symlink to a regular file", setup: func(t *testing.T, p string) {
			target := filepath.Join(t.TempDir(), "real.yaml")
			write(t, target, valid)
			mustOK(t, os.Symlink(target, p))
		}},
		{name: "at the limit", setup: func(t *testing.T, p string) {
			write(t, p, valid+"#"+strings.Repeat("x", MaxFileSize-len(valid)-2)+"\n")
		}},
		{name: "one byte over the limit", setup: func(t *testing.T, p string) {
			write(t, p, valid+"#"+strings.Repeat("x", MaxFileSize-len(valid)-1)+"\n")
		}, wantErr: ErrTooLarge, wantMsg: "larger than 1048576 bytes"},
		{name: "huge sparse file", setup: func(t *testing.T, p string) {
			write(t, p, valid)
			mustOK(t, os.Truncate(p, 300<<20))
		}, wantErr: ErrTooLarge, wantMsg: "larger than"},
		{name: "char device", setup: func(t *testing.T, p string) {
			if _, err := os.Stat("/dev/zero"); err != nil {
				t.Skip("no /dev/zero")
			}
			mustOK(t, os.Symlink("/dev/zero", p))
		}, wantErr: ErrNotRegular, wantMsg: "not a regular file (a character device)"},
		{name: "FIFO", setup: func(t *testing.T, p string) {
			mustOK(t, syscall.Mkfifo(p, 0o644))
		}, wantErr: ErrNotRegular, wantMsg: "not a regular file (a FIFO)"},
		{name: "directory", setup: func(t *testing.T, p string) {
			mustOK(t, os.Mkdir(p, 0o755))
		}, wantErr: ErrNotRegular, wantMsg: "not a regular file (a directory)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			tt.setup(t, path)
			start := time.Now()
			_, err := Load(path)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Load took %v", took)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v wrapped", err, tt.wantErr)
			}
			var pe *fs.PathError
			if !errors.As(err, &pe) || pe.Path != path || !strings.Contains(err.Error(), path) {
				t.Errorf("err = %v, does not name %s", err, path)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %v, want %q in it", err, tt.wantMsg)
			}
		})
	}
}

// TestReadFileDropIns: the same limits hold for drop-ins; a FIFO or a
// device there is skipped like a directory, never opened for a read that
// blocks.
func TestReadFileDropIns(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "policy.yaml")
	write(t, main, "version: 1\n")
	d := filepath.Join(dir, DropInDir)
	mustOK(t, os.MkdirAll(d, 0o755))
	mustOK(t, syscall.Mkfifo(filepath.Join(d, "10-fifo.yaml"), 0o644))
	if _, err := os.Stat("/dev/zero"); err == nil {
		mustOK(t, os.Symlink("/dev/zero", filepath.Join(d, "20-zero.yaml")))
	}
	p, err := Load(main)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := p.Sources(); len(got) != 1 {
		t.Errorf("sources = %q, want only the main file", got)
	}

	huge := filepath.Join(d, "30-huge.yaml")
	write(t, huge, "rules: []\n")
	mustOK(t, os.Truncate(huge, 300<<20))
	_, err = Load(main)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), huge) {
		t.Errorf("err = %v, want ErrTooLarge naming %s", err, huge)
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestLoadWarnsIgnoredDropIns: a file in policy.d that is not read because
// of its name is a warning naming it, never skipped silently; hidden files
// and directories are skipped without one.
func TestLoadWarnsIgnoredDropIns(t *testing.T) {
	dir := t.TempDir()
	main := filepath.Join(dir, "policy.yaml")
	write(t, main, "version: 1\n")
	d := filepath.Join(dir, DropInDir)
	for _, name := range []string{"10-a.yaml", "20-b.yml", "30-c.yaml.dpkg-old", "40-d.yaml~", "50-e.yaml.rpmnew", "60-f.yaml.bak", "README", ".70-g.yaml.swp"} {
		write(t, filepath.Join(d, name), "rules: []\n")
	}
	mustOK(t, os.Mkdir(filepath.Join(d, "sub"), 0o755))
	p, err := Load(main)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := p.Sources(); len(got) != 2 {
		t.Errorf("sources = %q, want the main file and 10-a.yaml", got)
	}
	var got []string
	for _, w := range p.Warnings() {
		got = append(got, w.Error())
	}
	want := []string{
		d + "/20-b.yml: warning: ignored: drop-ins must end in .yaml, not .yml (rename it to 20-b.yaml)",
		d + "/30-c.yaml.dpkg-old: warning: ignored: a package manager's leftover (.dpkg-old), not a drop-in; merge what it holds into the .yaml file and remove it",
		d + "/40-d.yaml~: warning: ignored: a backup or temporary file, not a drop-in (only names ending in .yaml are read)",
		d + "/50-e.yaml.rpmnew: warning: ignored: a package manager's leftover (.rpmnew), not a drop-in; merge what it holds into the .yaml file and remove it",
		d + "/60-f.yaml.bak: warning: ignored: a backup or temporary file, not a drop-in (only names ending in .yaml are read)",
		d + "/README: warning: ignored: not a drop-in (only names ending in .yaml are read)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Without a main file the embedded default is used; the file meant as a
	// drop-in is still reported.
	dir = t.TempDir()
	write(t, filepath.Join(dir, DropInDir, "50-x.yml"), "mode: observe\n")
	p, embedded, err := Resolve("", nil, filepath.Join(dir, "policy.yaml"))
	if err != nil || !embedded {
		t.Fatalf("Resolve: embedded %v, err %v", embedded, err)
	}
	if w := p.Warnings(); len(w) == 0 || !strings.Contains(w[0].Error(), "50-x.yml: warning: ignored: drop-ins must end in .yaml") {
		t.Errorf("warnings = %v", w)
	}
}

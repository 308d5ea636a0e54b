package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolve: the built-in default is used only when nothing is
// configured; a configured policy whose main file is gone is ErrMissing.
func TestResolve(t *testing.T) {
	noEnv := func(string) string { return "" }
	tests := []struct {
		name         string
		setup        func(t *testing.T, dir string) // dir holds policy.yaml, policy.d
		explicit     bool                           // pass dir/policy.yaml as --policy
		wantEmbedded bool
		wantErr      error
	}{
		{name: "nothing at all", setup: func(*testing.T, string) {}, wantEmbedded: true},
		{name: "empty policy.d", setup: func(t *testing.T, dir string) {
			mustOK(t, os.Mkdir(filepath.Join(dir, DropInDir), 0o755))
		}, wantEmbedded: true},
		{name: "only ignored names in policy.d", setup: func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, DropInDir, "README"), "x")
			write(t, filepath.Join(dir, DropInDir, ".10-a.yaml.swp.yaml"), "x")
		}, wantEmbedded: true},
		{name: "main file", setup: func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "policy.yaml"), "version: 1\n")
		}},
		{name: "main gone, drop-ins left", setup: func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, DropInDir, "50-x.yaml"), "rules:\n  - name: x\n    match: {domain: [x]}\n    exclude: true\n")
		}, wantErr: ErrMissing},
		{name: "dangling symlink at the default path", setup: func(t *testing.T, dir string) {
			mustOK(t, os.Symlink(filepath.Join(dir, "gone.yaml"), filepath.Join(dir, "policy.yaml")))
		}, wantErr: ErrMissing},
		{name: "explicit path missing", setup: func(*testing.T, string) {}, explicit: true, wantErr: ErrMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			path := filepath.Join(dir, "policy.yaml")
			explicit, def := "", path
			if tt.explicit {
				explicit, def = path, filepath.Join(t.TempDir(), "none.yaml")
			}
			p, embedded, err := Resolve(explicit, noEnv, def)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v, want %v and fs.ErrNotExist naming %s", err, tt.wantErr, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if embedded != tt.wantEmbedded || p == nil {
				t.Errorf("embedded = %v, want %v", embedded, tt.wantEmbedded)
			}
		})
	}
	t.Run("environment path missing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "p.yaml")
		_, _, err := Resolve("", func(k string) string {
			if k == EnvVar {
				return path
			}
			return ""
		}, filepath.Join(t.TempDir(), "none.yaml"))
		if !errors.Is(err, ErrMissing) {
			t.Errorf("err = %v, want ErrMissing", err)
		}
	})
	t.Run("drop-in not ErrMissing", func(t *testing.T) {
		// A main file that is there with a bad drop-in is a plain error.
		dir := t.TempDir()
		write(t, filepath.Join(dir, "policy.yaml"), "version: 1\n")
		mustOK(t, os.MkdirAll(filepath.Join(dir, DropInDir), 0o755))
		mustOK(t, os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, DropInDir, "10-x.yaml")))
		_, _, err := Resolve("", noEnv, filepath.Join(dir, "policy.yaml"))
		if err == nil || errors.Is(err, ErrMissing) {
			t.Errorf("err = %v, want an error that is not ErrMissing", err)
		}
	})
}

package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// DefaultPath is where hosts keep the policy; drop-ins live in policy.d beside it.
const DefaultPath = "/etc/virtmq/policy.yaml"

// EnvVar names the environment variable that overrides the policy path.
const EnvVar = "VIRTMQ_POLICY"

// ErrMissing means a policy was configured but its main file is not there:
// an explicit or environment path that does not exist, or a default path
// that is gone while policy.d beside it still holds drop-ins. Callers must
// not fall back to the built-in default then (that would silently turn an
// observe or enforce host into an apply one and drop its exclusions).
var ErrMissing = errors.New("policy file is missing")

// Resolve picks and loads the policy every virtmq program uses: the explicit
// path (a flag) if set, else the EnvVar value, else defaultPath if it exists,
// else the default policy embedded in the binary. embedded reports the last
// case so the caller can say so once.
//
// The embedded default is used only when nothing is configured: no
// explicit or environment path, nothing at defaultPath (not even a dangling
// symlink) and no drop-in in the policy.d beside it. Otherwise a missing
// main file is an error wrapping ErrMissing (and fs.ErrNotExist): a typo or
// a deleted file must not silently fall back.
func Resolve(explicit string, getenv func(string) string, defaultPath string) (p *Policy, embedded bool, err error) {
	path := explicit
	if path == "" && getenv != nil {
		path = getenv(EnvVar)
	}
	if path == "" {
		if _, lerr := os.Lstat(defaultPath); errors.Is(lerr, fs.ErrNotExist) {
			dir := filepath.Join(filepath.Dir(defaultPath), DropInDir)
			has, err := hasDropIns(dir)
			if err != nil {
				return nil, false, fmt.Errorf("load policy: %w", err)
			}
			if has {
				return nil, false, fmt.Errorf("load policy: %w: %s holds drop-ins but %w "+
					"(restore the main file, or remove the drop-ins to use the built-in default)", ErrMissing, dir, lerr)
			}
			// Files with a wrong suffix (50-x.yml) are not drop-ins, but
			// were most likely meant to be: say so.
			p := Default()
			p.warnings = append(ignoredDropIns(dir), p.warnings...)
			return p, true, nil
		}
		path = defaultPath
	}
	p, err = Load(path)
	if err != nil && errors.Is(err, fs.ErrNotExist) {
		// The main file itself (or a symlink's target) is gone, not a
		// drop-in that vanished while being read.
		if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %w", ErrMissing, err)
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("load policy: %w", err)
	}
	return p, false, nil
}

// hasDropIns reports whether dir holds a name Load would read as a drop-in.
// A missing dir holds none.
func hasDropIns(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to read policy drop-ins: %w", err)
	}
	for _, e := range entries {
		if isDropInName(e.Name()) {
			return true, nil
		}
	}
	return false, nil
}

// isDropInName reports whether a file name in policy.d counts as a drop-in.
// Hidden files are editor and package-manager leftovers, not policy.
func isDropInName(name string) bool {
	return strings.HasSuffix(name, ".yaml") && !strings.HasPrefix(name, ".")
}

// PeekMode reads, leniently, the mode and on_error the policy Resolve would
// load declares: the main file's, then each drop-in's in order, the later
// winning, as Load merges them. It is for a caller whose Resolve failed and
// that must still honour "mode: enforce, on_error: deny" (the hook): a
// value it cannot read is left empty.
func PeekMode(explicit string, getenv func(string) string, defaultPath string) (Mode, OnError) {
	path := explicit
	if path == "" && getenv != nil {
		path = getenv(EnvVar)
	}
	if path == "" {
		path = defaultPath
	}
	var mode Mode
	var onErr OnError
	peek := func(data []byte) {
		var top struct {
			Mode    Mode    `yaml:"mode"`
			OnError OnError `yaml:"on_error"`
		}
		if yaml.Unmarshal(data, &top) != nil {
			return // lenient: the strict decode already failed
		}
		if top.Mode != "" {
			mode = top.Mode
		}
		if top.OnError != "" {
			onErr = top.OnError
		}
	}
	if data, err := ReadFile(path); err == nil {
		peek(data)
	}
	dropIns, _, _ := readDropIns(filepath.Join(filepath.Dir(path), DropInDir))
	for _, s := range dropIns {
		peek(s.data)
	}
	return mode, onErr
}

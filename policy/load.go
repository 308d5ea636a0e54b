package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/virtmq/virtmq/internal/bounded"
)

// DropInDir is the name of the drop-in directory Load reads next to the
// main policy file.
const DropInDir = "policy.d"

// embeddedName names the embedded default policy in Sources and errors.
const embeddedName = "(embedded default)"

// source is one policy file's name and content.
type source struct {
	name string
	data []byte
}

// Default returns the policy virtmq ships (policy/default.yaml), used when
// a host has no policy file. It parses the embedded file on each call;
// callers keep the result. It panics only if the embedded file is invalid,
// which TestParseDefault prevents from ever being released.
func Default() *Policy {
	p, err := Parse(embeddedName, defaultPolicy)
	if err != nil {
		panic(fmt.Sprintf("policy: embedded default policy is invalid: %v", err))
	}
	return p
}

// Parse parses one main policy file (no drop-ins). name is used in errors
// and Sources. The error, when not nil, is an ErrorList holding every
// problem found.
func Parse(name string, data []byte) (*Policy, error) {
	return parseSources(source{name, data}, nil)
}

// Load reads the main policy file at path, then every *.yaml file in the
// policy.d directory next to it, in byte order of file names. A missing
// policy.d is not an error; names starting with "." and anything that is
// not a regular file (after following symlinks) are ignored. Other names
// not ending in ".yaml" (50-x.yml, 50-x.yaml.dpkg-old, 50-x.yaml~) are
// ignored too, each with a warning naming the file (Policy.Warnings), so
// that a drop-in with a wrong suffix is never skipped silently. Errors
// reading files are returned wrapped; problems in their content are
// returned as one ErrorList across all files.
func Load(path string) (*Policy, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read policy: %w", err)
	}
	dropIns, ignored, err := readDropIns(filepath.Join(filepath.Dir(path), DropInDir))
	if err != nil {
		return nil, err
	}
	p, err := parseSources(source{path, data}, dropIns)
	if err != nil {
		return nil, err
	}
	p.warnings = append(ignored, p.warnings...)
	return p, nil
}

// Sentinel errors of ReadFile, wrapped in an *fs.PathError naming the file.
var (
	// ErrNotRegular: the path is a directory, a device, a FIFO or a socket.
	ErrNotRegular = bounded.ErrNotRegular
	// ErrTooLarge: the file holds more than MaxFileSize bytes.
	ErrTooLarge = bounded.ErrTooLarge
)

// ReadFile reads one policy file the way Load does, bounded in time and
// memory whatever sits at path (see bounded.ReadFile): without blocking,
// only a regular file, at most MaxFileSize bytes. Errors are
// *fs.PathError naming path; they wrap ErrNotRegular, ErrTooLarge or the
// system error.
func ReadFile(path string) ([]byte, error) {
	return bounded.ReadFile(path, MaxFileSize, "a policy file")
}

// readDropIns returns the drop-in files of dir in byte order of their
// names, and a warning for each file it ignores because of its name.
func readDropIns(dir string) ([]source, ErrorList, error) {
	entries, err := os.ReadDir(dir) // sorted by name, byte order
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("failed to read policy drop-ins: %w", err)
	}
	var srcs []source
	var ignored ErrorList
	for _, e := range entries {
		name := e.Name()
		full := filepath.Join(dir, name)
		if strings.HasPrefix(name, ".") {
			continue
		}
		if !isDropInName(name) {
			if fi, err := os.Stat(full); err == nil && fi.Mode().IsRegular() {
				ignored = append(ignored, &Error{File: full, Msg: ignoredReason(name)})
			}
			continue
		}
		fi, err := os.Stat(full)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to read policy drop-in: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		data, err := ReadFile(full)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to read policy drop-in: %w", err)
		}
		srcs = append(srcs, source{full, data})
	}
	return srcs, ignored, nil
}

// leftoverSuffixes are what package managers leave beside a changed
// configuration file.
var leftoverSuffixes = []string{".dpkg-old", ".dpkg-dist", ".dpkg-new", ".dpkg-tmp", ".dpkg-bak", ".ucf-old", ".ucf-dist", ".ucf-new", ".rpmnew", ".rpmsave", ".rpmorig"}

// ignoredReason says why a file in policy.d is not read, and what to do.
func ignoredReason(name string) string {
	for _, suf := range leftoverSuffixes {
		if strings.HasSuffix(name, suf) {
			return fmt.Sprintf("warning: ignored: a package manager's leftover (%s), not a drop-in; merge what it holds into the .yaml file and remove it", suf)
		}
	}
	switch {
	case strings.HasSuffix(name, ".yml"):
		return fmt.Sprintf("warning: ignored: drop-ins must end in .yaml, not .yml (rename it to %s)", strings.TrimSuffix(name, ".yml")+".yaml")
	case strings.HasSuffix(name, "~"), strings.HasSuffix(name, ".bak"), strings.HasSuffix(name, ".orig"),
		strings.HasSuffix(name, ".old"), strings.HasSuffix(name, ".swp"), strings.HasSuffix(name, ".tmp"):
		return "warning: ignored: a backup or temporary file, not a drop-in (only names ending in .yaml are read)"
	}
	return "warning: ignored: not a drop-in (only names ending in .yaml are read)"
}

// ignoredDropIns returns the warnings readDropIns gives for dir, for a
// policy that does not read it (the embedded default).
func ignoredDropIns(dir string) ErrorList {
	_, ignored, _ := readDropIns(dir)
	return ignored
}

// parseSources parses the main file and the drop-ins and merges them. All
// files are parsed even when one has problems, so that lint shows them all.
func parseSources(main source, dropIns []source) (*Policy, error) {
	var errs ErrorList
	docs := make([]*fileDoc, 0, 1+len(dropIns))
	for i, s := range append([]source{main}, dropIns...) {
		doc, ferrs := parseFile(s.name, s.data, i > 0)
		ferrs.sortByPosition()
		errs = append(errs, ferrs...)
		docs = append(docs, doc)
	}
	p, berrs := build(docs)
	errs = append(errs, berrs...)
	if len(errs) > maxErrors {
		// A garbage file can hold a problem per line; the first ones say
		// what is wrong, the rest would only flood a terminal or a log.
		more := len(errs) - maxErrors
		errs = append(errs[:maxErrors:maxErrors], &Error{File: errs[maxErrors].File, Msg: fmt.Sprintf("%d more problems not shown", more)})
	}
	if len(errs) > 0 {
		return nil, errs.err()
	}
	return p, nil
}

// maxErrors is the most problems Parse and Load report.
const maxErrors = 100

// ParseDropIn parses one drop-in file by itself, over the built-in
// defaults: what `virtmq lint policy.d/50-x.yaml` checks. Problems that
// need the other files (a rule name used twice, min > max after merging)
// show only when the whole policy is loaded.
func ParseDropIn(name string, data []byte) (*Policy, error) {
	doc, errs := parseFile(name, data, true)
	errs.sortByPosition()
	p, berrs := build([]*fileDoc{doc})
	errs = append(errs, berrs...)
	if len(errs) > 0 {
		return nil, errs.err()
	}
	return p, nil
}

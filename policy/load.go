package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/virtmq/virtmq/packaging"
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

// Default returns the policy virtmq ships (packaging/policy.yaml), used when
// a host has no policy file. It parses the embedded file on each call;
// callers keep the result. It panics only if the embedded file is invalid,
// which TestParseDefault prevents from ever being released.
func Default() *Policy {
	p, err := Parse(embeddedName, packaging.DefaultPolicy)
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
// policy.d is not an error; names not ending in ".yaml", names starting
// with "." and anything that is not a regular file (after following
// symlinks) are ignored. Errors reading files are returned wrapped; problems
// in their content are returned as one ErrorList across all files.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read policy: %w", err)
	}
	dropIns, err := readDropIns(filepath.Join(filepath.Dir(path), DropInDir))
	if err != nil {
		return nil, err
	}
	return parseSources(source{path, data}, dropIns)
}

// readDropIns returns the drop-in files of dir in byte order of their names.
func readDropIns(dir string) ([]source, error) {
	entries, err := os.ReadDir(dir) // sorted by name, byte order
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read policy drop-ins: %w", err)
	}
	var srcs []source
	for _, e := range entries {
		name := e.Name()
		// Hidden files are editor and package-manager leftovers, not policy.
		if !strings.HasSuffix(name, ".yaml") || strings.HasPrefix(name, ".") {
			continue
		}
		full := filepath.Join(dir, name)
		fi, err := os.Stat(full)
		if err != nil {
			return nil, fmt.Errorf("failed to read policy drop-in: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(full)
		if err != nil {
			return nil, fmt.Errorf("failed to read policy drop-in: %w", err)
		}
		srcs = append(srcs, source{full, data})
	}
	return srcs, nil
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

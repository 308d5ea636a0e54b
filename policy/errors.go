package policy

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem found in a policy file, located so that an editor
// (and `virtmq lint`) can jump to it.
type Error struct {
	// File is the file name as given to Parse, or the path Load read.
	File string
	// Line and Column are 1-based; 0 when unknown (some YAML syntax errors
	// carry no position).
	Line, Column int
	// Path is the place in the document, e.g. "rules[2].match.vcpus"
	// (list indexes are 0-based); empty for file-level problems.
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error returns "FILE:LINE:COL: PATH: MSG"; parts that are unknown (line,
// column, path) are left out together with their separator.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found while parsing or loading a policy, in
// file order and, within a file, by position. It is returned as the error
// of Parse and Load so that a caller can print one problem per line or
// range over them (errors.As(err, &list)).
type ErrorList []*Error

// Error joins the problems with newlines.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the problems, for errors.As on a single *Error.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// sortByPosition orders the problems of one file by line and column, so a
// reader meets them top to bottom whatever order the checks ran in.
func (l ErrorList) sortByPosition() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		if c := cmp.Compare(a.Line, b.Line); c != 0 {
			return c
		}
		return cmp.Compare(a.Column, b.Column)
	})
}

// err returns l as an error, or a nil error (not a nil ErrorList in a
// non-nil interface) when there is no problem.
func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// sortByFile orders problems by the position of their file in files, then
// by line and column.
func (l ErrorList) sortByFile(files []string) {
	slices.SortStableFunc(l, func(a, b *Error) int {
		if c := cmp.Compare(slices.Index(files, a.File), slices.Index(files, b.File)); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Line, b.Line); c != 0 {
			return c
		}
		return cmp.Compare(a.Column, b.Column)
	})
}

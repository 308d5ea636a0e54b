package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The generic part of the policy parser: decoding one YAML document into
// nodes, and walking them (mappings with unique plain keys, lists, typed
// scalars, aliases) while collecting errors that point at file:line:col and
// the key path. parse.go says what the keys mean.

// maxItems bounds the mapping entries and list items the parser visits in
// one file. Aliases can make a small document expand to a huge walk
// ("billion laughs"); the hook must not hang on it.
const maxItems = 1 << 20

// parser walks one file's YAML nodes, collecting every problem.
type parser struct {
	file  string
	errs  ErrorList
	warns ErrorList // see Policy.Warnings
	items int       // entries visited, see maxItems
}

// decode parses the YAML text into the root node of its single document.
func (p *parser) decode(data []byte) (*yaml.Node, bool) {
	doc, next, err, nextErr := decodeDocs(data)
	if errors.Is(err, io.EOF) {
		p.errs = append(p.errs, &Error{File: p.file, Msg: "empty file (a policy needs at least version: 1)"})
		return nil, false
	}
	if err != nil {
		p.syntaxError(err, data)
		return nil, false
	}
	switch {
	case nextErr == nil:
		p.errorf(next, "", "a second YAML document; a policy file holds one")
	case !errors.Is(nextErr, io.EOF):
		p.syntaxError(nextErr, data)
	}
	root := doc
	if len(doc.Content) > 0 {
		root = resolve(doc.Content[0])
	}
	if len(doc.Content) == 0 || isNull(root) {
		p.errorf(root, "", "empty document (a policy needs at least version: 1)")
		return nil, false
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "", "must be a mapping, not %s", describe(root))
		return nil, false
	}
	return root, true
}

// decodeDocs decodes the first document of data and tries a second one,
// which a policy file must not have.
func decodeDocs(data []byte) (doc, next *yaml.Node, err, nextErr error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	doc, next = new(yaml.Node), new(yaml.Node)
	if err = decodeNode(dec, doc); err != nil {
		return doc, next, err, nil
	}
	return doc, next, nil, decodeNode(dec, next)
}

// decodeNode decodes the next document. yaml.v3 reports errors by panicking
// internally and recovering; a panic that escapes it is a parser bug, and
// the hook must not crash on a bad policy, so it becomes an error too.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: parser failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

// syntaxError turns a yaml.v3 error ("yaml: line 3: did not find ...") into
// an Error with the line, when the parser gave one. yaml.v3 gives no line
// for an unknown alias, and for a block it cannot close it names the line
// where the block starts, not the line that breaks it; for the mistakes
// the docs warn about (an unquoted *glob, a tab in the indentation, a key
// indented wrong) syntaxError finds the place in data itself.
func (p *parser) syntaxError(err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{File: p.file}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				e.Line, msg = n, after
			}
		}
	}
	switch {
	case strings.HasPrefix(msg, "unknown anchor '"):
		name := strings.TrimSuffix(strings.TrimPrefix(msg, "unknown anchor '"), "' referenced")
		if line, col, ok := findAlias(data, name); ok {
			e.Line, e.Column = line, col
		}
		msg = fmt.Sprintf("unknown anchor %q referenced by *%s; a value that starts with * (a glob) must be quoted: \"*%s\"", name, name, name)
	case strings.Contains(msg, "tab character") || strings.Contains(msg, "cannot start any token"):
		if line, col, ok := findIndentTab(data, e.Line); ok {
			e.Line, e.Column = line, col
			msg = "a tab in the indentation (YAML indents with spaces only): " + msg
		}
	case msg == "mapping values are not allowed in this context" && e.Line > 0:
		lines := strings.Split(string(data), "\n")
		if e.Line <= len(lines) {
			// The colon yaml.v3 stopped at: the second "key: value" on
			// the line ("mode: a: b"), else the only one (a key indented
			// under a value, read as more of that value).
			l := lines[e.Line-1] + " "
			if j := strings.Index(l, ": "); j >= 0 {
				if k := strings.Index(l[j+2:], ": "); k >= 0 {
					j += 2 + k
				}
				e.Column = j + 1
				msg += " (is this key indented deeper than the one above it, or is a value with \": \" unquoted?)"
			}
		}
	case msg == "did not find expected alphabetic or numeric character" && e.Line > 0:
		// An alias or anchor name with a character names cannot hold:
		// an unquoted glob like *web-*.
		lines := strings.Split(string(data), "\n")
		if e.Line <= len(lines) {
			if j, ok := findToken(lines[e.Line-1], "*&"); ok {
				e.Column = j + 1
				msg = "an alias (*name) or anchor (&name) with a bad name: " + msg +
					`; a value that starts with * (a glob) must be quoted: "*..."`
			}
		}
	case strings.HasPrefix(msg, "did not find expected ") && e.Line > 0:
		if line, col, ok := findBreakingLine(data, msg); ok && line != e.Line {
			msg = fmt.Sprintf("%s (is this line indented like the keys above it? the block starts at line %d)", msg, e.Line)
			e.Line, e.Column = line, col
		}
	}
	e.Msg = "invalid YAML: " + msg
	p.errs = append(p.errs, e)
}

// findAlias returns the 1-based line and column of the first alias *name
// in data outside comments and quotes.
func findAlias(data []byte, name string) (line, col int, ok bool) {
	for i, l := range strings.Split(string(data), "\n") {
		eachUnquoted(l, func(j int) bool {
			if l[j] == '*' && strings.HasPrefix(l[j+1:], name) && aliasEnd(l[j+1+len(name):]) {
				line, col, ok = i+1, j+1, true
			}
			return !ok
		})
		if ok {
			return line, col, true
		}
	}
	return 0, 0, false
}

// findToken returns the byte offset in l of the first of chars that starts
// a token (at the start, after a blank or a flow indicator) outside quotes
// and comments.
func findToken(l, chars string) (at int, ok bool) {
	eachUnquoted(l, func(j int) bool {
		if strings.IndexByte(chars, l[j]) >= 0 && (j == 0 || strings.IndexByte(" \t[{,:-?", l[j-1]) >= 0) {
			at, ok = j, true
		}
		return !ok
	})
	return at, ok
}

// eachUnquoted calls f with the offset of each byte of the YAML line l that
// is outside quotes, up to a comment, until f returns false.
func eachUnquoted(l string, f func(j int) bool) {
	var quote byte
	for j := 0; j < len(l); j++ {
		c := l[j]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && (j == 0 || l[j-1] == ' ' || l[j-1] == '\t'):
			return
		default:
			if !f(j) {
				return
			}
		}
	}
}

// aliasEnd reports whether rest can follow an alias name.
func aliasEnd(rest string) bool {
	return rest == "" || strings.ContainsAny(rest[:1], " \t\r,[]{}")
}

// findIndentTab returns the place of the first tab in the indentation of
// a line, looking from line from (1-based; yaml.v3 may name the line
// before) on, then from the top.
func findIndentTab(data []byte, from int) (line, col int, ok bool) {
	lines := strings.Split(string(data), "\n")
	find := func(start int) (int, int, bool) {
		for i := max(start, 0); i < len(lines); i++ {
			l := lines[i]
			indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
			if j := strings.IndexByte(indent, '\t'); j >= 0 && len(indent) < len(l) {
				return i + 1, j + 1, true
			}
		}
		return 0, 0, false
	}
	if line, col, ok = find(from - 1); ok {
		return line, col, ok
	}
	return find(0)
}

// findBreakingLine returns the first line at which the document, cut
// after it, fails with the same message msg: the line that breaks the
// block, at its first non-blank column. It bisects on the number of lines,
// so a long file costs a few decodes.
func findBreakingLine(data []byte, msg string) (line, col int, ok bool) {
	lines := strings.SplitAfter(string(data), "\n")
	fails := func(k int) bool {
		_, _, err, _ := decodeDocs([]byte(strings.Join(lines[:k], "")))
		if err == nil {
			return false
		}
		m := strings.TrimPrefix(err.Error(), "yaml: ")
		if rest, ok := strings.CutPrefix(m, "line "); ok {
			_, m, _ = strings.Cut(rest, ": ")
		}
		return m == msg
	}
	lo, hi := 1, len(lines) // the whole document fails
	if !fails(hi) {
		return 0, 0, false
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	l := strings.TrimRight(lines[lo-1], "\r\n")
	return lo, len(l) - len(strings.TrimLeft(l, " ")) + 1, true
}

func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: n.Line, Column: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) loc(n *yaml.Node, path string) loc {
	return loc{file: p.file, line: n.Line, col: n.Column, path: path}
}

// step counts one visited item and reports false once the file is too
// big to walk.
func (p *parser) step(n *yaml.Node, path string) bool {
	p.items++
	if p.items == maxItems+1 {
		p.errorf(n, path, "document too large (more than %d entries after expanding aliases)", maxItems)
	}
	return p.items <= maxItems
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	// An anchor names a real node, never another alias; the bound only
	// guards against a malformed tree.
	for i := 0; i < 8 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names a node's kind for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch t := n.ShortTag(); t {
		case "!!null":
			return "empty"
		case "!!bool":
			return "a boolean"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!str":
			return "a string"
		default:
			return "a value tagged " + t
		}
	}
	return "an alias"
}

// fields calls fn for each entry of the mapping n. A null n (a key with no
// value) is an empty mapping, so that commenting out every entry of a
// section is fine. Keys must be plain strings, unique, and not YAML merge
// keys (which would hide where a value came from).
func (p *parser) fields(n *yaml.Node, path string, fn func(key string, k, v *yaml.Node, kpath string)) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "must be a mapping, not %s", describe(n))
		return
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !p.step(n, path) {
			return
		}
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, path, "keys must be strings, not %s", describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			p.errorf(k, path, "merge keys (<<) are not supported")
			continue
		}
		kpath := keyPath(path, k.Value)
		if line, dup := seen[k.Value]; dup {
			p.errorf(k, kpath, "duplicate key (first at line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		fn(k.Value, k, v, kpath)
	}
}

// keyPath appends a key to a path, quoting keys that are not plain words
// (label names may hold anything).
func keyPath(path, key string) string {
	if !isPlainKey(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func isPlainKey(s string) bool {
	for _, r := range s {
		if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return s != ""
}

func (p *parser) unknown(k *yaml.Node, kpath string, known []string) {
	p.errorf(k, kpath, "unknown key (known keys: %s)", strings.Join(known, ", "))
}

// list calls fn for n, or for each item when n is a list. An empty list is
// an error: as "any of nothing" it would never match.
func (p *parser) list(n *yaml.Node, path string, fn func(v *yaml.Node, path string)) {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		fn(n, path)
		return
	}
	if len(n.Content) == 0 {
		p.errorf(n, path, "empty list (it would match nothing)")
		return
	}
	for i, item := range n.Content {
		if !p.step(n, path) {
			return
		}
		fn(resolve(item), fmt.Sprintf("%s[%d]", path, i))
	}
}

// scalar returns the text of a scalar that is not null or a boolean:
// strings, and numbers taken as written (a domain may be named 2024).
func (p *parser) scalar(n *yaml.Node, path string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) || n.ShortTag() == "!!bool" {
		p.errorf(n, path, "must be a string, not %s", describe(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) integer(n *yaml.Node, path string) (int, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		p.errorf(n, path, "must be an integer, not %s", describe(n))
		return 0, false
	}
	var v int
	if err := n.Decode(&v); err != nil {
		p.errorf(n, path, "%s is out of range", n.Value)
		return 0, false
	}
	if surprisingBase(n.Value) {
		p.warns = append(p.warns, &Error{File: p.file, Line: n.Line, Column: n.Column, Path: path,
			Msg: fmt.Sprintf("warning: %s is not written in decimal: it means %d", n.Value, v)})
	}
	return v, true
}

func (p *parser) boolean(n *yaml.Node, path string) (bool, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		p.errorf(n, path, "must be true or false, not %s", describe(n))
		return false, false
	}
	var v bool
	if err := n.Decode(&v); err != nil {
		p.errorf(n, path, "must be true or false")
		return false, false
	}
	return v, true
}

func (p *parser) enum(n *yaml.Node, path string, values ...string) (string, bool) {
	s, ok := p.scalar(n, path)
	if !ok {
		return "", false
	}
	if slices.Contains(values, s) {
		return s, true
	}
	p.errorf(resolve(n), path, "%q is not one of %s", s, strings.Join(values, ", "))
	return "", false
}

// surprisingBase reports an integer written in hexadecimal, octal or
// binary (0x10, 0o20, 0b1, or 010, which YAML 1.1 readers take as octal):
// nobody counts queues that way, so it is more likely a typo.
func surprisingBase(s string) bool {
	s = strings.TrimLeft(s, "+-")
	if len(s) < 2 || s[0] != '0' {
		return false
	}
	return true
}

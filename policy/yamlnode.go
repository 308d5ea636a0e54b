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
	// via is the alias (*name) whose anchored node is being walked: a
	// problem in it is reported where the alias is used, the place the
	// path names, not at the anchor.
	via *yaml.Node
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

// syntaxError turns a yaml.v3 syntax error into an Error. yaml.v3's
// errors are text ("yaml: line 3: did not find expected key"), with no
// line for an unknown alias, and for a block it cannot close the line
// where the block starts, not the line that breaks it. So the line is
// only the fallback: scanMistake finds the mistakes the docs warn about
// (an unquoted *glob, a tab in the indentation, a key indented wrong)
// from the text itself, and the place and hint come from there; yaml.v3's
// words are passed on as they are, never interpreted.
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
	if m, ok := scanMistake(data); ok {
		e.Line, e.Column = m.line, m.col
		switch m.kind {
		case mistakeTab:
			msg = "a tab in the indentation (YAML indents with spaces only): " + msg
		case mistakeAliasName:
			msg = "an alias (*name) or anchor (&name) with a bad name: " + msg +
				`; a value that starts with * (a glob) must be quoted: "*..."`
		case mistakeUnknownAlias:
			msg = fmt.Sprintf("unknown anchor %q referenced by *%s; a value that starts with * (a glob) must be quoted: \"*%s\"", m.name, m.name, m.name)
		case mistakeDeeper:
			msg += ` (is this key indented deeper than the one above it, or is a value with ": " unquoted?)`
		case mistakeShallower:
			msg += fmt.Sprintf(" (is this line indented like the keys above it? the block starts at line %d, column %d)", m.blockLine, m.blockCol)
		}
	}
	e.Msg = "invalid YAML: " + msg
	p.errs = append(p.errs, e)
}

// The mistakes scanMistake recognises.
const (
	mistakeTab          = iota + 1 // a tab in a line's indentation
	mistakeAliasName               // *name or &name with a character a name cannot hold (*web-*)
	mistakeUnknownAlias            // *name with no &name before it (an unquoted glob, *web)
	mistakeDeeper                  // a key inside a plain value: "mode: a: b", or indented under "key: value"
	mistakeShallower               // a line indented less than its block, but not as far as an outer one
)

// mistake is one place scanMistake found.
type mistake struct {
	kind                int
	line, col           int    // 1-based
	name                string // mistakeUnknownAlias: the alias
	blockLine, blockCol int    // mistakeShallower: where the block's keys start
}

// indentLevel is one open block of scanMistake: its indentation and the
// line where it starts.
type indentLevel struct{ indent, line int }

// scanMistake reads a policy file's lines the way a YAML block reader
// would, far enough to find the first of the mistakes above. It is used
// only once yaml.v3 refused the file, to say where and why in the words
// of the docs; it understands comments, quotes within a line, flow
// collections on one line or several, and block scalars (|, >), and
// nothing else of YAML.
func scanMistake(data []byte) (mistake, bool) {
	anchors := map[string]bool{}
	stack := []indentLevel{{0, 1}}
	flow := 0                          // depth of [ and { open across lines
	scalarIndent := -1                 // inside a block scalar: lines indented deeper than this belong to it
	prevIndent, prevPlain := -1, false // the last content line: its indentation, and whether it ends in a plain value
	for i, l := range strings.Split(string(data), "\n") {
		line := i + 1
		l = strings.TrimRight(l, "\r")
		body := strings.TrimLeft(l, " \t")
		indent := len(l) - len(body)
		if body == "" || body[0] == '#' {
			continue
		}
		if scalarIndent >= 0 {
			if indent > scalarIndent {
				continue
			}
			scalarIndent = -1
		}
		if j := strings.IndexByte(l[:indent], '\t'); j >= 0 {
			return mistake{kind: mistakeTab, line: line, col: j + 1}, true
		}
		inFlow := flow > 0 // the line continues a flow collection
		if !inFlow {
			if m, ok := checkIndent(&stack, indent, line, l); ok {
				return m, true
			}
		}
		var colons []int // offsets of ": " (or a final ":") in block context
		j := 0
		for j < len(l) {
			c := l[j]
			switch {
			case c == '\'' || c == '"':
				k := strings.IndexByte(l[j+1:], c)
				if k < 0 {
					j = len(l)
					continue
				}
				j += k + 2
				continue
			case c == '#' && j > 0 && (l[j-1] == ' ' || l[j-1] == '\t'):
				j = len(l)
				continue
			case (c == '*' || c == '&') && tokenStart(l, j, flow > 0):
				k := j + 1
				for k < len(l) && isAnchorChar(l[k]) {
					k++
				}
				name := l[j+1 : k]
				if name == "" || k < len(l) && !strings.ContainsRune(" \t?:,]}%@`", rune(l[k])) {
					return mistake{kind: mistakeAliasName, line: line, col: j + 1}, true
				}
				if c == '&' {
					anchors[name] = true
				} else if !anchors[name] {
					return mistake{kind: mistakeUnknownAlias, line: line, col: j + 1, name: name}, true
				}
				j = k
				continue
			case (c == '[' || c == '{') && tokenStart(l, j, flow > 0):
				flow++
			case (c == ']' || c == '}') && flow > 0:
				flow--
			case c == ':' && flow == 0 && (j+1 == len(l) || l[j+1] == ' '):
				colons = append(colons, j)
			}
			j++
		}
		if flow == 0 {
			// "key: a: b": a second mapping indicator inside a plain value.
			if len(colons) > 1 && !strings.ContainsAny(l[colons[0]+1:colons[1]], "'\"") {
				return mistake{kind: mistakeDeeper, line: line, col: colons[1] + 1}, true
			}
			// A key indented under "key: value" is read as more of the value.
			if len(colons) > 0 && prevPlain && indent > prevIndent {
				return mistake{kind: mistakeDeeper, line: line, col: colons[0] + 1}, true
			}
		}
		keyIndent := indent // where the line's key starts, after any "- "
		for strings.HasPrefix(l[keyIndent:], "- ") {
			keyIndent += 2
			for keyIndent < len(l) && l[keyIndent] == ' ' {
				keyIndent++
			}
		}
		prevIndent, prevPlain = keyIndent, false
		if flow == 0 && !inFlow {
			rest := strings.TrimLeft(strings.TrimPrefix(body, "- "), " ")
			if len(colons) > 0 {
				rest = strings.TrimSpace(l[colons[len(colons)-1]+1:])
			}
			if k := strings.Index(rest, " #"); k >= 0 {
				rest = strings.TrimSpace(rest[:k])
			}
			switch {
			case rest == "":
			case rest[0] == '|' || rest[0] == '>':
				scalarIndent = indent
			case strings.ContainsRune("'\"[{&*!", rune(rest[0])):
			default:
				prevPlain = true
			}
		}
	}
	return mistake{}, false
}

// checkIndent keeps the stack of open blocks for a content line at
// indent and reports a line indented less than its block but more than
// the next outer one. A "- " item opens a block at its content too.
func checkIndent(stack *[]indentLevel, indent, line int, l string) (mistake, bool) {
	s := *stack
	var popped *indentLevel
	for len(s) > 1 && s[len(s)-1].indent > indent {
		top := s[len(s)-1]
		popped = &top
		s = s[:len(s)-1]
	}
	if top := s[len(s)-1]; popped != nil && top.indent < indent {
		*stack = s
		return mistake{kind: mistakeShallower, line: line, col: indent + 1, blockLine: popped.line, blockCol: popped.indent + 1}, true
	}
	if top := s[len(s)-1]; indent > top.indent {
		s = append(s, indentLevel{indent, line})
	}
	// "- key: v" and "- - x": the item's content is a block of its own.
	at := indent
	for strings.HasPrefix(l[at:], "- ") {
		at += 2
		for at < len(l) && l[at] == ' ' {
			at++
		}
		if at < len(l) && l[at] != '#' {
			s = append(s, indentLevel{at, line})
		}
	}
	*stack = s
	return mistake{}, false
}

// tokenStart reports whether offset j of line l starts a YAML node: the
// first thing on the line, after "key: ", "- " or "? ", or in a flow
// collection after [, { or ,.
func tokenStart(l string, j int, inFlow bool) bool {
	k := j - 1
	for k >= 0 && l[k] == ' ' {
		k--
	}
	if k < 0 {
		return true
	}
	spaced := k < j-1
	switch l[k] {
	case ':', '-', '?':
		return spaced || inFlow && l[k] == ':'
	case '[', '{', ',':
		return inFlow || l[k] != ','
	}
	return false
}

// isAnchorChar reports a byte yaml.v3 accepts in an anchor or alias name.
func isAnchorChar(c byte) bool {
	return c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	p.errs = append(p.errs, p.at(n, path, fmt.Sprintf(format, args...)))
}

// at is an Error about node n: at n, or, inside an alias's anchored
// node, at the alias, saying where the anchor is.
func (p *parser) at(n *yaml.Node, path, msg string) *Error {
	if p.via != nil {
		return &Error{File: p.file, Line: p.via.Line, Column: p.via.Column, Path: path,
			Msg: fmt.Sprintf("%s (in *%s, anchored at line %d)", msg, p.via.Value, resolve(p.via).Line)}
	}
	return &Error{File: p.file, Line: n.Line, Column: n.Column, Path: path, Msg: msg}
}

func (p *parser) loc(n *yaml.Node, path string) loc {
	if p.via != nil {
		return loc{file: p.file, line: p.via.Line, col: p.via.Column, path: path}
	}
	return loc{file: p.file, line: n.Line, col: n.Column, path: path}
}

// through runs fn with n's alias, when n is one and no outer alias is
// being walked, as the place problems are reported.
func (p *parser) through(n *yaml.Node, fn func()) {
	if n.Kind == yaml.AliasNode && p.via == nil {
		p.via = n
		defer func() { p.via = nil }()
	}
	fn()
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
		p.through(v, func() { fn(k.Value, k, v, kpath) })
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
		p.through(item, func() { fn(resolve(item), fmt.Sprintf("%s[%d]", path, i)) })
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

// integer returns an integer scalar. valid says which values the key
// takes ("from 1 to 256"), for a number too large to be read.
func (p *parser) integer(n *yaml.Node, path, valid string) (int, bool) {
	n = resolve(n)
	if !isIntLiteral(n) {
		p.errorf(n, path, "must be an integer, not %s", describe(n))
		return 0, false
	}
	var v int
	if n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		p.errorf(n, path, "%s is out of range: %s must be %s", n.Value, lastKey(path), valid)
		return 0, false
	}
	if surprisingBase(n.Value) {
		p.warns = append(p.warns, p.at(n, path, fmt.Sprintf("warning: %s is not written in decimal: it means %d", n.Value, v)))
	}
	return v, true
}

// isIntLiteral reports an integer scalar, also one too large for yaml.v3
// to read as one (it tags 99999999999999999999 a float).
func isIntLiteral(n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode {
		return false
	}
	if n.ShortTag() == "!!int" {
		return true
	}
	if n.ShortTag() != "!!float" || n.Style != 0 {
		return false
	}
	digits := strings.TrimLeft(n.Value, "+-")
	return digits != "" && strings.Trim(digits, "0123456789_") == "" && digits[0] != '_'
}

// lastKey is the last key of a path: "max" of "rules[0].set.max".
func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
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

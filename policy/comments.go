package policy

import (
	"bytes"
	"unicode/utf8"
)

// blankComments returns data with the text of every full-line comment cut
// after its # (so every line and column stays where it was, and the line is
// still a comment: an empty line would continue a multi-line plain scalar
// that the comment ends). yaml.v3 scans comments byte by byte and attaches
// them to nodes, which virtmq never reads; the shipped policy is mostly
// comments, and the libvirt hook parses it on every VM start.
//
// Inside a block scalar (key: |) or a quoted scalar spanning lines, a line
// starting with # is content, not a comment. Finding those exactly needs
// a YAML scanner, so this only blanks when the file has neither: when any
// line ends with a block indicator or leaves a quote open, data comes back
// unchanged. Policy values are short one-line scalars, so in practice it
// always blanks. blanked reports whether out differs from data.
func blankComments(data []byte) (out []byte, blanked bool) {
	var comments int
	for rest := data; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if i := bytes.IndexByte(line, '\r'); i >= 0 && i != len(line)-1 {
			return data, false // a lone CR breaks lines too; keep it simple
		}
		text := bytes.TrimLeft(line, " \t")
		if len(text) > 0 && text[0] == '#' {
			if !printable(text) {
				return data, false // let yaml.v3 report it
			}
			comments++
			continue
		}
		if !plainLine(text) {
			return data, false
		}
	}
	if comments == 0 {
		return data, false
	}
	out = make([]byte, 0, len(data))
	for rest := data; len(rest) > 0; {
		line, nl := rest, []byte(nil)
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, nl, rest = rest[:i], rest[i:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		if text := bytes.TrimLeft(line, " \t"); len(text) > 0 && text[0] == '#' {
			cr := bytes.HasSuffix(line, []byte{'\r'})
			line = line[:len(line)-len(text)+1] // keep the indentation and the #
			if cr {
				line = append(line[:len(line):len(line)], '\r')
			}
		}
		out = append(out, line...)
		out = append(out, nl...)
	}
	return out, true
}

// plainLine reports whether a non-comment line closes every quote it opens
// and does not start a block scalar.
func plainLine(text []byte) bool {
	var quote byte
	end := len(text)
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case quote == '"' && c == '\\':
			i++ // an escaped character, maybe a quote
		case quote != 0:
			if c == quote {
				if quote == '\'' && i+1 < len(text) && text[i+1] == '\'' {
					i++ // '' is a quote inside a single-quoted scalar
				} else {
					quote = 0
				}
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || text[i-1] == ' ' || text[i-1] == '\t'):
			end = i // a trailing comment
			i = len(text)
		}
	}
	if quote != 0 {
		return false
	}
	value := bytes.TrimRight(text[:end], " \t\r")
	value = bytes.TrimRight(value, "+-0123456789")
	return len(value) == 0 || (value[len(value)-1] != '|' && value[len(value)-1] != '>')
}

// printable reports whether a comment holds only characters YAML allows
// (YAML 1.2 c-printable, as yaml.v3 checks them), so that blanking it
// cannot hide an error.
func printable(b []byte) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		b = b[n:]
		switch {
		case r == utf8.RuneError && n <= 1:
			return false
		case r == '\t' || r == '\r' || (r >= 0x20 && r <= 0x7e) || r == 0x85,
			r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd && r != 0xfeff, r >= 0x10000 && r <= 0x10ffff:
		default:
			return false
		}
	}
	return true
}

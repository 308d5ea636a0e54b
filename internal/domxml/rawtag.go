package domxml

import "fmt"

// rawAttr is one attribute of a start tag as written in the document.
type rawAttr struct {
	name       string // as written, prefix included
	valueStart int    // first byte of the value, after the opening quote
	valueEnd   int    // the closing quote
	quote      byte   // ' or "
}

// rawTag is a start tag as written: doc[start:end] is `<name attrs... >` or
// `<name attrs... />`.
type rawTag struct {
	name    string
	nameEnd int // offset just after the element name
	attrs   []rawAttr
	close   int // offset of the `/>` or `>` that ends the tag
}

// parseRawTag splits the start tag doc[start:end] into its parts. The
// tokenizer has already accepted the tag, so this only has to find
// boundaries: names end at whitespace, '=', '/' or '>'; values end at their
// own quote character, whatever they contain ('>' included). encoding/xml
// allows attributes with no whitespace between them, so none is required.
// It still checks every step, so a disagreement with the tokenizer is an
// error, not a bad splice.
func parseRawTag(doc []byte, start, end int) (rawTag, error) {
	var t rawTag
	bad := func(what string) (rawTag, error) {
		return rawTag{}, fmt.Errorf("cannot split start tag at offset %d: %s", start, what)
	}
	if end-start < 3 || doc[start] != '<' || doc[end-1] != '>' {
		return bad("not a start tag")
	}
	i := start + 1
	n := nameEnd(doc, i, end)
	if n == i {
		return bad("no element name")
	}
	t.name, t.nameEnd = string(doc[i:n]), n
	i = n
	for {
		i = skipSpace(doc, i, end)
		if i >= end {
			return bad("unterminated")
		}
		switch doc[i] {
		case '>':
			if i != end-1 {
				return bad("'>' before the end")
			}
			t.close = i
			return t, nil
		case '/':
			if i != end-2 {
				return bad("'/' before the end")
			}
			t.close = i
			return t, nil
		}
		n := nameEnd(doc, i, end)
		if n == i {
			return bad("no attribute name")
		}
		a := rawAttr{name: string(doc[i:n])}
		i = skipSpace(doc, n, end)
		if i >= end || doc[i] != '=' {
			return bad("no '=' after attribute name")
		}
		i = skipSpace(doc, i+1, end)
		if i >= end || (doc[i] != '\'' && doc[i] != '"') {
			return bad("unquoted attribute value")
		}
		a.quote = doc[i]
		a.valueStart = i + 1
		j := a.valueStart
		for j < end && doc[j] != a.quote {
			j++
		}
		if j >= end {
			return bad("unterminated attribute value")
		}
		a.valueEnd = j
		t.attrs = append(t.attrs, a)
		i = j + 1
	}
}

// find returns the attribute written exactly as name (so no prefixed
// p:queues, no xqueues, no queues_x).
func (t *rawTag) find(name string) (rawAttr, bool) {
	for _, a := range t.attrs {
		if a.name == name {
			return a, true
		}
	}
	return rawAttr{}, false
}

// quote returns the quote character of the tag's last attribute, or 0 when
// it has none.
func (t *rawTag) quote() byte {
	if len(t.attrs) == 0 {
		return 0
	}
	return t.attrs[len(t.attrs)-1].quote
}

// nameEnd returns the end of the name that starts at i.
func nameEnd(doc []byte, i, end int) int {
	for i < end {
		switch doc[i] {
		case ' ', '\t', '\r', '\n', '=', '/', '>', '\'', '"':
			return i
		}
		i++
	}
	return i
}

func skipSpace(doc []byte, i, end int) int {
	for i < end && isSpace(doc[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n'
}

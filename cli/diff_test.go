package cli

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestLineDiff(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want string // one "OpLine:text" per changed line, joined by "|"
	}{
		{"identical", "a\nb\nc\n", "a\nb\nc\n", ""},
		{"empty both", "", "", ""},
		{"change one", "a\nb\nc\n", "a\nB\nc\n", "-2:b|+2:B"},
		{"insert", "a\nc\n", "a\nb\nc\n", "+2:b"},
		{"delete", "a\nb\nc\n", "a\nc\n", "-2:b"},
		{"two hunks, insert shifts numbers", "a\nx\nb\ny\nc\n", "a\nx\nI\nb\nY\nc\n", "+3:I|-4:y|+5:Y"},
		{"first and last", "a\nb\nc", "A\nb\nC", "-1:a|+1:A|-3:c|+3:C"},
		{"all new", "", "a\nb\n", "+1:a|+2:b"},
		{"final newline only", "a\nb", "a\nb\n", ""},
		{"crlf kept in text", "a\r\nb\r\n", "a\r\nB\r\n", "-2:b\r|+2:B\r"},
		{"repeated lines", "x\nx\nx\n", "x\nx\nx\nx\n", "+4:x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, l := range lineDiff([]byte(tt.a), []byte(tt.b)) {
				got = append(got, fmt.Sprintf("%c%d:%s", l.Op, l.Line, l.Text))
			}
			if g := strings.Join(got, "|"); g != tt.want {
				t.Errorf("lineDiff = %q, want %q", g, tt.want)
			}
		})
	}
}

// TestLineDiffLarge checks the fallback when the differing middle is too
// large for the LCS table: every middle line is shown, nothing is lost.
func TestLineDiffLarge(t *testing.T) {
	var a, b bytes.Buffer
	for i := range 3000 {
		fmt.Fprintf(&a, "a%d\n", i)
		fmt.Fprintf(&b, "b%d\n", i)
	}
	d := lineDiff(a.Bytes(), b.Bytes())
	if len(d) != 6000 || d[0] != (diffLine{'-', 1, "a0"}) || d[3000] != (diffLine{'+', 1, "b0"}) {
		t.Errorf("got %d lines starting %v", len(d), d[:1])
	}
}

func TestPrintDiff(t *testing.T) {
	var buf bytes.Buffer
	printDiff(&buf, "  ", []diffLine{{'-', 9, "  <driver\x1b[31m/>"}, {'+', 10, "\t<driver queues='4'/>\r"}})
	want := "  -  9    <driver?[31m/>\n  + 10  \t<driver queues='4'/>\n"
	if buf.String() != want {
		t.Errorf("printDiff =\n%q\nwant\n%q", buf.String(), want)
	}
}

func TestMaskSecrets(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"vnc", `<graphics type='vnc' port='-1' autoport='yes' passwd='s3cret'/>`, `<graphics type='vnc' port='-1' autoport='yes' passwd='***'/>`},
		{"double quotes", `<graphics type="spice" passwd="it's"/>`, `<graphics type="spice" passwd="***"/>`},
		{"escaped characters", `<graphics type='spice' passwd='a&amp;&apos;b' connected='keep'>`, `<graphics type='spice' passwd='***' connected='keep'>`},
		{"spaces around =", `<graphics passwd = 'x'/>`, `<graphics passwd = '***'/>`},
		{"empty", `<graphics passwd=''/>`, `<graphics passwd='***'/>`},
		{"passwdValidTo is not secret", `<graphics passwd='x' passwdValidTo='2031-06-30T12:00:00'/>`, `<graphics passwd='***' passwdValidTo='2031-06-30T12:00:00'/>`},
		{"two on one line", `<graphics type='vnc' passwd='a'/><graphics type='spice' passwd='b'/>`, `<graphics type='vnc' passwd='***'/><graphics type='spice' passwd='***'/>`},
		{"value over lines keeps line count", "<graphics passwd='a\nb\nc'/>\n<x/>", "<graphics passwd='***\n\n'/>\n<x/>"},
		{"http cookie", `<cookies><cookie name='session'>t0ken</cookie></cookies>`, `<cookies><cookie name='session'>***</cookie></cookies>`},
		{"secret references stay", `<auth username='u'><secret type='ceph' uuid='2ec115d7-3a88-3ceb-bc12-0ac909a6fd87'/></auth>`, `<auth username='u'><secret type='ceph' uuid='2ec115d7-3a88-3ceb-bc12-0ac909a6fd87'/></auth>`},
		{"no secrets", "<driver queues='4'/>", "<driver queues='4'/>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(maskSecrets([]byte(tt.doc))); got != tt.want {
				t.Errorf("maskSecrets(%q) =\n%q\nwant\n%q", tt.doc, got, tt.want)
			}
		})
	}
}

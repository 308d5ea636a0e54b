package policy

import (
	"reflect"
	"testing"
)

func TestBlankComments(t *testing.T) {
	tests := []struct{ in, want string }{
		{"# a\nversion: 1 # b\n  # c\nmode: audit\n", "#\nversion: 1 # b\n  #\nmode: audit\n"},
		{"version: 1\n", "version: 1\n"},
		{"#only\n", "#\n"},
		{"\t# tab\nx: 1", "\t#\nx: 1"},
		// A # line inside a block scalar is content: leave the file alone.
		{"a: |\n  # text\n", "a: |\n  # text\n"},
		{"a: >-\n  # text\n", "a: >-\n  # text\n"},
		{"a: |2 # c\n  # text\n", "a: |2 # c\n  # text\n"},
		// Inside a quoted scalar spanning lines, too.
		{"a: \"x\n# y\"\n", "a: \"x\n# y\"\n"},
		{"a: 'it''s\n# y'\n", "a: 'it''s\n# y'\n"},
		{"a: \"x\\\" # y\n# z\"\n", "a: \"x\\\" # y\n# z\"\n"},
		// Quotes closed on their line, and # inside them, are fine.
		{"a: \"x # y\" # c\n# z\n", "a: \"x # y\" # c\n#\n"},
		{"a: 'don''t'\n# z\n", "a: 'don''t'\n#\n"},
		{"a: x>y\n# z\n", "a: x>y\n#\n"},
		{"# a\r\nx: 1\r\n", "#\r\nx: 1\r\n"},
		{"#\r0", "#\r0"},
	}
	for _, tt := range tests {
		out, _ := blankComments([]byte(tt.in))
		if got := string(out); got != tt.want {
			t.Errorf("blankComments(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// parseBoth parses data with and without comment blanking.
func parseBoth(data []byte) (blanked, kept [2]any) {
	d1, e1 := (&parser{file: "f.yaml"}).parseFile(data, false)
	d2, e2 := (&parser{file: "f.yaml", keepComments: true}).parseFile(data, false)
	return [2]any{d1, e1.Error()}, [2]any{d2, e2.Error()}
}

// TestBlankCommentsChangesNothing: the shipped policy parses the same with
// and without blanking (FuzzParse checks the same for any input).
func TestBlankCommentsChangesNothing(t *testing.T) {
	for _, data := range [][]byte{defaultPolicy, []byte("# c\nversion: 2\nmode: x # c\n# c\nbogus: 1\n")} {
		if b, k := parseBoth(data); !reflect.DeepEqual(b, k) {
			t.Errorf("blanking changed the result:\n%+v\n%+v", b, k)
		}
	}
}

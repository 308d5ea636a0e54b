package verify

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseTapQueues feeds parseTapQueues arbitrary `ip -d link show`
// output: it must not panic, must not return negative or overflowing
// counts, and must keep control characters out of its errors (virtmq
// verify prints them on a terminal).
func FuzzParseTapQueues(f *testing.F) {
	for _, p := range []string{
		filepath.Join("testdata", "ip-link-vnet0-mq4.txt"),
		filepath.Join(recordedDir, "ip-d-link-show-tap.txt"),
	} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"tun type tap pi off vnet_hdr on multi_queue numqueues 2 numdisabled 2 persist off",
		"tun type tap multi_queue numqueues 3",
		"numtxqueues 256 numrxqueues 256",
		"macvtap mode bridge bcqueuelen 1000 usedbcqueuelen 1000 addrgenmode eui64",
		"numqueues four numdisabled 0",
		"numqueues 4 numdisabled -1 numqueues 2",
		"numqueues \x1b[2J",
		"numqueues 9223372036854775807 numdisabled 1",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		c, err := parseTapQueues(out)
		if err != nil {
			if c != (tapQueueCounts{}) {
				t.Fatalf("parseTapQueues(%q) = %+v with error %v", out, c, err)
			}
			if i := strings.IndexFunc(err.Error(), isControl); i >= 0 {
				t.Fatalf("error %q has a control character at %d", err, i)
			}
			if !errors.Is(err, errNoTapQueues) && !bytes.Contains(out, []byte("num")) {
				t.Fatalf("parse error %v for output without a num* field", err)
			}
			return
		}
		if c.Active < 0 || c.Disabled < 0 || c.Total() < c.Active || c.Total() < c.Disabled {
			t.Fatalf("parseTapQueues(%q) = %+v, total %d", out, c, c.Total())
		}
		if !bytes.Contains(out, []byte("numqueues")) {
			t.Fatalf("parseTapQueues(%q) = %+v without numqueues", out, c)
		}
	})
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

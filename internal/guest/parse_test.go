package guest

import (
	"bytes"
	"encoding/base64"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseChannels(t *testing.T) {
	fixture := func(name string) string {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	debian := fixture("ethtool-l-debian12.txt")
	tests := []struct {
		name    string
		in      string
		want    Channels
		wantErr string
	}{
		{name: "ethtool 6.1", in: debian, want: Channels{Max: 4, Current: 4}},
		{name: "ethtool 4 zeros", in: fixture("ethtool-l-ethtool4.txt"), want: Channels{Max: 8, Current: 1}},
		{name: "CRLF", in: strings.ReplaceAll(debian, "\n", "\r\n"), want: Channels{Max: 4, Current: 4}},
		{name: "no final newline", in: strings.TrimSuffix(debian, "\n"), want: Channels{Max: 4, Current: 4}},
		{name: "n/a combined", in: "Pre-set maximums:\nRX: 1\nCombined: n/a\nCurrent hardware settings:\nCombined: n/a\n", want: Channels{}},
		{name: "extra lines and spaces", in: "warning: something\n  Pre-set maximums:  \nfoo: bar\n\tCombined:   16 \nCurrent hardware settings:\nTX: n/a\nCombined:\t3\ntrailer\n", want: Channels{Max: 16, Current: 3}},
		{name: "case", in: "PRE-SET MAXIMUMS:\ncombined: 2\ncurrent hardware settings:\nCOMBINED: 1\n", want: Channels{Max: 2, Current: 1}},
		{name: "combined before any section is ignored", in: "Combined: 9\n" + debian, want: Channels{Max: 4, Current: 4}},
		{name: "empty", in: "", wantErr: `no "Pre-set maximums:"`},
		{name: "no current section", in: "Pre-set maximums:\nCombined: 4\n", wantErr: `no "Current hardware settings:"`},
		{name: "current section without combined", in: "Pre-set maximums:\nCombined: 4\nCurrent hardware settings:\nRX: n/a\n", wantErr: `no "Current hardware settings:"`},
		{name: "overflow", in: strings.Replace(debian, "Combined:\t4", "Combined: 99999999999999999999", 1), wantErr: `"99999999999999999999" is not a count`},
		{name: "above u16", in: strings.Replace(debian, "Combined:\t4", "Combined: 4000000", 1), wantErr: "out of range"},
		{name: "negative", in: strings.Replace(debian, "Combined:\t4", "Combined: -1", 1), wantErr: "not a count"},
		{name: "hex", in: strings.Replace(debian, "Combined:\t4", "Combined: 0x4", 1), wantErr: "not a count"},
		{name: "duplicate", in: strings.Replace(debian, "Combined:\t4\n", "Combined:\t4\nCombined:\t4\n", 1), wantErr: "two Combined lines"},
		{name: "current above max", in: "Pre-set maximums:\nCombined: 2\nCurrent hardware settings:\nCombined: 3\n", wantErr: "above maximum"},
		{name: "binary", in: "\x00\xff\xfe\x01Combined:\x00\n\xff", wantErr: "no \"Pre-set"},
		{name: "error text", in: "netlink error: Operation not supported\n", wantErr: "no \"Pre-set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseChannels([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseChannels() = %+v, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseChannels() = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestParseInterrupts(t *testing.T) {
	fix, err := os.ReadFile("testdata/proc-interrupts-debian12.txt")
	if err != nil {
		t.Fatal(err)
	}
	virtio0 := []string{
		"virtio0-input.0", "virtio0-output.0", "virtio0-input.1", "virtio0-output.1",
		"virtio0-input.2", "virtio0-output.2", "virtio0-input.3", "virtio0-output.3",
	}
	long := strings.Repeat("x", maxInterruptLine+10)
	tests := []struct {
		name string
		in   string
		dev  string
		want []string
	}{
		{name: "fixture virtio0", in: string(fix), dev: "virtio0", want: virtio0},
		{name: "fixture all", in: string(fix), dev: "", want: virtio0},
		{name: "fixture other device", in: string(fix), dev: "virtio2", want: nil},
		{name: "virtio1 is not virtio10", in: " 1: 0 PCI-MSI 1-edge virtio10-input.0\n 2: 0 PCI-MSI 2-edge virtio1-input.0\n", dev: "virtio1", want: []string{"virtio1-input.0"}},
		{name: "shared line", in: " 11: 5 IO-APIC 11-fasteoi virtio0-input.0, virtio0-output.0\n", dev: "virtio0", want: []string{"virtio0-input.0", "virtio0-output.0"}},
		{name: "duplicates", in: "1: virtio0-input.0\n2: virtio0-input.0\n", want: []string{"virtio0-input.0"}},
		{name: "CRLF no final newline", in: "1: x virtio0-input.0\r\n2: y virtio0-output.0", want: []string{"virtio0-input.0", "virtio0-output.0"}},
		{name: "not queue names", in: "1: virtio0-config\n2: virtio0-virtqueues\n3: virtio1-input\n4: virtio0-input.x\n5: xvirtio0-input.0\n", want: nil},
		{name: "overlong line skipped", in: long + " virtio0-input.9\n1: virtio0-input.0\n", want: []string{"virtio0-input.0"}},
		{name: "overlong last line", in: "1: virtio0-input.0\n" + long, want: []string{"virtio0-input.0"}},
		{name: "binary", in: "\x00\xff virtio0-input.0\x00\n", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInterrupts(strings.NewReader(tt.in), tt.dev)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("parseInterrupts() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseInterruptsTooMany(t *testing.T) {
	var b strings.Builder
	for i := 0; i <= maxQueueIRQs; i++ {
		b.WriteString("1: virtio0-input." + strconv.Itoa(i) + "\n")
	}
	got, err := parseInterrupts(strings.NewReader(b.String()), "")
	if err == nil || len(got) != maxQueueIRQs {
		t.Fatalf("parseInterrupts() kept %d names, err %v; want %d and an error", len(got), err, maxQueueIRQs)
	}
}

func TestParseInterruptsBadBase64(t *testing.T) {
	r := base64.NewDecoder(base64.StdEncoding, strings.NewReader("dmlydGlvMC1pbnB1dC4w!!!"))
	if _, err := parseInterrupts(r, ""); err == nil {
		t.Fatal("parseInterrupts(bad base64) = nil error")
	}
}

func TestValidIfName(t *testing.T) {
	good := []string{"eth0", "ens3", "enp0s3", "eth0.100", "br-lan", "a", "123456789012345", "veth@1", "eth_0", "eth0:1"}
	bad := []string{"", ".", "..", "eth0;reboot", "eth0 x", "eth/0", "1234567890123456", "-L", "--help", "eth0\n", "eth\x00", "ä", "$(reboot)", "eth0`", "eth0|x", "e\tx", "e\u00a0x"}
	for _, n := range good {
		if err := validIfName(n); err != nil {
			t.Errorf("validIfName(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range bad {
		err := validIfName(n)
		if err == nil {
			t.Errorf("validIfName(%q) = nil, want error", n)
			continue
		}
		if len(n) < 16 && !strings.Contains(err.Error(), strconv.Quote(n)) {
			t.Errorf("validIfName(%q) = %v: does not name it", n, err)
		}
	}
}

func TestDecodeCapped(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000)
	enc := base64.StdEncoding.EncodeToString(data)
	for _, max := range []int{1, 2, 3, 4, 5, 100, 9999, 10000, 10001, 1 << 20, math.MaxInt} {
		got, cut, err := decodeCapped(enc, max)
		wantLen := min(max, len(data))
		if err != nil || len(got) != wantLen || !bytes.Equal(got, data[:wantLen]) || cut != (max < len(data)) {
			t.Errorf("decodeCapped(max %d) = %d bytes, cut %v, %v", max, len(got), cut, err)
		}
	}
	if _, _, err := decodeCapped("not base64!", 100); err == nil {
		t.Error("decodeCapped(garbage) = nil error")
	}
	if got, cut, err := decodeCapped("", 100); err != nil || len(got) != 0 || cut {
		t.Errorf("decodeCapped(\"\") = %q, %v, %v", got, cut, err)
	}
}

func TestSnippet(t *testing.T) {
	if got := snippet("a\x00b\nc"); got != "a b c" {
		t.Errorf("snippet = %q", got)
	}
	long := snippet(strings.Repeat("é", 300))
	if len(long) > 210 || !strings.HasSuffix(long, "…") || !strings.HasPrefix(long, "éé") {
		t.Errorf("snippet(long) = %q", long)
	}
}

func FuzzParseChannels(f *testing.F) {
	for _, name := range []string{"ethtool-l-debian12.txt", "ethtool-l-ethtool4.txt"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Pre-set maximums:\r\nCombined: n/a\r\nCurrent hardware settings:\r\nCombined: 99999999999999999999\r\n"))
	f.Add([]byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := parseChannels(b)
		if err == nil && (ch.Current < 0 || ch.Max < 0 || ch.Current > ch.Max || ch.Max > maxChannels) {
			t.Fatalf("parseChannels(%q) = %+v: out of range without an error", b, ch)
		}
	})
}

func FuzzParseInterrupts(f *testing.F) {
	b, err := os.ReadFile("testdata/proc-interrupts-debian12.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, "virtio0")
	f.Add([]byte("1: virtio0-input.0, virtio0-output.0\r\n"), "")
	f.Add([]byte("\x00\xff\n\n"), "virtio9")
	f.Fuzz(func(t *testing.T, b []byte, dev string) {
		names, _ := parseInterrupts(bytes.NewReader(b), dev)
		if len(names) > maxQueueIRQs {
			t.Fatalf("%d names kept", len(names))
		}
		for _, n := range names {
			if !queueIRQPattern.MatchString(n) || (dev != "" && !strings.HasPrefix(n, dev+"-")) {
				t.Fatalf("parseInterrupts kept %q for dev %q", n, dev)
			}
		}
	})
}

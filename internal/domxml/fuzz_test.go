package domxml

import (
	"bytes"
	"path/filepath"
	"testing"
)

// maxSeed is the largest fixture used as a fuzz seed. The fuzzer minimizes
// every input that finds new coverage, one candidate per byte or so: from a
// 12 KB seed that eats the whole minimization budget (a minute) each time
// and the fuzzer makes no progress. The benchmark fixture is left out; the
// corpus and fixture tests cover it.
const maxSeed = 1 << 10

// fuzzSeeds are the small fixtures plus documents that reach the odd
// corners: self-closing and one-line interfaces, look-alike attributes,
// '>' in values, CDATA, comments, entities.
func fuzzSeeds(f *testing.F) [][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil {
		f.Fatal(err)
	}
	var seeds [][]byte
	for _, p := range files {
		if b := readFixture(f, filepath.Base(p)); len(b) <= maxSeed {
			seeds = append(seeds, b)
		}
	}
	for _, s := range []string{
		`<domain><devices><interface type='network'/></devices></domain>`,
		`<domain><devices><interface type="network"><model type="virtio"/></interface></devices></domain>`,
		"<domain>\r\n\t<devices>\r\n\t\t<interface type='bridge'>\r\n\t\t\t<!-- c -->\r\n\t\t</interface>\r\n\t</devices>\r\n</domain>",
		`<domain><devices><interface><driver xqueues='1' queues_x="2" name='a>b'txmode="c"><host csum='off'/></driver></interface></devices></domain>`,
		`<domain><devices><interface><driver queues = "&#50;" /></interface><interface><![CDATA[x]]></interface></devices></domain>`,
		`<domain><vcpu current='2'>4</vcpu><metadata><l:labels xmlns:l='https://virtmq.dev/xmlns/labels/1'><l:label name='a'>b</l:label></l:labels></metadata></domain>`,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// FuzzParse checks that Parse never panics, that what it accepts makes
// sense, and that Rewrite reads documents exactly as Parse does.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		d, err := Parse(doc)
		_, rerr := splice(doc, nil)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("Parse error %v, Rewrite error %v", err, rerr)
		}
		if err != nil {
			return
		}
		if d.MaxVCPUs < 1 || d.CurrentVCPUs < 1 || d.CurrentVCPUs > d.MaxVCPUs {
			t.Errorf("vCPUs: max %d, current %d", d.MaxVCPUs, d.CurrentVCPUs)
		}
		for i, ifc := range d.Interfaces {
			if ifc.Index != i {
				t.Errorf("interface #%d has Index %d", i, ifc.Index)
			}
			if ifc.Queues != 0 && !ifc.HasDriver {
				t.Errorf("interface #%d has queues but no driver", i)
			}
		}
	})
}

// FuzzRewrite checks, for any document Parse accepts and any valid count
// given to any subset of its interfaces, that Rewrite succeeds, that the
// result reads back with the new counts and otherwise the same facts, that
// only <driver> elements changed, and that a second rewrite is a no-op;
// and that the recorded rewrite Apply uses writes the same counts.
func FuzzRewrite(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, uint16(4), uint8(0xff))
		f.Add(s, uint16(1), uint8(0x05))
	}
	f.Fuzz(func(t *testing.T, doc []byte, n uint16, mask uint8) {
		sc, err := scan(doc)
		if err != nil {
			if _, rerr := splice(doc, map[int]int{0: int(n)}); rerr == nil {
				t.Fatalf("Rewrite accepted a document Parse rejects (%v)", err)
			}
			return
		}
		q := map[int]int{}
		opened := false // a self-closing <interface> that gets a <driver>
		for i := range sc.dom.Interfaces {
			if i >= 8 || mask&(1<<i) != 0 {
				q[i] = int(n)
				if n > 1 && sc.spans[i].selfClosing {
					opened = true
				}
			}
		}
		out, err := splice(doc, q)
		if err != nil {
			t.Fatalf("splice(%v): %v", q, err)
		}
		got, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(rewritten): %v\n%s", err, out)
		}
		if diff := domainDiff(expectFacts(sc, q), got); diff != "" {
			t.Errorf("facts after Rewrite (-want +got):\n%s", diff)
		}
		again, err := splice(out, q)
		if err != nil {
			t.Fatalf("second Rewrite: %v", err)
		}
		if !bytes.Equal(again, out) {
			t.Errorf("second Rewrite is not a no-op:\n%s", lineDiff(string(out), string(again)))
		}
		// Apply's write path: the same counts, every NIC with a MAC
		// recorded (rewrite checks that itself), and a no-op second run.
		rec, err := recorded(doc, q)
		if err != nil {
			t.Fatalf("recorded(%v): %v", q, err)
		}
		after, err := Parse(rec)
		if err != nil {
			t.Fatalf("Parse(recorded): %v", err)
		}
		for i := range after.Interfaces {
			if after.Interfaces[i].Queues != got.Interfaces[i].Queues {
				t.Errorf("recorded <interface> #%d has queues %d, the splice %d", i, after.Interfaces[i].Queues, got.Interfaces[i].Queues)
			}
		}
		if again, err := recorded(rec, q); err != nil || !bytes.Equal(again, rec) {
			t.Errorf("second recorded rewrite is not a no-op (%v)", err)
		}
		if opened {
			// <interface/> becomes <interface><driver .../></interface>:
			// the one edit outside a <driver> element.
			return
		}
		sIn, err := stripDrivers(doc)
		if err != nil {
			t.Fatal(err)
		}
		sOut, err := stripDrivers(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sIn, sOut) {
			t.Errorf("bytes outside <driver> changed:\n%s", firstDifference(sIn, sOut))
		}
	})
}

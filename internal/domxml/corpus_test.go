package domxml

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/virtmq/virtmq/policy"
)

// corpusDir is where the shared corpus of real domain XML lives: the
// VIRTMQ_CORPUS environment variable, else ../shared/corpus/domains next
// to the repository (this test runs in internal/domxml).
func corpusDir() (dir string, fromEnv bool) {
	if d := os.Getenv("VIRTMQ_CORPUS"); d != "" {
		return d, true
	}
	return filepath.Join("..", "..", "..", "shared", "corpus", "domains"), false
}

// corpusStats counts what the corpus and fixture tests covered, for the
// summary line.
type corpusStats struct {
	docs, skipped, interfaces, rewrites, validated atomic.Int64
}

func (s *corpusStats) log(t *testing.T) {
	t.Logf("%d documents checked (%d skipped), %d interfaces, %d rewrites, %d schema-checked outputs",
		s.docs.Load(), s.skipped.Load(), s.interfaces.Load(), s.rewrites.Load(), s.validated.Load())
	if validatorPath() == "" {
		t.Log("virt-xml-validate is not installed: schema checks skipped")
	}
}

// TestCorpus rewrites every interface of every real domain XML in the
// corpus and checks that only <driver> elements change, that the result
// reads back with the new counts, that a second rewrite is a no-op, and
// that libvirt's schema still accepts it whenever it accepted the input.
func TestCorpus(t *testing.T) {
	dir, fromEnv := corpusDir()
	files, err := filepath.Glob(filepath.Join(dir, "*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		if fromEnv {
			t.Fatalf("VIRTMQ_CORPUS=%s holds no *.xml", dir)
		}
		t.Skipf("no corpus at %s", dir)
	}
	var stats corpusStats
	t.Cleanup(func() { stats.log(t) })
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs, ok := splitDocuments(data)
			if !ok {
				stats.skipped.Add(1)
				t.Skip("text outside the root element: not an XML document")
			}
			if len(docs) > 1 {
				// virt-install's test outputs hold two domains back to back;
				// libvirt would never hand virtmq such a file.
				if _, err := Parse(data); err == nil {
					t.Errorf("Parse accepted a file with %d root elements", len(docs))
				}
				t.Logf("%d documents in one file: checking each", len(docs))
			}
			for i, doc := range docs {
				name := "in"
				if len(docs) > 1 {
					name = fmt.Sprintf("doc%d", i)
				}
				checkRewrites(t, &stats, name, doc)
			}
		})
	}
}

// TestFixtures puts the hand-written fixtures through the corpus checks.
func TestFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	var stats corpusStats
	t.Cleanup(func() { stats.log(t) })
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			checkRewrites(t, &stats, "in", readFixture(t, filepath.Base(f)))
		})
	}
}

// checkRewrites rewrites every interface of doc to 4 queues, and every
// interface that has queues to 1, and checks each result.
func checkRewrites(t *testing.T, stats *corpusStats, name string, doc []byte) {
	t.Helper()
	sc, err := scan(doc)
	if errors.Is(err, ErrNotDomain) {
		stats.skipped.Add(1)
		t.Logf("%s: skipped: %v", name, err)
		return
	}
	if err != nil {
		t.Errorf("%s: Parse: %v", name, err)
		return
	}
	stats.docs.Add(1)
	stats.interfaces.Add(int64(len(sc.dom.Interfaces)))

	dir := t.TempDir()
	valid := false
	if validatorPath() != "" {
		var msg string
		valid, msg = validate(t, dir, name+".xml", doc)
		if !valid {
			t.Logf("%s: input fails libvirt's schema, output not schema-checked: %s", name, firstLine(msg))
		}
	}

	all, one := map[int]int{}, map[int]int{}
	for i := range sc.dom.Interfaces {
		all[i] = 4
		if sc.spans[i].hasQueues {
			one[i] = 1
		}
	}
	checkRewrite(t, stats, name+"-4", doc, sc, all, valid, dir)
	if len(one) > 0 {
		checkRewrite(t, stats, name+"-1", doc, sc, one, valid, dir)
	}
}

func checkRewrite(t *testing.T, stats *corpusStats, name string, doc []byte, sc *scanned, q map[int]int, valid bool, dir string) {
	t.Helper()
	out, err := splice(doc, q)
	if err != nil {
		t.Errorf("%s: Rewrite: %v", name, err)
		return
	}
	stats.rewrites.Add(1)

	got, err := Parse(out)
	if err != nil {
		t.Errorf("%s: Parse(rewritten): %v", name, err)
		return
	}
	if diff := domainDiff(expectFacts(sc, q), got); diff != "" {
		t.Errorf("%s: facts after Rewrite (-want +got):\n%s", name, diff)
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
		t.Errorf("%s: bytes outside <driver> changed (-in +out, drivers stripped):\n%s", name, lineDiff(string(sIn), string(sOut)))
	}

	if lines, err := misindentedDrivers(out); err != nil || len(lines) > 0 {
		t.Errorf("%s: <driver> not indented like the element before it at lines %v (%v):\n%s", name, lines, err, lineDiff(string(doc), string(out)))
	}

	again, err := splice(out, q)
	if err != nil {
		t.Errorf("%s: second Rewrite: %v", name, err)
	} else if !bytes.Equal(again, out) {
		t.Errorf("%s: second Rewrite is not a no-op (-first +second):\n%s", name, lineDiff(string(out), string(again)))
	}
	checkRecorded(t, name, doc, sc, q, out, valid, dir)

	if valid && !bytes.Equal(out, doc) {
		stats.validated.Add(1)
		if ok, msg := validate(t, dir, name+".xml", out); !ok {
			t.Errorf("%s: libvirt's schema accepts the input but not the output:\n%s\n%s", name, msg, lineDiff(string(doc), string(out)))
		}
	}
}

// expectFacts is what Parse must report after splice(doc, q): the same
// facts, with the new counts (and a <driver>) where Rewrite had to write.
func expectFacts(sc *scanned, q map[int]int) *policy.Domain {
	want := sc.dom
	want.Interfaces = slices.Clone(sc.dom.Interfaces)
	for i, n := range q {
		if n > 1 || sc.spans[i].hasQueues {
			want.Interfaces[i].Queues = max(n, 1)
			want.Interfaces[i].HasDriver = true
		}
	}
	return &want
}

func firstLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// checkRecorded checks the recorded rewrite against the plain splice: the same document
// once virtmq's record (and a <metadata> it had to add) is taken out, a
// record that names every NIC whose count changed, and a no-op second run.
func checkRecorded(t *testing.T, name string, doc []byte, sc *scanned, q map[int]int, plain []byte, valid bool, dir string) {
	t.Helper()
	rec, err := recorded(doc, q)
	if err != nil {
		t.Errorf("%s: RewriteRecorded: %v", name, err)
		return
	}
	if bytes.Equal(plain, doc) {
		if !bytes.Equal(rec, doc) {
			t.Errorf("%s: RewriteRecorded changed a document Rewrite left alone", name)
		}
		return
	}
	if got := stripRecord(doc, rec); !bytes.Equal(got, plain) {
		t.Errorf("%s: RewriteRecorded differs from Rewrite outside the record (-rewrite +recorded):\n%s", name, lineDiff(string(plain), string(got)))
	}
	got, err := Parse(rec)
	if err != nil {
		t.Errorf("%s: Parse(recorded): %v", name, err)
		return
	}
	// Every NIC with a MAC, shared or not, has its own entry: the count
	// written now, else the one recorded before.
	for i, ifc := range got.Interfaces {
		want := sc.dom.Interfaces[i].Written
		if ifc.Queues != sc.dom.Interfaces[i].Queues {
			want = ifc.Queues
		}
		if ifc.MAC != "" && ifc.Written != want {
			t.Errorf("%s: NIC #%d (%s) recorded as %d, want %d", name, i, ifc.MAC, ifc.Written, want)
		}
	}
	again, err := recorded(rec, q)
	if err != nil || !bytes.Equal(again, rec) {
		t.Errorf("%s: second RewriteRecorded is not a no-op (%v):\n%s", name, err, lineDiff(string(rec), string(again)))
	}
	if valid {
		if ok, msg := validate(t, dir, name+"-recorded.xml", rec); !ok {
			t.Errorf("%s: libvirt's schema accepts the input but not the recorded output:\n%s\n%s", name, msg, lineDiff(string(doc), string(rec)))
		}
	}
}

var (
	recordRE        = regexp.MustCompile(`(?s)\s*<virtmq:written xmlns:virtmq='https://virtmq.dev/xmlns/written/1'(/>|>.*?</virtmq:written>)`)
	addedMetadataRE = regexp.MustCompile(`\s*<metadata>\s*</metadata>`)
)

// stripRecord takes virtmq's record out of rec, and the <metadata> around
// it when doc had none. It shares no code with the record writer on purpose.
func stripRecord(doc, rec []byte) []byte {
	out := recordRE.ReplaceAll(rec, nil)
	if !bytes.Contains(doc, []byte("<metadata")) {
		out = addedMetadataRE.ReplaceAll(out, nil)
	}
	return out
}

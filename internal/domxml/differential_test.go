package domxml

import (
	"encoding/xml"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// sameAsReference checks that scan, which Parse and Rewrite use, reads doc
// exactly as scanReference (encoding/xml) does: both fail with the same
// error text (line included) and the same errors.Is(ErrNotDomain), or both
// succeed with the same facts and the same offsets for Rewrite.
func sameAsReference(doc []byte) error {
	got, gerr := scan(doc)
	want, werr := scanReference(doc)
	switch {
	case gerr != nil && werr != nil:
		if gerr.Error() != werr.Error() {
			return fmt.Errorf("different errors:\n got %v\nwant %v", gerr, werr)
		}
		if errors.Is(gerr, ErrNotDomain) != errors.Is(werr, ErrNotDomain) {
			return fmt.Errorf("errors.Is(err, ErrNotDomain) = %v, reference %v", errors.Is(gerr, ErrNotDomain), errors.Is(werr, ErrNotDomain))
		}
		return nil
	case gerr != nil:
		return fmt.Errorf("scan fails, the reference succeeds: %v", gerr)
	case werr != nil:
		return fmt.Errorf("scan succeeds, the reference fails: %v", werr)
	}
	if diff := domainDiff(&want.dom, &got.dom); diff != "" {
		return fmt.Errorf("facts (-reference +scan):\n%s", diff)
	}
	if !reflect.DeepEqual(got.spans, want.spans) {
		return fmt.Errorf("offsets:\n got %+v\nwant %+v", got.spans, want.spans)
	}
	return nil
}

// differentialCases are documents that reach the corners where a byte
// scanner and encoding/xml could part ways. A disagreement found by the
// fuzzer, or any other way, gets a case here.
var differentialCases = []string{
	// Prolog, byte order mark, trailing misc.
	"\uFEFF<domain/>",
	"\uFEFF \n<domain/>",
	"&#xFEFF;<domain/>",
	"<![CDATA[\uFEFF ]]><domain/>",
	"<![CDATA[ ]]><domain/><![CDATA[\n]]>",
	"<![CDATA[x]]><domain/>",
	" \uFEFF<domain/>",
	"<domain/>\uFEFF",
	"<?xml version='1.0' encoding='UTF-8'?><domain/>",
	"<?xml version=\"1.1\"?><domain/>",
	"<?xml encoding='latin1'?><domain/>",
	"<?xml xversion='2'?><domain/>",
	"<domain><?xml version='2'?></domain>",
	"<?xml-stylesheet href='a'?><domain/>",
	"<?XML version='2.0'?><domain/>",
	"<?Xml encoding='latin1'?><domain/>",
	"<?xml version='1.0'encoding='UTF-16'?><domain/>",
	"<?xml version=1.1?><domain/>",
	"<?1x?><domain/>",
	"<? x?><domain/>",
	"<?x",
	"<?x ?",
	"<domain/><!-- c --><?p?>\n\t\r",
	"<domain/></domain>",
	"<domain/><x/>",
	"<domain/>&amp;",
	"<domain/>&#32;",
	"<domain/>]]>",
	"<domain/><",
	"",
	"   ",
	"<!-- only -->",
	// Comments, CDATA, declarations.
	"<domain><!----></domain>",
	"<domain><!---></domain>",
	"<domain><!-- a -- b --></domain>",
	"<domain><!-- a --->",
	"<domain><!-x-></domain>",
	"<domain><![CDATA[a]]b]]></domain>",
	"<domain><![CDAT[a]]></domain>",
	"<domain><![CDATA[a\x01]]></domain>",
	"<domain><![CDATA[a",
	"<!DOCTYPE domain><domain/>",
	"<!DOCTYPE domain [<!ENTITY a 'b'>]><domain/>",
	"<!DOCTYPE domain [<!-- > --> <!ELEMENT x '>'>]>",
	"<!DOCTYPE domain [<!-- > -->",
	"<!>x>",
	"<!\">",
	"<!x<<>>",
	"<!x<!-y>>",
	"<!x '>",
	"<domain><!DOCTYPE x></domain>",
	// Names.
	"<domain><1a/></domain>",
	"<domain><a1/></domain>",
	"<domain><-a/></domain>",
	"<domain><:a/></domain>",
	"<domain><a:/></domain>",
	"<domain><a:b:c/></domain>",
	"<domain><é/></domain>",
	"<domain><aé/></domain>",
	"<domain><a\xff/></domain>",
	"<domain><a\u00b7/></domain>",
	"<domain><\u00b7/></domain>",
	"<domain><a\U00010000/></domain>",
	"<domain>< a/></domain>",
	"<domain><a></ a></domain>",
	"<domain><a></a ></domain>",
	"<domain><a></a x></domain>",
	"<domain><a></b></domain>",
	"<domain><p:a></a></domain>",
	"<domain><p:a></q:a></domain>",
	"<domain><a></p:a></domain>",
	"<domain></domain></domain>",
	"</domain>",
	"<xmlns/>",
	"<xmlns xmlns='urn:x'/>",
	"<d:domain/>",
	"<domain xmlns='urn:x'/>",
	"<domain xmlns=''/>",
	"<domain xmlns:d='urn:x'/>",
	"<xml:domain/>",
	"<xmlns:domain/>",
	// Attributes.
	"<domain a='1'b='2'/>",
	"<domain a = \"1\" />",
	"<domain a/>",
	"<domain a=1/>",
	"<domain a='1' / >",
	"<domain a='1'/ >",
	"<domain a='<'/>",
	"<domain a='>'/>",
	"<domain a=']]>'/>",
	"<domain a='\"'/>",
	"<domain a=\"'\"/>",
	"<domain a='1' a='2'/>",
	"<domain a='1' p:a='2'/>",
	"<domain xmlns:p='u' xmlns:q='u' p:a='1' q:a='2'/>",
	"<domain xmlns:q='p' p:a='1' q:a='2'/>",
	"<domain xml:a='1' xmlns:p='http://www.w3.org/XML/1998/namespace' p:a='2'/>",
	"<domain xmlns:p='' p:a='1'/>",
	"<domain p:a='1' a='2' xmlns:p=''/>",
	"<domain xmlns:p='xmlns' p:a=''/>",
	"<domain xmlns:p='xmlns' p:a='x'/>",
	"<domain xmlns='' xmlns=''/>",
	"<domain xmlns:a='1' xmlns:a='1'/>",
	"<domain :a='1' :a='2'/>",
	"<domain a:='1' a:='2'/>",
	"<domain a='1' b='2' c='3' d='4' e='5' f='6' g='7' h='8' i='9' j='10' k='11' l='12' m='13' n='14' o='15' p='16' q='17' q='18'/>",
	"<domain a='1' b='2' c='3' d='4' e='5' f='6' g='7' h='8' i='9' j='10' k='11' l='12' m='13' n='14' o='15' o='16' xmlns:x=''/>",
	"<domain a='1' b='2' c='3' d='4' e='5' f='6' g='7' h='8' i='9' j='10' k='11' l='12' m='13' n='14' o='15' o='16'/>",
	"<domain a='1' a='2' xmlns:x=''/>",
	"<domain type='a&#x20;b'/>",
	"<domain type='a\r\nb\rc'/>",
	"<domain type='&#13;'/>",
	"<domain type='&#0;'/>",
	"<domain type='&#xD800;'/>",
	"<domain type='&#x10FFFF;'/>",
	"<domain type='&#x110000;'/>",
	"<domain type='&#99999999999999999999999;'/>",
	"<domain type='&#;'/>",
	"<domain type='&#x;'/>",
	"<domain type='&#X41;'/>",
	"<domain type='&#65'/>",
	"<domain type='&;'/>",
	"<domain type='& '/>",
	"<domain type='&lt'/>",
	"<domain type='&lt;&gt;&amp;&apos;&quot;'/>",
	"<domain type='&nbsp;'/>",
	"<domain type='&#x41;&#65;&#0065;'/>",
	"<domain type='\x01'/>",
	"<domain type='\x01&bad;'/>",
	"<domain type='\xff",
	"<domain type='x",
	"<domain type='&",
	"<domain type='&#",
	"<domain type='&#x",
	"<domain type='&#12",
	"<domain type='&am",
	"<domain type='\uFFFE'/>",
	"<domain type='\uFFFD'/>",
	"<domain type='\xed\xa0\x80'/>",
	"<domain type='\U0010FFFF'/>",
	// Text.
	"<domain><name>a&amp;b</name></domain>",
	"<domain><name>a\r\nb\r</name></domain>",
	"<domain><name><![CDATA[a\r\nb]]>c&lt;<x>skipped</x>d</name></domain>",
	"<domain><name>]]></name></domain>",
	"<domain><name>]]&gt;</name></domain>",
	"<domain><name>]&#93;></name></domain>",
	"<domain><name>\x01&bad;</name></domain>",
	"<domain><name>\x01]]></name></domain>",
	"<domain><name>\xff</name></domain>",
	"<domain><name>\xc3&#xA9;</name></domain>",
	"<domain><name>\x00</name></domain>",
	"<domain><name>&#1;</name></domain>",
	"<domain><name>a",
	"<domain><name>\xff",
	"<domain><name/><name>second</name></domain>",
	"<domain><uuid>\u00a0u\u2003</uuid></domain>",
	"<domain><vcpu/></domain>",
	"<domain><vcpu current='1'/></domain>",
	"<domain><vcpu current=' 2 '> 3 </vcpu></domain>",
	"<domain><vcpu current='+2'>3</vcpu></domain>",
	"<domain><vcpu>&#52;</vcpu></domain>",
	"<domain><vcpu>4294967296</vcpu></domain>",
	"<domain>\n<vcpu current='5'>\n4\n</vcpu>\n</domain>",
	"<domain><p:vcpu>x</p:vcpu></domain>",
	"<domain xmlns:p='urn:p'><p:name>x</p:name></domain>",
	"<domain><name xmlns='urn:x'>x</name></domain>",
	"<domain xmlns='urn:x'/>",
	"<domain><devices xmlns='urn:x'><interface/></devices></domain>",
	"<domain><devices><interface xmlns=''/></devices></domain>",
	"<domain xmlns=''><devices xmlns:p=''/></domain>",
	// Metadata.
	"<domain><metadata><labels xmlns='https://virtmq.dev/xmlns/labels/1'><label name='a'>1<x>2</x>3</label><label name=''/></labels></metadata></domain>",
	"<domain><metadata><labels xmlns='https://virtmq.dev/xmlns/labels/1'><label>x</label></labels></metadata></domain>",
	"<domain><metadata><labels xmlns='https://virtmq.dev/xmlns/labels/1'><label name='a'> &#32;b&#9; </label><label name='a&amp;'>\u00a0</label></labels></metadata></domain>",
	"<domain><metadata><labels xmlns='https://virtmq.dev/xmlns/labels/1'><label p:name='a'/></labels></metadata></domain>",
	"<domain><metadata><labels xmlns='https://virtmq.dev/xmlns/labels/1'><x:label xmlns:x='urn:x' name='a'/><label xmlns='' name='b'/></labels></metadata></domain>",
	"<domain><metadata><l:labels xmlns:l='https://virtmq.dev/xmlns/labels/1'><l:label name='a'><l:label name='b'>x</l:label></l:label></l:labels></metadata></domain>",
	"<domain><metadata><o:libosinfo xmlns:o='http://libosinfo.org/xmlns/libvirt/domain/1.0'><o:os id='a'/><o:os id='b'/><o:os/></o:libosinfo></metadata></domain>",
	"<domain><metadata><o:libosinfo xmlns:o='http://libosinfo.org/xmlns/libvirt/domain/1.0'><o:os o:id='a'/></o:libosinfo></metadata></domain>",
	"<domain><metadata xmlns:o='http://libosinfo.org/xmlns/libvirt/domain/1.0'><o:libosinfo><o:os id='a&#x2F;b'/></o:libosinfo></metadata><metadata><o:libosinfo/></metadata></domain>",
	"<domain><metadata xmlns='http://libosinfo.org/xmlns/libvirt/domain/1.0'><libosinfo><os id='x'/></libosinfo></metadata></domain>",
	// A declaration is in scope only inside its element.
	"<domain><metadata><x xmlns:l='https://virtmq.dev/xmlns/labels/1'/><l:labels><l:label name='a'>1</l:label></l:labels></metadata></domain>",
	"<domain><metadata><x xmlns='https://virtmq.dev/xmlns/labels/1'></x><labels><label name='a'>1</label></labels></metadata></domain>",
	"<domain><devices><x xmlns='urn:x'/><interface type='a'/></devices></domain>",
	"<domain><devices xmlns:p='urn:p'><x xmlns:p='urn:q'/><interface p:a='1' a='2'/></devices></domain>",
	// Interfaces.
	"<domain><devices><interface type='network'/></devices></domain>",
	"<domain><devices><interface type='network'></interface><interface/></devices></domain>",
	"<domain><devices><interface>\n  <model type='virtio'/>\n  x\n</interface></devices></domain>",
	"<domain><devices><interface>\n  <model type='virtio'/>&#32;&#10;</interface></devices></domain>",
	"<domain><devices><interface>\n  <model type='virtio'/>&amp;</interface></devices></domain>",
	"<domain><devices><interface>\n  <model type='virtio'/><![CDATA[ ]]></interface></devices></domain>",
	"<domain><devices><interface>\n  <model type='virtio'/><![CDATA[x]]>\n</interface></devices></domain>",
	"<domain><devices><interface>\n  <!-- c -->\n  <?pi x?>\n</interface></devices></domain>",
	"<domain><devices><interface><p:x/><driver queues='2' name='vhost'><host/></driver><driver queues='3'/></interface></devices></domain>",
	"<domain><devices><interface><driver queues='&#50;'/><mac address='AA:BB:cc:DD:ee:FF'/><source network='n' bridge='b' dev='d'/><target dev='t' managed='no'/><alias name='net0'/></interface></devices></domain>",
	"<domain><devices><interface><driver queues='x'/></interface></devices></domain>",
	"<domain><devices><interface><driver queues=''/></interface></devices></domain>",
	"<domain><devices><interface><driver queues='4294967296'/></interface></devices></domain>",
	"<domain><devices><interface><driver name='x' queues='0' /></interface></devices></domain>",
	"<domain><devices><interface><driver p:queues='2'/></interface></devices></domain>",
	"<domain><devices><interface><driver xmlns:p='' p:queues='2'/></interface></devices></domain>",
	"<domain><devices><interface type='a'\n/><interface\ttype=\"b\"\r\n></interface\n></devices></domain>",
	"<domain><devices><interface><model type='1'/><model type='2'/><mac address='1'/><mac address='2'/><source bridge='1'/><source bridge='2'/><target dev='1'/><target dev='2'/><alias name='1'/><alias name='2'/></interface></devices></domain>",
	"<domain><devices><x:interface xmlns:x='urn:x'/><interface xmlns='urn:y'/><y:interface xmlns:y=''/></devices></domain>",
	"<domain><devices/><devices><interface/></devices></domain>",
	"<domain><devices><interface>\n  <model type='virtio'/>\n  <!-- last -->\n</interface></devices></domain>",
	"<domain><devices><interface>\n  <model type='virtio'/>\n  <?last?>\n</interface></devices></domain>",
	"<domain><devices><interface>\n  <model type='virtio'/><![CDATA[last]]></interface></devices></domain>",
	"<domain><devices><interface>\n  <model type='virtio'/><![CDATA[\r\n]]></interface></devices></domain>",
	"<domain><devices><interface><!-- only --></interface></devices></domain>",
	"<domain><devices><interface>text only</interface></devices></domain>",
	// Truncations.
	"<",
	"<domain",
	"<domain ",
	"<domain a",
	"<domain a=",
	"<domain a='",
	"<domain/",
	"<domain>",
	"<domain></",
	"<domain></domain",
	"<domain><!",
	"<domain><!-",
	"<domain><!--",
	"<domain><!-- x -",
	"<domain><!-- x --",
	"<domain><![",
	"<domain><![CDATA",
	"<domain><?",
	"<domain>&",
	"<domain>&#",
	"<domain>&#x",
	"<domain>&am",
	"<domain>\n\n",
}

// TestParseDifferential holds scan to scanReference on the tricky cases,
// on every byte and a sample of characters in each kind of place, and on
// the fixtures and the shared corpus of real domain XML: whole files, each
// document of a file with several, and their prefixes (where the
// truncation errors and their lines are): all of them for the small
// fixtures, a sample for the rest.
func TestParseDifferential(t *testing.T) {
	for i, c := range differentialCases {
		if err := sameAsReference([]byte(c)); err != nil {
			t.Errorf("case %d %q: %v", i, c, err)
		}
	}
	// Every byte, and a sample of characters with the edges of XML's
	// ranges, in every kind of place a scanner treats differently.
	chars := []string{"\u0085", "\u00a0", "\u00b7", "\u0300", "\u2028", "\ud7ff", "\ue000", "\ufffd", "\ufffe", "\uffff",
		"\U00010000", "\U0010ffff", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\x80", "\xe2\x82"}
	for c := range 256 {
		chars = append(chars, string([]byte{byte(c)}))
	}
	for r := rune(0x80); r < 0x3100; r += 37 {
		chars = append(chars, string(r))
	}
	for _, x := range chars {
		for _, form := range []string{
			"<domain><name>a%sb</name></domain>", "<domain><name>%s</name></domain>", "<domain type='%s'/>", "<domain type=\"a%s\"/>",
			"<domain><![CDATA[%s]]></domain>", "<domain><!--%s--></domain>", "<domain><?pi %s?></domain>", "<domain><!DOCTYPE %s></domain>",
			"<domain><a%s/></domain>", "<domain><%s/></domain>", "<domain a%s='1'/>", "<domain><a></a%s></domain>", "<domain><a:%s/></domain>",
			"%s<domain/>", "<domain/>%s", "<domain>&#%s;</domain>", "<domain>&%s;</domain>", "<domain %s/>", "<domain a=%s'1'/>",
			"<domain><devices><interface>%s</interface></devices></domain>",
		} {
			doc := fmt.Sprintf(form, x)
			if err := sameAsReference([]byte(doc)); err != nil {
				t.Errorf("%q: %v", doc, err)
			}
		}
	}
	refs := []rune{0x8, 0x9, 0xB, 0xD, 0x1F, 0x20, 0xD7FF, 0xD800, 0xDFFF, 0xE000, 0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x10FFFF, 0x110000}
	for r := rune(0); r <= 0x110000; r = r*3/2 + 1 {
		refs = append(refs, r)
	}
	for _, r := range refs {
		for _, doc := range []string{fmt.Sprintf("<domain><name>&#%d;</name></domain>", r), fmt.Sprintf("<domain type='&#x%X;'/>", r)} {
			if err := sameAsReference([]byte(doc)); err != nil {
				t.Errorf("%q: %v", doc, err)
			}
		}
	}

	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		doc := readFixture(t, filepath.Base(f))
		if err := sameAsReference(doc); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		step := 1
		if len(doc) > 4<<10 {
			step = len(doc) / 509
		}
		for n := 0; n < len(doc); n += step {
			if err := sameAsReference(doc[:n]); err != nil {
				t.Errorf("%s cut at %d: %v", f, n, err)
			}
		}
	}
	corpus := corpusFiles(t)
	if len(corpus) == 0 {
		t.Log("no corpus: only the fixtures and cases checked")
	}
	for _, f := range corpus {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := sameAsReference(data); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
		for n := 1; n < len(data); n += 1 + len(data)/31 {
			if err := sameAsReference(data[:n]); err != nil {
				t.Errorf("%s cut at %d: %v", filepath.Base(f), n, err)
			}
		}
		docs, _ := splitDocuments(data)
		for i, doc := range docs {
			if len(docs) == 1 {
				break
			}
			if err := sameAsReference(doc); err != nil {
				t.Errorf("%s doc %d: %v", filepath.Base(f), i, err)
			}
		}
	}
}

// corpusFiles lists the shared corpus (see corpusDir), or nothing when it
// is absent and not asked for.
func corpusFiles(t testing.TB) []string {
	dir, fromEnv := corpusDir()
	files, err := filepath.Glob(filepath.Join(dir, "*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 && fromEnv {
		t.Fatalf("VIRTMQ_CORPUS=%s holds no *.xml", dir)
	}
	return files
}

// FuzzParseDifferential checks, for any input, that scan and scanReference
// agree: the same error text, or the same facts and offsets. Parse is scan;
// the reference is the encoding/xml scanner it replaced.
func FuzzParseDifferential(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.xml"))
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, corpusFiles(f)...)
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, c := range differentialCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if err := sameAsReference(doc); err != nil {
			t.Fatal(err)
		}
	})
}

// TestNameTables checks isXMLName against encoding/xml for every BMP
// character as the first and as a later character of a name, and for a
// sample of the others.
func TestNameTables(t *testing.T) {
	accepts := func(name string) bool {
		d := xml.NewDecoder(strings.NewReader("<" + name + "/>"))
		for {
			if _, err := d.Token(); err != nil {
				return err.Error() == "EOF"
			}
		}
	}
	step := rune(1)
	if testing.Short() {
		step = 7
	}
	check := func(r rune) {
		if !utf8.ValidRune(r) {
			return
		}
		for _, name := range []string{string(r), "a" + string(r), "a" + string(r) + "b"} {
			if got, want := isXMLName([]byte(name)), accepts(name); got != want {
				t.Errorf("isXMLName(%q) = %v, encoding/xml accepts it: %v", name, got, want)
			}
		}
	}
	for r := rune(0x80); r < 0x10000; r += step {
		check(r)
	}
	for r := rune(0x10000); r <= utf8.MaxRune; r += 4099 {
		check(r)
	}
	for _, name := range []string{"a", "A", "_", ":", "a1", "a-b", "a.b", "a:b", "1", "-", ".", "é", "\xff", "a\xff", "\xc3", "a\xed\xa0\x80"} {
		if got, want := isXMLName([]byte(name)), accepts(name); got != want {
			t.Errorf("isXMLName(%q) = %v, encoding/xml accepts it: %v", name, got, want)
		}
	}
}

// TestTables checks the written-out byte tables against their definitions.
func TestTables(t *testing.T) {
	for i := range 256 {
		c := byte(i)
		var class uint8
		switch {
		case c >= utf8.RuneSelf:
			class = tH
		case c == ' ' || c == '\t' || c == '\n':
			class = tS
		case c == '\r':
			class = tR
		case c < ' ':
			class = tC
		case c == '&':
			class = tA
		case c == '<':
			class = tL
		case c == '>':
			class = tG
		case c == '\'' || c == '"':
			class = tQ
		default:
			class = tP
		}
		if textClass[c] != class {
			t.Errorf("textClass[%#x] = %d, want %d", c, textClass[c], class)
		}
		switch {
		case c >= utf8.RuneSelf:
			class = nH
		case c == ':':
			class = nC
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-':
			class = nN
		default:
			class = nE
		}
		if nameClass[c] != class {
			t.Errorf("nameClass[%#x] = %d, want %d", c, nameClass[c], class)
		}
	}
}

// TestParseDifferentialRandom compares scan and scanReference on documents
// built at random from the pieces that matter: namespace declarations and
// prefixes on the elements Parse reads, references and odd characters in
// the values it reads, CDATA, comments and processing instructions in
// interfaces, repeated attributes. Most are well-formed, so facts and
// offsets get compared, not just errors; each is also tried with one byte
// cut, doubled or changed. The fuzzer mutates bytes and rarely builds such
// documents itself.
func TestParseDifferentialRandom(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	randomDifferential(t, 1, n)
}

// randomDifferential is TestParseDifferentialRandom with n documents from
// the given seed.
func randomDifferential(t *testing.T, seed uint64, n int) {
	rng := rand.New(rand.NewPCG(seed, 2))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	maybe := func(p float64, s string) string {
		if rng.Float64() < p {
			return s
		}
		return ""
	}
	number := func() string {
		return pick("4", " 2 ", "1", "8", "&#52;", "&#x34;", "0", "x", "")
	}
	value := func(name string) string {
		if (name == "queues" || name == "current") && rng.IntN(8) != 0 {
			return number()
		}
		return pick("virtio", "AA:bb:0c:DD:ee:ff", "4", " 2 ", "br0", "a&amp;b", "&#52;", "&#x34;", "net0",
			"a&lt;b&gt;", "x\r\ny", "&#32;", "é", "\u2003", "&#xD800;", "a'b", "a>b", "]]>", "q&quot;", "&apos;", "")
	}
	q := func(v string) string {
		if strings.Contains(v, "'") {
			return `"` + v + `"`
		}
		if rng.IntN(2) == 0 {
			return `"` + strings.ReplaceAll(v, `"`, "&quot;") + `"`
		}
		return "'" + v + "'"
	}
	sp := func() string { return pick(" ", " ", "\n  ", "\t", "\r\n ", "  ") }
	var prefixes []string
	ns := func() string {
		return pick(LabelsNamespace, LibosinfoNamespace, "urn:x", "urn:x", "http://www.w3.org/XML/1998/namespace", "p", "xmlns", "")
	}
	// attrs writes some of the named attributes, and sometimes a namespace
	// declaration or a repeated attribute; odd is how often it does odd
	// things.
	attrsOdd := func(odd int, names ...string) string {
		var b strings.Builder
		for _, name := range names {
			if rng.IntN(5) == 0 {
				continue
			}
			b.WriteString(sp() + maybe(0.02*float64(odd), pick("p:", "xml:", "q:", "xmlns:")) + name + pick("=", "=", " = ") + q(value(name)))
		}
		if rng.IntN(40) < odd {
			p := pick("p", "q", "v", "l")
			prefixes = append(prefixes, p)
			b.WriteString(sp() + "xmlns:" + p + "=" + q(ns()))
		}
		if rng.IntN(80) < odd {
			b.WriteString(sp() + "xmlns=" + q(ns()))
		}
		if rng.IntN(200) < odd && len(names) > 0 {
			b.WriteString(sp() + names[0] + "=" + q(value(names[0])))
		}
		return b.String()
	}
	attrs := func(names ...string) string { return attrsOdd(4, names...) }
	elemName := func(local string) string {
		switch {
		case local == "domain" && rng.IntN(30) != 0, strings.Contains(local, ":"):
		case rng.IntN(6) == 0 && len(prefixes) > 0:
			return prefixes[rng.IntN(len(prefixes))] + ":" + local
		case rng.IntN(20) == 0:
			return pick("p", "q", "v", "l", "xml", "xmlns") + ":" + local
		}
		return local
	}
	misc := func() string {
		return pick("", "", "", sp(), "<!-- c -->", "<?pi x?>", "<![CDATA[ ]]>", "<![CDATA[x]]>", "&#32;", "x", "<x a='1'><y/></x>")
	}
	text := func() string {
		return pick("web", " 4 ", "4", "a&amp;b", "<![CDATA[a\r\nb]]>", "x<!--c-->y", "&#x20;1", "", "\u00a0v\u00a0", "0", "2", "8", "a<b/>c")
	}
	elem := func(local, attrText, content string) string {
		name := elemName(local)
		if content == "" && rng.IntN(2) == 0 {
			return "<" + name + attrText + pick("/>", " />") + ""
		}
		return "<" + name + attrText + ">" + content + "</" + name + sp()[:rng.IntN(2)] + ">"
	}
	iface := func() string {
		var b strings.Builder
		for range rng.IntN(6) {
			b.WriteString(sp() + misc())
			switch rng.IntN(7) {
			case 0:
				b.WriteString(elem("model", attrs("type"), ""))
			case 1:
				b.WriteString(elem("mac", attrs("address"), ""))
			case 2:
				b.WriteString(elem("source", attrs("network", "bridge", "dev"), ""))
			case 3:
				b.WriteString(elem("driver", attrs("name", "queues"), maybe(0.3, "<host csum='off'/>")))
			case 4:
				b.WriteString(elem("target", attrs("dev", "managed"), ""))
			case 5:
				b.WriteString(elem("alias", attrs("name"), ""))
			default:
				b.WriteString(elem(pick("link", "address", "rom"), attrs("state"), ""))
			}
		}
		return elem("interface", attrs("type"), b.String()+maybe(0.3, misc())+maybe(0.7, sp()))
	}
	// inNS returns an element's name and the declaration that puts it in
	// namespace url: by a prefix or by the default namespace.
	inNS := func(local, prefix, url string) (string, string) {
		if rng.IntN(2) == 0 {
			return prefix + ":" + local, " xmlns:" + prefix + "=" + q(url)
		}
		return local, " xmlns=" + q(url)
	}
	metadata := func() string {
		var b strings.Builder
		for range rng.IntN(3) {
			if rng.IntN(2) == 0 {
				name, decl := inNS("libosinfo", "libosinfo", pick(LibosinfoNamespace, LibosinfoNamespace, "urn:x"))
				child := "os"
				if strings.Contains(name, ":") {
					child = pick("libosinfo:os", "libosinfo:os", "os")
				}
				b.WriteString(elem(name, attrs()+decl, elem(child, attrs("id"), "")+maybe(0.3, elem(child, attrs("id"), ""))))
			} else {
				name, decl := inNS("labels", pick("virtmq", "v"), pick(LabelsNamespace, LabelsNamespace, "urn:y"))
				child := "label"
				if i := strings.IndexByte(name, ':'); i >= 0 && rng.IntN(5) != 0 {
					child = name[:i+1] + "label"
				}
				var labels strings.Builder
				for range rng.IntN(4) {
					labels.WriteString(sp() + elem(child, attrsOdd(1, "name"), text()))
				}
				b.WriteString(elem(name, attrs()+decl, labels.String()))
			}
		}
		return elem("metadata", attrs(), b.String())
	}
	ok, withIfaces, withMeta := 0, 0, 0
	defer func() {
		t.Logf("%d documents: %d well-formed, %d with interfaces, %d with labels or an OS id", n, ok, withIfaces, withMeta)
	}()
	for i := range n {
		prefixes = prefixes[:0]
		var b strings.Builder
		b.WriteString(maybe(0.2, pick("\uFEFF", "<?xml version='1.0'?>\n", "<!-- x -->\n", "<?xml version='1.0' encoding='utf-8'?>")))
		var body strings.Builder
		for range rng.IntN(8) {
			body.WriteString(sp() + misc())
			switch rng.IntN(6) {
			case 0:
				body.WriteString(elem("name", attrs(), text()))
			case 1:
				body.WriteString(elem("uuid", attrs(), text()))
			case 2:
				body.WriteString(elem("vcpu", attrs("current", "placement"), pick(number(), "8", " 16 ", "&#56;", "<![CDATA[4]]>", "4<!-- c -->")))
			case 3:
				body.WriteString(metadata())
			case 4:
				var devs strings.Builder
				for range rng.IntN(4) {
					devs.WriteString(sp() + iface())
				}
				body.WriteString(elem("devices", attrs(), devs.String()))
			default:
				body.WriteString(elem(pick("memory", "os", "features"), attrs("unit"), text()))
			}
		}
		b.WriteString(elem("domain", attrsOdd(1, "type", "id"), body.String()+"\n"))
		b.WriteString(maybe(0.1, pick("\n", "<!-- end -->", "x", "<a/>", "&#32;", "\n\n")))
		doc := []byte(b.String())
		if sc, err := scan(doc); err == nil {
			ok++
			if len(sc.dom.Interfaces) > 0 {
				withIfaces++
			}
			if len(sc.dom.Labels) > 0 || sc.dom.OSID != "" {
				withMeta++
			}
		}
		if err := sameAsReference(doc); err != nil {
			t.Fatalf("document %d %q: %v", i, doc, err)
		}
		for range 3 {
			m := append([]byte(nil), doc...)
			k := rng.IntN(len(m))
			switch rng.IntN(3) {
			case 0:
				m = append(m[:k], m[k+1:]...)
			case 1:
				m = append(m[:k+1], m[k:]...)
			default:
				m[k] = pick("<", ">", "/", "'", "\"", "&", ";", ":", "=", " ", "x", "]", "!", "?", "-", "\x00", "\xff")[0]
			}
			if err := sameAsReference(m); err != nil {
				t.Fatalf("mutated document %d %q: %v", i, m, err)
			}
		}
	}
}

// BenchmarkParseReference is BenchmarkParse for the encoding/xml scanner
// Parse used before, for comparison.
func BenchmarkParseReference(b *testing.B) {
	doc := readFixture(b, "bench-4nic.xml")
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := scanReference(doc); err != nil {
			b.Fatal(err)
		}
	}
}

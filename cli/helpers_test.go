package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/internal/virt/virttest"
)

// testPolicy is the policy file the libvirt commands' tests use.
const testPolicy = "testdata/policy.yaml"

// testRun is one CLI run's environment and captured output.
type testRun struct {
	env            *Env
	stdout, stderr *bytes.Buffer
	// uris records the URI of each Dial.
	uris []string
}

// newTestRun returns an Env whose Dial connects to fake (nil: Dial fails)
// and whose environment holds vars.
func newTestRun(t *testing.T, fake *virttest.Conn, vars map[string]string) *testRun {
	t.Helper()
	r := &testRun{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	r.env = &Env{
		Stdin:             strings.NewReader(""),
		Stdout:            r.stdout,
		Stderr:            r.stderr,
		Getenv:            func(k string) string { return vars[k] },
		DefaultPolicyPath: filepath.Join(t.TempDir(), "policy.yaml"),
		Dial: func(ctx context.Context, uri virt.URI) (virt.Conn, error) {
			r.uris = append(r.uris, uri.String())
			if fake == nil {
				return nil, os.ErrNotExist
			}
			c, _, err := fake.Dial(ctx, nil)
			return c, err
		},
	}
	return r
}

// readFixture reads cli/testdata/name.
func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// define defines testdata/name in fake, failing the test on error.
func define(t *testing.T, fake *virttest.Conn, name string) virt.Domain {
	t.Helper()
	d, err := fake.Define(readFixture(t, name))
	if err != nil {
		t.Fatalf("define %s: %v", name, err)
	}
	return d
}

// wantLines fails when text lacks any of the wanted substrings.
func wantLines(t *testing.T, what, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q; got:\n%s", what, w, text)
		}
	}
}

// wantNot fails when text holds any of the substrings.
func wantNot(t *testing.T, what, text string, not ...string) {
	t.Helper()
	for _, w := range not {
		if strings.Contains(text, w) {
			t.Errorf("%s holds %q; got:\n%s", what, w, text)
		}
	}
}

package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	var b bytes.Buffer
	New(StderrJournal, &b, slog.LevelInfo, "t").With("domain", "web1").Info("hello", "mac", "52:54:00:00:00:01")
	got := b.String()
	if strings.Contains(got, "time=") {
		t.Errorf("journal stream output has a timestamp: %q", got)
	}
	if !strings.Contains(got, "domain=web1") || !strings.Contains(got, "mac=52:54:00:00:00:01") {
		t.Errorf("output %q lacks attributes", got)
	}
	b.Reset()
	New(Stderr, &b, slog.LevelWarn, "t").Info("dropped")
	if b.Len() != 0 {
		t.Errorf("info logged at warn level: %q", b.String())
	}
}

func TestNewLazy(t *testing.T) {
	var b bytes.Buffer
	l := NewLazy(false, &b, slog.LevelInfo, "t").With("domain", "web1")
	if b.Len() != 0 {
		t.Fatal("wrote before the first record")
	}
	l.Warn("differs", "wanted", 4)
	l.Debug("below level")
	got := b.String()
	if strings.Count(got, "\n") != 1 || !strings.Contains(got, "domain=web1") || !strings.Contains(got, "wanted=4") {
		t.Errorf("lazy logger wrote %q", got)
	}
}

func TestJournalKey(t *testing.T) {
	if got := journalKey("err.detail-x"); got != "ERR_DETAIL_X" {
		t.Errorf("journalKey = %q", got)
	}
}

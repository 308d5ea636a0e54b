package logging

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// listenJournal binds a datagram socket as journald does and returns its
// path and a function that reads one entry as KEY → values.
func listenJournal(t *testing.T) (string, func() map[string][]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "socket")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	return path, func() map[string][]string {
		buf := make([]byte, 1<<16)
		n, err := syscall.Read(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		return parseNative(t, buf[:n])
	}
}

// parseNative reads journald's native format, as journald does.
func parseNative(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	fields := map[string][]string{}
	for len(b) > 0 {
		line, rest, ok := bytes.Cut(b, []byte("\n"))
		if !ok {
			t.Fatalf("entry does not end in a newline: %q", b)
		}
		if k, v, ok := bytes.Cut(line, []byte("=")); ok {
			fields[string(k)] = append(fields[string(k)], string(v))
			b = rest
			continue
		}
		if len(rest) < 8 {
			t.Fatalf("binary field %s without a length", line)
		}
		n := binary.LittleEndian.Uint64(rest)
		if uint64(len(rest)) < 8+n+1 || rest[8+n] != '\n' {
			t.Fatalf("binary field %s: bad length %d", line, n)
		}
		fields[string(line)] = append(fields[string(line)], string(rest[8:8+n]))
		b = rest[8+n+1:]
	}
	return fields
}

func TestJournalHandler(t *testing.T) {
	path, read := listenJournal(t)
	conn, err := dialJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	l := slog.New(&journalHandler{conn: conn, level: slog.LevelInfo, identifier: "virtmq-hook"}).With("domain", "web1")
	l.Warn("NIC queues differ from policy", "mac", "52:54:00:00:00:01", "err", "line one\nline two")
	got := read()
	for k, want := range map[string]string{
		"PRIORITY":          "4",
		"SYSLOG_IDENTIFIER": "virtmq-hook",
		"VIRTMQ_DOMAIN":     "web1",
		"VIRTMQ_MAC":        "52:54:00:00:00:01",
		"VIRTMQ_ERR":        "line one\nline two",
	} {
		if len(got[k]) != 1 || got[k][0] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
	if msg := strings.Join(got["MESSAGE"], ""); !strings.HasPrefix(msg, `msg="NIC queues differ from policy" domain=web1 mac=52:54:00:00:00:01`) {
		t.Errorf("MESSAGE = %q", msg)
	}
	l.Debug("below the level")
	l.Error("failed")
	if got := read(); got["PRIORITY"][0] != "3" || !strings.Contains(got["MESSAGE"][0], "failed") {
		t.Errorf("next entry: %q", got)
	}
}

func TestDialJournalNobodyListening(t *testing.T) {
	if _, err := dialJournal(filepath.Join(t.TempDir(), "socket")); err == nil {
		t.Error("dialJournal succeeded with no socket")
	}
}

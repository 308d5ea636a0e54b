package bounded

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRead(t *testing.T) {
	ctx := context.Background()
	if b, err := Read(ctx, strings.NewReader("12345"), 5, ""); err != nil || string(b) != "12345" {
		t.Errorf("5 bytes at limit 5: %q, %v", b, err)
	}
	_, err := Read(ctx, strings.NewReader("123456"), 5, "")
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "input is larger than 5 bytes") {
		t.Errorf("6 bytes at limit 5: %v, want ErrTooLarge naming the limit", err)
	}
	if _, err := Read(ctx, io.MultiReader(), 5, ""); err != nil {
		t.Errorf("empty: %v", err)
	}
	if _, err := Read(ctx, nil, 5, ""); err == nil {
		t.Errorf("nil reader: no error")
	}
}

// TestReadZeroes: an endless input (/dev/zero) is refused at the limit,
// at once, without growing past it.
func TestReadZeroes(t *testing.T) {
	f, err := os.Open("/dev/zero")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	start := time.Now()
	_, err = Read(context.Background(), f, 16<<20, "a domain XML")
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "(16 MiB), the limit of a domain XML") {
		t.Errorf("/dev/zero: %v, want ErrTooLarge (16 MiB)", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("/dev/zero refused after %s", d)
	}
}

// TestReadCancelled: a read that blocks (a pipe nobody writes to) ends
// when the context does.
func TestReadCancelled(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = Read(ctx, r, 1<<20, "")
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "interrupted") {
		t.Errorf("blocked read: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned after %s", d)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	os.WriteFile(small, []byte("12345"), 0o644)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, []byte("123456"), 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path    string
		wantErr error
		wantMsg string
	}{
		{small, nil, ""},
		{big, ErrTooLarge, "read " + big + ": file is larger than 5 bytes (5 B)"},
		{fifo, ErrNotRegular, "not a regular file (a FIFO)"},
		{dir, ErrNotRegular, "not a regular file (a directory)"},
		{"/dev/zero", ErrNotRegular, "not a regular file (a character device)"},
		{filepath.Join(dir, "missing"), os.ErrNotExist, "no such file"},
	} {
		start := time.Now()
		b, err := ReadFile(tt.path, 5, "")
		if time.Since(start) > 2*time.Second {
			t.Errorf("%s: took %s", tt.path, time.Since(start))
		}
		if tt.wantErr == nil {
			if err != nil || string(b) != "12345" {
				t.Errorf("%s: %q, %v", tt.path, b, err)
			}
			continue
		}
		if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
			t.Errorf("%s: %v, want %v saying %q", tt.path, err, tt.wantErr, tt.wantMsg)
		}
	}
}

package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultSocket is where virtmq-agent serves its status.
const DefaultSocket = "/run/virtmq/status.sock"

// WriteTimeout bounds writing the snapshot to one client.
const WriteTimeout = 5 * time.Second

// MaxSize is the largest status document Fetch accepts.
const MaxSize = 64 << 20

// Listen creates the status socket at path: it creates the parent
// directory (mode 0755) when missing, removes a stale socket left by a
// previous run (but fails when another server still answers on it), listens,
// and restricts the socket to its owner (mode 0600). Closing the listener
// removes the socket file.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("failed to create status socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("status socket %s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("status socket %s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("failed to remove stale status socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on status socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("failed to restrict status socket: %w", err)
	}
	return ln, nil
}

// Serve answers every connection on ln with the JSON encoding of
// snapshot() and closes it. It returns nil after ctx ends (closing ln), or
// the error that stopped accepting.
func Serve(ctx context.Context, ln net.Listener, snapshot func() Snapshot) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("status socket: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			_ = c.SetWriteDeadline(time.Now().Add(WriteTimeout))
			enc := json.NewEncoder(c)
			enc.SetIndent("", "  ")
			_ = enc.Encode(snapshot())
		}()
	}
}

// Fetch reads one snapshot from the status socket at path. The context
// bounds the whole exchange.
func Fetch(ctx context.Context, path string) (Snapshot, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return Snapshot{}, fmt.Errorf("failed to connect to virtmq-agent (is it running?): %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	data, err := io.ReadAll(io.LimitReader(c, MaxSize+1))
	if err != nil {
		if ctx.Err() != nil {
			return Snapshot{}, fmt.Errorf("failed to read agent status: %w", ctx.Err())
		}
		return Snapshot{}, fmt.Errorf("failed to read agent status: %w", err)
	}
	if len(data) > MaxSize {
		return Snapshot{}, fmt.Errorf("agent status is larger than %d bytes", MaxSize)
	}
	var s Snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return Snapshot{}, fmt.Errorf("failed to decode agent status: %w", err)
	}
	return s, nil
}

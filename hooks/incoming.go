package hooks

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/virtmq/virtmq/internal/bounded"
)

// DefaultIncomingDir holds the markers of incoming migrations and restores.
const DefaultIncomingDir = "/run/virtmq/incoming"

// IncomingFresh bounds how long a marker counts: libvirt runs prepare
// right after migrate or restore, so an older marker is left over from an
// operation that failed in between and must not excuse a later cold boot.
const IncomingFresh = 10 * time.Minute

// maxMarkerSize bounds a marker's read: it holds one operation's name.
const maxMarkerSize = 64

// At prepare libvirt does not say whether QEMU starts for an incoming
// migration (or a restore) or for a boot: both come as `prepare begin -`.
// It does call the hook with `migrate begin -` (or `restore begin -`) on
// this host just before, with the same domain. The hook leaves a marker
// there, named by the domain's UUID and holding only the operation's name
// (never the XML: it holds secrets), and prepare takes a fresh marker for
// its UUID as "incoming": its queues came with it and must not change, so
// enforce does not refuse it; the next cold boot here is enforced.
//
// A marker that cannot be written only costs the excuse: prepare then
// decides as for a boot, which under enforce refuses a non-compliant
// domain, the safe side. So a marker failure is logged and never fails
// migrate or restore by itself.

// validUUID: the marker's file name comes from the XML; only a canonical
// UUID may become a path.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// markIncoming writes dir/UUID atomically (a temporary file renamed over
// it), 0600, in a directory created 0700.
func markIncoming(dir, uuid, op string) error {
	if !validUUID(uuid) {
		return fmt.Errorf("the domain XML has no valid UUID (%q)", uuid)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("create a marker in %s: %w", dir, err)
	}
	_, err = tmp.WriteString(op + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, uuid))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write the marker %s: %w", filepath.Join(dir, uuid), err)
	}
	return nil
}

// takeIncoming removes dir/UUID and says what it marked: the operation
// ("migrate", "restore") when it was fresh, "" when there was none or it
// was stale. It is taken either way: one marker excuses one start.
func takeIncoming(dir, uuid string, now time.Time) (string, error) {
	if !validUUID(uuid) {
		return "", nil
	}
	p := filepath.Join(dir, uuid)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the marker %s: %w", p, err)
	}
	// Only a fresh regular file is read, and through bounded.ReadFile: a
	// FIFO or a device there must not hold the start until the time limit.
	age := now.Sub(fi.ModTime())
	fresh := fi.Mode().IsRegular() && age <= IncomingFresh && age >= -IncomingFresh
	var b []byte
	var rerr error
	if fresh {
		b, rerr = bounded.ReadFile(p, maxMarkerSize, "an incoming marker")
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("remove the marker %s: %w", p, err)
	}
	if rerr != nil {
		return "", fmt.Errorf("read the marker %s: %w", p, rerr)
	}
	if !fresh {
		return "", nil
	}
	switch op := strings.TrimSpace(string(b)); op {
	case "migrate", "restore":
		return op, nil
	}
	return "", nil
}

// incoming handles the ops around prepare: at migrate and restore it
// leaves the marker; at started, stopped and release it clears one that
// prepare did not take (an operation that failed in between). It never
// fails the operation, and prints nothing.
func incoming(cfg Config, log *slog.Logger, op string) int {
	dir := cfg.IncomingDir
	if dir == "" {
		return ExitAllow
	}
	mark := op == "migrate" || op == "restore"
	if !mark {
		// The common case: no marker at all; then the XML is not even read.
		if entries, err := os.ReadDir(dir); err != nil || len(entries) == 0 {
			return ExitAllow
		}
	}
	x := readDomain(cfg.Stdin)
	if x.err != nil {
		if mark {
			log.Error("cannot mark the incoming "+op+": under mode enforce, prepare decides it as a boot", "err", x.err)
		}
		return ExitAllow
	}
	if !mark {
		if validUUID(x.dom.UUID) {
			if err := os.Remove(filepath.Join(dir, x.dom.UUID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				log.Warn("cannot remove the incoming marker", "err", err)
			}
		}
		return ExitAllow
	}
	if err := markIncoming(dir, x.dom.UUID, op); err != nil {
		log.Error("cannot mark the incoming "+op+": under mode enforce, prepare decides it as a boot and refuses it if it runs non-compliant", "err", err)
	}
	return ExitAllow
}

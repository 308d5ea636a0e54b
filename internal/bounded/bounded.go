// Package bounded reads inputs that anyone may hand to virtmq (a path, a
// pipe on stdin) with a bound on memory and on waiting: a file is opened
// without blocking and must be regular, and no more than a limit is read.
// The policy loader, the libvirt hook and the virtmq command read through
// it, so that they refuse the same inputs with the same words.
//
// It imports nothing of the project: the policy package, which imports
// nothing else, uses it too.
package bounded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

var (
	// ErrNotRegular: the path is a directory, a device, a FIFO or a socket.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: the input holds more than the limit. The error that
	// wraps it says the limit.
	ErrTooLarge = errors.New("larger than the limit")
)

// tooLarge is ErrTooLarge with the limit: "file is larger than 16777216
// bytes (16 MiB), the limit of a domain XML".
type tooLarge struct {
	input string // "file" or "input"
	limit int64
	of    string // what the limit is of: "a domain XML"; may be empty
}

func (e *tooLarge) Error() string {
	msg := fmt.Sprintf("%s is larger than %d bytes (%s)", e.input, e.limit, human(e.limit))
	if e.of != "" {
		msg += ", the limit of " + e.of
	}
	return msg
}

func (e *tooLarge) Is(target error) bool { return target == ErrTooLarge }

// human prints a byte count in MiB or KiB when it is a whole number of them.
func human(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// ReadFile reads the file at path, bounded in time and memory whatever
// sits there: it opens without blocking (a FIFO would otherwise wait for a
// writer forever), accepts only a regular file (symlinks are followed),
// checks the size before reading and reads at most limit+1 bytes, so a
// file that grows while it is read is caught too. Errors are
// *fs.PathError naming path; they wrap ErrNotRegular, ErrTooLarge or the
// system error. of says what the limit is of ("a policy file") in the
// error.
func ReadFile(path string, limit int64, of string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (%s)", ErrNotRegular, fileType(fi.Mode()))}
	}
	if fi.Size() > limit {
		return nil, &fs.PathError{Op: "read", Path: path, Err: &tooLarge{"file", limit, of}}
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	if int64(len(data)) > limit {
		return nil, &fs.PathError{Op: "read", Path: path, Err: &tooLarge{"file", limit, of}}
	}
	return data, nil
}

// Read reads all of r, failing with ErrTooLarge once it holds more than
// limit bytes, and returning ctx's error as soon as ctx ends: a read
// blocked on a terminal or a pipe nobody writes to does not keep an
// interrupted command waiting. The abandoned read ends with the process
// (or when r delivers); its data is dropped. of is as for ReadFile.
func Read(ctx context.Context, r io.Reader, limit int64, of string) ([]byte, error) {
	if r == nil {
		return nil, errors.New("no input")
	}
	type result struct {
		b   []byte
		err error
	}
	read := func() result {
		b, err := io.ReadAll(io.LimitReader(r, limit+1))
		return result{b, err}
	}
	var res result
	if ctx.Done() == nil {
		// A context that never ends (the libvirt hook's, which has its
		// own time limit) needs no goroutine to watch it.
		res = read()
	} else {
		done := make(chan result, 1)
		go func() { done <- read() }()
		select {
		case res = <-done:
		case <-ctx.Done():
			return nil, fmt.Errorf("read interrupted: %w", context.Cause(ctx))
		}
	}
	if res.err != nil {
		return nil, res.err
	}
	if int64(len(res.b)) > limit {
		return nil, &tooLarge{"input", limit, of}
	}
	return res.b, nil
}

// fileType names the type of a file that is not regular, for errors.
func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "type " + m.Type().String()
}

package logging

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// journald's native protocol (systemd.io/JOURNAL_NATIVE_PROTOCOL) over its
// datagram socket, with nothing but syscall: the libvirt hook logs through
// it on every VM start, and the net package a client library brings along
// was a sixth of the hook's binary and of its start-up.

// JournalSocket is where journald receives native entries.
const JournalSocket = "/run/systemd/journal/socket"

// journalConn is a datagram socket connected to journald.
type journalConn struct{ fd int }

// dialJournal connects to the journald socket at path; it fails when
// nothing listens there.
func dialJournal(path string) (*journalConn, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		_ = syscall.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	return &journalConn{fd}, nil
}

// send writes one entry, its fields in order. An entry larger than a
// datagram (hundreds of KiB) fails with EMSGSIZE; virtmq's are a line of
// text and a few short fields.
func (j *journalConn) send(fields [][2]string) error {
	var b []byte
	for _, f := range fields {
		b = appendJournalField(b, f[0], f[1])
	}
	_, err := syscall.Write(j.fd, b)
	return os.NewSyscallError("send to journald", err)
}

// appendJournalField appends KEY=value and a newline, or, for a value with
// a newline in it, KEY, a newline, the value's length as 64-bit little
// endian, the value and a newline.
func appendJournalField(b []byte, key, value string) []byte {
	if !strings.Contains(value, "\n") {
		return append(append(append(append(b, key...), '='), value...), '\n')
	}
	b = append(append(b, key...), '\n')
	for i := range 8 {
		b = append(b, byte(uint64(len(value))>>(8*i)))
	}
	return append(append(b, value...), '\n')
}

// stderrIsJournalStream reports whether stderr is the journal's stream
// transport: systemd sets JOURNAL_STREAM to its device and inode.
func stderrIsJournalStream() bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if syscall.Fstat(syscall.Stderr, &st) != nil {
		return false
	}
	return dev == strconv.FormatUint(uint64(st.Dev), 10) && ino == strconv.FormatUint(st.Ino, 10)
}

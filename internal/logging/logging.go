// Package logging builds the *slog.Logger every virtmq program uses: the
// systemd journal when there is one, else plain text on stderr.
package logging

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
)

// Target says where log records go.
type Target int

// Targets.
const (
	// Stderr writes text records with timestamps.
	Stderr Target = iota
	// StderrJournal writes text records without timestamps: stderr is
	// already the journal stream, which stamps each line itself.
	StderrJournal
	// Journal sends each record to journald natively, with its attributes as
	// fields. The libvirt hook uses it: libvirt does not forward hook stderr.
	Journal
)

// Detect returns Journal when preferNative is set and journald listens,
// StderrJournal when stderr is connected to the journal, else Stderr.
func Detect(preferNative bool) Target {
	t, j := detect(preferNative)
	if j != nil {
		_ = syscall.Close(j.fd)
	}
	return t
}

// detect is Detect keeping the connection it proved journald with, so
// that NewLazy (the hook, on every VM start) connects once, not twice.
func detect(preferNative bool) (Target, *journalConn) {
	if preferNative {
		if j, err := dialJournal(JournalSocket); err == nil {
			return Journal, j
		}
	}
	if stderrIsJournalStream() {
		return StderrJournal, nil
	}
	return Stderr, nil
}

// New returns a logger for target writing to w (for Journal: only when
// journald does not answer).
func New(target Target, w io.Writer, level slog.Level, program string) *slog.Logger {
	var j *journalConn
	if target == Journal {
		var err error
		if j, err = dialJournal(JournalSocket); err != nil {
			target = Stderr
		}
	}
	return slog.New(newHandler(target, j, w, level, program))
}

// newHandler is New's handler; j is the journald connection for Journal.
func newHandler(target Target, j *journalConn, w io.Writer, level slog.Level, program string) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	switch target {
	case Journal:
		return &journalHandler{conn: j, level: level, identifier: program}
	case StderrJournal:
		opts.ReplaceAttr = dropTime
		return slog.NewTextHandler(w, opts)
	default:
		return slog.NewTextHandler(w, opts)
	}
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// journalHandler sends records to journald: MESSAGE holds the message and
// its attributes as key=value text (what journalctl shows), and each
// attribute is also a VIRTMQ_<KEY> field for `journalctl VIRTMQ_DOMAIN=web1`.
type journalHandler struct {
	conn       *journalConn
	level      slog.Level
	identifier string
	attrs      []slog.Attr
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *journalHandler) Handle(_ context.Context, r slog.Record) error {
	var msg bytes.Buffer
	fields := [][2]string{{"PRIORITY", priority(r.Level)}, {"SYSLOG_IDENTIFIER", h.identifier}}
	text := slog.NewTextHandler(&msg, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
			return slog.Attr{}
		}
		return a
	}}).WithAttrs(h.attrs)
	add := func(a slog.Attr) bool {
		fields = append(fields, [2]string{"VIRTMQ_" + journalKey(a.Key), a.Value.String()})
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	if err := text.Handle(context.Background(), r); err != nil {
		return err
	}
	return h.conn.send(append(fields, [2]string{"MESSAGE", strings.TrimSpace(msg.String())}))
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

// WithGroup is not used by virtmq; groups are flattened.
func (h *journalHandler) WithGroup(string) slog.Handler { return h }

// priority is the syslog priority journald files a record under.
func priority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "3" // err
	case l >= slog.LevelWarn:
		return "4" // warning
	case l >= slog.LevelInfo:
		return "6" // info
	default:
		return "7" // debug
	}
}

// journalKey maps an attribute key to a valid journal field name suffix:
// upper case letters, digits and underscores.
func journalKey(k string) string {
	b := []byte(strings.ToUpper(k))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// NewLazy is New with the target detected at the first record rather than
// now. The hook uses it: most runs log nothing, and probing journald costs
// a socket dial on a path every VM start waits for.
func NewLazy(preferNative bool, w io.Writer, level slog.Level, program string) *slog.Logger {
	return slog.New(&lazyHandler{level: level, init: sync.OnceValue(func() slog.Handler {
		t, j := detect(preferNative)
		return newHandler(t, j, w, level, program)
	})})
}

type lazyHandler struct {
	level slog.Level
	init  func() slog.Handler
	attrs []slog.Attr
}

func (h *lazyHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lazyHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.init().WithAttrs(h.attrs).Handle(ctx, r)
}

func (h *lazyHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

// WithGroup is not used by virtmq; groups are flattened.
func (h *lazyHandler) WithGroup(string) slog.Handler { return h }

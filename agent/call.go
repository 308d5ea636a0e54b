package agent

import (
	"context"
	"errors"
	"time"

	"github.com/virtmq/virtmq/internal/facts"
	"github.com/virtmq/virtmq/internal/virt"
)

// call is the agent's one way to make a libvirt call: f runs with a
// context bounded by CallTimeout (hitting it gives virt.ErrCallTimeout,
// "libvirt call timed out after 10s"), then the systemd watchdog is pinged
// when due. Only the loop goroutine and its reconcile workers (which
// the loop waits for) call it, so a ping says the loop makes progress; the guest workers make no libvirt calls of their own but
// guest agent and QMP commands, bounded by their own timeouts.
//
// internal/virt has a call helper of its own, another layer: it makes a
// go-libvirt call, which takes no context, return early when ctx ends.
// internal/guest's is another again: it encodes one guest agent command,
// counts it against the step's budget and decodes the reply.
func call[T any](ctx context.Context, a *Agent, f func(ctx context.Context) (T, error)) (T, error) {
	cctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	defer cancel()
	v, err := f(cctx)
	a.sd.kick(a.cfg.Now())
	return v, callTimedOut(ctx, a.cfg.CallTimeout, err)
}

// callTimedOut turns the deadline of a bounded libvirt call into
// virt.ErrCallTimeout with the bound, so that the error says what
// happened ("libvirt call timed out after 10s") instead of "context
// deadline exceeded"; err is returned as it is otherwise, also when the
// parent ctx ended.
func callTimedOut(ctx context.Context, timeout time.Duration, err error) error {
	if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &callTimeoutError{after: timeout, err: err}
}

// callTimeoutError is a libvirt call that hit its deadline.
type callTimeoutError struct {
	after time.Duration
	err   error // with context.DeadlineExceeded
}

func (e *callTimeoutError) Error() string {
	return virt.ErrCallTimeout.Error() + " after " + e.after.String()
}

func (e *callTimeoutError) Unwrap() []error { return []error{virt.ErrCallTimeout, e.err} }

// calls is conn's Reader role with every call made through call: the
// reads of the agent's facts.Reader are bounded and ping the watchdog.
type calls struct {
	a    *Agent
	conn virt.Conn
}

func (c calls) ListDomains(ctx context.Context) ([]virt.Domain, error) {
	return call(ctx, c.a, c.conn.ListDomains)
}

func (c calls) LookupDomain(ctx context.Context, nameOrUUID string) (virt.Domain, error) {
	return call(ctx, c.a, func(ctx context.Context) (virt.Domain, error) { return c.conn.LookupDomain(ctx, nameOrUUID) })
}

func (c calls) DomainXML(ctx context.Context, d virt.Domain, flags virt.XMLFlags) ([]byte, error) {
	return call(ctx, c.a, func(ctx context.Context) ([]byte, error) { return c.conn.DomainXML(ctx, d, flags) })
}

func (c calls) NetworkForward(ctx context.Context, name string) (string, error) {
	return call(ctx, c.a, func(ctx context.Context) (string, error) { return c.conn.NetworkForward(ctx, name) })
}

// reader returns the loop's facts.Reader on conn: a new one, with an
// empty network cache, for a new connection.
func (a *Agent) reader(conn virt.Conn) *facts.Reader {
	a.factsMu.Lock()
	defer a.factsMu.Unlock()
	return a.readerLocked(conn)
}

func (a *Agent) readerLocked(conn virt.Conn) *facts.Reader {
	if a.facts == nil || a.factsConn != conn {
		a.facts, a.factsConn = facts.NewReader(calls{a: a, conn: conn}), conn
		a.compliant = map[string]compliantDef{}
	}
	return a.facts
}

// forgetFacts empties what the agent keeps of what it read on conn (the
// networks' forward modes, the definitions found compliant): a network may
// have changed, and libvirt sends no event for it.
func (a *Agent) forgetFacts(conn virt.Conn) {
	a.factsMu.Lock()
	defer a.factsMu.Unlock()
	a.readerLocked(conn).Forget()
	a.compliant = map[string]compliantDef{}
}

// knownCompliant returns what a pass on conn last found of the definition
// of the domain uuid, if it found it compliant.
func (a *Agent) knownCompliant(conn virt.Conn, uuid string) (compliantDef, bool) {
	a.factsMu.Lock()
	defer a.factsMu.Unlock()
	a.readerLocked(conn)
	k, ok := a.compliant[uuid]
	return k, ok
}

// setCompliant records (or, with a nil k, forgets) the definition of uuid
// a pass on conn found compliant.
func (a *Agent) setCompliant(conn virt.Conn, uuid string, k *compliantDef) {
	a.factsMu.Lock()
	defer a.factsMu.Unlock()
	a.readerLocked(conn)
	if k == nil {
		delete(a.compliant, uuid)
	} else {
		a.compliant[uuid] = *k
	}
}

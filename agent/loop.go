package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/virtmq/virtmq/internal/domxml"
	"github.com/virtmq/virtmq/internal/status"
	"github.com/virtmq/virtmq/internal/virt"
)

// stableAfter is how long a connection must have lasted for the reconnect
// backoff to start again from its minimum.
const stableAfter = 30 * time.Second

// maxBatch bounds how many queued events one pass of the loop coalesces.
const maxBatch = 512

// deviceRecheck is how long after a DEVICE_ADDED event the domain is
// reconciled once more: libvirt may store the --config copy of a
// hot-plugged NIC only after it sent the event.
const deviceRecheck = 2 * time.Second

type dialResult struct {
	conn   virt.Conn
	socket string
	err    error
}

// session is the loop's current libvirt connection.
type session struct {
	conn   virt.Conn
	socket string
	events <-chan virt.Event
	cancel context.CancelFunc
	since  time.Time
}

// loop is the agent's event loop, the one goroutine that talks to libvirt
// for definitions: it dials, resyncs, reacts to events, reloads the policy
// and pings the watchdog, until ctx ends. Its state is an eventLoop; each
// case of its select is one of the eventLoop's methods.
func (a *Agent) loop(ctx context.Context) {
	l := &eventLoop{a: a, ctx: ctx, bo: backoff{min: a.cfg.ReconnectMin, max: a.cfg.ReconnectMax}}
	defer l.stopTimers()
	l.startTicks()
	l.dial()
	for l.next() {
	}
}

// eventLoop is the state of the agent's event loop (loop goroutine only).
// Every timer runs on the injected clock (Config.AfterFunc and Now).
type eventLoop struct {
	a   *Agent
	ctx context.Context
	bo  backoff // reconnects and failed resyncs

	s        *session        // nil while not connected
	dialDone chan dialResult // the dial under way, if any
	redial   <-chan time.Time
	resync   <-chan time.Time // a failed resync is retried
	lastErr  string           // the last dial error, logged once

	wdTick, vcpuTick, defTick <-chan time.Time
	stops                     []func() bool // of the tickers
}

// after returns a channel that receives once d has passed on the
// injected clock.
func (l *eventLoop) after(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	l.a.cfg.AfterFunc(d, func() { ch <- l.a.cfg.Now() })
	return ch
}

// every returns a channel that receives every d on the injected clock
// (a tick the loop has not taken yet is not doubled, as with a
// time.Ticker), nil when d is negative (turned off).
func (l *eventLoop) every(d time.Duration) <-chan time.Time {
	if d < 0 {
		return nil
	}
	ch := make(chan time.Time, 1)
	var mu sync.Mutex
	var stop func() bool
	stopped := false
	var arm func()
	arm = func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		stop = l.a.cfg.AfterFunc(d, func() {
			select {
			case ch <- l.a.cfg.Now():
			default:
			}
			arm()
		})
	}
	arm()
	l.stops = append(l.stops, func() bool {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		return stop()
	})
	return ch
}

// startTicks starts the watchdog ping (when systemd asks for one) and the
// periodic checks (see hotplug.go).
func (l *eventLoop) startTicks() {
	a := l.a
	if wd, err := a.cfg.Watchdog(); err != nil {
		a.log.Warn("cannot read the systemd watchdog setting", "err", err)
	} else if wd > 0 {
		a.sd.setWatchdog(wd)
		l.wdTick = l.every(wd / 2)
		a.sd.ping(a.cfg.Now())
	}
	l.vcpuTick = l.every(a.cfg.VCPUCheckInterval)
	l.defTick = l.every(a.cfg.DefinitionCheckInterval)
}

func (l *eventLoop) stopTimers() {
	for _, stop := range l.stops {
		stop()
	}
}

// next waits for the next thing to do and does it; it reports false once
// ctx ended (and the loop stopped).
func (l *eventLoop) next() bool {
	a, s := l.a, l.s
	var events <-chan virt.Event
	var lost <-chan struct{}
	if s != nil {
		events, lost = s.events, s.conn.Disconnected()
	}
	select {
	case <-l.ctx.Done():
		l.shutdown()
		return false
	case <-l.wdTick:
		a.sd.ping(a.cfg.Now())
	case <-a.cfg.Reload:
		a.reload()
		if s != nil {
			l.sync()
		} else {
			a.updateStatus(nil)
		}
	case r := <-l.dialDone:
		l.dialed(r)
	case <-l.redial:
		l.redial = nil
		l.dial()
	case <-l.resync:
		l.resync = nil
		l.sync()
	case <-l.vcpuTick:
		l.periodic(a.checkVCPUs)
	case <-l.defTick:
		l.periodic(a.checkDefinitions)
	case d := <-a.recheck:
		l.handle([]virt.Event{{Kind: virt.EventDefined, Domain: d}})
	case <-a.retry.wake:
		l.retryDue()
	case ev, ok := <-events:
		if !ok {
			l.drop(errors.New("libvirt event stream ended"))
			return true
		}
		l.handle(collect(ev, events))
	case <-lost:
		l.drop(nil)
	}
	return true
}

// shutdown ends the session and a dial under way.
func (l *eventLoop) shutdown() {
	a := l.a
	a.retry.stopAll()
	if l.s != nil {
		l.s.cancel()
		_ = l.s.conn.Close()
		a.conn.Store(nil)
	}
	if l.dialDone != nil {
		go func(ch chan dialResult) {
			if r := <-ch; r.conn != nil {
				_ = r.conn.Close()
			}
		}(l.dialDone)
	}
}

// dial connects in the background; dialed gets the result.
func (l *eventLoop) dial() {
	a := l.a
	ch := make(chan dialResult, 1)
	l.dialDone = ch
	go func() {
		dctx, cancel := context.WithTimeout(l.ctx, a.cfg.DialTimeout)
		defer cancel()
		c, sock, err := a.cfg.Dial(dctx, a.cfg.LibvirtSockets)
		ch <- dialResult{c, sock, err}
	}()
}

// dialed starts a session on a new connection and resyncs, or arms the
// next dial.
func (l *eventLoop) dialed(r dialResult) {
	a := l.a
	l.dialDone = nil
	if r.err != nil {
		d := l.bo.next()
		msg := r.err.Error()
		if msg != l.lastErr {
			a.log.Warn("cannot connect to libvirt; retrying", "err", msg, "retry_in", d)
		} else {
			a.log.Debug("cannot connect to libvirt; retrying", "err", msg, "retry_in", d)
		}
		l.lastErr = msg
		a.store.setLibvirt(func(st *status.Libvirt) { st.Connected, st.LastError = false, msg })
		a.sd.status(fmt.Sprintf("libvirt unavailable (%s); retrying in %s", msg, d.Round(time.Millisecond)))
		l.redial = l.after(d)
		return
	}
	l.lastErr = ""
	ectx, cancel := context.WithCancel(l.ctx)
	evs, err := r.conn.Events(ectx)
	if err != nil {
		cancel()
		_ = r.conn.Close()
		d := l.bo.next()
		a.log.Warn("cannot subscribe to libvirt events; reconnecting", "err", err, "retry_in", d)
		l.redial = l.after(d)
		return
	}
	l.s = &session{conn: r.conn, socket: r.socket, events: evs, cancel: cancel, since: a.cfg.Now()}
	a.connected(l.s)
	l.sync()
}

// drop ends the session after the connection was lost or failed, and
// arms the next dial.
func (l *eventLoop) drop(why error) {
	a, s := l.a, l.s
	lasted := a.cfg.Now().Sub(s.since)
	s.cancel()
	_ = s.conn.Close()
	a.conn.Store(nil)
	a.metrics.libvirtUp.Set(0)
	msg := "connection lost"
	if why != nil {
		msg = why.Error()
	}
	a.store.setLibvirt(func(st *status.Libvirt) {
		st.Connected = false
		st.Since = a.cfg.Now()
		st.LastError = msg
	})
	a.log.Warn("lost the libvirt connection; reconnecting", "socket", s.socket, "err", msg)
	l.s, l.resync = nil, nil
	if lasted >= stableAfter {
		l.bo.reset()
	}
	d := l.bo.next()
	l.redial = l.after(d)
	a.sd.status(fmt.Sprintf("libvirt connection lost (%s); reconnecting in %s", msg, d.Round(time.Millisecond)))
}

// sync reconciles every domain and handles the outcome.
func (l *eventLoop) sync() {
	a, s := l.a, l.s
	err := a.resync(l.ctx, s.conn)
	switch {
	case err == nil:
		l.resync = nil
	case l.ctx.Err() != nil:
	case a.isLost(s.conn, err):
		l.drop(err)
	default:
		d := l.bo.next()
		a.log.Warn("resync failed; retrying", "err", err, "retry_in", d)
		l.resync = l.after(d)
	}
	a.updateStatus(l.s)
}

// done ends a step on the session: a lost connection is dropped, else the
// systemd status is brought up to date.
func (l *eventLoop) done(err error) {
	if err != nil && l.a.isLost(l.s.conn, err) {
		l.drop(err)
		return
	}
	l.a.updateStatus(l.s)
}

// periodic runs one of the periodic checks on the session.
func (l *eventLoop) periodic(check func(context.Context, virt.Conn) error) {
	if l.s != nil {
		l.done(check(l.ctx, l.s.conn))
	}
}

// handle reconciles what a batch of events touched.
func (l *eventLoop) handle(batch []virt.Event) {
	if l.s != nil { // else the resync after the reconnect reads it
		l.done(l.a.handle(l.ctx, l.s.conn, batch))
	}
}

// retryDue reconciles the domains whose retry is due.
func (l *eventLoop) retryDue() {
	if l.s != nil { // else the resync after the reconnect reconciles every domain
		l.done(l.a.retryDue(l.ctx, l.s.conn))
	}
}

// connected records a new connection.
func (a *Agent) connected(s *session) {
	a.conn.Store(&connRef{s.conn})
	a.metrics.libvirtUp.Set(1)
	first := !a.everConnected
	a.everConnected = true
	a.store.setLibvirt(func(l *status.Libvirt) {
		if !first {
			l.Reconnects++
		}
		l.Connected = true
		l.Socket = s.socket
		l.Since = a.cfg.Now()
		l.LastError = ""
	})
	if !first {
		a.metrics.reconnects.Inc()
	}
	a.log.Info("connected to libvirt", "socket", s.socket)
	a.sd.status("connected to libvirt at " + s.socket + "; reconciling every domain")
}

// collect returns ev and every event already queued behind it (up to
// maxBatch), so that a burst is handled in one pass.
func collect(ev virt.Event, events <-chan virt.Event) []virt.Event {
	batch := []virt.Event{ev}
	for len(batch) < maxBatch {
		select {
		case e, ok := <-events:
			if !ok {
				return batch
			}
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// handle reconciles the domains a batch of events touched, each once (up
// to reconcileWorkers at once: forEachDomain), and
// schedules guest steps and QMP checks on the views the reconciles made
// (see scheduleJob). A guest agent that connected needs no reconcile: its
// domain's last view is current, as every change of the domain brings an
// event that reconciles it; only a domain without a view yet is
// reconciled for it. It returns an error only when the connection is
// unusable.
func (a *Agent) handle(ctx context.Context, conn virt.Conn, batch []virt.Event) error {
	var dirty []virt.Domain
	seen := map[string]bool{}
	jobs := map[string]job{}
	refs := map[string]virt.Domain{}
	seenReboot := map[string]bool{}
	var reboots []virt.Domain
	reconcile := func(d virt.Domain) {
		if key := domainKey(d); !seen[key] {
			seen[key] = true
			dirty = append(dirty, d)
		}
	}
	for _, ev := range batch {
		d := ev.Domain
		key := domainKey(d)
		a.log.Debug("event", "domain", d.Name, "kind", ev.Kind, "detail", ev.Detail)
		switch ev.Kind {
		case virt.EventDefined, virt.EventUndefined, virt.EventStarted, virt.EventStopped:
			reconcile(d)
			if ev.Kind == virt.EventStarted {
				jobs[key] = jobs[key].merge(job{boot: true})
				refs[key] = d
			}
		case virt.EventDeviceAdded:
			// A hot-plugged NIC (see hotplug.go): no DEFINED comes with it.
			// With --live --config libvirt may save the persistent copy
			// after the event (seen on the real stack): read the
			// definition again a moment later.
			reconcile(d)
			a.cfg.AfterFunc(deviceRecheck, func() {
				select {
				case a.recheck <- d:
				default: // full: a resync or the definition check reads it
				}
			})
			jobs[key] = jobs[key].merge(job{guest: true})
			refs[key] = d
		case virt.EventMetadataChanged:
			// `virtmq exclude` / `include` set the label through the
			// metadata API: libvirt sends no DEFINED. Read the domain again
			// so it stops or starts being managed; an included running
			// domain gets its guest step (an excluded one gets none: its
			// plan manages no NIC). Other namespaces are not virtmq's.
			if ev.Namespace == "" || ev.Namespace == domxml.ExcludeNamespace {
				reconcile(d)
				jobs[key] = jobs[key].merge(job{guest: true})
				refs[key] = d
			}
		case virt.EventRebooted:
			if !seenReboot[key] {
				seenReboot[key] = true
				reboots = append(reboots, d)
			}
		case virt.EventAgentConnected:
			jobs[key] = jobs[key].merge(job{guest: true})
			refs[key] = d
			if a.store.lastView(d.UUID) == nil && !a.retry.waiting(d) {
				reconcile(d)
			}
		}
	}
	// Reboots first: a domain to cold boot is paused as soon as possible.
	for _, d := range reboots {
		if err := a.onReboot(ctx, conn, d); err != nil && (a.isLost(conn, err) || ctx.Err() != nil) {
			return err
		}
	}
	a.reader(conn) // on this goroutine: the workers share it
	got := make([]*domainView, len(dirty))
	if err := forEachDomain(reconcileWorkers, dirty, func(i int, d virt.Domain) error {
		v, err := a.reconcile(ctx, conn, d, false)
		if err != nil && a.isLost(conn, err) {
			return err
		}
		got[i] = v
		return nil
	}); err != nil {
		return err
	}
	views := make(map[string]*domainView, len(dirty))
	for i, d := range dirty {
		views[domainKey(d)] = got[i]
	}
	for key, j := range jobs {
		a.scheduleJob(refs[key], views[key], j)
	}
	return nil
}

// retryDue reconciles the domains whose retry is due, from a fresh lookup
// and read. It returns an error only when the connection is unusable.
func (a *Agent) retryDue(ctx context.Context, conn virt.Conn) error {
	a.reader(conn) // on this goroutine: the workers share it
	return forEachDomain(reconcileWorkers, a.retry.takeDue(), func(_ int, d virt.Domain) error {
		a.log.Debug("retrying", "domain", d.Name)
		if _, err := a.reconcile(ctx, conn, d, false); err != nil && (a.isLost(conn, err) || ctx.Err() != nil) {
			return err
		}
		return nil
	})
}

// resync reconciles every domain, forgets the ones that are gone and
// schedules the guest step (and QMP check) for every running domain.
func (a *Agent) resync(ctx context.Context, conn virt.Conn) error {
	a.store.resetRedefines()
	a.forgetFacts(conn) // a network's forward mode may have changed
	if err := a.finishIntents(ctx, conn); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	doms, err := call(ctx, a, conn.ListDomains)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	start := a.cfg.Now()
	keep := make(map[string]bool, len(doms))
	for _, d := range doms {
		keep[d.UUID] = true
	}
	if err := forEachDomain(reconcileWorkers, doms, func(_ int, d virt.Domain) error {
		v, err := a.reconcile(ctx, conn, d, true)
		if err != nil && (a.isLost(conn, err) || ctx.Err() != nil) {
			return err
		}
		if d.Active {
			a.scheduleJob(d, v, job{guest: true})
		}
		return nil
	}); err != nil {
		return err
	}
	a.store.retain(keep)
	a.retry.retain(keep)
	a.log.Info("resync done", "domains", len(doms), "took", a.cfg.Now().Sub(start).Round(time.Millisecond))
	return nil
}

// isLost reports whether err means the connection is gone.
func (a *Agent) isLost(conn virt.Conn, err error) bool {
	if errors.Is(err, virt.ErrDisconnected) {
		return true
	}
	select {
	case <-conn.Disconnected():
		return true
	default:
		return false
	}
}

// updateStatus sends systemd a one-line summary when it changed.
func (a *Agent) updateStatus(s *session) {
	var b strings.Builder
	if s == nil {
		b.WriteString("not connected to libvirt")
	} else {
		fmt.Fprintf(&b, "connected to libvirt at %s", s.socket)
	}
	c := a.store.counts()
	total := 0
	for _, n := range c {
		total += n
	}
	fmt.Fprintf(&b, "; %d domains", total)
	for _, st := range []string{status.StateRewritten, status.StatePendingColdBoot, status.StateTransient, status.StateRetrying, status.StateError} {
		if c[st] > 0 {
			fmt.Fprintf(&b, ", %d %s", c[st], st)
		}
	}
	if a.store.reloadFailed() {
		b.WriteString("; policy reload failed, previous policy in force")
	}
	a.sd.status(b.String())
}

func domainKey(d virt.Domain) string {
	if d.UUID != "" {
		return d.UUID
	}
	return d.Name
}

// backoff is an exponential backoff with jitter.
type backoff struct {
	min, max, cur time.Duration
}

// next returns the next delay: between half and all of the current step,
// which doubles from min up to max.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

func (b *backoff) reset() { b.cur = 0 }

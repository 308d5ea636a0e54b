package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
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
// and pings the watchdog, until ctx ends.
func (a *Agent) loop(ctx context.Context) {
	var wdTick <-chan time.Time
	if wd, err := a.cfg.Watchdog(); err != nil {
		a.log.Warn("cannot read the systemd watchdog setting", "err", err)
	} else if wd > 0 {
		a.sd.setWatchdog(wd)
		t := time.NewTicker(wd / 2)
		defer t.Stop()
		wdTick = t.C
		a.sd.ping(time.Now())
	}

	vcpuTick, defTick, stopTicks := a.periodicTicks()
	defer stopTicks()
	bo := backoff{min: a.cfg.ReconnectMin, max: a.cfg.ReconnectMax}
	var (
		s        *session
		dialDone chan dialResult
		retry    <-chan time.Time
		resync   <-chan time.Time // a failed resync is retried
		lastErr  string
	)
	dial := func() {
		ch := make(chan dialResult, 1)
		dialDone = ch
		go func() {
			dctx, cancel := context.WithTimeout(ctx, a.cfg.DialTimeout)
			defer cancel()
			c, sock, err := a.cfg.Dial(dctx, a.cfg.LibvirtSockets)
			ch <- dialResult{c, sock, err}
		}()
	}
	// drop ends the session after the connection was lost or failed.
	drop := func(why error) {
		lasted := time.Since(s.since)
		s.cancel()
		_ = s.conn.Close()
		a.conn.Store(nil)
		a.metrics.libvirtUp.Set(0)
		msg := "connection lost"
		if why != nil {
			msg = why.Error()
		}
		a.store.setLibvirt(func(l *status.Libvirt) {
			l.Connected = false
			l.Since = a.cfg.Now()
			l.LastError = msg
		})
		a.log.Warn("lost the libvirt connection; reconnecting", "socket", s.socket, "err", msg)
		s, resync = nil, nil
		if lasted >= stableAfter {
			bo.reset()
		}
		d := bo.next()
		retry = time.After(d)
		a.sd.status(fmt.Sprintf("libvirt connection lost (%s); reconnecting in %s", msg, d.Round(time.Millisecond)))
	}
	// sync reconciles every domain and handles the outcome.
	doSync := func() {
		err := a.resync(ctx, s.conn)
		switch {
		case err == nil:
			resync = nil
		case ctx.Err() != nil:
		case a.isLost(s.conn, err):
			drop(err)
		default:
			d := bo.next()
			a.log.Warn("resync failed; retrying", "err", err, "retry_in", d)
			resync = time.After(d)
		}
		a.updateStatus(s)
	}

	// periodic runs one of the periodic checks on the session; it reports
	// false when the connection was lost (and dropped).
	periodic := func(check func(context.Context, virt.Conn) error) bool {
		if err := check(ctx, s.conn); err != nil && a.isLost(s.conn, err) {
			drop(err)
			return false
		}
		a.updateStatus(s)
		return true
	}

	dial()
	for {
		var events <-chan virt.Event
		var lost <-chan struct{}
		if s != nil {
			events, lost = s.events, s.conn.Disconnected()
		}
		select {
		case <-ctx.Done():
			a.retry.stopAll()
			if s != nil {
				s.cancel()
				_ = s.conn.Close()
				a.conn.Store(nil)
			}
			if dialDone != nil {
				go func(ch chan dialResult) {
					if r := <-ch; r.conn != nil {
						_ = r.conn.Close()
					}
				}(dialDone)
			}
			return

		case <-wdTick:
			a.sd.ping(time.Now())

		case <-a.cfg.Reload:
			a.reload()
			if s != nil {
				doSync()
			} else {
				a.updateStatus(nil)
			}

		case r := <-dialDone:
			dialDone = nil
			if r.err != nil {
				d := bo.next()
				msg := r.err.Error()
				if msg != lastErr {
					a.log.Warn("cannot connect to libvirt; retrying", "err", msg, "retry_in", d)
				} else {
					a.log.Debug("cannot connect to libvirt; retrying", "err", msg, "retry_in", d)
				}
				lastErr = msg
				a.store.setLibvirt(func(l *status.Libvirt) { l.Connected, l.LastError = false, msg })
				a.sd.status(fmt.Sprintf("libvirt unavailable (%s); retrying in %s", msg, d.Round(time.Millisecond)))
				retry = time.After(d)
				continue
			}
			lastErr = ""
			ectx, cancel := context.WithCancel(ctx)
			evs, err := r.conn.Events(ectx)
			if err != nil {
				cancel()
				_ = r.conn.Close()
				d := bo.next()
				a.log.Warn("cannot subscribe to libvirt events; reconnecting", "err", err, "retry_in", d)
				retry = time.After(d)
				continue
			}
			s = &session{conn: r.conn, socket: r.socket, events: evs, cancel: cancel, since: time.Now()}
			a.connected(s)
			doSync()

		case <-retry:
			retry = nil
			dial()

		case <-resync:
			resync = nil
			doSync()

		case <-vcpuTick:
			if s != nil && !periodic(a.checkVCPUs) {
				continue
			}

		case <-defTick:
			if s != nil && !periodic(a.checkDefinitions) {
				continue
			}

		case d := <-a.recheck:
			if s == nil {
				continue // the resync after the reconnect reads it
			}
			if err := a.handle(ctx, s.conn, []virt.Event{{Kind: virt.EventDefined, Domain: d}}); err != nil && a.isLost(s.conn, err) {
				drop(err)
				continue
			}
			a.updateStatus(s)

		case <-a.retry.wake:
			if s == nil {
				// The resync after the reconnect reconciles every domain.
				continue
			}
			if err := a.retryDue(ctx, s.conn); err != nil && a.isLost(s.conn, err) {
				drop(err)
				continue
			}
			a.updateStatus(s)

		case ev, ok := <-events:
			if !ok {
				drop(errors.New("libvirt event stream ended"))
				continue
			}
			batch := collect(ev, events)
			if err := a.handle(ctx, s.conn, batch); err != nil && a.isLost(s.conn, err) {
				drop(err)
				continue
			}
			a.updateStatus(s)

		case <-lost:
			drop(nil)
		}
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
	a.reader(conn).Forget() // a network's forward mode may have changed
	if err := a.finishIntents(ctx, conn); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	doms, err := call(ctx, a, conn.ListDomains)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	start := time.Now()
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
	a.log.Info("resync done", "domains", len(doms), "took", time.Since(start).Round(time.Millisecond))
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
	a.store.mu.Lock()
	reloadErr := a.store.policy.LastReloadError
	a.store.mu.Unlock()
	if reloadErr != "" {
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

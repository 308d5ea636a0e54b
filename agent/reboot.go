package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

// apply_at: next-reboot — a guest's reboot becomes a cold boot.
//
// libvirt emits its REBOOT event (VIR_DOMAIN_EVENT_ID_REBOOT) when QEMU
// resets the guest: a guest `reboot`, `virsh reboot` (through qemu-ga, or
// ACPI and libvirt's fake reboot), `virsh reset`, and the fake reboot of
// an <on_poweroff>restart</on_poweroff> domain that powered off. A
// poweroff (guest `poweroff`, `virsh shutdown`) emits none: those domains
// stay off. On the event, for a running persistent domain pending a cold
// boot whose plan says next-reboot, the agent
//
//  1. writes the intent (StateDir/restart/<uuid>.json, atomically),
//  2. pauses the domain (it is in firmware or early boot: its OS already
//     shut down for the reboot),
//  3. reconciles it from a fresh read: when the definition no longer asks
//     for a change (redefined by hand, policy changed), it resumes it and
//     forgets the intent,
//  4. destroys it and starts it from its definition (a forced boot: a
//     managed save image is never restored), then forgets the intent.
//
// The agent never arms the domain (no on_reboot=destroy in its live
// XML): so `virsh reboot` is never turned into a poweroff by libvirt, a
// managed save or libvirt-guests restore finds nothing armed, and nothing
// is left behind once the domain cold booted. A killed agent or a libvirtd
// restart between 1 and 4 leaves the intent: at every (re)connect the
// agent finishes it (a paused domain is destroyed and started, a shut off
// one started, a running one left alone).

// powerAttempts is how many times a call of the cold boot (destroy,
// start, resume) is made before the agent gives up until the next
// connect, powerRetryDelay the pause between attempts.
const (
	powerAttempts   = 3
	powerRetryDelay = time.Second
)

// restartIntent is what the agent persists before it stops a domain for
// its reboot.
type restartIntent struct {
	Name    string    `json:"name"`
	UUID    string    `json:"uuid"`
	At      time.Time `json:"at"`
	Changes string    `json:"changes"`
}

// coldBootsAtReboot reports whether v is a running persistent domain that
// runs with other queue counts than its definition and whose plan says
// apply_at: next-reboot, in a mode that acts (a stop and start is an
// action: mode observe, or an orchestrator opted in to observe only, lets
// the reboot be).
func coldBootsAtReboot(v *domainView) bool {
	if v == nil || v.observe || !v.d.Persistent || v.live == nil || v.plan.ApplyAt != policy.ApplyNextReboot {
		return false
	}
	return runningChanges(v) != ""
}

// runningChanges lists the managed NICs of a running domain whose running
// queue count is not the wanted one: "52:54:00:00:00:01 1→4 queues". A
// live-only NIC is not one: the cold boot would remove it.
func runningChanges(v *domainView) string {
	running := v.live.QueuesByMAC()
	var parts []string
	for _, n := range v.plan.NICs {
		if q, ok := running[n.MAC]; ok && n.Managed && q != n.Wanted && !v.liveOnly[n.MAC] {
			parts = append(parts, fmt.Sprintf("%s %d→%d queues", n.MAC, q, n.Wanted))
		}
	}
	return strings.Join(parts, ", ")
}

// onReboot handles a REBOOT event of d (see above). It returns an error
// only when the connection is unusable (the intent then stays and the
// resync after the reconnect finishes it).
func (a *Agent) onReboot(ctx context.Context, conn virt.Conn, d virt.Domain) error {
	v := a.store.lastView(d.UUID)
	if !coldBootsAtReboot(v) {
		return nil
	}
	// Cold boots at reboot need libvirt's REBOOT events.
	if !conn.RebootEvents() {
		return nil
	}
	d = v.d
	log := a.log.With("domain", d.Name)
	in := restartIntent{Name: d.Name, UUID: d.UUID, At: a.cfg.Now(), Changes: runningChanges(v)}
	if err := a.writeIntent(in); err != nil {
		// Without it a crash could leave the domain off: let the reboot go
		// on, untouched, and say why in the status.
		log.Error("cannot persist the restart intent; the reboot keeps the old queue counts", "err", err)
		_, err := a.reconcile(ctx, conn, d, false)
		return err
	}
	a.failpoint(fpIntentWritten)
	log.Info("guest reboot: pausing the domain to cold boot it with the new queue counts", "changes", in.Changes)
	if _, err := call(ctx, a, func(ctx context.Context) (struct{}, error) { return struct{}{}, conn.SuspendDomain(ctx, d) }); err != nil {
		if a.isLost(conn, err) || ctx.Err() != nil {
			return err
		}
		log.Warn("cannot pause the domain at its reboot", "err", err)
	}
	a.failpoint(fpPaused)
	return a.finishColdBoot(ctx, conn, in, true)
}

// finishColdBoot brings the domain of in back from its stop for the
// reboot: a paused domain is destroyed and started, a shut off one
// started, a running one left alone; then the intent is removed. With
// recheck, a paused domain whose definition no longer asks for a change is
// resumed instead.
func (a *Agent) finishColdBoot(ctx context.Context, conn virt.Conn, in restartIntent, recheck bool) error {
	d := virt.Domain{Name: in.Name, UUID: in.UUID}
	log := a.log.With("domain", d.Name)
	// do makes one call of the cold boot. A failure that is not a lost
	// connection (libvirt busy: "cannot acquire state change lock") is
	// tried again a few times right away: the domain must not stay paused
	// or off until the next connect, which may never come.
	do := func(f func(context.Context, virt.Domain) error) error {
		var err error
		for attempt := range powerAttempts {
			if attempt > 0 && !a.sleep(ctx, powerRetryDelay) {
				return ctx.Err()
			}
			_, err = call(ctx, a, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx, d) })
			if err == nil || errors.Is(err, virt.ErrNotFound) || errors.Is(err, virt.ErrInvalidState) ||
				a.isLost(conn, err) || ctx.Err() != nil {
				return err
			}
		}
		return err
	}
	st, err := call(ctx, a, func(ctx context.Context) (virt.DomainState, error) { return conn.DomainState(ctx, d) })
	switch {
	case errors.Is(err, virt.ErrNotFound):
		a.removeIntent(in.UUID)
		return nil
	case err != nil && (a.isLost(conn, err) || ctx.Err() != nil):
		return err
	case err != nil:
		log.Warn("cannot read the domain's state; finishing its cold boot at the next connect", "err", err)
		return nil
	}
	switch st {
	case virt.StateRunning, virt.StateOther:
		// Never paused (the agent stopped before), or already back.
		a.removeIntent(in.UUID)
		return nil
	case virt.StatePaused:
		if recheck {
			v, err := a.reconcile(ctx, conn, d, false)
			if err != nil {
				return err
			}
			if v != nil && !coldBootsAtReboot(v) {
				log.Info("the definition no longer asks for a change: resuming the reboot as it was")
				if err := do(conn.ResumeDomain); err != nil {
					if a.isLost(conn, err) || ctx.Err() != nil {
						return err
					}
					// Still paused: the intent stays, the next connect
					// finishes the cold boot.
					log.Error("cannot resume the domain; finishing its cold boot at the next connect", "err", err)
					return nil
				}
				a.removeIntent(in.UUID)
				return nil
			}
		}
		// "Not running" (ErrInvalidState): it stopped meanwhile, e.g. the
		// destroy a killed agent had sent landed after its death: start it.
		if err := do(conn.DestroyDomain); err != nil && !errors.Is(err, virt.ErrInvalidState) {
			if a.isLost(conn, err) || ctx.Err() != nil {
				return err
			}
			log.Warn("cannot stop the domain for its cold boot; resuming it", "err", err)
			rerr := do(conn.ResumeDomain)
			if rerr != nil && (a.isLost(conn, rerr) || ctx.Err() != nil) {
				return rerr
			}
			if rerr != nil {
				// Neither: the intent stays for the next connect.
				log.Error("cannot resume the domain either; trying again at the next connect", "err", rerr)
				return nil
			}
			a.removeIntent(in.UUID)
			return nil
		}
		a.failpoint(fpDestroyed)
	}
	// "Already running" (ErrInvalidState): a start a killed agent had
	// sent landed after its death; the domain runs its cold boot.
	if err := do(conn.StartDomain); err != nil && !errors.Is(err, virt.ErrInvalidState) {
		if a.isLost(conn, err) || ctx.Err() != nil {
			return err
		}
		log.Error("cannot start the domain after stopping it for its reboot; trying again at the next connect", "err", err)
		a.fail(d, "start after reboot failed", fmt.Sprintf("stopped at its reboot to apply %s, but the start failed (the agent tries again at its next connect; or start it by hand): %v", in.Changes, err))
		return nil
	}
	a.failpoint(fpStarted)
	a.removeIntent(in.UUID)
	log.Info("cold booted the domain at its guest reboot", "changes", in.Changes, "took", a.cfg.Now().Sub(in.At).Round(time.Millisecond))
	now := a.cfg.Now()
	a.store.update(d.UUID, func(r *record) {
		r.st.LastAction = "cold booted at the guest's reboot (apply_at: next-reboot): " + in.Changes
		r.st.LastAt = now
	})
	// A fresh view now: the second REBOOT event of the same reset finds
	// the domain running with its definition.
	_, err = a.reconcile(ctx, conn, d, false)
	return err
}

// finishIntents finishes the cold boots a killed agent or a lost
// connection left (see finishColdBoot). It runs at every resync.
func (a *Agent) finishIntents(ctx context.Context, conn virt.Conn) error {
	a.probeStateDir()
	ins := a.intents()
	if len(ins) == 0 {
		return nil
	}
	for _, in := range ins {
		a.log.Info("finishing a cold boot at reboot left unfinished", "domain", in.Name, "since", in.At)
		if err := a.finishColdBoot(ctx, conn, in, false); err != nil {
			return err
		}
	}
	return nil
}

func (a *Agent) intentDir() string { return filepath.Join(a.cfg.StateDir, "restart") }

// writeIntent persists in atomically (temp file, fsync, rename, fsync of
// the folder). Its outcome is the agent's intent problem (see
// intentProblemText).
func (a *Agent) writeIntent(in restartIntent) error {
	err := a.writeIntentFile(in.UUID+".json", in)
	a.setIntentProblem(err)
	return err
}

// probeStateDir writes and removes a probe the way writeIntent writes an
// intent, so that a state folder that is full or read-only shows in the
// status before a reboot finds it (it runs at every resync).
func (a *Agent) probeStateDir() {
	err := a.writeIntentFile(".probe", restartIntent{Name: "probe"})
	if err == nil {
		_ = os.Remove(filepath.Join(a.intentDir(), ".probe"))
	}
	if err != nil && a.intentProblem.Load() == nil {
		a.log.Error("cannot write to the state folder: apply_at: next-reboot cannot act", "dir", a.intentDir(), "err", err)
	}
	a.setIntentProblem(err)
}

func (a *Agent) setIntentProblem(err error) {
	if err == nil {
		a.intentProblem.Store(nil)
		return
	}
	cause := err
	var pe *os.PathError
	if errors.As(err, &pe) {
		cause = pe.Err // "read-only file system", "no space left on device"
	}
	msg := fmt.Sprintf("cannot write the restart intent in %s (%v, at %s)", a.intentDir(), cause, a.cfg.Now().UTC().Format(time.RFC3339))
	a.intentProblem.Store(&msg)
}

// intentProblemText is why the last intent write failed, or "".
func (a *Agent) intentProblemText() string {
	if p := a.intentProblem.Load(); p != nil {
		return *p
	}
	return ""
}

// sleep waits d or until ctx ends (false then).
func (a *Agent) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// writeIntentFile writes name in the intent folder atomically.
func (a *Agent) writeIntentFile(name string, in restartIntent) error {
	dir := a.intentDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to create %s: %w", dir, err)
	}
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to write the restart intent: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("failed to write the restart intent: %w", err)
	}
	if df, err := os.Open(dir); err == nil {
		_ = df.Sync()
		_ = df.Close()
	}
	return nil
}

func (a *Agent) removeIntent(uuid string) {
	if err := os.Remove(filepath.Join(a.intentDir(), uuid+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		a.log.Warn("cannot remove the restart intent", "uuid", uuid, "err", err)
	}
}

// intents reads the persisted intents; unreadable files are logged and skipped.
func (a *Agent) intents() []restartIntent {
	ents, err := os.ReadDir(a.intentDir())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("cannot read the restart intents", "err", err)
		}
		return nil
	}
	var out []restartIntent
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(a.intentDir(), e.Name()))
		var in restartIntent
		if err == nil {
			err = json.Unmarshal(b, &in)
		}
		if err != nil || in.UUID == "" {
			a.log.Warn("skipping an unreadable restart intent", "file", e.Name(), "err", err)
			continue
		}
		out = append(out, in)
	}
	return out
}

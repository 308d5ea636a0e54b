package virttest

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	"github.com/virtmq/virtmq/internal/virt"
)

// migrationEvents is what each host's agent received during a live
// migration on the real stack (see the file's header).
//
//go:embed testdata/migration-events.txt
var migrationEvents []byte

// MigrationEvent is one event of a recorded live migration: which host
// sent it, and what it was.
type MigrationEvent struct {
	Destination bool // false: the source host
	Kind        virt.EventKind
	Detail      int
}

// MigrationEvents returns the recorded event sequence of a live migration
// (`virsh migrate --live --persistent --undefinesource`, libvirt 9.0), in
// the order libvirt's timestamps put them across both hosts.
func MigrationEvents() ([]MigrationEvent, error) {
	kinds := map[string]virt.EventKind{}
	for k := virt.EventOther; k <= virt.EventMetadataChanged; k++ {
		kinds[k.String()] = k
	}
	var evs []MigrationEvent
	sc := bufio.NewScanner(bytes.NewReader(migrationEvents))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		bad := fmt.Errorf("testdata/migration-events.txt:%d: want \"source|destination KIND/DETAIL ...\", got %q", n, sc.Text())
		if len(f) < 2 || (f[0] != "source" && f[0] != "destination") {
			return nil, bad
		}
		kind, detail, _ := strings.Cut(f[1], "/")
		k, known := kinds[kind]
		d, err := strconv.Atoi(detail)
		if !known || err != nil {
			return nil, bad
		}
		evs = append(evs, MigrationEvent{Destination: f[0] == "destination", Kind: k, Detail: d})
	}
	return evs, sc.Err()
}

// Migrate live-migrates the running persistent domain name from c's daemon
// to dst's as `virsh migrate --live --persistent --undefinesource` does on
// libvirt 9.0, replaying the recorded events (MigrationEvents) with the
// state each one stands for: the destination's incoming domain starts
// paused and transient with the source's live XML (its queues travel with
// it), the source pauses, the destination gets the source's definition and
// resumes, and the source's domain is gone, without an Undefined event.
func (c *Conn) Migrate(dst *Conn, name string) error {
	evs, err := MigrationEvents()
	if err != nil {
		return err
	}
	c.d.mu.Lock()
	x := c.d.find(name)
	if x == nil || !x.active || !x.persistent {
		c.d.mu.Unlock()
		return fmt.Errorf("domain %q is not a running persistent domain", name)
	}
	moved := &domain{name: x.name, uuid: x.uuid, active: true, paused: true,
		live: bytes.Clone(x.live), inactive: bytes.Clone(x.inactive)}
	c.d.mu.Unlock()
	dst.d.mu.Lock()
	if dst.d.find(moved.uuid) != nil || dst.d.find(moved.name) != nil {
		dst.d.mu.Unlock()
		return fmt.Errorf("domain %q already exists on the destination", name)
	}
	dst.d.mu.Unlock()
	definition := moved.inactive
	moved.inactive = nil
	for _, e := range evs {
		d := c.d
		if e.Destination {
			d = dst.d
		}
		d.mu.Lock()
		switch {
		case e.Destination && e.Kind == virt.EventStarted:
			d.domains[moved.uuid] = moved
		case e.Destination && e.Kind == virt.EventDefined:
			moved.persistent, moved.inactive = true, definition
		case e.Destination && e.Kind == virt.EventOther: // resumed
			moved.paused = false
		case !e.Destination && e.Kind == virt.EventOther: // suspended
			x.paused = true
		case !e.Destination && e.Kind == virt.EventStopped:
			d.stopLocked(x)
			delete(d.domains, x.uuid)
		}
		d.mu.Unlock()
		d.emit(virt.Event{Kind: e.Kind, Domain: virt.Domain{Name: moved.name, UUID: moved.uuid}, Detail: e.Detail})
	}
	return nil
}

// Package qmpcheck verifies from the host side, over QMP, how many virtqueues
// QEMU gave a virtio-net device and whether the guest negotiated multiqueue.
// virtmq keeps QMP to verification: every command sent through libvirt taints
// the domain "custom-monitor" in libvirt's log.
package qmpcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/digitalocean/go-qemu/qmp"
)

// NICStatus is one NIC's virtio backend as QEMU reports it.
type NICStatus struct {
	// Alias is libvirt's device alias (net0), from the live XML.
	Alias string
	// NumVQs is x-query-virtio-status num-vqs: 2N+1 with the control queue.
	NumVQs int
	// Queues is the queue pair count derived from NumVQs.
	Queues int
	// MQ reports whether the guest driver negotiated VIRTIO_NET_F_MQ.
	MQ bool
}

// Reasons Query cannot answer. Test with errors.Is.
var (
	// ErrUnsupported means QEMU has no x-query-virtio-status (before 7.2,
	// or built without it): QMP answered CommandNotFound.
	ErrUnsupported = errors.New("QEMU does not support x-query-virtio-status (needs QEMU 7.2 or newer)")
	// ErrNoDevice means no realized virtio device has that alias: a wrong
	// or stale alias, or a NIC that is not virtio.
	ErrNoDevice = errors.New("no virtio device with that alias")
)

// QMPError is an error reply from QEMU to a QMP command.
type QMPError struct {
	// Class is the QAPI error class ("GenericError", "CommandNotFound");
	// empty when the monitor reported only the description.
	Class string
	// Desc is QEMU's message.
	Desc string
}

// Error returns the class and description.
func (e *QMPError) Error() string {
	if e.Class == "" {
		return "QMP error: " + e.Desc
	}
	return "QMP error " + e.Class + ": " + e.Desc
}

// aliasPattern is a libvirt device alias: libvirt's own (net0, hostdev1) or
// a user alias ("ua-" + [A-Za-z0-9_-]). It also keeps the alias from
// reaching outside /machine/peripheral/ in the QOM path.
var aliasPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// mqFeature is the name QEMU's feature decoder prints before ": <description>".
const mqFeature = "VIRTIO_NET_F_MQ"

type virtioStatus struct {
	Name          string `json:"name"`
	NumVQs        *int   `json:"num-vqs"`
	GuestFeatures *struct {
		DevFeatures []string `json:"dev-features"`
	} `json:"guest-features"`
}

type response struct {
	Return *virtioStatus `json:"return"`
	Error  *QMPError     `json:"error"`
}

// Query asks QEMU for the virtio status of the NIC with the given alias
// (x-query-virtio-status on /machine/peripheral/<alias>/virtio-backend,
// QEMU ≥ 7.2). The monitor must be connected.
//
// NumVQs counts the queues QEMU created (the configured maximum), not the
// ones the guest uses; MQ is false until the guest's driver has negotiated
// features (before boot, or with a driver that does not use multiqueue).
// Errors: ErrUnsupported, ErrNoDevice, a *QMPError for other QEMU errors,
// the monitor's own error, or a malformed reply. Query blocks as long as
// m.Run does (go-qemu's monitors have no timeout of their own).
func Query(m qmp.Monitor, alias string) (NICStatus, error) {
	st := NICStatus{Alias: alias}
	if !aliasPattern.MatchString(alias) {
		return st, fmt.Errorf("qmpcheck: invalid device alias %q", alias)
	}
	path := "/machine/peripheral/" + alias + "/virtio-backend"
	cmd, err := json.Marshal(qmp.Command{Execute: "x-query-virtio-status", Args: map[string]string{"path": path}})
	if err != nil {
		return st, fmt.Errorf("qmpcheck: encoding x-query-virtio-status: %w", err)
	}
	step := fmt.Sprintf("x-query-virtio-status %s", path)

	raw, err := m.Run(cmd)
	if err != nil {
		// go-qemu's socket monitor turns an error reply into a bare error
		// with only the description; libvirt's returns the reply itself.
		return st, fmt.Errorf("%s: %w", step, classify(&QMPError{Desc: err.Error()}, err))
	}
	var r response
	if err := json.Unmarshal(raw, &r); err != nil {
		return st, fmt.Errorf("%s: malformed reply (%d bytes): %w", step, len(raw), err)
	}
	if r.Error != nil {
		return st, fmt.Errorf("%s: %w", step, classify(r.Error, r.Error))
	}
	if r.Return == nil {
		return st, fmt.Errorf("%s: malformed reply: no \"return\" member", step)
	}
	ret := r.Return
	if ret.Name != "virtio-net" {
		return st, fmt.Errorf("%s: device is %q, not virtio-net: %w", step, ret.Name, ErrNoDevice)
	}
	if ret.NumVQs == nil {
		return st, fmt.Errorf("%s: malformed reply: no num-vqs", step)
	}
	n := *ret.NumVQs
	st.NumVQs = n
	// virtio-net creates an rx and a tx queue per pair, then the control
	// queue when it offers VIRTIO_NET_F_CTRL_VQ (libvirt's default).
	if n%2 == 1 {
		st.Queues = (n - 1) / 2
	} else {
		st.Queues = n / 2
	}
	if st.Queues < 1 {
		return st, fmt.Errorf("%s: num-vqs %d leaves no queue pair", step, n)
	}
	if ret.GuestFeatures != nil {
		for _, f := range ret.GuestFeatures.DevFeatures {
			// "VIRTIO_NET_F_MQ: Multiqueue with automatic receive steering supported"
			name, _, _ := strings.Cut(f, ":")
			if strings.TrimSpace(name) == mqFeature {
				st.MQ = true
				break
			}
		}
	}
	return st, nil
}

// classify adds the sentinel matching a QMP error to err. QEMU gives the
// missing command a class (CommandNotFound), but a missing device only a
// GenericError message, so that one is recognised by QEMU's wording:
// "Path %s is not a VirtIODevice" (7.2), "... is not a realized
// VirtIODevice" (later). The class is lost with go-qemu's socket monitor,
// hence the wording check for the command too.
func classify(e *QMPError, err error) error {
	switch {
	case e.Class == "CommandNotFound" ||
		strings.Contains(e.Desc, "x-query-virtio-status has not been found"):
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	case strings.Contains(e.Desc, "VirtIODevice") && strings.Contains(e.Desc, "is not a"):
		return fmt.Errorf("%w: %w", ErrNoDevice, err)
	case e.Class == "DeviceNotFound":
		return fmt.Errorf("%w: %w", ErrNoDevice, err)
	}
	return err
}

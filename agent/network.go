package agent

import (
	"context"
	"errors"

	"github.com/virtmq/virtmq/internal/virt"
	"github.com/virtmq/virtmq/policy"
)

// networks caches the <forward mode> of the libvirt networks the domains'
// type network NICs use, so that a NIC on a hostdev pool (<forward
// mode='hostdev'>: the NIC is a passed-through VF) is left alone. The
// domain XML does not say it and the hook cannot ask libvirt; the agent
// reads each network once and keeps it until the next resync (every
// reconnect, policy reload and definition check starts one afresh):
// networks rarely change, and libvirt sends no event virtmq listens to
// when they do. The loop's reconcile workers share it (netMu).
type networks map[string]string

// fillNetworks sets Interface.NetworkForward of dom's type network NICs.
// A network libvirt does not know (the domain will not start until it
// exists) is decided like any type network NIC, as the hook does. Any
// other failure is returned: the caller retries or stops like for a
// failed read of the domain.
func (a *Agent) fillNetworks(ctx context.Context, conn virt.Conn, dom *policy.Domain) error {
	for i := range dom.Interfaces {
		ifc := &dom.Interfaces[i]
		if ifc.Type != "network" || ifc.Network == "" {
			continue
		}
		a.netMu.Lock()
		mode, ok := a.networks[ifc.Network]
		a.netMu.Unlock()
		if !ok {
			var err error
			mode, err = call(ctx, a, func(ctx context.Context) (string, error) {
				return conn.NetworkForward(ctx, ifc.Network)
			})
			if err != nil && !errors.Is(err, virt.ErrNoNetwork) {
				return err
			}
			if err != nil {
				a.log.Debug("network not found; its NICs are decided like any network NIC", "network", ifc.Network)
			}
			a.netMu.Lock()
			a.networks[ifc.Network] = mode
			a.netMu.Unlock()
		}
		ifc.NetworkForward = mode
	}
	return nil
}

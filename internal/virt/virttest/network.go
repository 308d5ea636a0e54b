package virttest

import (
	"context"
	"fmt"

	"github.com/virtmq/virtmq/internal/virt"
)

// MethodNetworkForward names NetworkForward for FailNext and Calls.
const MethodNetworkForward = "NetworkForward"

// DefineNetwork defines (or replaces) the libvirt network name with the
// network XML doc, as `virsh net-define` does; the fake does not start
// networks, and NetworkForward reads doc. A nil doc undefines it.
func (c *Conn) DefineNetwork(name string, doc []byte) {
	c.d.mu.Lock()
	defer c.d.mu.Unlock()
	if doc == nil {
		delete(c.d.networks, name)
		return
	}
	if c.d.networks == nil {
		c.d.networks = map[string][]byte{}
	}
	c.d.networks[name] = append([]byte(nil), doc...)
}

// NetworkForward implements virt.Conn: the forward mode of a network
// DefineNetwork defined, else virt.ErrNoNetwork (libvirt's VIR_ERR_NO_NETWORK).
func (c *Conn) NetworkForward(ctx context.Context, name string) (string, error) {
	if err := c.begin(ctx, MethodNetworkForward); err != nil {
		c.end(MethodNetworkForward, virt.Domain{}, err)
		return "", err
	}
	c.d.mu.Lock()
	doc, ok := c.d.networks[name]
	c.d.mu.Unlock()
	var (
		mode string
		err  error
	)
	if !ok {
		err = fmt.Errorf("failed to look up network %q: %w: Network not found: no network with matching name '%s'", name, virt.ErrNoNetwork, name)
	} else if mode, err = virt.ForwardMode(doc); err != nil {
		err = fmt.Errorf("network %q: %w", name, err)
	}
	c.end(MethodNetworkForward, virt.Domain{}, err)
	return mode, err
}

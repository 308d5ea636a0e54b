package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path"
	"regexp"
	"slices"
	"strings"
)

type agentInfo struct {
	Version  string `json:"version"`
	Commands []struct {
		Name    string `json:"name"`
		Enabled bool   `json:"enabled"`
	} `json:"supported_commands"`
}

// osInfo is guest-get-osinfo's GuestOSInfo. qemu-ga has no kernel-name
// member (only kernel-release/-version from uname); KernelName is read in
// case an agent adds one. Windows says id "mswindows".
type osInfo struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	KernelName string `json:"kernel-name"`
}

type netIface struct {
	Name string `json:"name"`
	MAC  string `json:"hardware-address"`
}

// nic is the guest interface found for the MAC.
type nic struct {
	name   string
	virtio string // "virtio3" when learned while telling candidates apart
}

// osIDPattern is os-release(5)'s ID charset; anything else is not kept, so
// Result.OS is safe as a log value or metric label.
var osIDPattern = regexp.MustCompile(`^[a-z0-9._-]{1,64}$`)

// nonLinuxIDs are guest-get-osinfo ids of guests without Linux ethtool.
var nonLinuxIDs = []string{"mswindows", "freebsd", "netbsd", "openbsd", "dragonfly", "illumos", "solaris"}

// discover runs guest-info, guest-get-osinfo and
// guest-network-get-interfaces and returns the guest interface with MAC hw.
// It fills res.OS and res.IfName.
func (s *session) discover(ctx context.Context, hw net.HardwareAddr, res *Result) (nic, error) {
	info, err := call[agentInfo](ctx, s, "guest-info", nil)
	if err != nil {
		return nic{}, fmt.Errorf("guest-info: %w", err)
	}
	enabled := map[string]bool{}
	for _, c := range info.Commands {
		enabled[c.Name] = c.Enabled
	}

	// Old agents have no guest-get-osinfo: go on without knowing the OS.
	if enabled["guest-get-osinfo"] {
		osi, err := call[osInfo](ctx, s, "guest-get-osinfo", nil)
		switch {
		case err == nil:
			if osIDPattern.MatchString(osi.ID) {
				res.OS = osi.ID
			}
			if notLinux(osi) {
				return nic{}, fmt.Errorf("guest-get-osinfo: id %q, name %q: %w", snippet(osi.ID), snippet(osi.Name), ErrNotLinux)
			}
		case isAbort(err):
			return nic{}, fmt.Errorf("guest-get-osinfo: %w", err)
		default:
			var ce *CommandError
			if !errors.As(err, &ce) && !isDisabled(err) {
				return nic{}, fmt.Errorf("guest-get-osinfo: %w", err)
			}
		}
	}

	for _, c := range []string{"guest-exec", "guest-exec-status"} {
		if !enabled[c] {
			return nic{}, fmt.Errorf("guest-info: %s is disabled or absent (qemu-ga %s): %w", c, snippet(info.Version), ErrExecDisabled)
		}
	}
	if !enabled["guest-network-get-interfaces"] {
		return nic{}, fmt.Errorf("guest-info: guest-network-get-interfaces is disabled or absent (qemu-ga %s): %w", snippet(info.Version), ErrCommandDisabled)
	}

	ifaces, err := callCapped[[]netIface](ctx, s, "guest-network-get-interfaces", nil, maxInterfacesReply)
	if err != nil {
		return nic{}, fmt.Errorf("guest-network-get-interfaces: %w", err)
	}
	n, err := s.pick(ctx, ifaces, hw)
	if err != nil {
		return nic{}, err
	}
	res.IfName = n.name
	return n, nil
}

func notLinux(o osInfo) bool {
	if o.KernelName != "" && !strings.EqualFold(o.KernelName, "Linux") {
		return true
	}
	return slices.Contains(nonLinuxIDs, o.ID) || strings.HasPrefix(o.Name, "Microsoft Windows")
}

// pick chooses the interface with MAC hw. Several can share it: IPv4 alias
// labels (eth0:1, listed separately by getifaddrs), and bridges, bonds,
// VLANs and failover masters over the NIC. Aliases are dropped; if more
// than one name is left, the one whose /sys/class/net/IF/device is a virtio
// device wins. At most maxCandidates names are told apart: a guest listing
// the MAC on thousands of interfaces costs no command beyond the listing.
func (s *session) pick(ctx context.Context, ifaces []netIface, hw net.HardwareAddr) (nic, error) {
	var names []string
	for _, i := range ifaces {
		m, err := net.ParseMAC(i.MAC)
		if err != nil || !bytes.Equal(m, hw) {
			continue
		}
		if !slices.Contains(names, i.Name) {
			names = append(names, i.Name)
		}
	}
	if len(names) == 0 {
		return nic{}, fmt.Errorf("guest-network-get-interfaces: %s among %d interfaces: %w", hw, len(ifaces), ErrNoInterface)
	}
	if real := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return strings.Contains(n, ":") }); len(real) > 0 {
		names = real
	}
	var valid []string
	var firstErr error
	for _, n := range names {
		if err := validIfName(n); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		valid = append(valid, n)
	}
	switch len(valid) {
	case 0:
		return nic{}, fmt.Errorf("guest-network-get-interfaces: interface with MAC %s: %w", hw, firstErr)
	case 1:
		return nic{name: valid[0]}, nil
	}
	if len(valid) > maxCandidates {
		return nic{}, fmt.Errorf("guest-network-get-interfaces: %d interfaces have MAC %s, more than the %d told apart", len(valid), hw, maxCandidates)
	}
	var found []nic
	for _, n := range valid {
		dev, err := s.virtioDevice(ctx, n)
		if isAbort(err) {
			return nic{}, err
		}
		if err == nil {
			found = append(found, nic{name: n, virtio: dev})
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return nic{}, fmt.Errorf("guest-network-get-interfaces: %d interfaces have MAC %s (%q) and %d of them are virtio devices: cannot tell which is the NIC", len(valid), hw, valid, len(found))
}

// validIfName reports whether name is safe to pass to ethtool as a Linux
// interface name: what the kernel accepts (dev_valid_name: 1–15 bytes, not
// "." or "..", no '/', ':' or whitespace), narrowed to [A-Za-z0-9_.:@-]
// (':' is kept for alias labels, which are skipped elsewhere) and no
// leading '-', which ethtool would read as an option.
func validIfName(name string) error {
	const ifNameSize = 16 // IFNAMSIZ, including the NUL
	switch {
	case name == "":
		return errors.New("invalid guest interface name \"\": empty")
	case len(name) >= ifNameSize:
		return fmt.Errorf("invalid guest interface name %q: longer than %d bytes", snippet(name), ifNameSize-1)
	case name == "." || name == "..":
		return fmt.Errorf("invalid guest interface name %q", name)
	case name[0] == '-':
		return fmt.Errorf("invalid guest interface name %q: starts with '-'", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '.' || c == ':' || c == '@' || c == '-'
		if !ok {
			return fmt.Errorf("invalid guest interface name %q: byte %#02x at offset %d not allowed", name, c, i)
		}
	}
	return nil
}

// virtioDevPattern is the name of a virtio device in sysfs.
var virtioDevPattern = regexp.MustCompile(`^virtio[0-9]{1,9}$`)

// readlinkCands are tried in order; minimal guests often have only busybox.
var readlinkCands = [][]string{{"/usr/bin/readlink"}, {"/bin/readlink"}, {"/bin/busybox", "readlink"}, {"/usr/bin/busybox", "readlink"}}

// virtioDevice returns the virtioN device behind interface name, from the
// /sys/class/net/NAME/device link ("../../../virtio0"). name must be valid.
func (s *session) virtioDevice(ctx context.Context, name string) (string, error) {
	link := "/sys/class/net/" + name + "/device"
	cands := readlinkCands
	if s.readlink != nil {
		cands = [][]string{s.readlink}
	}
	argvs := make([][]string, len(cands))
	for i, c := range cands {
		argvs[i] = append(slices.Clone(c), link)
	}
	i, r, err := s.firstRunnable(ctx, argvs)
	if err != nil {
		return "", fmt.Errorf("readlink %s: %w", link, err)
	}
	s.readlink = cands[i]
	if r.exitCode != 0 {
		// No link: a bridge, bond, VLAN or other virtual interface.
		return "", fmt.Errorf("readlink %s: %w", link, r.exitError())
	}
	dev := path.Base(strings.TrimSpace(string(r.stdout)))
	if !virtioDevPattern.MatchString(dev) {
		return "", fmt.Errorf("readlink %s: %q is not a virtio device", link, snippet(dev))
	}
	return dev, nil
}

// start is the first half of Configure and Inspect: parse the NIC's MAC
// and find the guest interface that has it.
func start(ctx context.Context, a Agent, mac string, opt Options, res *Result) (*session, nic, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, nic{}, fmt.Errorf("guest: NIC MAC %q: %w", mac, err)
	}
	s := &session{a: a, o: opt.withDefaults()}
	n, err := s.discover(ctx, hw, res)
	return s, n, err
}

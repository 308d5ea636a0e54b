package guesttest

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/virtmq/virtmq/internal/guest"
)

// Ethtool simulates ethtool 6.1 (netlink) -l and -L on virtio_net
// interfaces. Use its Run method as a Program.
type Ethtool struct {
	mu sync.Mutex
	// NICs are the interfaces and their combined channel counts.
	NICs map[string]*guest.Channels
	// Unprivileged makes -L fail like a run without CAP_NET_ADMIN (or
	// under an SELinux denial).
	Unprivileged bool
	// Sets counts successful -L runs.
	Sets int
}

// Run runs ethtool with args (without argv[0]).
func (e *Ethtool) Run(args []string) Exit {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(args) < 2 {
		return Exit{Code: 1, Stderr: []byte("ethtool: bad command line argument(s)\nFor more information run ethtool -h\n")}
	}
	ch, ok := e.NICs[args[1]]
	if !ok {
		return Exit{Code: 1, Stderr: []byte("netlink error: no device matches name (offset 24)\nnetlink error: No such device\n")}
	}
	switch {
	case args[0] == "-l" && len(args) == 2:
		return Exit{Stdout: []byte(ChannelsOutput(args[1], *ch))}
	case args[0] == "-L" && len(args) == 4 && args[2] == "combined":
		if e.Unprivileged {
			return Exit{Code: 1, Stderr: []byte("netlink error: Operation not permitted\n")}
		}
		n, err := strconv.Atoi(args[3])
		if err != nil {
			return Exit{Code: 1, Stderr: fmt.Appendf(nil, "ethtool: bad command line argument(s)\n")}
		}
		if n < 1 || n > ch.Max {
			return Exit{Code: 1, Stderr: []byte("netlink error: requested channel count exceeds maximum (offset 36)\nnetlink error: Invalid argument\n")}
		}
		ch.Current = n
		e.Sets++
		return Exit{Stdout: []byte{}}
	}
	return Exit{Code: 1, Stderr: []byte("ethtool: bad command line argument(s)\nFor more information run ethtool -h\n")}
}

// ChannelsOutput is what ethtool 6.1 prints for -l on a virtio_net interface.
func ChannelsOutput(name string, ch guest.Channels) string {
	return fmt.Sprintf("Channel parameters for %s:\nPre-set maximums:\nRX:\t\tn/a\nTX:\t\tn/a\nOther:\t\tn/a\nCombined:\t%d\n"+
		"Current hardware settings:\nRX:\t\tn/a\nTX:\t\tn/a\nOther:\t\tn/a\nCombined:\t%d\n", name, ch.Max, ch.Current)
}

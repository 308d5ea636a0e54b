package guest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// runEthtool runs ethtool with args, finding ethtool on the first call.
func (s *session) runEthtool(ctx context.Context, args ...string) (execResult, error) {
	paths := s.o.EthtoolPaths
	if s.ethtool != "" {
		paths = []string{s.ethtool}
	}
	argvs := make([][]string, len(paths))
	for i, p := range paths {
		argvs[i] = append([]string{p}, args...)
	}
	i, r, err := s.firstRunnable(ctx, argvs)
	if errors.Is(err, errMissing) {
		return r, fmt.Errorf("tried %s: %w", strings.Join(paths, ", "), ErrNoEthtool)
	}
	if err != nil {
		return r, err
	}
	s.ethtool = paths[i]
	if r.exitCode != 0 {
		err := r.exitError()
		if containsAny(string(r.stderr), deniedWords) {
			return r, fmt.Errorf("%w: %w", ErrDenied, err)
		}
		return r, err
	}
	return r, nil
}

// channels runs ethtool -l name.
func (s *session) channels(ctx context.Context, name string) (Channels, error) {
	r, err := s.runEthtool(ctx, "-l", name)
	if err != nil {
		return Channels{}, fmt.Errorf("guest-exec ethtool -l %s: %w", name, err)
	}
	ch, err := parseChannels(r.stdout)
	if err != nil {
		if r.outTruncated {
			err = fmt.Errorf("%w (output truncated at %d bytes)", err, s.o.MaxOutput)
		}
		return Channels{}, fmt.Errorf("guest-exec ethtool -l %s: %w", name, err)
	}
	return ch, nil
}

// setCombined runs ethtool -L name combined n.
func (s *session) setCombined(ctx context.Context, name string, n int) error {
	c := strconv.Itoa(n)
	s.changing = true
	_, err := s.runEthtool(ctx, "-L", name, "combined", c)
	s.changing = false
	if err != nil {
		return fmt.Errorf("guest-exec ethtool -L %s combined %s: %w", name, c, err)
	}
	return nil
}

// maxChannels bounds a believable channel count: QEMU allows at most 511
// queue pairs per device and tun 256 queues; anything above 65536 is
// garbage from the guest.
const maxChannels = 1 << 16

// parseChannels reads the Combined counts from `ethtool -l` output:
//
//	Channel parameters for eth0:
//	Pre-set maximums:
//	RX:		n/a
//	TX:		n/a
//	Other:		n/a
//	Combined:	4
//	Current hardware settings:
//	RX:		n/a
//	TX:		n/a
//	Other:		n/a
//	Combined:	2
//
// Other lines are ignored; CRLF and surrounding blanks are tolerated; "n/a"
// (older ethtool: "0") means no combined channels and reads as 0.
func parseChannels(out []byte) (Channels, error) {
	const (
		none = iota
		maxSection
		curSection
	)
	var ch Channels
	seen := [3]bool{}
	section := none
	text := string(out)
	for len(text) > 0 {
		var line string
		line, text, _ = strings.Cut(text, "\n")
		line = strings.TrimSpace(line) // also drops the \r of CRLF
		switch {
		case strings.EqualFold(line, "Pre-set maximums:"):
			section = maxSection
		case strings.EqualFold(line, "Current hardware settings:"):
			section = curSection
		case section != none && hasPrefixFold(line, "Combined:"):
			if seen[section] {
				return Channels{}, fmt.Errorf("ethtool -l output: two Combined lines in one section")
			}
			seen[section] = true
			v, err := parseCount(strings.TrimSpace(line[len("Combined:"):]))
			if err != nil {
				return Channels{}, fmt.Errorf("ethtool -l output: Combined: %w", err)
			}
			if section == maxSection {
				ch.Max = v
			} else {
				ch.Current = v
			}
		}
	}
	switch {
	case !seen[maxSection]:
		return Channels{}, errors.New(`ethtool -l output: no "Pre-set maximums:" section with a Combined line`)
	case !seen[curSection]:
		return Channels{}, errors.New(`ethtool -l output: no "Current hardware settings:" section with a Combined line`)
	case ch.Current > ch.Max:
		return Channels{}, fmt.Errorf("ethtool -l output: current combined %d above maximum %d", ch.Current, ch.Max)
	}
	return ch, nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func parseCount(v string) (int, error) {
	if strings.EqualFold(v, "n/a") {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("value %q is not a count", snippet(v))
	}
	if n > maxChannels {
		return 0, fmt.Errorf("value %d is out of range", n)
	}
	return int(n), nil
}

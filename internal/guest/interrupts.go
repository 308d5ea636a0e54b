package guest

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// catCands are tried in order to read /proc/interrupts.
var catCands = [][]string{{"/bin/cat"}, {"/usr/bin/cat"}, {"/bin/busybox", "cat"}, {"/usr/bin/busybox", "cat"}}

const procInterrupts = "/proc/interrupts"

// interrupts reads /proc/interrupts in the guest and returns the names of
// the virtio queue interrupt lines of device dev ("virtio0"), or of every
// virtio device when dev is "".
func (s *session) interrupts(ctx context.Context, dev string) ([]string, error) {
	cands := catCands
	if s.cat != nil {
		cands = [][]string{s.cat}
	}
	argvs := make([][]string, len(cands))
	for i, c := range cands {
		argvs[i] = append(slices.Clone(c), procInterrupts)
	}
	i, r, err := s.firstRunnable(ctx, argvs)
	if err != nil {
		return nil, fmt.Errorf("guest-exec cat %s: %w", procInterrupts, err)
	}
	s.cat = cands[i]
	if r.exitCode != 0 {
		return nil, fmt.Errorf("guest-exec cat %s: %w", procInterrupts, r.exitError())
	}
	// Scan the whole output as a stream: /proc/interrupts of a guest with
	// many vCPUs is far longer than MaxOutput, and the NIC's lines may
	// come late.
	names, err := parseInterrupts(base64.NewDecoder(base64.StdEncoding, strings.NewReader(r.outB64)), dev)
	if err != nil {
		return names, fmt.Errorf("guest-exec cat %s: %w", procInterrupts, err)
	}
	return names, nil
}

// queueIRQPattern is the name virtio_net gives a queue's MSI-X vector:
// "<virtio device>-input.<n>" or "-output.<n>".
var queueIRQPattern = regexp.MustCompile(`^virtio[0-9]{1,9}-(input|output)\.[0-9]{1,9}$`)

const (
	// maxInterruptLine bounds one line: 4096 CPUs × 11 columns fit.
	maxInterruptLine = 64 << 10
	// maxQueueIRQs bounds the names kept: 511 queue pairs × 2 per device,
	// for a few devices.
	maxQueueIRQs = 4096
)

// parseInterrupts returns, in order and without duplicates, the virtio
// queue interrupt names found in /proc/interrupts text read from r, keeping
// only those of device dev ("virtio0") unless dev is "". A line looks like
//
//	25:       1234          0   PCI-MSI 49153-edge      virtio0-input.0
//
// Every whitespace-separated field is checked (a shared line lists several
// names separated by ", "). Lines longer than 64 KiB are skipped.
func parseInterrupts(r io.Reader, dev string) ([]string, error) {
	br := bufio.NewReaderSize(r, maxInterruptLine)
	var names []string
	seen := map[string]bool{}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Too long to be real: drop the rest of the line.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err == nil {
				continue
			}
			line = nil
		}
		for _, f := range strings.Fields(string(line)) {
			f = strings.TrimRight(f, ",")
			if !queueIRQPattern.MatchString(f) || seen[f] {
				continue
			}
			if dev != "" && !strings.HasPrefix(f, dev+"-") {
				continue
			}
			if len(names) == maxQueueIRQs {
				return names, fmt.Errorf("more than %d virtio queue interrupts", maxQueueIRQs)
			}
			seen[f] = true
			names = append(names, f)
		}
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return names, fmt.Errorf("reading %s: %w", procInterrupts, err)
		}
	}
}

package policy

import (
	"fmt"
	"slices"
	"strings"
)

// maxGuestVCPUs is the most vCPUs a KVM guest can have (KVM_MAX_VCPUS is
// 4096 on x86 since Linux 5.15, less elsewhere): a min_vcpus or a vcpus
// range that starts above it can never hold.
const maxGuestVCPUs = 4096

// lintRules finds rules that can never decide a NIC, limits that can never
// bind, and rules that only libosinfo metadata can select, in evaluation
// order (drop-in rules first).
func lintRules(order []*fileDoc) ErrorList {
	var warns ErrorList
	warn := func(l loc, kind, format string, args ...any) {
		warns = append(warns, &Error{File: l.file, Line: l.line, Column: l.col, Path: l.path, Msg: kind + ": " + fmt.Sprintf(format, args...)})
	}
	var earlier []rawRule
	for _, d := range order {
		for _, r := range d.rules {
			for _, e := range earlier {
				if isCatchAll(e.match) {
					warn(r.at, "warning", "rule %s can never match: rule %s (%s) before it matches every NIC", r.name, e.name, e.at)
					break
				}
				if covers(e.match, r.match) {
					warn(r.at, "warning", "rule %s can never match: rule %s (%s) before it matches every NIC it would", r.name, e.name, e.at)
					break
				}
			}
			earlier = append(earlier, r)
			if r.set.minVCPUs.set && r.set.minVCPUs.v > maxGuestVCPUs {
				warn(r.set.minVCPUs.at, "warning", "min_vcpus %d is never reached: no guest has more than %d vCPUs, so rule %s leaves every NIC alone",
					r.set.minVCPUs.v, maxGuestVCPUs, r.name)
			}
			for _, v := range r.match.VCPUs {
				if v.Min > maxGuestVCPUs {
					warn(r.matchAt, "warning", "vcpus %s can never hold: no guest has more than %d vCPUs", v, maxGuestVCPUs)
				}
			}
			if r.match.OS != nil {
				warn(r.matchAt, "note", "rule %s matches on os, the libosinfo id virt-install and virt-manager record; "+
					"domains defined without it (by hand, by terraform, by other tools) fall to later rules or the defaults", r.name)
			}
		}
		if d.defaults.minVCPUs.set && d.defaults.minVCPUs.v > maxGuestVCPUs {
			warn(d.defaults.minVCPUs.at, "warning", "min_vcpus %d is never reached: no guest has more than %d vCPUs, so every NIC is left alone",
				d.defaults.minVCPUs.v, maxGuestVCPUs)
		}
	}
	return warns
}

// isCatchAll reports a match with no condition: it holds for every NIC.
func isCatchAll(m Match) bool {
	return m.Domain == nil && m.VCPUs == nil && m.OS == nil && m.Labels == nil &&
		m.NICType == nil && m.Network == nil && m.Bridge == nil && m.MACPrefix == nil
}

// covers reports whether every NIC b matches is matched by a too, so that
// a rule b after a rule a never decides anything. It errs on the side of
// false: a glob in b counts as covered only when it is written the same
// as one of a's, or has no wildcard and matches one of a's.
func covers(a, b Match) bool {
	if !globsCover(a.Domain, b.Domain) || !globsCover(a.OS, b.OS) || !globsCover(a.Network, b.Network) || !globsCover(a.Bridge, b.Bridge) {
		return false
	}
	if a.VCPUs != nil {
		if b.VCPUs == nil {
			return false
		}
		for _, rb := range b.VCPUs {
			if !slices.ContainsFunc(a.VCPUs, func(ra Range) bool { return ra.Min <= rb.Min && rb.Max <= ra.Max }) {
				return false
			}
		}
	}
	if a.NICType != nil {
		if b.NICType == nil {
			return false
		}
		for _, t := range b.NICType {
			if !slices.Contains(a.NICType, t) {
				return false
			}
		}
	}
	if a.MACPrefix != nil {
		if b.MACPrefix == nil {
			return false
		}
		for _, pb := range b.MACPrefix {
			if !slices.ContainsFunc(a.MACPrefix, func(pa string) bool { return strings.HasPrefix(pb, pa) }) {
				return false
			}
		}
	}
	for k, ga := range a.Labels {
		gb, ok := b.Labels[k]
		if !ok || !globsCover(ga, gb) {
			return false
		}
	}
	return true
}

// globsCover reports whether every name one of b's globs matches is
// matched by one of a's; a nil a is no condition.
func globsCover(a, b []string) bool {
	if a == nil {
		return true
	}
	if b == nil {
		return false
	}
	for _, gb := range b {
		ok := slices.Contains(a, gb) ||
			!strings.ContainsAny(gb, `*?[\`) && anyGlobEmpty(a, gb) ||
			slices.Contains(a, "*") && !strings.Contains(gb, "/")
		if !ok {
			return false
		}
	}
	return true
}

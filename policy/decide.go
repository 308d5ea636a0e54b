package policy

import (
	"path"
	"slices"
	"strconv"
	"strings"
)

// Decide computes the plan for one domain. It never fails: whatever cannot
// be decided is reported as an unmanaged NIC with its reason. It is pure
// and safe for concurrent use; it runs in the libvirt hook on every VM
// start, so it allocates only the NIC slice and one reason string per NIC.
//
// Per NIC, in document order: NICs that cannot do multiqueue are skipped;
// then the first matching rule (or the defaults) gives the settings; an
// excluding rule or too few vCPUs leave the NIC alone; otherwise N comes
// from queues, then min, max, the vCPU cap and the tap limit apply, and
// finally the domain's budget is shared out greedily in document order.
func (p *Policy) Decide(d *Domain) Plan {
	plan := Plan{Mode: p.mode, OnError: p.onError}
	if d == nil || len(d.Interfaces) == 0 {
		if d != nil {
			plan.Domain = d.Name
		}
		return plan
	}
	plan.Domain = d.Name
	plan.NICs = make([]NICPlan, len(d.Interfaces))
	// libvirt assumes one vCPU without <vcpu>; never divide by or cap at 0.
	vcpus := max(d.MaxVCPUs, 1)
	// combined: vcpus follows the vCPUs online (current=; in the live XML
	// it follows setvcpus --live), as Linux's virtio_net does at probe.
	online := vcpus
	if d.CurrentVCPUs > 0 {
		online = min(d.CurrentVCPUs, vcpus)
	}
	budget, managed := 0, 0
	for i := range d.Interfaces {
		nic := &d.Interfaces[i]
		np := &plan.NICs[i]
		*np = NICPlan{
			Index:   nic.Index,
			MAC:     nic.MAC,
			Type:    nic.Type,
			Model:   nic.Model,
			Current: max(nic.Queues, 1),
		}
		np.Wanted = np.Current
		if np.Reason = skipReason(nic); np.Reason != "" {
			continue
		}
		s := &p.defaults
		np.Rule = "defaults"
		if r := p.match(d, vcpus, nic); r != nil {
			np.Rule = r.Name
			if r.Exclude {
				np.Reason = r.excludeReason
				continue
			}
			s = &r.Settings
		}
		if vcpus < s.MinVCPUs {
			np.Reason = strconv.Itoa(vcpus) + " vCPUs < min_vcpus " + strconv.Itoa(s.MinVCPUs)
			continue
		}
		np.Managed = true
		if plan.ApplyAt != ApplyNextReboot {
			plan.ApplyAt = s.ApplyAt
		}
		np.Wanted, np.Reason = s.wanted(vcpus)
		if s.GuestStep {
			np.GuestStep = true
			np.Combined = s.Combined.eval(np.Wanted, online)
		}
		managed++
		if s.Budget > 0 && (budget == 0 || s.Budget < budget) {
			budget = s.Budget
		}
	}
	if budget > 0 {
		shareBudget(plan.NICs, budget, managed)
	}
	return plan
}

// skipReason says why a NIC cannot do multiqueue at all, or "" when it can.
func skipReason(nic *Interface) string {
	switch nic.Model {
	case "virtio", "virtio-transitional", "virtio-non-transitional":
	case "":
		return "no <model>: libvirt picks a non-virtio default"
	default:
		return "model " + nic.Model + " is not virtio"
	}
	switch nic.Type {
	case "network", "bridge", "direct", "vhostuser":
	case "ethernet":
		if nic.TargetManaged == "no" {
			return "pre-created tap (managed='no'): multiqueue needs a tap created with multi_queue; set queues by hand"
		}
	case "":
		return "no interface type: cannot do multiqueue"
	default:
		return "type " + nic.Type + " cannot do multiqueue"
	}
	return ""
}

// wanted computes N before the budget, with the reason listing the source
// and every cap that changed the number, e.g.
// "queues=vcpus → 16; max 8 → 8".
func (s *Settings) wanted(vcpus int) (int, string) {
	// A stack buffer large enough for every step keeps this to one
	// allocation, the final string.
	var buf [128]byte
	b := s.Queues.appendTo(append(buf[:0], "queues="...))
	n := s.Queues.eval(vcpus)
	b = appendArrow(b, n)
	if s.Min > n {
		n = s.Min
		b = appendCap(b, "min ", n)
	}
	// Max < 1 only in a hand-built Settings; treat it as no cap.
	if s.Max >= 1 && n > s.Max {
		n = s.Max
		b = appendCap(b, "max ", n)
	}
	if !s.AllowAboveVCPUs && n > vcpus {
		n = vcpus
		b = appendCap(b, "vcpus ", n)
	}
	if n > MaxTapQueues {
		n = MaxTapQueues
		b = appendCap(b, "tap limit ", n)
	}
	return n, string(b)
}

// appendArrow appends " → n".
func appendArrow(b []byte, n int) []byte {
	return strconv.AppendInt(append(b, " → "...), int64(n), 10)
}

// appendCap appends "; LABELn → n" for a cap or floor that set N to n.
func appendCap(b []byte, label string, n int) []byte {
	b = strconv.AppendInt(append(append(b, "; "...), label...), int64(n), 10)
	return appendArrow(b, n)
}

// shareBudget caps the managed NICs so that their total stays within
// budget where possible: greedy in document order, each NIC gets at most
// what is left after keeping one queue for each managed NIC after it, and
// never less than one.
func shareBudget(nics []NICPlan, budget, managed int) {
	given, left := 0, managed
	for i := range nics {
		np := &nics[i]
		if !np.Managed {
			continue
		}
		left--
		allow := max(budget-given-left, 1)
		if np.Wanted > allow {
			np.Wanted = allow
			np.Combined = min(np.Combined, allow)
			np.Reason += "; budget " + strconv.Itoa(budget) + " → " + strconv.Itoa(allow)
		}
		given += np.Wanted
	}
}

// match returns the first rule whose conditions all hold for the NIC, or nil.
func (p *Policy) match(d *Domain, vcpus int, nic *Interface) *Rule {
	for i := range p.rules {
		if r := &p.rules[i]; r.Match.holds(d, vcpus, nic) {
			return r
		}
	}
	return nil
}

func (m *Match) holds(d *Domain, vcpus int, nic *Interface) bool {
	// Domain-level conditions first: they are the same for every NIC.
	if m.Domain != nil && !anyGlob(m.Domain, d.Name) {
		return false
	}
	if m.VCPUs != nil && !anyRange(m.VCPUs, vcpus) {
		return false
	}
	if m.OS != nil && !anyGlob(m.OS, d.OSID) {
		return false
	}
	for k, globs := range m.Labels {
		v, ok := d.Labels[k]
		if !ok || !anyGlobEmpty(globs, v) {
			return false
		}
	}
	if m.NICType != nil && !slices.Contains(m.NICType, nic.Type) {
		return false
	}
	if m.Network != nil && !anyGlob(m.Network, nic.Network) {
		return false
	}
	if m.Bridge != nil && !anyGlob(m.Bridge, nic.Bridge) {
		return false
	}
	if m.MACPrefix != nil && !anyPrefix(m.MACPrefix, nic.MAC) {
		return false
	}
	return true
}

// anyGlob reports whether s matches one of the globs. An empty s is an
// absent fact (no OS id, no source network) and matches nothing, so that
// `network: "*"` does not select bridge NICs.
func anyGlob(globs []string, s string) bool {
	return s != "" && anyGlobEmpty(globs, s)
}

// anyGlobEmpty is anyGlob for facts that exist even when empty (a label
// whose value is "").
func anyGlobEmpty(globs []string, s string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

func anyRange(ranges []Range, n int) bool {
	for _, r := range ranges {
		if r.Contains(n) {
			return true
		}
	}
	return false
}

// anyPrefix compares case-insensitively: facts are lower-cased by domxml,
// but a hand-built Interface may not be.
func anyPrefix(prefixes []string, mac string) bool {
	for _, p := range prefixes {
		if len(mac) >= len(p) && strings.EqualFold(mac[:len(p)], p) {
			return true
		}
	}
	return false
}

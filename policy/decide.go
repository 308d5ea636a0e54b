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
// start, so it allocates little beyond the NIC slice and one reason string
// per NIC.
//
// A domain that is not virtmq's (a type other than qemu or kvm), that
// carries the exclude label, or that an orchestrator owns (see
// Orchestrator) and the policy does not opt in is left alone as a whole
// (Plan.Skip). An opted-in orchestrator's domain is decided in the mode
// its orchestrators entry allows (Plan.Mode). Otherwise,
// per NIC, in document order: NICs that cannot do multiqueue are skipped;
// then the first matching rule (or the defaults) gives the settings; an
// excluding rule, a vhost-user NIC the rule does not opt in, too few vCPUs
// or a queue count set by hand (with hand_set: keep) leave the NIC alone;
// otherwise N comes from queues, then min, max, the vCPU cap and the tap
// limit apply, and finally the domain's budget is shared out evenly (see
// shareBudget), with a warning for each NIC it cuts.
func (p *Policy) Decide(d *Domain) Plan {
	plan := Plan{Mode: p.mode, OnError: p.onError}
	if d == nil {
		return plan
	}
	plan.Domain = d.Name
	plan.Skip = domainSkipReason(d)
	if o := OwnedBy(d); plan.Skip == "" && o != nil {
		plan.Orchestrator = o.Name
		plan.Skip, plan.Mode = p.orchestratorSkip(o)
		if plan.Skip == "" {
			plan.Warnings = append(plan.Warnings, orchestratorWarning(o, p.orchestratorMode(o.Name)))
		}
	}
	if len(d.Interfaces) == 0 {
		return plan
	}
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
		if plan.Skip != "" {
			np.Reason = plan.Skip
			continue
		}
		note := ""
		if np.Reason, note = skipReason(d, nic); np.Reason != "" {
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
		if nic.Type == "vhostuser" && !s.AllowVHostUser {
			np.Reason = "vhost-user: QEMU refuses to start when the backend supports fewer queues than asked; " +
				"a rule with allow_vhostuser: true opts in"
			continue
		}
		if vcpus < s.MinVCPUs {
			np.Reason = strconv.Itoa(vcpus) + " vCPUs < min_vcpus " + strconv.Itoa(s.MinVCPUs)
			continue
		}
		handSet := nic.Queues > 0 && nic.Queues != nic.Written
		if handSet && s.HandSet != HandSetOverride {
			np.Kept = true
			np.Reason = "kept: set by hand (rule " + np.Rule + " says keep)"
			continue
		}
		np.Managed = true
		if plan.ApplyAt != ApplyNextReboot {
			plan.ApplyAt = s.ApplyAt
		}
		np.Wanted, np.Reason = s.wanted(vcpus)
		np.Reason += note
		if handSet {
			np.Reason += "; hand-set " + strconv.Itoa(nic.Queues) + " overridden (hand_set: override)"
		}
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
		plan.Warnings = append(plan.Warnings, shareBudget(plan.NICs, budget, managed)...)
	}
	return plan
}

// domainSkipReason says why virtmq leaves the whole domain alone, or "".
func domainSkipReason(d *Domain) string {
	switch d.Type {
	case "", "qemu", "kvm":
	default:
		return "domain type " + d.Type + " is not virtmq's (only qemu and kvm domains are)"
	}
	if d.Excluded {
		return "excluded by the domain's virtmq label (`virtmq include " + d.Name + "` removes it)"
	}
	return ""
}

// skipReason says why a NIC cannot do multiqueue at all, or "" when it
// can; note says, for a NIC without <model> that libvirt makes virtio,
// why it does (for the reason of a managed NIC).
func skipReason(d *Domain, nic *Interface) (reason, note string) {
	switch {
	case isVirtioModel(nic.Model):
	case nic.Model == "" && (nic.Type == "vhostuser" || nic.Type == "vdpa"):
		// QEMU has no other frontend for these backends: libvirt's
		// qemuDomainDeviceNetDefPostParse makes them virtio on any
		// machine (vdpa since it exists, vhostuser in releases after 9.0,
		// which refuses such a definition). The vdpa case follows below.
		note = "; no <model>: libvirt makes a vhost-user NIC virtio (libvirt 9.0 refuses one without <model>)"
	case nic.Model == "":
		if !defaultModelIsVirtio(d.Arch, d.Machine) {
			return "no <model>: libvirt picks a non-virtio default" + onMachine(d), ""
		}
		note = "; no <model>: libvirt's default here is virtio"
	default:
		return "model " + nic.Model + " is not virtio", ""
	}
	switch nic.Type {
	case "network":
		if nic.NetworkForward == "hostdev" {
			return "network " + nic.Network + " is a hostdev pool (<forward mode='hostdev'>): the NIC is a passed-through device, queues do not apply", ""
		}
	case "bridge", "direct", "vhostuser":
	case "ethernet":
		if nic.TargetManaged == "no" {
			return "pre-created tap (managed='no'): multiqueue needs a tap created with multi_queue; set queues by hand", ""
		}
	case "vdpa":
		reason = "type vdpa: the queue count belongs to the vDPA device, set on the host when it is created " +
			"(vdpa dev add ... max_vqp N); <driver queues> must fit it, so virtmq leaves it alone"
		if nic.Model == "" {
			// Seen on libvirt 9.0: the <driver> of such a NIC is gone
			// after the define, the model is virtio.
			reason += "; no <model>: libvirt makes it virtio but drops a <driver> written without <model type='virtio'/>"
		}
		return reason, ""
	case "":
		return "no interface type: cannot do multiqueue", ""
	default:
		return "type " + nic.Type + " cannot do multiqueue", ""
	}
	if nic.Teaming == "transient" {
		return "<teaming type='transient'>: the passed-through VF of a failover pair; " +
			"its standby, the persistent virtio NIC, is the one that takes queues", ""
	}
	return "", note
}

// isVirtioModel reports the models that can do multiqueue; libvirt reads
// model names case-insensitively.
func isVirtioModel(m string) bool {
	return strings.EqualFold(m, "virtio") || strings.EqualFold(m, "virtio-transitional") ||
		strings.EqualFold(m, "virtio-non-transitional")
}

// defaultModelIsVirtio follows libvirt's qemuDomainDefaultNetModel
// (src/qemu/qemu_postparse.c): an <interface> without <model> is virtio on
// s390 and s390x, and on the virt machine types ("virt", "virt-9.2") of
// ARM (armv6l, armv7l, armv7b, aarch64), RISC-V and LoongArch; elsewhere
// it is rtl8139, e1000 or another emulated card.
func defaultModelIsVirtio(arch, machine string) bool {
	switch arch {
	case "s390", "s390x":
		return true
	case "armv6l", "armv7l", "armv7b", "aarch64", "riscv32", "riscv64", "loongarch64":
		return machine == "virt" || strings.HasPrefix(machine, "virt-")
	}
	return false
}

func onMachine(d *Domain) string {
	if d.Arch == "" {
		return ""
	}
	if d.Machine == "" {
		return " on " + d.Arch
	}
	return " on " + d.Arch + " " + d.Machine
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
// budget, evenly and the same way on every run ("max-min fair"): every NIC
// gets min(its wish, L) for the largest level L the budget covers, and
// the queues left over go one each to the NICs still below their wish, in
// document order. So budget 12 over three NICs that each want 8 gives 4,
// 4 and 4; wishes 8, 2, 8 give 5, 2, 5; budget 13 over 8, 8, 8 gives 5, 4,
// 4. Every NIC gets at least one queue, so with fewer budget queues than
// managed NICs the total exceeds the budget. It returns one warning per
// NIC that ends below what its rule wants.
func shareBudget(nics []NICPlan, budget, managed int) []string {
	total, most := 0, 0
	for i := range nics {
		if nics[i].Managed {
			total += nics[i].Wanted
			most = max(most, nics[i].Wanted)
		}
	}
	if total <= budget {
		return nil
	}
	// The largest level whose total fits; 1 when even that does not.
	level := 1
	for l := 2; l <= most; l++ {
		sum := 0
		for i := range nics {
			if nics[i].Managed {
				sum += min(nics[i].Wanted, l)
			}
		}
		if sum > budget {
			break
		}
		level = l
	}
	left := budget
	for i := range nics {
		if nics[i].Managed {
			left -= min(nics[i].Wanted, level)
		}
	}
	var warnings []string
	for i := range nics {
		np := &nics[i]
		if !np.Managed || np.Wanted <= level {
			continue
		}
		allow := level
		if left > 0 {
			allow++
			left--
		}
		if allow >= np.Wanted {
			continue
		}
		wish := np.Wanted
		np.Wanted = allow
		np.Combined = min(np.Combined, allow)
		np.Reason += "; budget " + strconv.Itoa(budget) + " shared by " + strconv.Itoa(managed) + " NICs → " + strconv.Itoa(allow)
		warnings = append(warnings, "NIC "+np.name()+": "+strconv.Itoa(allow)+" queues, below the "+strconv.Itoa(wish)+
			" rule "+np.Rule+" wants: the domain's budget of "+strconv.Itoa(budget)+" is shared by "+strconv.Itoa(managed)+" NICs")
	}
	return warnings
}

// name is the NIC's MAC, or its position when it has none.
func (n *NICPlan) name() string {
	if n.MAC != "" {
		return n.MAC
	}
	return "#" + strconv.Itoa(n.Index)
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

package policy

import (
	"fmt"
	"math"
	"path"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxFileSize is the largest policy file accepted. A policy is a few
// kilobytes; anything near this is a mistake, and the cap bounds the time
// the libvirt hook can spend parsing.
const MaxFileSize = 1 << 20

// Known keys, in the order the docs list them; used in "unknown key" messages.
var (
	topKeys      = []string{"version", "mode", "on_error", "defaults", "rules", "orchestrators"}
	settingsKeys = []string{"queues", "min", "max", "min_vcpus", "budget", "allow_above_vcpus", "guest_step", "combined", "allow_vhostuser", "hand_set", "apply_at"}
	ruleKeys     = []string{"name", "match", "exclude", "set"}
	matchKeys    = []string{"domain", "vcpus", "os", "labels", "nic_type", "network", "bridge", "mac_prefix"}
	// nicTypes are libvirt's <interface type> values (virDomainNetType);
	// a nic_type outside them is a typo that would silently match nothing.
	nicTypes = []string{"bridge", "client", "direct", "ethernet", "hostdev", "internal", "mcast", "network", "null", "server", "udp", "user", "vdpa", "vds", "vhostuser"}
)

// validRuleName keeps rule names usable as a log value and a metric label:
// [A-Za-z0-9][A-Za-z0-9._-]{0,62}. Hand-written rather than a regexp: the
// hook parses the policy on every VM start, and compiling that regexp at
// init cost more than the rest of the package.
func validRuleName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// loc is where a value was set; the zero loc means "built in".
type loc struct {
	file      string
	line, col int
	path      string
}

func (l loc) String() string { return fmt.Sprintf("%s:%d:%d", l.file, l.line, l.col) }

// opt is a value a file may or may not set, with where it was set.
type opt[T any] struct {
	v   T
	set bool
	at  loc
}

// partial is a settings block as written: only some keys set. Defaults of
// several files and a rule's set are merged field by field.
type partial struct {
	queues                opt[QueuesSetting]
	min, max              opt[int]
	minVCPUs, budget      opt[int]
	allowAbove, guestStep opt[bool]
	combined              opt[CombinedSetting]
	vhostUser             opt[bool]
	handSet               opt[HandSet]
	applyAt               opt[ApplyAt]
}

// fileDoc is what one file says, before merging.
type fileDoc struct {
	name     string
	warns    ErrorList // lint warnings and notes (Msg starts with "warning: " or "note: ")
	mode     opt[Mode]
	onError  opt[OnError]
	defaults partial
	rules    []rawRule
	// orchestrators are the file's orchestrators entries, in file order.
	orchestrators []orchestratorEntry
}

// orchestratorEntry is one entry of `orchestrators` as written.
type orchestratorEntry struct {
	name string
	mode opt[OrchestratorMode]
}

// rawRule is one rule as written.
type rawRule struct {
	name    string
	at      loc // the rule's mapping
	nameAt  loc
	matchAt loc // the match key; unset when the rule has none
	match   Match
	exclude bool
	set     partial
}

// parseFile parses one policy file. It returns what it could read and
// every problem found; values with problems are left unset.
func parseFile(name string, data []byte, dropIn bool) (*fileDoc, ErrorList) {
	return (&parser{file: name}).parseFile(data, dropIn)
}

func (p *parser) parseFile(data []byte, dropIn bool) (*fileDoc, ErrorList) {
	name := p.file
	doc := &fileDoc{name: name}
	if len(data) > MaxFileSize {
		p.errs = append(p.errs, &Error{File: name, Msg: fmt.Sprintf("file is larger than %d bytes", MaxFileSize)})
		return doc, p.errs
	}
	root, ok := p.decode(data)
	if !ok {
		return doc, p.errs
	}
	version := false
	p.fields(root, "", func(key string, k, v *yaml.Node, kpath string) {
		switch key {
		case "version":
			version = true
			if n, ok := p.integer(v, kpath, "1"); ok && n != 1 {
				p.errorf(v, kpath, "version %d is not supported (must be 1)", n)
			}
		case "mode":
			if m, ok := p.mode(v, kpath); ok {
				doc.mode = opt[Mode]{m, true, p.loc(v, kpath)}
			}
		case "on_error":
			if s, ok := p.enum(v, kpath, "allow", "deny"); ok {
				doc.onError = opt[OnError]{OnError(s), true, p.loc(v, kpath)}
			}
		case "orchestrators":
			doc.orchestrators = p.orchestrators(v, kpath)
		case "defaults":
			doc.defaults = p.settings(v, kpath)
		case "rules":
			doc.rules = p.rules(v, kpath)
		default:
			p.unknown(k, kpath, topKeys)
		}
	})
	// Drop-ins may leave version out: they only make sense beside a main
	// file, which has one.
	if !version && !dropIn {
		p.errorf(root, "version", "missing (add version: 1)")
	}
	doc.warns = p.warns
	return doc, p.errs
}

// mode parses observe | apply | enforce, and the earlier releases' modes
// as aliases with a lint warning.
func (p *parser) mode(n *yaml.Node, path string) (Mode, bool) {
	s, ok := p.scalar(n, path)
	if !ok {
		return "", false
	}
	switch m := Mode(s); m {
	case ModeObserve, ModeApply, ModeEnforce:
		return m, true
	}
	if m, ok := modeAliases[s]; ok {
		n := resolve(n)
		p.warns = append(p.warns, p.at(n, path, fmt.Sprintf("warning: %q is read as %q, what the agent always did with it: it rewrites definitions and runs ethtool in guests%s; "+
			"write mode: apply to keep that, or mode: observe to only report", s, m, aliasNote[s])))
		return m, true
	}
	p.errorf(resolve(n), path, "%q is not one of observe, apply, enforce", s)
	return "", false
}

// orchestrators parses the mapping of orchestrator names to leave |
// observe | apply.
func (p *parser) orchestrators(n *yaml.Node, path string) []orchestratorEntry {
	var out []orchestratorEntry
	p.fields(n, path, func(key string, k, v *yaml.Node, kpath string) {
		o := orchestrator(key)
		if o == nil {
			p.errorf(k, kpath, "unknown orchestrator (known: %s)", strings.Join(orchestratorNames(), ", "))
			return
		}
		if s, ok := p.enum(v, kpath, string(OrchestratorLeave), string(OrchestratorObserve), string(OrchestratorApply)); ok {
			out = append(out, orchestratorEntry{key, opt[OrchestratorMode]{OrchestratorMode(s), true, p.loc(resolve(v), kpath)}})
			if s != string(OrchestratorLeave) {
				p.warns = append(p.warns, p.at(resolve(v), kpath, fmt.Sprintf("note: virtmq manages %s's domains (%s): %s rebuilds a definition without the queues virtmq writes "+
					"at a hard reboot, a rebuild or a migration; its own setting, %s, lasts", o.Title, s, o.Title, o.Knob)))
			}
		}
	})
	return out
}

// count parses a decimal count of at most 9 digits (no sign, no overflow).
func count(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// queueLimit checks a fixed queue count against the tap limit.
// queueRange is the range of a queue count, for messages.
var queueRange = fmt.Sprintf("from 1 to %d", MaxTapQueues)

func (p *parser) queueLimit(n *yaml.Node, path, what string, v int) bool {
	switch {
	case v < 1:
		p.errorf(n, path, "%s %d is less than 1", what, v)
	case v > MaxTapQueues:
		p.errorf(n, path, "%s %d is more than %d, the kernel's limit of queues per tap", what, v, MaxTapQueues)
	default:
		return true
	}
	return false
}

func (p *parser) settings(n *yaml.Node, path string) partial {
	var s partial
	p.fields(n, path, func(key string, k, v *yaml.Node, kpath string) {
		at := p.loc(resolve(v), kpath)
		switch key {
		case "queues":
			if q, ok := p.queues(v, kpath); ok {
				s.queues = opt[QueuesSetting]{q, true, at}
			}
		case "combined":
			if c, ok := p.combined(v, kpath); ok {
				s.combined = opt[CombinedSetting]{c, true, at}
			}
		case "apply_at":
			if s2, ok := p.enum(v, kpath, string(ApplyColdBoot), string(ApplyNextReboot)); ok {
				s.applyAt = opt[ApplyAt]{ApplyAt(s2), true, at}
			}
		case "min", "max":
			if i, ok := p.integer(v, kpath, queueRange); ok && p.queueLimit(resolve(v), kpath, key, i) {
				if key == "min" {
					s.min = opt[int]{i, true, at}
				} else {
					s.max = opt[int]{i, true, at}
				}
			}
		case "min_vcpus", "budget":
			i, ok := p.integer(v, kpath, fmt.Sprintf("from 0 to %d", math.MaxInt))
			if ok && i < 0 {
				p.errorf(resolve(v), kpath, "%s %d is negative", key, i)
				ok = false
			}
			if ok && key == "min_vcpus" {
				s.minVCPUs = opt[int]{i, true, at}
			} else if ok {
				s.budget = opt[int]{i, true, at}
			}
		case "allow_above_vcpus", "guest_step", "allow_vhostuser":
			if b, ok := p.boolean(v, kpath); ok {
				switch key {
				case "guest_step":
					s.guestStep = opt[bool]{b, true, at}
				case "allow_vhostuser":
					s.vhostUser = opt[bool]{b, true, at}
				default:
					s.allowAbove = opt[bool]{b, true, at}
				}
			}
		case "hand_set":
			if h, ok := p.enum(v, kpath, string(HandSetKeep), string(HandSetOverride)); ok {
				s.handSet = opt[HandSet]{HandSet(h), true, at}
			}
		default:
			p.unknown(k, kpath, settingsKeys)
		}
	})
	return s
}

// queues parses integer | vcpus | vcpus/K | P%.
func (p *parser) queues(n *yaml.Node, path string) (QueuesSetting, bool) {
	n = resolve(n)
	if isIntLiteral(n) {
		if v, ok := p.integer(n, path, queueRange); ok && p.queueLimit(n, path, "queues", v) {
			return QueuesSetting{Kind: QueuesFixed, N: v}, true
		}
		return QueuesSetting{}, false
	}
	s, ok := p.scalar(n, path)
	if !ok {
		return QueuesSetting{}, false
	}
	switch {
	case s == "vcpus":
		return QueuesSetting{Kind: QueuesVCPUs}, true
	case strings.HasPrefix(s, "vcpus/"):
		k, ok := count(s[len("vcpus/"):])
		if ok && k >= 1 {
			return QueuesSetting{Kind: QueuesDivided, N: k}, true
		}
		p.errorf(n, path, "%q: the divisor must be an integer of at least 1", s)
		return QueuesSetting{}, false
	case strings.HasSuffix(s, "%"):
		pc, ok := count(s[:len(s)-1])
		if ok && pc >= 1 && pc <= 100 {
			return QueuesSetting{Kind: QueuesPercent, N: pc}, true
		}
		p.errorf(n, path, "%q: the percentage must be an integer from 1 to 100", s)
		return QueuesSetting{}, false
	}
	if v, ok := count(s); ok {
		if p.queueLimit(n, path, "queues", v) {
			return QueuesSetting{Kind: QueuesFixed, N: v}, true
		}
		return QueuesSetting{}, false
	}
	p.errorf(n, path, "%q is not a queue count (an integer, vcpus, vcpus/K or P%%)", s)
	return QueuesSetting{}, false
}

// combined parses integer | queues | vcpus.
func (p *parser) combined(n *yaml.Node, path string) (CombinedSetting, bool) {
	n = resolve(n)
	if isIntLiteral(n) {
		if v, ok := p.integer(n, path, queueRange); ok && p.queueLimit(n, path, "combined", v) {
			return CombinedSetting{Kind: CombinedFixed, N: v}, true
		}
		return CombinedSetting{}, false
	}
	s, ok := p.scalar(n, path)
	if !ok {
		return CombinedSetting{}, false
	}
	switch s {
	case "queues":
		return CombinedSetting{Kind: CombinedQueues}, true
	case "vcpus":
		return CombinedSetting{Kind: CombinedVCPUs}, true
	}
	if v, ok := count(s); ok {
		if p.queueLimit(n, path, "combined", v) {
			return CombinedSetting{Kind: CombinedFixed, N: v}, true
		}
		return CombinedSetting{}, false
	}
	p.errorf(n, path, "%q is not a channel count (an integer, queues or vcpus)", s)
	return CombinedSetting{}, false
}

func (p *parser) rules(n *yaml.Node, path string) []rawRule {
	n = resolve(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "must be a list, not %s", describe(n))
		return nil
	}
	var rules []rawRule
	for i, item := range n.Content {
		if !p.step(n, path) {
			break
		}
		item = resolve(item)
		ipath := fmt.Sprintf("%s[%d]", path, i)
		if item.Kind != yaml.MappingNode {
			p.errorf(item, ipath, "must be a mapping, not %s", describe(item))
			continue
		}
		r := rawRule{at: p.loc(item, ipath)}
		var named bool
		var setKey *yaml.Node
		p.fields(item, ipath, func(key string, k, v *yaml.Node, kpath string) {
			switch key {
			case "name":
				named = true
				s, ok := p.scalar(v, kpath)
				switch {
				case !ok:
				case s == "defaults":
					p.errorf(resolve(v), kpath, `"defaults" is reserved for NICs no rule matches`)
				case !validRuleName(s):
					p.errorf(resolve(v), kpath, "%q is not a valid rule name (letters, digits, '.', '_', '-'; at most 63 characters)", s)
				default:
					r.name, r.nameAt = s, p.loc(resolve(v), kpath)
				}
			case "match":
				r.match = p.match(v, kpath)
				r.matchAt = p.loc(k, kpath)
			case "exclude":
				r.exclude, _ = p.boolean(v, kpath)
			case "set":
				setKey = k
				r.set = p.settings(v, kpath)
			default:
				p.unknown(k, kpath, ruleKeys)
			}
		})
		if !named {
			p.errorf(item, ipath, "missing name")
		}
		if r.exclude && setKey != nil {
			p.errorf(setKey, ipath+".set", "has no effect with exclude: true")
		}
		rules = append(rules, r)
	}
	return rules
}

func (p *parser) match(n *yaml.Node, path string) Match {
	var m Match
	globs := func(v *yaml.Node, kpath string) []string {
		var out []string
		p.list(v, kpath, func(v *yaml.Node, ipath string) {
			if g, ok := p.glob(v, ipath); ok {
				out = append(out, g)
			}
		})
		return out
	}
	p.fields(n, path, func(key string, k, v *yaml.Node, kpath string) {
		switch key {
		case "domain":
			m.Domain = globs(v, kpath)
		case "os":
			m.OS = globs(v, kpath)
		case "network":
			m.Network = globs(v, kpath)
		case "bridge":
			m.Bridge = globs(v, kpath)
		case "vcpus":
			p.list(v, kpath, func(v *yaml.Node, ipath string) {
				if r, ok := p.vcpuRange(v, ipath); ok {
					m.VCPUs = append(m.VCPUs, r)
				}
			})
		case "labels":
			if l := resolve(v); isNull(l) || l.Kind == yaml.MappingNode && len(l.Content) == 0 {
				// No label condition would match every NIC, where a
				// reader sees a rule about labels.
				p.errorf(l, kpath, "no labels (it would match every NIC): name a label and its values, or leave labels out")
				return
			}
			p.fields(v, kpath, func(label string, k, v *yaml.Node, lpath string) {
				if label == "" {
					p.errorf(k, lpath, "empty label name")
					return
				}
				if m.Labels == nil {
					m.Labels = map[string][]string{}
				}
				m.Labels[label] = globs(v, lpath)
			})
		case "nic_type":
			p.list(v, kpath, func(v *yaml.Node, ipath string) {
				if s, ok := p.scalar(v, ipath); ok {
					if !slices.Contains(nicTypes, s) {
						p.errorf(v, ipath, "unknown interface type %q (known: %s)", s, strings.Join(nicTypes, ", "))
						return
					}
					m.NICType = append(m.NICType, s)
				}
			})
		case "mac_prefix":
			p.list(v, kpath, func(v *yaml.Node, ipath string) {
				if s, ok := p.scalar(v, ipath); ok {
					if !isMACPrefix(s) {
						p.errorf(v, ipath, "%q is not a MAC prefix (hex digits and colons, e.g. 52:54:00)", s)
						return
					}
					m.MACPrefix = append(m.MACPrefix, strings.ToLower(s))
				}
			})
		default:
			p.unknown(k, kpath, matchKeys)
		}
	})
	return m
}

// glob checks a path.Match pattern. path.Match checks the whole pattern's
// syntax even when the name does not match, so matching "" validates it.
func (p *parser) glob(n *yaml.Node, where string) (string, bool) {
	s, ok := p.scalar(n, where)
	if !ok {
		return "", false
	}
	if s == "" {
		p.errorf(n, where, "empty pattern")
		return "", false
	}
	if _, err := path.Match(s, ""); err != nil {
		p.errorf(n, where, "%q is not a valid glob: %v", s, err)
		return "", false
	}
	return s, true
}

func isMACPrefix(s string) bool {
	if s == "" || len(s) > len("00:00:00:00:00:00") {
		return false
	}
	for _, c := range []byte(s) {
		if !(c == ':' || c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// vcpuRange parses "N", "N-M", "N-" or "-M" (an unquoted -4 is the same as "-4").
func (p *parser) vcpuRange(n *yaml.Node, path string) (Range, bool) {
	s, ok := p.scalar(n, path)
	if !ok {
		return Range{}, false
	}
	lo, hi, dash := strings.Cut(s, "-")
	r := Range{Max: math.MaxInt}
	var okLo, okHi = true, true
	switch {
	case !dash:
		r.Min, okLo = count(lo)
		r.Max = r.Min
	case lo == "" && hi == "":
		okLo = false
	default:
		if lo != "" {
			r.Min, okLo = count(lo)
		}
		if hi != "" {
			r.Max, okHi = count(hi)
		}
	}
	if !okLo || !okHi {
		p.errorf(n, path, "%q is not a range", s)
		return Range{}, false
	}
	if r.Min > r.Max {
		p.errorf(n, path, "%q is an empty range", s)
		return Range{}, false
	}
	return r, true
}

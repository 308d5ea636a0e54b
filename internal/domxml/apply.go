package domxml

import "github.com/virtmq/virtmq/policy"

// Apply is the one code path that turns a domain XML into the definition
// virtmq wants: parse the facts, decide with the policy, splice the queue
// counts in and record them (see WrittenNamespace), so that the next
// decision tells virtmq's own counts from a person's. `virtmq rewrite`,
// `virtmq apply` and virtmq-agent all call it, so what the CLI prints is
// exactly what the agent defines. It returns doc rewritten to the policy's
// plan, and the plan; when the domain already complies, out has the same
// bytes as doc.
//
// The rewrite keeps every other byte: an existing queues attribute has its
// value replaced (its quote character kept); a <driver> without one gets
// ` queues='N'` appended to its start tag; an <interface> without a
// <driver> gets a `<driver queues='N'/>` child, indented like its
// siblings, after its last child. New attributes take the quote character
// of the <driver>'s other attributes, else of the <interface>'s, else '.
// The record is replaced where it is, or added as the last child of the
// first <metadata>; a domain without <metadata> gets one after the last of
// <name>, <uuid>, <genid>, <title> and <description>, where libvirt writes
// it. Since the result is read back and checked before it is returned,
// applying the same policy to it returns it unchanged.
func Apply(p *policy.Policy, doc []byte) (out []byte, plan policy.Plan, err error) {
	sc, err := scan(doc)
	if err != nil {
		return nil, policy.Plan{}, err
	}
	plan = p.Decide(&sc.dom)
	if plan.Compliant() {
		return doc, plan, nil
	}
	out, err = rewrite(doc, sc, plan.Queues(), true)
	return out, plan, err
}

// ApplyTo is Apply on a doc already parsed into dom, for a caller that
// fills in facts the XML does not hold (virtmq-agent reads each network's
// forward mode into Interface.NetworkForward) before the decision. dom must
// come from Parse(doc).
func ApplyTo(p *policy.Policy, doc []byte, dom *policy.Domain) (out []byte, plan policy.Plan, err error) {
	plan = p.Decide(dom)
	if plan.Compliant() {
		return doc, plan, nil
	}
	sc, err := scan(doc)
	if err != nil {
		return nil, plan, err
	}
	out, err = rewrite(doc, sc, plan.Queues(), true)
	return out, plan, err
}

package domxml

import "github.com/virtmq/virtmq/policy"

// Apply is the one code path that turns a domain XML into the definition
// virtmq wants: parse the facts, decide with the policy, splice the queue
// counts in. `virtmq rewrite`, `virtmq apply` and virtmq-agent all call it,
// so what the CLI prints is exactly what the agent defines. It returns doc
// rewritten to the policy's plan, and the plan; when the domain already
// complies, out has the same bytes as doc.
func Apply(p *policy.Policy, doc []byte) (out []byte, plan policy.Plan, err error) {
	dom, err := Parse(doc)
	if err != nil {
		return nil, policy.Plan{}, err
	}
	return ApplyTo(p, doc, dom)
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
	out, err = RewriteRecorded(doc, plan.Queues())
	if err != nil {
		return nil, plan, err
	}
	return out, plan, nil
}

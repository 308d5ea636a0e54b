// Package packaging holds the files virtmq ships to hosts: the default
// policy, embedded so that the binaries work on a host without a policy
// file and so that tests can check the very bytes that are installed.
package packaging

import _ "embed"

// DefaultPolicy is policy.yaml, the policy installed on hosts and parsed
// by policy.Default for hosts without a policy file. Treat it as read-only.
//
//go:embed policy.yaml
var DefaultPolicy []byte

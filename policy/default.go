package policy

import _ "embed"

// defaultPolicy is default.yaml: the policy the packages install as
// /etc/virtmq/policy.yaml, and the one Default parses for a host without a
// policy file, so that tests check the very bytes that are installed.
//
//go:embed default.yaml
var defaultPolicy []byte

package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// DefaultPath is where hosts keep the policy; drop-ins live in policy.d beside it.
const DefaultPath = "/etc/virtmq/policy.yaml"

// EnvVar names the environment variable that overrides the policy path.
const EnvVar = "VIRTMQ_POLICY"

// Resolve picks and loads the policy every virtmq program uses: the explicit
// path (a flag) if set, else the EnvVar value, else defaultPath if it exists,
// else the default policy embedded in the binary. embedded reports the last
// case so the caller can say so once. An explicit or environment path that
// does not exist is an error: a typo must not silently fall back.
func Resolve(explicit string, getenv func(string) string, defaultPath string) (p *Policy, embedded bool, err error) {
	path := explicit
	if path == "" && getenv != nil {
		path = getenv(EnvVar)
	}
	if path == "" {
		if _, err := os.Stat(defaultPath); errors.Is(err, fs.ErrNotExist) {
			return Default(), true, nil
		}
		path = defaultPath
	}
	p, err = Load(path)
	if err != nil {
		return nil, false, fmt.Errorf("load policy: %w", err)
	}
	return p, false, nil
}

// Package build carries the version virtmq was built as. The Makefile sets
// Version and Commit with -ldflags -X; a plain `go build` reports "dev".
package build

import (
	"fmt"
	"runtime"
)

// Set at link time: -X github.com/virtmq/virtmq/internal/build.Version=...
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is the one-line version every binary prints for --version.
func String(program string) string {
	return fmt.Sprintf("%s %s (commit %s, %s)", program, Version, Commit, runtime.Version())
}

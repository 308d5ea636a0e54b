// Command floor is the baseline of the hook benchmark: a static Go binary
// that reads its stdin and exits, exec'd exactly like the hook. The hook's
// cost on the VM start path is reported as a ratio to it.
package main

import (
	"io"
	"os"
)

func main() {
	_, _ = io.Copy(io.Discard, os.Stdin)
}

//go:build !failpoints

package agent

// failpoints is empty in a normal build: no failpoint can fire.
type failpoints struct{}

func newFailpoints(func(string) string, func(msg string, args ...any)) *failpoints { return nil }

// failpoint does nothing in a normal build.
func (a *Agent) failpoint(string) {}

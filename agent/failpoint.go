package agent

// The step boundaries of the next-reboot path (see reboot.go) where a
// build with the failpoints tag can crash or stall the agent on purpose,
// to prove that each one converges: a restarted agent finishes the cold
// boot from the intent, and the domain is never left off or paused.
// Without the tag, failpoint is a no-op the compiler removes.
const (
	// fpIntentWritten: the intent is on disk, the domain not paused yet.
	fpIntentWritten = "reboot-intent-written"
	// fpPaused: the domain is paused at its reboot, not destroyed yet.
	fpPaused = "reboot-paused"
	// fpDestroyed: the domain is shut off, not started yet.
	fpDestroyed = "reboot-destroyed"
	// fpStarted: the domain runs its cold boot, the intent not removed yet.
	fpStarted = "reboot-started"
)

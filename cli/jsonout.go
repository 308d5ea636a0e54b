package cli

import (
	"encoding/json"
	"fmt"
)

// FormatVersion is the format_version at the top of every JSON document
// virtmq prints (plan, lint, verify, status; docs/json.md). It changes only
// when a field changes meaning or goes away; new fields may appear within
// a version, so readers ignore fields they do not know.
const FormatVersion = 1

// writeJSON prints v as indented JSON on stdout. Slices in v are never
// nil, so empty lists print as [] (callers initialise them); HTML is not
// escaped (reasons quote XML like <model>).
func writeJSON(env *Env, cmd string, v any) error {
	enc := json.NewEncoder(env.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(env.Stderr, "virtmq %s: %v\n", cmd, err)
		return err
	}
	return nil
}

// orEmpty returns s, or an empty slice for nil, so it encodes as [].
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

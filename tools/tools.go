//go:build tools

// Package tools pins the build tools virtmq uses, in a module of their own so
// the main go.mod stays small. Build one with
//
//	cd tools && go build -o ../bin/nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm
//
// or run it with `go run -modfile=tools/go.mod github.com/goreleaser/nfpm/v2/cmd/nfpm`.
// staticcheck is a tool of this module (`tool` in go.mod), so
// `go tool -modfile=tools/go.mod staticcheck ./...` runs the pinned version.
package tools

import (
	_ "github.com/goreleaser/nfpm/v2/cmd/nfpm"
)

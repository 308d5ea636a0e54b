//go:build tools

// Package tools pins the build tools virtmq uses, in a module of their own so
// the main go.mod stays small. Build one with
//
//	cd tools && go build -o ../bin/nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm
//
// or run it with `go run -modfile=tools/go.mod github.com/goreleaser/nfpm/v2/cmd/nfpm`.
package tools

import (
	_ "github.com/goreleaser/nfpm/v2/cmd/nfpm"
)

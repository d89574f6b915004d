//go:build tools

// Package tools pins the modules the project depends on before every
// package imports them, so that concurrent work does not race on go.mod.
//
// staticcheck is deliberately not pinned here: `make lint` runs it as
// `go run honnef.co/go/tools/cmd/staticcheck@v0.8.2`, a fixed version from
// the module proxy that leaves go.mod (and the versions of golang.org/x/...
// the project builds with) alone.
package tools

import (
	_ "github.com/dgraph-io/badger/v4"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/pflag"
	_ "github.com/vmihailenco/msgpack/v5"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/term"
	_ "gonum.org/v1/gonum/blas/blas32"
	_ "gonum.org/v1/gonum/diff/fd"
	_ "gonum.org/v1/plot"
)

package main

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// component is one long-running part of the daemon. Run works until ctx is
// done (or it fails) and returns only when it has stopped completely.
type component struct {
	name string
	run  func(ctx context.Context) error
}

// runGroup runs the components until the first one returns, for whatever
// reason, then cancels the others and waits for all of them. It returns the
// first error, prefixed with its component's name.
func runGroup(ctx context.Context, comps ...component) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g errgroup.Group
	for _, c := range comps {
		g.Go(func() error {
			defer cancel()
			if err := c.run(ctx); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

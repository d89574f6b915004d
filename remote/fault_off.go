//go:build !replayfault

package remote

import "context"

// corrupt is fault injection (build tag replayfault); a no-op here.
func corrupt([]float32) {}

// slow is fault injection (build tag replayfault); a no-op here.
func slow(context.Context) {}

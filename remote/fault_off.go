//go:build !replayfault

package remote

// corrupt is fault injection (build tag replayfault); a no-op here.
func corrupt([]float32) {}

//go:build !failpoints

package ckpt

// failpoint is the hook of a fault-injection site (see failpoint_on.go). In
// an ordinary build it does nothing and costs nothing: the compiler inlines
// it away.
func failpoint(string) error { return nil }

// FailpointsEnabled reports whether this binary was built with
// -tags failpoints.
const FailpointsEnabled = false

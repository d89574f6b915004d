package replay

import "errors"

// Sentinel errors. Functions wrap them with context (test with errors.Is).
var (
	// ErrStep reports a step outside the range a call accepts: a negative
	// step, or a step before the anchor of an evaluation.
	ErrStep = errors.New("replay: step out of range")
	// ErrConfig reports an invalid strategy configuration.
	ErrConfig = errors.New("replay: invalid configuration")
	// ErrNoForward reports that a strategy needs a ForwardSource and has none.
	ErrNoForward = errors.New("replay: forward source required")
)

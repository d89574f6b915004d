package extmodel

import "errors"

var (
	// ErrFrameTooLarge is a frame longer than MaxFrame (or the limit of
	// the reading side).
	ErrFrameTooLarge = errors.New("extmodel: frame too large")
	// ErrGarbage is a reply that is not a well-formed reply: not one
	// msgpack map, a wrong id, missing or ill-typed fields, vectors of the
	// wrong length.
	ErrGarbage = errors.New("extmodel: malformed reply")
	// ErrTimeout is a request that got no reply within its deadline.
	ErrTimeout = errors.New("extmodel: no reply within the deadline")
	// ErrExited is a child that exited (or closed its stdout) before
	// replying.
	ErrExited = errors.New("extmodel: child exited")
	// ErrRefused is an `"ok": false` reply: the child said the request is
	// wrong. It is not retried.
	ErrRefused = errors.New("extmodel: child refused the request")
	// ErrVersion is a hello reply with a protocol version this package
	// does not speak.
	ErrVersion = errors.New("extmodel: protocol version mismatch")
	// ErrChanged is a fresh child whose fingerprint differs from the
	// registration's in what the data hash covers (the model file was
	// edited, the data set replaced): its numbers would not be the runs'.
	ErrChanged = errors.New("extmodel: model changed since registration")
	// ErrClosed is a request to a family or pool that was closed.
	ErrClosed = errors.New("extmodel: closed")
	// ErrNotRegistered is a model name no --torch-model or --model-cmd
	// registered.
	ErrNotRegistered = errors.New("extmodel: model not registered")
)

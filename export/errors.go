package export

import "errors"

// ErrFormat is wrapped by every error about malformed input to a reader.
var ErrFormat = errors.New("export: malformed file")

// ErrInvalid is wrapped by every error about arguments a writer cannot encode
// (shape and data disagree, duplicate or empty names).
var ErrInvalid = errors.New("export: invalid argument")

// ErrUnsupported is wrapped when a well-formed file uses a feature this
// package does not read (a dtype other than F32 / '<i8', Fortran order).
var ErrUnsupported = errors.New("export: unsupported file")

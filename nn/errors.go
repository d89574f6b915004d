package nn

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these with
// context; test them with errors.Is.
var (
	// ErrNoData reports that a data set's files are missing.
	ErrNoData = errors.New("nn: data set not found")
	// ErrFormat reports a malformed data file.
	ErrFormat = errors.New("nn: malformed data file")
	// ErrSpec reports an unknown or malformed model, loss, init or data set name.
	ErrSpec = errors.New("nn: bad specification")
	// ErrShape reports sizes that do not fit together (model vs data, batch vs data).
	ErrShape = errors.New("nn: shape mismatch")
)

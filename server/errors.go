package server

import "errors"

// Errors of the request layer (the backend's own errors are mapped by
// errorStatus). They are wrapped with details and answered with a 400 or 413.
var (
	// errBadRequest marks a malformed request: bad JSON, a bad query value.
	errBadRequest = errors.New("server: bad request")
	// errTooLarge marks a request body over Options.MaxBodyBytes.
	errTooLarge = errors.New("server: request body too large")
)

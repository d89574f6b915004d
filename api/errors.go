package api

import "errors"

// Sentinels for errors.Is on the client's errors. *UnreachableError matches
// ErrUnreachable; *StatusError matches the one for its HTTP status.
var (
	ErrUnreachable  = errors.New("api: replayd is not running")
	ErrNotFound     = errors.New("api: not found")
	ErrInvalid      = errors.New("api: invalid request")
	ErrConflict     = errors.New("api: conflict")
	ErrUnauthorized = errors.New("api: unauthorized")
)

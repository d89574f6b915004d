package api

import "errors"

// Sentinels for errors.Is, shared by both ends of the API. On the client,
// *UnreachableError matches ErrUnreachable and *StatusError matches the one
// for its HTTP status. On the server side, a backend's errors match them
// (the scheduler's sentinels do) and the server maps them to statuses:
// ErrInvalid 400, ErrNotFound 404, ErrConflict 409, ErrBusy 503 with
// Retry-After. The server imports no backend package to know its errors.
var (
	ErrUnreachable  = errors.New("api: replayd is not running")
	ErrNotFound     = errors.New("api: not found")
	ErrInvalid      = errors.New("api: invalid request")
	ErrConflict     = errors.New("api: conflict")
	ErrUnauthorized = errors.New("api: unauthorized")
	// ErrCorrupt: a stored record failed its checksum (409 with the report).
	ErrCorrupt = errors.New("api: stored data is damaged")
	// ErrNoSpace: the daemon's disk is below its reserve (507).
	ErrNoSpace = errors.New("api: no space left for the store")
	// ErrBusy reports a saturated backend: the request may succeed if
	// tried again later (503 with Retry-After).
	ErrBusy = errors.New("api: busy")
)

// Package api holds the wire types of replayd's HTTP/JSON API (under /v1/)
// and a client for it. Both the daemon and replayctl use these types; the
// JSON field names are the contract scripts rely on.
package api

// Package api holds the wire types of replayd's HTTP/JSON API (under /v1/)
// and a client for it. Both the daemon and replayctl use these types; the
// JSON field names are the contract scripts rely on.
//
// Point has one JSON codec (point.go), used by the daemon's trajectory
// stream, Client.Trajectory and replayctl's -o json: non-finite values are
// written as null and null is read as NaN; finite values round-trip bit for
// bit.
package api

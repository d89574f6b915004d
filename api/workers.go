package api

import (
	"context"
	"net/http"
	"time"
)

// WorkerStatus is a remote worker as the daemon knows it from its
// announcements (GET /v1/workers).
type WorkerStatus struct {
	Name        string    `json:"name"`
	Fingerprint string    `json:"fingerprint"`
	Slots       int       `json:"slots"`
	Busy        int       `json:"busy"`
	Done        int64     `json:"jobs_done"`
	OpsPerSec   float64   `json:"ops_per_sec"`
	LastSeen    time.Time `json:"last_seen"`
	// State is "ok", "other-fingerprint" (gets no job of the daemon's
	// bitwise runs), "quarantined" (a spot check found a wrong result) or
	// "silent" (no announcement for a while).
	State string `json:"state"`
}

// WorkerList is the answer of GET /v1/workers; Remote is false when the
// daemon computes in-process only.
type WorkerList struct {
	Remote  bool           `json:"remote"`
	Workers []WorkerStatus `json:"workers"`
}

// Workers returns the daemon's remote workers.
func (c *Client) Workers(ctx context.Context) (WorkerList, error) {
	var out WorkerList
	err := c.getJSON(ctx, http.MethodGet, "/v1/workers", nil, &out)
	return out, err
}

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
	// Refuses are the open runs whose jobs the worker refuses: their data
	// set differs on it.
	Refuses []string `json:"refuses,omitempty"`
}

// WorkerList is the answer of GET /v1/workers; Remote is false when the
// daemon computes in-process only.
type WorkerList struct {
	Remote  bool           `json:"remote"`
	Workers []WorkerStatus `json:"workers"`
	// Stuck are the open runs whose backward jobs no live worker can take
	// (RunStatus.Waiting says the same), by name.
	Stuck []StuckRun `json:"stuck,omitempty"`
}

// StuckRun is an open run that no live worker can take, and why.
type StuckRun struct {
	Run    string `json:"run"`
	Reason string `json:"reason"`
}

// Workers returns the daemon's remote workers.
func (c *Client) Workers(ctx context.Context) (WorkerList, error) {
	var out WorkerList
	err := c.getJSON(ctx, http.MethodGet, "/v1/workers", nil, &out)
	return out, err
}

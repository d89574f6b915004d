//go:build !cgo || noopenblas

package nn

import "testing"

func TestBLASBackendName(t *testing.T) {
	if got := BLASBackend(); got != "gonum" {
		t.Errorf("pure-Go build: backend %q, want gonum", got)
	}
}

//go:build cgo && !noopenblas

package nn

import "testing"

func TestBLASBackendName(t *testing.T) {
	if got := BLASBackend(); got != "openblas" {
		t.Errorf("cgo build: backend %q, want openblas", got)
	}
}

package scheduler

import (
	"errors"
	"strings"
	"testing"

	"github.com/replay-sgd/replay/api"
)

// TestResolveFingerprint: fingerprint "" and "any" are kept (also under a
// preset, and back in the resolved spec), anything else is refused by name.
func TestResolveFingerprint(t *testing.T) {
	for _, fp := range []string{"", api.FingerprintAny} {
		cfg, err := Resolve(testFamilies, api.RunSpec{Preset: "quadratic", Fingerprint: fp}, 256)
		if err != nil {
			t.Fatalf("fingerprint %q: %v", fp, err)
		}
		if cfg.Fingerprint != fp || specOf(cfg, "").Fingerprint != fp {
			t.Errorf("fingerprint %q: resolved %q, spec %q", fp, cfg.Fingerprint, specOf(cfg, "").Fingerprint)
		}
	}
	_, err := Resolve(testFamilies, api.RunSpec{Preset: "quadratic", Fingerprint: "blas=gonum"}, 256)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `fingerprint "blas=gonum"`) {
		t.Errorf("fingerprint blas=gonum: %v, want a refusal naming it", err)
	}
}

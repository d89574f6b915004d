package echo

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	if got := Clip("short"); got != "short" {
		t.Errorf("Clip(short) = %q", got)
	}
	exact := strings.Repeat("a", Max)
	if got := Clip(exact); got != exact {
		t.Errorf("a string of Max bytes was cut: %q", got)
	}
	long := strings.Repeat("é", 5000) // 2 bytes a rune: Max falls inside one at odd offsets
	got := Clip("x" + long)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "…(10001 bytes)") || len(got) > Max+len("…(10001 bytes)") {
		t.Errorf("Clip of 10001 bytes = %q", got)
	}
}

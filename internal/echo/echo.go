// Package echo bounds what an error message repeats of a user's string
// (a run name, a model spec, a JSON key): a 10 KB name must not come back
// whole in a one-line error. Every package that echoes user input in an
// error uses Clip, so the bound is the same everywhere.
package echo

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Max is how many bytes of a user's string an error message repeats.
const Max = 64

// Clip returns s if it has at most Max bytes, else its first Max bytes (cut
// at a rune boundary, invalid UTF-8 dropped) and its length.
func Clip(s string) string {
	if len(s) <= Max {
		return s
	}
	cut := Max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.ToValidUTF8(s[:cut], "") + fmt.Sprintf("…(%d bytes)", len(s))
}

package ckpt

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Key layout (see doc.go). Steps and segments are fixed-width big-endian
// uint64 so that byte order is numeric order.
const (
	formatVersion = 1

	kindConfig     = 'C' // the smallest kind: a run's first key is its config
	kindState      = 'S'
	kindAnchor     = 'a' // + seg
	kindBatch      = 'b' // + step
	kindFwdMetrics = 'f' // + step
	kindFwdBlock   = 'g' // + block index: summary of forward metrics (blocks.go)
	kindCheckpoint = 'k' // + step
	kindLatestBwd  = 'l' // + step: metrics of the highest segment at step
	kindBwdMetrics = 'm' // + seg + step
	kindAnchorData = 'p' // + seg
	kindBwdTheta   = 't' // + seg + step

	maxNameLen = 255
)

var (
	formatKey      = []byte("!format")
	runsPrefix     = []byte("r")
	deletingPrefix = []byte("d")
)

func checkName(name string) error {
	if name == "" || len(name) > maxNameLen || !utf8.ValidString(name) || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%w: %q (1-%d bytes of UTF-8 without NUL)", ErrBadName, name, maxNameLen)
	}
	return nil
}

// runPrefix is "r" name 0x00: no run's prefix is a prefix of another's,
// because names contain no NUL.
func runPrefix(name string) []byte {
	p := make([]byte, 0, len(name)+2)
	p = append(p, runsPrefix...)
	p = append(p, name...)
	return append(p, 0)
}

func deletingKey(name string) []byte {
	return append(append([]byte{}, deletingPrefix...), name...)
}

// runKey is runPrefix(name) kind n1 n2 … with every n as 8 big-endian bytes.
func runKey(name string, kind byte, nums ...int) []byte {
	k := make([]byte, 0, len(name)+3+8*len(nums))
	k = append(k, runsPrefix...)
	k = append(k, name...)
	k = append(k, 0, kind)
	for _, n := range nums {
		k = binary.BigEndian.AppendUint64(k, uint64(n))
	}
	return k
}

// keyNum returns the i-th number of a run key of the given run (whose prefix
// and kind byte have length pl).
func keyNum(key []byte, pl, i int) int {
	return int(binary.BigEndian.Uint64(key[pl+8*i:]))
}
